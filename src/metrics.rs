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

use crate::telemetry::{Snapshot, Telemetry, Totals};

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the `/metrics` page, e.g. "127.0.0.1:9464"; unset: off.
    pub listen: Option<String>,
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = &self.listen {
            let a: SocketAddr = l.parse().map_err(|e| {
                format!("metrics.listen = {l:?} is not an address like 127.0.0.1:9464 ({e})")
            })?;
            if a.port() == 0 {
                return Err("metrics.listen has port 0: name a port, e.g. 127.0.0.1:9464".into());
            }
        }
        Ok(())
    }
}

fn series(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The page: counters end in `_total`, times are in seconds.
pub fn render(snap: &Snapshot, t: &Totals) -> String {
    let mut o = String::new();
    let stage = |k: &str| snap.stages.get(k);
    series(
        &mut o,
        "fer_edge_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(o, "fer_edge_uptime_seconds {}", snap.uptime_s);
    series(
        &mut o,
        "fer_edge_frames_captured_total",
        "counter",
        "Frames read from the source.",
    );
    let _ = writeln!(
        o,
        "fer_edge_frames_captured_total {}",
        stage("capture").map_or(0, |s| s.frames_in)
    );
    series(
        &mut o,
        "fer_edge_frames_processed_total",
        "counter",
        "Frames through detection, alignment, emotion and tracking.",
    );
    let _ = writeln!(o, "fer_edge_frames_processed_total {}", t.frames_processed);
    series(
        &mut o,
        "fer_edge_frames_skipped_total",
        "counter",
        "Frames replaced by a newer one before inference took them.",
    );
    let _ = writeln!(
        o,
        "fer_edge_frames_skipped_total {}",
        stage("skipped").map_or(0, |s| s.dropped)
    );
    series(
        &mut o,
        "fer_edge_frames_dropped_by_source_total",
        "counter",
        "Frames the camera driver lost (sequence gaps).",
    );
    let _ = writeln!(
        o,
        "fer_edge_frames_dropped_by_source_total {}",
        t.frames_dropped_by_source
    );
    series(
        &mut o,
        "fer_edge_frame_errors_total",
        "counter",
        "Frames that could not be read or processed, by stage.",
    );
    for (name, s) in &snap.stages {
        if s.errors > 0 || name == "capture" || name == "inference" {
            let _ = writeln!(
                o,
                "fer_edge_frame_errors_total{{stage=\"{name}\"}} {}",
                s.errors
            );
        }
    }
    series(
        &mut o,
        "fer_edge_stage_latency_seconds",
        "summary",
        "Time per frame in each stage (recent frames); stage=\"publish\" is capture to publish.",
    );
    for (name, s) in &snap.stages {
        if s.latency_ms.samples == 0 {
            continue;
        }
        for (q, v) in [
            ("0.5", s.latency_ms.p50),
            ("0.9", s.latency_ms.p90),
            ("0.99", s.latency_ms.p99),
        ] {
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
    series(
        &mut o,
        "fer_edge_tracks_active",
        "gauge",
        "Faces tracked now.",
    );
    let _ = writeln!(o, "fer_edge_tracks_active {}", t.tracks_active);
    series(
        &mut o,
        "fer_edge_mqtt_connected",
        "gauge",
        "1 while connected to the MQTT broker.",
    );
    let _ = writeln!(o, "fer_edge_mqtt_connected {}", u8::from(t.mqtt_connected));
    series(
        &mut o,
        "fer_edge_mqtt_connections_total",
        "counter",
        "Successful connections to the broker.",
    );
    let _ = writeln!(o, "fer_edge_mqtt_connections_total {}", t.mqtt_connections);
    series(
        &mut o,
        "fer_edge_mqtt_connect_failures_total",
        "counter",
        "Failed connection attempts by cause.",
    );
    for (cause, n) in [
        ("refused", t.mqtt_refused),
        ("tls", t.mqtt_tls_failures),
        ("network", t.mqtt_network_failures),
    ] {
        let _ = writeln!(
            o,
            "fer_edge_mqtt_connect_failures_total{{cause=\"{cause}\"}} {n}"
        );
    }
    series(
        &mut o,
        "fer_edge_mqtt_published_total",
        "counter",
        "Messages handed to the broker connection.",
    );
    let _ = writeln!(o, "fer_edge_mqtt_published_total {}", t.mqtt_published);
    series(
        &mut o,
        "fer_edge_mqtt_dropped_total",
        "counter",
        "Messages dropped, by reason.",
    );
    let _ = writeln!(
        o,
        "fer_edge_mqtt_dropped_total{{reason=\"queue_full\"}} {}",
        t.mqtt_dropped_queue_full
    );
    let _ = writeln!(
        o,
        "fer_edge_mqtt_dropped_total{{reason=\"offline\"}} {}",
        t.mqtt_dropped_offline
    );
    series(
        &mut o,
        "fer_edge_mqtt_requeued_total",
        "counter",
        "QoS 1 messages sent again after a session reset.",
    );
    let _ = writeln!(
        o,
        "fer_edge_mqtt_requeued_total {}",
        t.mqtt_requeued_after_reset
    );
    series(
        &mut o,
        "fer_edge_mqtt_queue_depth",
        "gauge",
        "Messages waiting to be published, by queue.",
    );
    let _ = writeln!(
        o,
        "fer_edge_mqtt_queue_depth{{queue=\"frames\"}} {}",
        t.mqtt_queue_frames
    );
    let _ = writeln!(
        o,
        "fer_edge_mqtt_queue_depth{{queue=\"events\"}} {}",
        t.mqtt_queue_events
    );
    o
}

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
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let telemetry = telemetry.clone();
            let refresh = refresh.clone();
            tokio::spawn(async move {
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
                    ("200 OK", render(&telemetry.snapshot(), &telemetry.totals()))
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
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Counter, Gauge};

    #[test]
    fn the_page_holds_the_usual_names_with_units_and_labels() {
        let t = Telemetry::default();
        t.frame_in("capture");
        t.frame_out("capture", 1.0);
        t.frame_out("detect", 40.0);
        t.frame_out("publish", 5.0);
        t.add(Counter::FramesProcessed, 7);
        t.add(Counter::MqttTlsFailures, 2);
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
    fn a_bad_listen_address_names_the_key() {
        let c = MetricsConfig {
            listen: Some("localhost".into()),
        };
        assert!(c.validate().unwrap_err().contains("metrics.listen"));
        assert!(MetricsConfig::default().validate().is_ok());
    }
}
