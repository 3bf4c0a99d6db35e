//! The daemon's one counter store, shared by every thread: per-stage
//! counts and latencies, daemon-wide counters ([`Counter`]) and gauges
//! ([`Gauge`]), and the latest MQTT connection failure.
//!
//! In: events from each stage (a frame in, a frame out, a drop, an error,
//! how long it took), from the publisher (published, dropped, connected)
//! and from the tracker (tracks active). Out: a [`Snapshot`], which the
//! `stats` message and the Prometheus `/metrics` page both render, and
//! `fer-edge bench` prints. Latencies keep the most recent `WINDOW` samples
//! per stage.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

const WINDOW: usize = 2048;

/// Counters and recent latencies of one stage.
#[derive(Debug, Default, Clone)]
struct Stage {
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
}

impl Counter {
    const COUNT: usize = 9;
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
    stages: Mutex<BTreeMap<&'static str, Stage>>,
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
        }
    }

    fn with<R>(&self, stage: &'static str, f: impl FnOnce(&mut Stage) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of a
        // counter: the numbers are still usable.
        let mut map = self.stages.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(stage).or_default())
    }

    pub fn frame_in(&self, stage: &'static str) {
        self.with(stage, |s| s.frames_in += 1);
    }

    /// A frame (or message) left `stage`, having spent `ms` in it.
    pub fn frame_out(&self, stage: &'static str, ms: f64) {
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

    pub fn dropped(&self, stage: &'static str, n: u64) {
        self.with(stage, |s| s.dropped += n);
    }

    pub fn error(&self, stage: &'static str) {
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
                        k.to_string(),
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
    fn counters_accumulate_per_stage() {
        let t = Telemetry::default();
        t.frame_in("detect");
        t.frame_out("detect", 3.0);
        t.dropped("capture", 2);
        t.error("detect");
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
            t.frame_out("x", if i < 10 { 1000.0 } else { 1.0 });
        }
        assert_eq!(t.snapshot().stages["x"].latency_ms.max, 1.0);
    }
}
