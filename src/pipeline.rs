//! Wiring only: the daemon's threads, the hand-off between them, shutdown.
//!
//! In: a validated [`Config`]. Out: MQTT messages, until the replay ends or
//! SIGTERM/SIGINT arrives; then every track is ended, `offline` is
//! published, and the process exits 0.
//!
//! ```text
//! capture thread ──Mailbox (newest wins)──> inference thread ──Publisher──> MQTT tasks (tokio)
//!   FrameSource                              FaceChain → Tracker → smoothers
//! ```
//!
//! Capture never waits for inference when the source is live (a camera or a
//! paced replay): a newer frame replaces an untaken one and the replaced
//! frame is counted as skipped. An unpaced replay hands over every frame
//! (tests and benchmarks want each one processed). Per-frame errors are
//! logged, counted and skipped; only setup errors end the process.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::report::round;
use crate::capture::{self, CaptureError, Frame, FrameSource};
use crate::config::Config;
use crate::faces::{FaceChain, SetupError};
use crate::frame::Expression;
use crate::publish::payload::{
    self, EventMsg, ExpressionMsg, FrameStamp, StatsMsg, TrackedMsg, SCHEMA_VERSION,
};
use crate::publish::{self, Message, PublishError, Publisher};
use crate::telemetry::Telemetry;
use crate::track::smooth::EmotionSmoother;
use crate::track::{Track, Tracker};

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

/// Per-track state beside the tracker: smoothing and the end-of-track summary.
struct TrackState {
    smoother: EmotionSmoother,
    summary: TrackSummary,
}

/// What an `end` event reports about a track.
#[derive(Default)]
struct TrackSummary {
    frames: u64,
    sum_v: f64,
    sum_a: f64,
    label_counts: [u64; 7],
}

/// Shared flags and counters the async side reads.
struct Shared {
    stop: AtomicBool,
    processed: AtomicU64,
    source_dropped: AtomicU64,
    tracked_now: AtomicU64,
}

/// Runs the daemon until the replay ends or a signal arrives.
pub fn run(cfg: Config) -> Result<(), RunError> {
    cfg.source.validate_for_run().map_err(RunError::Config)?;
    let mut chain = FaceChain::from_config(&cfg)?;
    log_placements(&mut chain, (cfg.source.width, cfg.source.height));
    let source = capture::open(&cfg.source)?;
    tracing::info!(source = %source.describe(), "source opened");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("fer-edge-io")
        .build()?;
    runtime.block_on(run_async(cfg, chain, source))
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
    chain: FaceChain,
    source: Box<dyn FrameSource>,
) -> Result<(), RunError> {
    let (publisher, connection) = publish::start(&cfg.mqtt)?;
    let telemetry = Arc::new(Telemetry::default());
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        processed: AtomicU64::new(0),
        source_dropped: AtomicU64::new(0),
        tracked_now: AtomicU64::new(0),
    });
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
    let started = Instant::now();
    let stats = |telemetry: &Telemetry, shared: &Shared, publisher: &Publisher| {
        stats_message(
            telemetry,
            shared,
            publisher,
            &source_desc,
            &backend,
            &model,
            started,
        )
    };

    let mut finished_by_itself = false;
    loop {
        tokio::select! {
            _ = &mut done_rx => { finished_by_itself = true; break; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = stats_tick.tick(), if stats_every.is_some() => {
                publisher.send_event(stats(&telemetry, &shared, &publisher));
            }
            _ = watchdog_tick.tick(), if watchdog_every.is_some() => {
                // Only a pipeline that makes progress feeds the watchdog.
                let now = shared.processed.load(Ordering::Relaxed);
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
    publisher.send_event(stats(&telemetry, &shared, &publisher));
    let deadline = if finished_by_itself {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(250)
    };
    connection.shutdown(&publisher, deadline).await;
    drop(inference);
    drop(capture);
    Ok(())
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
                    shared.source_dropped.store(d, Ordering::Relaxed);
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
    let mut tracker = Tracker::new(cfg.tracker.clone());
    let mut states: HashMap<u64, TrackState> = HashMap::new();
    let mut tracked: BTreeSet<u64> = BTreeSet::new();
    let topics = publisher.topics().clone();
    let model_name = format!(
        "{}@{}",
        chain.emotion_model().manifest().name,
        chain.emotion_model().manifest().version
    );
    publish_tracked(publisher, &tracked);
    while let Some(frame) = mailbox.take() {
        telemetry.frame_in("inference");
        let t0 = Instant::now();
        let result = match chain.process(&frame.image) {
            Ok(r) => r,
            Err(e) => {
                telemetry.error("inference");
                tracing::warn!(seq = frame.seq, "frame skipped: {e}");
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            // Shutting down: this frame is stale, end the tracks now.
            break;
        }
        telemetry.frame_out("detect", result.times.detect_ms);
        if !result.faces.is_empty() {
            telemetry.frame_out("align", result.times.align_ms);
            telemetry.frame_out("emotion", result.times.emotion_ms);
        }
        let t_track = Instant::now();
        let boxes: Vec<_> = result.faces.iter().map(|f| f.detection.bbox).collect();
        let update = tracker.update(frame.timestamp, &boxes);
        tracing::debug!(seq = frame.seq, t = frame.timestamp, faces = boxes.len(), assigned = ?update.assigned, started = ?update.started, ended = update.ended.len(), "frame");
        let unix = payload::unix_now() - frame.captured_at.elapsed().as_secs_f64();
        for id in &update.started {
            states.insert(
                *id,
                TrackState {
                    smoother: EmotionSmoother::new(&cfg.smoothing),
                    summary: TrackSummary::default(),
                },
            );
            publisher.send_event(event(&topics, "new", *id, unix, None));
        }
        for (face, id) in result.faces.iter().zip(&update.assigned) {
            let Some(id) = id else { continue };
            let Some(st) = states.get_mut(id) else {
                continue;
            };
            let sm = st.smoother.update(frame.timestamp, &face.emotion);
            st.summary.frames += 1;
            st.summary.sum_v += sm.valence as f64;
            st.summary.sum_a += sm.arousal as f64;
            st.summary.label_counts[sm.expression.index()] += 1;
            let stamp = FrameStamp {
                unix,
                frame_time: frame.timestamp,
                frame_seq: frame.seq,
            };
            let msg = ExpressionMsg::new(*id, stamp, face, &sm, model_name.clone());
            publisher.send_frame(Message {
                topic: topics.expression(*id),
                payload: serde_json::to_vec(&msg).expect("payload serialises"),
                retain: false,
                captured_at: Some(frame.captured_at),
            });
        }
        for tr in &update.ended {
            end_track(publisher, &topics, tr, states.remove(&tr.id), unix);
        }
        let now: BTreeSet<u64> = tracker.confirmed().map(|t| t.id).collect();
        if now != tracked {
            tracked = now;
            publish_tracked(publisher, &tracked);
        }
        shared
            .tracked_now
            .store(tracked.len() as u64, Ordering::Relaxed);
        telemetry.frame_out("track", t_track.elapsed().as_secs_f64() * 1000.0);
        telemetry.frame_out("inference", t0.elapsed().as_secs_f64() * 1000.0);
        shared.processed.fetch_add(1, Ordering::Relaxed);
    }
    let unix = payload::unix_now();
    for tr in tracker.end_all() {
        let st = states.remove(&tr.id);
        end_track(publisher, &topics, &tr, st, unix);
    }
    tracked.clear();
    shared.tracked_now.store(0, Ordering::Relaxed);
    publish_tracked(publisher, &tracked);
}

fn event(
    topics: &publish::Topics,
    kind: &'static str,
    id: u64,
    unix: f64,
    end: Option<(&Track, &TrackSummary)>,
) -> Message {
    let msg = EventMsg {
        schema_version: SCHEMA_VERSION,
        kind,
        track_id: id,
        timestamp: unix,
        duration_s: end.map(|(t, _)| ((t.last_seen - t.first_seen) * 1000.0).round() / 1000.0),
        frames: end.map(|(_, s)| s.frames),
        mean_valence: end.map(|(_, s)| round((s.sum_v / s.frames.max(1) as f64) as f32, 4)),
        mean_arousal: end.map(|(_, s)| round((s.sum_a / s.frames.max(1) as f64) as f32, 4)),
        dominant_expression: end.map(|(_, s)| {
            let best = s
                .label_counts
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
                .unwrap_or(0);
            Expression::ALL[best].name()
        }),
    };
    Message {
        topic: topics.events(),
        payload: serde_json::to_vec(&msg).expect("payload serialises"),
        retain: false,
        captured_at: None,
    }
}

fn end_track(
    publisher: &Publisher,
    topics: &publish::Topics,
    tr: &Track,
    st: Option<TrackState>,
    unix: f64,
) {
    let summary = st.map(|s| s.summary).unwrap_or_default();
    publisher.send_event(event(topics, "end", tr.id, unix, Some((tr, &summary))));
}

fn publish_tracked(publisher: &Publisher, tracked: &BTreeSet<u64>) {
    let msg = TrackedMsg {
        schema_version: SCHEMA_VERSION,
        timestamp: payload::unix_now(),
        track_ids: tracked.iter().copied().collect(),
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
    shared: &Shared,
    publisher: &Publisher,
    source: &str,
    backend: &str,
    model: &crate::emotion::Manifest,
    started: Instant,
) -> Message {
    let snap = telemetry.snapshot();
    let up = started.elapsed().as_secs_f64().max(1e-3);
    let get = |k: &str| snap.stages.get(k).cloned();
    let captured = get("capture").map(|s| s.frames_in).unwrap_or(0);
    let processed = shared.processed.load(Ordering::Relaxed);
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
        frames_dropped_by_source: shared.source_dropped.load(Ordering::Relaxed),
        frame_errors: get("capture").map(|s| s.errors).unwrap_or(0)
            + get("inference").map(|s| s.errors).unwrap_or(0),
        faces_tracked: shared.tracked_now.load(Ordering::Relaxed) as usize,
        stages: snap.stages,
        capture_to_publish_ms: publisher.latency(),
        mqtt: publisher.stats(),
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
