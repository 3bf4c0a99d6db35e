//! The daemon's one counter store, shared by every thread: per-stage
//! counts and latencies, daemon-wide counters ([`Counter`]) and gauges
//! ([`Gauge`]), and the latest MQTT connection failure.
//!
//! In: events from each [`Stage`] (a frame in, a frame out, a drop, an
//! error, how long it took), from the publisher (published, dropped,
//! connected) and from the tracker (tracks active). Out: a [`Snapshot`],
//! which the `stats` message and the Prometheus `/metrics` page both
//! render. Latencies keep the most recent `WINDOW` samples per stage.
//!
//! [`Stage`] is the one vocabulary of where time goes: the daemon records
//! under it, and `fer-edge bench` and `calibrate` report under the same
//! names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

const WINDOW: usize = 2048;

/// Where a frame spends its time: the names the `stats` message, the
/// `/metrics` page, `fer-edge bench` and `calibrate` all use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The source delivering a frame (a camera's driver, a replay's decode).
    Capture,
    /// Frames a newer frame replaced before inference took them (drops only).
    Skipped,
    /// Decoding an encoded frame (bench only: the daemon's sources decode
    /// inside `capture`).
    Decode,
    /// A full face detection on the frame thread.
    Detect,
    /// A full face detection on the background detector's thread.
    DetectBackground,
    /// Following the tracked faces (O-Net on each).
    Follow,
    /// Aligning the frame's faces.
    Align,
    /// The emotion model on the frame's faces.
    Emotion,
    /// The track core: association, smoothing, track summaries.
    Track,
    /// The daemon's announcer turning the frame into its MQTT messages
    /// (bench only: in the daemon it follows `inference`, within `publish`).
    Serialise,
    /// A whole frame on the inference thread, from taking it to the end
    /// of the track core (its messages are queued after, under `Publish`).
    Inference,
    /// A message from capture to handed to the MQTT client.
    Publish,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 12] = [
        Stage::Capture,
        Stage::Skipped,
        Stage::Decode,
        Stage::Detect,
        Stage::DetectBackground,
        Stage::Follow,
        Stage::Align,
        Stage::Emotion,
        Stage::Track,
        Stage::Serialise,
        Stage::Inference,
        Stage::Publish,
    ];

    /// The stage's name in messages, reports and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Skipped => "skipped",
            Stage::Decode => "decode",
            Stage::Detect => "detect",
            Stage::DetectBackground => "detect_background",
            Stage::Follow => "follow",
            Stage::Align => "align",
            Stage::Emotion => "emotion",
            Stage::Track => "track",
            Stage::Serialise => "serialise",
            Stage::Inference => "inference",
            Stage::Publish => "publish",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Counters and recent latencies of one stage.
#[derive(Debug, Default, Clone)]
struct StageCounts {
    frames_in: u64,
    frames_out: u64,
    dropped: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
    next: usize,
}

/// The nearest-rank `q` quantile (0..=1) of sorted, non-empty `sorted`.
pub fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> T {
    let n = sorted.len();
    sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (unsorted).
    pub fn of(samples: &[f64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| nearest_rank(&s, q);
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        Percentiles {
            p50: r(at(0.5)),
            p90: r(at(0.9)),
            p99: r(at(0.99)),
            max: r(s[s.len() - 1]),
            samples: s.len(),
        }
    }
}

/// One stage's numbers at a point in time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageSnapshot {
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped: u64,
    pub errors: u64,
    pub latency_ms: Percentiles,
}

/// All stages' numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    pub uptime_s: f64,
    pub stages: BTreeMap<String, StageSnapshot>,
}

/// Daemon-wide counters: they only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    FramesProcessed,
    MqttPublished,
    MqttDroppedQueueFull,
    MqttDroppedOffline,
    MqttRequeuedAfterReset,
    MqttConnections,
    MqttRefused,
    MqttTlsFailures,
    MqttNetworkFailures,
    /// Times the source went away (a camera unplugged, a stream cut); an
    /// outage counts once however many reopen attempts it takes.
    SourceOutages,
    /// Frames' readings handed to the ROS 2 output's DDS thread.
    Ros2Sent,
    /// Frames' readings the ROS 2 output dropped because its queue was full.
    Ros2DroppedQueueFull,
}

impl Counter {
    const COUNT: usize = 12;
}

/// Daemon-wide values that go up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    /// Frames the camera driver lost (sequence gaps), as it last reported.
    FramesDroppedBySource,
    TracksActive,
    /// 1 while connected to the broker.
    MqttConnected,
    /// Messages waiting in the publisher's per-frame queue and outbox.
    MqttQueueFrames,
    MqttQueueEvents,
}

impl Gauge {
    const COUNT: usize = 5;
}

/// The registry every stage reports to.
#[derive(Debug)]
pub struct Telemetry {
    started: Instant,
    stages: Mutex<BTreeMap<Stage, StageCounts>>,
    counters: [AtomicU64; Counter::COUNT],
    gauges: [AtomicU64; Gauge::COUNT],
    mqtt_last_error: Mutex<Option<String>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            started: Instant::now(),
            stages: Mutex::new(BTreeMap::new()),
            counters: Default::default(),
            gauges: Default::default(),
            mqtt_last_error: Mutex::new(None),
        }
    }
}

/// Daemon-wide numbers at a point in time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub frames_processed: u64,
    pub frames_dropped_by_source: u64,
    pub source_outages: u64,
    pub tracks_active: u64,
    pub mqtt_connected: bool,
    pub mqtt_published: u64,
    pub mqtt_dropped_queue_full: u64,
    pub mqtt_dropped_offline: u64,
    pub mqtt_requeued_after_reset: u64,
    pub mqtt_connections: u64,
    pub mqtt_refused: u64,
    pub mqtt_tls_failures: u64,
    pub mqtt_network_failures: u64,
    pub mqtt_queue_frames: u64,
    pub mqtt_queue_events: u64,
    pub mqtt_last_error: Option<String>,
    pub ros2_sent: u64,
    pub ros2_dropped_queue_full: u64,
}

impl Telemetry {
    pub fn add(&self, c: Counter, n: u64) {
        self.counters[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, g: Gauge, v: u64) {
        self.gauges[g as usize].store(v, Ordering::Relaxed);
    }

    pub fn count(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Ordering::Relaxed)
    }

    pub fn gauge(&self, g: Gauge) -> u64 {
        self.gauges[g as usize].load(Ordering::Relaxed)
    }

    /// The latest MQTT connection failure with its fix; `None` once connected.
    pub fn set_mqtt_last_error(&self, e: Option<String>) {
        *self
            .mqtt_last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn totals(&self) -> Totals {
        let c = |k| self.count(k);
        let g = |k| self.gauge(k);
        Totals {
            frames_processed: c(Counter::FramesProcessed),
            frames_dropped_by_source: g(Gauge::FramesDroppedBySource),
            source_outages: c(Counter::SourceOutages),
            tracks_active: g(Gauge::TracksActive),
            mqtt_connected: g(Gauge::MqttConnected) == 1,
            mqtt_published: c(Counter::MqttPublished),
            mqtt_dropped_queue_full: c(Counter::MqttDroppedQueueFull),
            mqtt_dropped_offline: c(Counter::MqttDroppedOffline),
            mqtt_requeued_after_reset: c(Counter::MqttRequeuedAfterReset),
            mqtt_connections: c(Counter::MqttConnections),
            mqtt_refused: c(Counter::MqttRefused),
            mqtt_tls_failures: c(Counter::MqttTlsFailures),
            mqtt_network_failures: c(Counter::MqttNetworkFailures),
            mqtt_queue_frames: g(Gauge::MqttQueueFrames),
            mqtt_queue_events: g(Gauge::MqttQueueEvents),
            mqtt_last_error: self
                .mqtt_last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ros2_sent: c(Counter::Ros2Sent),
            ros2_dropped_queue_full: c(Counter::Ros2DroppedQueueFull),
        }
    }

    fn with<R>(&self, stage: Stage, f: impl FnOnce(&mut StageCounts) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of a
        // counter: the numbers are still usable.
        let mut map = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(stage).or_default())
    }

    pub fn frame_in(&self, stage: Stage) {
        self.with(stage, |s| s.frames_in += 1);
    }

    /// A frame (or message) left `stage`, having spent `ms` in it.
    pub fn frame_out(&self, stage: Stage, ms: f64) {
        self.with(stage, |s| {
            s.frames_out += 1;
            if s.latencies_ms.len() < WINDOW {
                s.latencies_ms.push(ms);
            } else {
                s.latencies_ms[s.next] = ms;
            }
            s.next = (s.next + 1) % WINDOW;
        });
    }

    pub fn dropped(&self, stage: Stage, n: u64) {
        self.with(stage, |s| s.dropped += n);
    }

    pub fn error(&self, stage: Stage) {
        self.with(stage, |s| s.errors += 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        let map = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            uptime_s: (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            stages: map
                .iter()
                .map(|(k, s)| {
                    (
                        k.name().to_string(),
                        StageSnapshot {
                            frames_in: s.frames_in,
                            frames_out: s.frames_out,
                            dropped: s.dropped,
                            errors: s.errors,
                            latency_ms: Percentiles::of(&s.latencies_ms),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let p = Percentiles::of(&v);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.samples),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Percentiles::of(&[]).samples, 0);
    }

    #[test]
    fn stage_names_are_unique_and_snake_case() {
        let names: std::collections::BTreeSet<_> = Stage::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Stage::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn counters_accumulate_per_stage() {
        let t = Telemetry::default();
        t.frame_in(Stage::Detect);
        t.frame_out(Stage::Detect, 3.0);
        t.dropped(Stage::Capture, 2);
        t.error(Stage::Detect);
        let s = t.snapshot();
        assert_eq!(s.stages["detect"].frames_out, 1);
        assert_eq!(s.stages["detect"].errors, 1);
        assert_eq!(s.stages["capture"].dropped, 2);
        assert_eq!(s.stages["detect"].latency_ms.p50, 3.0);
    }

    #[test]
    fn counters_add_up_and_gauges_hold_the_last_value() {
        let t = Telemetry::default();
        t.add(Counter::FramesProcessed, 2);
        t.add(Counter::FramesProcessed, 1);
        t.add(Counter::MqttNetworkFailures, 1);
        t.set(Gauge::TracksActive, 4);
        t.set(Gauge::TracksActive, 3);
        t.set(Gauge::MqttConnected, 1);
        t.set_mqtt_last_error(Some("x".into()));
        let s = t.totals();
        assert_eq!((s.frames_processed, s.tracks_active), (3, 3));
        assert_eq!(s.mqtt_network_failures, 1);
        assert!(s.mqtt_connected);
        assert_eq!(s.mqtt_last_error.as_deref(), Some("x"));
    }

    #[test]
    fn the_latency_window_keeps_the_most_recent_samples() {
        let t = Telemetry::default();
        for i in 0..(WINDOW + 10) {
            t.frame_out(Stage::Emotion, if i < 10 { 1000.0 } else { 1.0 });
        }
        assert_eq!(t.snapshot().stages["emotion"].latency_ms.max, 1.0);
    }
}
