//! Prometheus `/metrics`: the daemon's counter store as a scrape page.
//!
//! In: the [`Telemetry`] every thread reports to. Out: the Prometheus text
//! format (version 0.0.4) on `GET /metrics` at `[metrics] listen` (off by
//! default; meant for loopback, where node_exporter-style agents scrape).
//! The same numbers go out in the MQTT `stats` message. [`render`] is pure.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::telemetry::{Snapshot, Stage, Telemetry, Totals};

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` page, e.g. "127.0.0.1:9464"; unset: off.
    pub listen: Option<SocketAddr>,
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), String> {
        match self.listen {
            Some(a) if a.port() == 0 => {
                Err("metrics.listen has port 0: name a port, e.g. 127.0.0.1:9464".into())
            }
            _ => Ok(()),
        }
    }
}

fn series(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A series with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    series(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A series with one sample per value of `label`.
fn labelled<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    samples: &[(&str, V)],
) {
    series(out, name, kind, help);
    for (l, v) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
    }
}

/// The page: counters end in `_total`, times are in seconds.
pub fn render(snap: &Snapshot, t: &Totals) -> String {
    let mut o = String::new();
    frames(&mut o, snap, t);
    stages(&mut o, snap);
    mqtt(&mut o, t);
    ros2(&mut o, t);
    o
}

/// The ROS 2 output (zero while it is off).
fn ros2(o: &mut String, t: &Totals) {
    single(
        o,
        "fer_edge_ros2_sent_total",
        "counter",
        "Frames' readings handed to the ROS 2 output's DDS thread.",
        t.ros2_sent,
    );
    labelled(
        o,
        "fer_edge_ros2_dropped_total",
        "counter",
        "Frames' readings the ROS 2 output dropped, by reason.",
        "reason",
        &[("queue_full", t.ros2_dropped_queue_full)],
    );
}

/// Frames through the daemon, and the source's outages.
fn frames(o: &mut String, snap: &Snapshot, t: &Totals) {
    let stage = |k: &str| snap.stages.get(k);
    let (counter, gauge) = ("counter", "gauge");
    single(
        o,
        "fer_edge_uptime_seconds",
        gauge,
        "Seconds since the daemon started.",
        snap.uptime_s,
    );
    single(
        o,
        "fer_edge_frames_captured_total",
        counter,
        "Frames read from the source.",
        stage(Stage::Capture.name()).map_or(0, |s| s.frames_in),
    );
    single(
        o,
        "fer_edge_frames_processed_total",
        counter,
        "Frames through detection, alignment, emotion and tracking.",
        t.frames_processed,
    );
    single(
        o,
        "fer_edge_frames_skipped_total",
        counter,
        "Frames replaced by a newer one before inference took them.",
        stage(Stage::Skipped.name()).map_or(0, |s| s.dropped),
    );
    single(
        o,
        "fer_edge_frames_dropped_by_source_total",
        counter,
        "Frames the camera driver lost (sequence gaps).",
        t.frames_dropped_by_source,
    );
    single(
        o,
        "fer_edge_source_outages_total",
        counter,
        "Times the source went away (camera unplugged, stream cut) and was reopened or is being.",
        t.source_outages,
    );
}

/// Errors and latencies per stage.
fn stages(o: &mut String, snap: &Snapshot) {
    let counter = "counter";
    let errors: Vec<(&str, u64)> = snap
        .stages
        .iter()
        .filter(|(name, s)| s.errors > 0 || *name == "capture" || *name == "inference")
        .map(|(name, s)| (name.as_str(), s.errors))
        .collect();
    labelled(
        o,
        "fer_edge_frame_errors_total",
        counter,
        "Frames that could not be read or processed, by stage.",
        "stage",
        &errors,
    );
    series(
        o,
        "fer_edge_stage_latency_seconds",
        "summary",
        "Time per frame in each stage (recent frames); stage=\"publish\" is capture to publish.",
    );
    for (name, s) in snap.stages.iter().filter(|(_, s)| s.latency_ms.samples > 0) {
        let p = &s.latency_ms;
        for (q, v) in [("0.5", p.p50), ("0.9", p.p90), ("0.99", p.p99)] {
            let _ = writeln!(
                o,
                "fer_edge_stage_latency_seconds{{stage=\"{name}\",quantile=\"{q}\"}} {}",
                v / 1000.0
            );
        }
        let _ = writeln!(
            o,
            "fer_edge_stage_latency_seconds_count{{stage=\"{name}\"}} {}",
            s.frames_out
        );
    }
}

/// Tracks and the MQTT client.
fn mqtt(o: &mut String, t: &Totals) {
    let (counter, gauge) = ("counter", "gauge");
    single(
        o,
        "fer_edge_tracks_active",
        gauge,
        "Faces tracked now.",
        t.tracks_active,
    );
    single(
        o,
        "fer_edge_mqtt_connected",
        gauge,
        "1 while connected to the MQTT broker.",
        u8::from(t.mqtt_connected),
    );
    single(
        o,
        "fer_edge_mqtt_connections_total",
        counter,
        "Successful connections to the broker.",
        t.mqtt_connections,
    );
    labelled(
        o,
        "fer_edge_mqtt_connect_failures_total",
        counter,
        "Failed connection attempts by cause.",
        "cause",
        &[
            ("refused", t.mqtt_refused),
            ("tls", t.mqtt_tls_failures),
            ("network", t.mqtt_network_failures),
        ],
    );
    single(
        o,
        "fer_edge_mqtt_published_total",
        counter,
        "Messages handed to the broker connection.",
        t.mqtt_published,
    );
    labelled(
        o,
        "fer_edge_mqtt_dropped_total",
        counter,
        "Messages dropped, by reason.",
        "reason",
        &[
            ("queue_full", t.mqtt_dropped_queue_full),
            ("offline", t.mqtt_dropped_offline),
        ],
    );
    single(
        o,
        "fer_edge_mqtt_requeued_total",
        counter,
        "QoS 1 messages sent again after a session reset.",
        t.mqtt_requeued_after_reset,
    );
    labelled(
        o,
        "fer_edge_mqtt_queue_depth",
        gauge,
        "Messages waiting to be published, by queue.",
        "queue",
        &[
            ("frames", t.mqtt_queue_frames),
            ("events", t.mqtt_queue_events),
        ],
    );
}

/// Most scrapes served at once. Prometheus opens one; a client that opens
/// hundreds and holds them open once used up the daemon's file descriptors
/// (frames failed with "Too many open files"). Past the cap a connection is
/// closed at once, counted in `fer_edge_metrics_connections_refused_total`.
pub const MAX_CONNECTIONS: usize = 32;

/// Serves `/metrics` until the runtime stops. `refresh` runs before each
/// scrape (to sample queue depths). A failed bind is returned; a broken
/// client is only logged.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    refresh: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the /metrics page is open to the network (it holds counters, no images): prefer 127.0.0.1");
    }
    tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(async move {
        let mut last_warning: Option<std::time::Instant> = None;
        let mut warn = |message: String| {
            if last_warning.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(60)) {
                tracing::warn!("{message}");
                last_warning = Some(std::time::Instant::now());
            }
        };
        loop {
            let mut stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn(format!("/metrics cannot accept a connection: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let n = refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                warn(format!(
                    "/metrics: {MAX_CONNECTIONS} connections are open already; closed one more ({n} so far)"
                ));
                drop(stream);
                continue;
            };
            let (telemetry, refresh, refused) =
                (telemetry.clone(), refresh.clone(), refused.clone());
            tokio::spawn(async move {
                let _slot = slot;
                answer(&mut stream, &telemetry, &*refresh, &refused).await;
            });
        }
    });
    Ok(())
}

/// Answers one scrape: the page for `GET /metrics`, 404 for anything
/// else, nothing to a client that sends no request line within 5 s.
async fn answer(
    stream: &mut tokio::net::TcpStream,
    telemetry: &Telemetry,
    refresh: &(dyn Fn() + Send + Sync),
    refused: &std::sync::atomic::AtomicU64,
) {
    // The request line, however the client splits its writes.
    let mut buf = Vec::with_capacity(256);
    let read_line = async {
        let mut chunk = [0u8; 512];
        while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), read_line).await {
        Ok(true) => {}
        _ => return,
    }
    let request = String::from_utf8_lossy(&buf);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if request.starts_with("GET ")
        && (path == "/metrics" || path.starts_with("/metrics?"))
    {
        refresh();
        let mut page = render(&telemetry.snapshot(), &telemetry.totals());
        page.push_str(&format!(
                "# HELP fer_edge_metrics_connections_refused_total Connections to /metrics closed because {MAX_CONNECTIONS} were open.\n# TYPE fer_edge_metrics_connections_refused_total counter\nfer_edge_metrics_connections_refused_total {}\n",
                refused.load(std::sync::atomic::Ordering::Relaxed)
            ));
        ("200 OK", page)
    } else {
        (
            "404 Not Found",
            "only /metrics is served here\n".to_string(),
        )
    };
    let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Counter, Gauge};

    #[test]
    fn the_page_holds_the_usual_names_with_units_and_labels() {
        let t = Telemetry::default();
        t.frame_in(Stage::Capture);
        t.frame_out(Stage::Capture, 1.0);
        t.frame_out(Stage::Detect, 40.0);
        t.frame_out(Stage::Publish, 5.0);
        t.add(Counter::FramesProcessed, 7);
        t.add(Counter::MqttTlsFailures, 2);
        t.add(Counter::Ros2DroppedQueueFull, 4);
        t.set(Gauge::TracksActive, 3);
        t.set(Gauge::MqttConnected, 1);
        let page = render(&t.snapshot(), &t.totals());
        for line in [
            "fer_edge_frames_captured_total 1",
            "fer_edge_frames_processed_total 7",
            "fer_edge_tracks_active 3",
            "fer_edge_mqtt_connected 1",
            "fer_edge_mqtt_connect_failures_total{cause=\"tls\"} 2",
            "fer_edge_stage_latency_seconds{stage=\"detect\",quantile=\"0.5\"} 0.04",
            "fer_edge_stage_latency_seconds{stage=\"publish\",quantile=\"0.99\"} 0.005",
            "# TYPE fer_edge_mqtt_dropped_total counter",
            "fer_edge_ros2_dropped_total{reason=\"queue_full\"} 4",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "missing {line:?} in\n{page}"
            );
        }
        // Every sample line belongs to a declared series.
        for l in page.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let base = name.trim_end_matches("_count");
            assert!(
                page.contains(&format!("# TYPE {base} ")),
                "{name} undeclared"
            );
        }
    }

    #[test]
    fn a_listen_address_with_port_0_names_the_key() {
        let c = MetricsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
        };
        assert!(c.validate().unwrap_err().contains("metrics.listen"));
        assert!(MetricsConfig::default().validate().is_ok());
    }
}
