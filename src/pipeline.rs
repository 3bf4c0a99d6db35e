//! Wiring only: the daemon's threads, the hand-off between them, shutdown.
//!
//! In: a validated [`Config`]. Out: MQTT messages, until the replay ends or
//! SIGTERM/SIGINT/SIGHUP arrives; then every track is ended, `offline` is
//! published, and the process exits 0.
//!
//! ```text
//! capture thread ──Mailbox (newest wins)──> inference thread ──Publisher──> MQTT tasks (tokio)
//!   FrameSource                              TrackCore::plan → FaceChain::run → TrackCore::update
//! ```
//!
//! Capture never waits for inference when the source is live (a camera or a
//! paced replay): a newer frame replaces an untaken one and the replaced
//! frame is counted as skipped. An unpaced replay hands over every frame
//! (tests and benchmarks want each one processed). Per-frame errors are
//! logged, counted and skipped; only setup errors end the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::capture::{self, CaptureError, Frame, FrameSource};
use crate::config::Config;
use crate::faces::{FaceChain, SetupError};
use crate::publish::payload::{
    self, EventMsg, ExpressionMsg, FrameStamp, StatsMsg, TrackedMsg, SCHEMA_VERSION,
};
use crate::publish::MqttStats;
use crate::publish::{self, Message, PublishError, Publisher};
use crate::telemetry::{Counter, Gauge, Telemetry};
use crate::track::core::{FrameOutput, TrackCore};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("source: {0}")]
    Source(#[from] CaptureError),
    #[error("mqtt: {0}")]
    Publish(#[from] PublishError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("cannot serve /metrics on {0}: {1}; change [metrics] listen or remove it")]
    Metrics(std::net::SocketAddr, std::io::Error),
    #[error("{0}; exiting so that the service manager restarts fer-edge")]
    BrokerDied(String),
}

/// A one-slot hand-off between the capture and inference threads.
struct Mailbox {
    state: Mutex<(Option<Frame>, bool)>,
    cv: Condvar,
    newest_wins: bool,
}

impl Mailbox {
    fn new(newest_wins: bool) -> Mailbox {
        Mailbox {
            state: Mutex::new((None, false)),
            cv: Condvar::new(),
            newest_wins,
        }
    }

    /// Puts a frame; returns how many untaken frames it replaced (0 or 1).
    fn put(&self, frame: Frame) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.newest_wins {
            while s.0.is_some() && !s.1 {
                s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        let replaced = u64::from(s.0.replace(frame).is_some());
        self.cv.notify_all();
        replaced
    }

    /// Takes the next frame; None once closed and empty.
    fn take(&self) -> Option<Frame> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(f) = s.0.take() {
                self.cv.notify_all();
                return Some(f);
            }
            if s.1 {
                return None;
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.cv.notify_all();
    }
}

/// The stop flag every thread watches.
struct Shared {
    stop: AtomicBool,
}

/// Runs the daemon until the replay ends or a signal arrives.
pub fn run(mut cfg: Config) -> Result<(), RunError> {
    cfg.source.validate_for_run().map_err(RunError::Config)?;
    // Files (password, certificates, users) are read and checked before
    // anything starts, as `fer-edge check` does.
    let secrets = publish::Secrets::load(&cfg.mqtt)?;
    let source = capture::open(&cfg.source)?;
    tracing::info!(source = %source.describe(), "source opened");
    if cfg.detector.fit_to_source(source.is_live()) {
        tracing::info!("unpaced replay: full detections run on the frame thread (detector.background applies to live sources)");
    }
    let mut chain = FaceChain::from_config(&cfg)?;
    log_placements(&mut chain, (cfg.source.width, cfg.source.height));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("fer-edge-io")
        .build()?;
    runtime.block_on(run_async(cfg, &secrets, chain, source))
}

/// Says at start which engine and device runs each model.
fn log_placements(chain: &mut FaceChain, frame: (u32, u32)) {
    match chain.placements(frame) {
        Ok(list) => {
            for p in list {
                tracing::info!(model = %p.model, engine = p.engine, "{}", p.placement);
            }
        }
        Err(e) => tracing::warn!(
            "cannot prepare the detector for {}x{}: {e}",
            frame.0,
            frame.1
        ),
    }
}

async fn run_async(
    cfg: Config,
    secrets: &publish::Secrets,
    chain: FaceChain,
    source: Box<dyn FrameSource>,
) -> Result<(), RunError> {
    let telemetry = Arc::new(Telemetry::default());
    let (publisher, mut connection) = publish::start(&cfg.mqtt, secrets, telemetry.clone())?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
    });
    if let Some(addr) = cfg.metrics.listen {
        let p = publisher.clone();
        crate::metrics::serve(
            addr,
            telemetry.clone(),
            Arc::new(move || p.record_queue_depths()),
        )
        .await
        .map_err(|e| RunError::Metrics(addr, e))?;
    }
    let mailbox = Arc::new(Mailbox::new(source.is_live()));
    let source_desc = source.describe();
    let model = chain.emotion_model().manifest().clone();
    let backend = chain.engine_label();

    let capture = {
        let (mailbox, shared, telemetry) = (mailbox.clone(), shared.clone(), telemetry.clone());
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(source, &mailbox, &shared, &telemetry))?
    };
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let inference = {
        let (mailbox, shared, telemetry, publisher) = (
            mailbox.clone(),
            shared.clone(),
            telemetry.clone(),
            publisher.clone(),
        );
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                inference_loop(chain, &cfg, &mailbox, &shared, &telemetry, &publisher);
                let _ = done_tx.send(());
            })?
    };

    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);
    let watchdog_every = watchdog_interval();
    let stats_every = if cfg.mqtt.stats_interval_s > 0.0 {
        Some(Duration::from_secs_f64(cfg.mqtt.stats_interval_s))
    } else {
        None
    };
    let mut stats_tick = tokio::time::interval(stats_every.unwrap_or(Duration::from_secs(3600)));
    stats_tick.tick().await;
    let mut watchdog_tick =
        tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    let mut last_progress = 0u64;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // SIGHUP (the terminal or SSH session that started the daemon closed)
    // ends it as SIGTERM does: every track ended, `offline` sent. There is
    // no configuration reload.
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let started = Instant::now();
    let stats = |telemetry: &Telemetry, publisher: &Publisher| {
        stats_message(
            telemetry,
            publisher,
            &source_desc,
            &backend,
            &model,
            started,
        )
    };

    let mut finished_by_itself = false;
    let mut broker_died = None;
    loop {
        tokio::select! {
            _ = &mut done_rx => { finished_by_itself = true; break; }
            why = connection.broker_died() => {
                tracing::error!("{why}: shutting down");
                broker_died = Some(why);
                break;
            }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sighup.recv() => { tracing::info!("SIGHUP: shutting down as for SIGTERM"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = stats_tick.tick(), if stats_every.is_some() => {
                publisher.send_event(stats(&telemetry, &publisher));
                // `systemctl status` shows why a device publishes nothing.
                let health = MqttStats::from(&telemetry.totals()).health();
                notify_systemd(&[sd_notify::NotifyState::Status(&health)]);
            }
            _ = watchdog_tick.tick(), if watchdog_every.is_some() => {
                // Only a pipeline that makes progress feeds the watchdog.
                let now = telemetry.count(Counter::FramesProcessed);
                if now != last_progress {
                    notify_systemd(&[sd_notify::NotifyState::Watchdog]);
                    last_progress = now;
                }
            }
        }
    }
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    shared.stop.store(true, Ordering::SeqCst);
    mailbox.close();
    if !finished_by_itself {
        // The inference thread ends its tracks and returns within a frame's time.
        let _ = tokio::time::timeout(Duration::from_millis(700), &mut done_rx).await;
    }
    publisher.send_event(stats(&telemetry, &publisher));
    let deadline = if finished_by_itself {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(250)
    };
    connection.shutdown(&publisher, deadline).await;
    drop(inference);
    drop(capture);
    match broker_died {
        Some(why) => Err(RunError::BrokerDied(why)),
        None => Ok(()),
    }
}

fn capture_loop(
    mut source: Box<dyn FrameSource>,
    mailbox: &Mailbox,
    shared: &Shared,
    telemetry: &Telemetry,
) {
    let mut reported_drops = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        match source.next_frame() {
            Ok(Some(frame)) => {
                telemetry.frame_in("capture");
                telemetry.frame_out(
                    "capture",
                    frame.captured_at.elapsed().as_secs_f64() * 1000.0,
                );
                let replaced = mailbox.put(frame);
                if replaced > 0 {
                    telemetry.dropped("skipped", replaced);
                }
                let d = source.dropped();
                if d > reported_drops {
                    telemetry.dropped("capture", d - reported_drops);
                    telemetry.set(Gauge::FramesDroppedBySource, d);
                    reported_drops = d;
                }
            }
            Ok(None) => {
                tracing::info!("source finished");
                break;
            }
            Err(e @ CaptureError::Frame { .. }) => {
                telemetry.error("capture");
                tracing::warn!("{e}; frame skipped");
            }
            Err(e) => {
                telemetry.error("capture");
                tracing::warn!("{e}");
                if matches!(e, CaptureError::Open { .. }) {
                    break;
                }
            }
        }
    }
    mailbox.close();
}

fn inference_loop(
    mut chain: FaceChain,
    cfg: &Config,
    mailbox: &Mailbox,
    shared: &Shared,
    telemetry: &Telemetry,
    publisher: &Publisher,
) {
    let mut core = TrackCore::new(
        cfg.tracker.clone(),
        cfg.smoothing.clone(),
        cfg.detector.interval,
    );
    let topics = publisher.topics().clone();
    let labels = Labels {
        model: format!(
            "{}@{}",
            chain.emotion_model().manifest().name,
            chain.emotion_model().manifest().version
        ),
        calibrated: chain.is_calibrated(),
    };
    publish_tracked(publisher, &[]);
    while let Some(frame) = mailbox.take() {
        telemetry.frame_in("inference");
        let t0 = Instant::now();
        let step = match chain.track_frame(&mut core, frame.timestamp, &frame.image) {
            Ok(s) => s,
            Err(e) => {
                telemetry.error("inference");
                tracing::warn!(seq = frame.seq, "frame skipped: {e}");
                continue;
            }
        };
        let out = &step.output;
        if step.times.detect_ms > 0.0 {
            telemetry.frame_out("detect", step.times.detect_ms);
        }
        if let Some(ms) = step.background_detect_ms {
            telemetry.frame_out("detect", ms);
        }
        if step.times.follow_ms > 0.0 {
            telemetry.frame_out("follow", step.times.follow_ms);
        }
        if step.faces > 0 {
            telemetry.frame_out("align", step.times.align_ms);
            telemetry.frame_out("emotion", step.times.emotion_ms);
        }
        tracing::debug!(seq = frame.seq, t = frame.timestamp, faces = step.faces, detected = out.detected, started = ?out.started, ended = out.ended.len(), "frame");
        let unix = payload::unix_now() - frame.captured_at.elapsed().as_secs_f64();
        let stamp = FrameStamp {
            unix,
            frame_time: frame.timestamp,
            frame_seq: frame.seq,
        };
        publish_output(
            publisher,
            &topics,
            out,
            Some((stamp, frame.captured_at)),
            &labels,
        );
        telemetry.set(Gauge::TracksActive, core.tracked().len() as u64);
        telemetry.frame_out("track", step.times.track_ms);
        telemetry.frame_out("inference", t0.elapsed().as_secs_f64() * 1000.0);
        telemetry.add(Counter::FramesProcessed, 1);
        if shared.stop.load(Ordering::SeqCst) {
            // Shutting down: this frame's events are out; end the tracks now.
            break;
        }
    }
    let out = core.finish();
    publish_output(publisher, &topics, &out, None, &labels);
    telemetry.set(Gauge::TracksActive, 0);
}

/// Publishes one frame's output in its promised order: `new` events, the
/// per-face messages, `end` events, then the track list. `frame` is None
/// for the shutdown output (which has no faces).
/// What every expression message says about where its numbers came from.
struct Labels {
    /// `name@version` of the emotion bundle.
    model: String,
    /// `[calibration]` applied.
    calibrated: bool,
}

fn publish_output(
    publisher: &Publisher,
    topics: &publish::Topics,
    out: &FrameOutput,
    frame: Option<(FrameStamp, Instant)>,
    labels: &Labels,
) {
    let unix = frame.map_or_else(payload::unix_now, |(s, _)| s.unix);
    for id in &out.started {
        publisher.send_event(event_message(topics, &EventMsg::new(*id, unix)));
    }
    if let Some((stamp, captured_at)) = frame {
        for f in &out.faces {
            let msg = ExpressionMsg::new(
                f.track_id,
                stamp,
                &f.reading,
                &f.smoothed,
                labels.model.clone(),
            )
            .calibrated(labels.calibrated);
            publisher.send_frame(Message {
                topic: topics.expression(f.track_id),
                payload: serde_json::to_vec(&msg).expect("payload serialises"),
                retain: false,
                captured_at: Some(captured_at),
            });
        }
    }
    for summary in &out.ended {
        publisher.send_event(event_message(topics, &EventMsg::end(summary, unix)));
    }
    if let Some(ids) = &out.tracked {
        publish_tracked(publisher, ids);
    }
}

fn event_message(topics: &publish::Topics, msg: &EventMsg) -> Message {
    Message {
        topic: topics.events(),
        payload: serde_json::to_vec(msg).expect("payload serialises"),
        retain: false,
        captured_at: None,
    }
}

fn publish_tracked(publisher: &Publisher, tracked: &[u64]) {
    let msg = TrackedMsg {
        schema_version: SCHEMA_VERSION,
        timestamp: payload::unix_now(),
        track_ids: tracked.to_vec(),
    };
    publisher.send_event(Message {
        topic: publisher.topics().tracked(),
        payload: serde_json::to_vec(&msg).expect("payload serialises"),
        retain: true,
        captured_at: None,
    });
}

fn stats_message(
    telemetry: &Telemetry,
    publisher: &Publisher,
    source: &str,
    backend: &str,
    model: &crate::emotion::Manifest,
    started: Instant,
) -> Message {
    publisher.record_queue_depths();
    let mut snap = telemetry.snapshot();
    let totals = telemetry.totals();
    let up = started.elapsed().as_secs_f64().max(1e-3);
    let capture_to_publish_ms = snap
        .stages
        .remove(publish::PUBLISH_STAGE)
        .map(|s| s.latency_ms)
        .unwrap_or_default();
    let get = |k: &str| snap.stages.get(k).cloned();
    let captured = get("capture").map(|s| s.frames_in).unwrap_or(0);
    let processed = totals.frames_processed;
    let msg = StatsMsg {
        schema_version: SCHEMA_VERSION,
        timestamp: payload::unix_now(),
        uptime_s: (up * 1000.0).round() / 1000.0,
        source: source.to_string(),
        backend: backend.to_string(),
        model: format!("{}@{}", model.name, model.version),
        model_trained: model.trained,
        fps_in: ((captured as f64 / up) * 100.0).round() / 100.0,
        fps_out: ((processed as f64 / up) * 100.0).round() / 100.0,
        frames_captured: captured,
        frames_processed: processed,
        frames_skipped: get("skipped").map(|s| s.dropped).unwrap_or(0),
        frames_dropped_by_source: totals.frames_dropped_by_source,
        frame_errors: get("capture").map(|s| s.errors).unwrap_or(0)
            + get("inference").map(|s| s.errors).unwrap_or(0),
        faces_tracked: totals.tracks_active as usize,
        stages: snap.stages,
        capture_to_publish_ms,
        mqtt: MqttStats::from(&totals),
    };
    Message {
        topic: publisher.topics().stats(),
        payload: serde_json::to_vec(&msg).expect("payload serialises"),
        retain: false,
        captured_at: None,
    }
}

fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }
}

/// Half the systemd watchdog period, when one is configured.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            timestamp: seq as f64,
            captured_at: Instant::now(),
            image: crate::frame::RgbImage::new(2, 2),
        }
    }

    #[test]
    fn a_live_mailbox_lets_the_newest_frame_win_and_counts_the_skipped_one() {
        let m = Mailbox::new(true);
        assert_eq!(m.put(frame(1)), 0);
        assert_eq!(m.put(frame(2)), 1);
        assert_eq!(m.take().unwrap().seq, 2);
        m.close();
        assert!(m.take().is_none());
    }

    #[test]
    fn a_lossless_mailbox_hands_over_every_frame_in_order() {
        let m = Arc::new(Mailbox::new(false));
        let producer = {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(m.put(frame(i)), 0);
                }
                m.close();
            })
        };
        let mut got = Vec::new();
        while let Some(f) = m.take() {
            got.push(f.seq);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }
}
