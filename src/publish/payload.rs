//! What fer-edge publishes: topic names and JSON payloads.
//!
//! In: track readings, lifecycle events, telemetry. Out: serialisable
//! structs whose JSON matches `schema/mqtt.schema.json` (checked by the
//! integration tests). Every JSON payload carries `schema_version`.
//!
//! Topic layout under `{topic_prefix}/{device_id}/`:
//! `status` (retained `online`/`offline`, also the last will),
//! `faces/tracked` (retained list of current track ids),
//! `faces/{track_id}/expression` (per frame and track, or capped and on
//! change; the fields of ROS4HRI's `hri_msgs/Expression` and more),
//! `events` (`new`/`expression_changed`/`end`), `summary` (retained: who
//! is present and the group's mood), `stats`, `source` (retained: whether
//! the camera delivers, and why not).

use serde::Serialize;

use crate::frame::Expression;
use crate::report::{round, LabelSet, Probabilities};
use crate::telemetry::{Percentiles, Snapshot, Stage, StageSnapshot, Totals};
use crate::track::core::TrackSummary;

/// The payloads' version; `schema/mqtt.schema.json` lists what changed
/// in each (`x-changes`).
pub const SCHEMA_VERSION: &str = "1.5";

pub use super::names::Topics;
pub use crate::frame::{unix_now, FrameStamp};

/// How expression messages are worded: the model they name and what
/// `[mqtt]` asks them to carry (`labels`, `raw`, `landmarks`).
#[derive(Debug, Clone, PartialEq)]
pub struct Wording {
    /// `name@version` of the emotion bundle.
    pub model: String,
    /// `[calibration]` applied before smoothing.
    pub calibrated: bool,
    pub labels: LabelSet,
    /// Include the unsmoothed reading.
    pub raw: bool,
    /// Include the five facial points.
    pub landmarks: bool,
}

impl Wording {
    /// The wording `[mqtt]` asks for, about `model` (`name@version`).
    pub fn from_config(
        mqtt: &super::config::MqttConfig,
        model: String,
        calibrated: bool,
    ) -> Wording {
        Wording {
            model,
            calibrated,
            labels: mqtt.labels,
            raw: mqtt.raw,
            landmarks: mqtt.landmarks,
        }
    }
}

/// The five facial points of a face, pixels in the frame.
#[derive(Debug, Serialize)]
pub struct LandmarksMsg {
    pub left_eye: [f32; 2],
    pub right_eye: [f32; 2],
    pub nose: [f32; 2],
    pub mouth_left: [f32; 2],
    pub mouth_right: [f32; 2],
}

impl From<&crate::frame::Landmarks> for LandmarksMsg {
    fn from(l: &crate::frame::Landmarks) -> LandmarksMsg {
        let r = |p: [f32; 2]| [round(p[0], 1), round(p[1], 1)];
        LandmarksMsg {
            left_eye: r(l.left_eye),
            right_eye: r(l.right_eye),
            nose: r(l.nose),
            mouth_left: r(l.mouth_left),
            mouth_right: r(l.mouth_right),
        }
    }
}

/// The unsmoothed reading behind a smoothed message.
#[derive(Debug, Serialize)]
pub struct Raw {
    pub expression: &'static str,
    pub confidence: f32,
    pub valence: f32,
    pub arousal: f32,
    pub probabilities: Probabilities,
    /// Seconds since this reading was read off the face: 0 when read on
    /// this frame; between two reads (`[follow] expression_rate_hz`) the
    /// face's last reading is repeated and this says how old it is.
    pub age_s: f32,
}

/// `faces/{track_id}/expression`.
#[derive(Debug, Serialize)]
pub struct ExpressionMsg {
    pub schema_version: &'static str,
    /// This start of the daemon ([`crate::run_id`]): changes at every restart.
    pub run: &'static str,
    pub track_id: u64,
    /// Unix time of the frame's capture, seconds.
    pub timestamp: f64,
    /// Source time of the frame, seconds since the source started.
    pub frame_time: f64,
    pub frame_seq: u64,
    /// Smoothed expression (with hysteresis) and its smoothed probability.
    pub expression: &'static str,
    pub confidence: f32,
    /// Smoothed, in [-1, 1].
    pub valence: f32,
    /// Smoothed, in [-1, 1].
    pub arousal: f32,
    /// Smoothed probabilities.
    pub probabilities: Probabilities,
    /// The unsmoothed reading; left out with `[mqtt] raw = false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Raw>,
    /// Face box in the frame: x, y, width, height (pixels).
    pub bbox: [f32; 4],
    /// The same box as fractions of the frame's width and height.
    pub bbox_normalized: [f32; 4],
    /// The five facial points; only with `[mqtt] landmarks = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<LandmarksMsg>,
    /// The frame the face was read on, pixels.
    pub frame_width: u32,
    pub frame_height: u32,
    pub model: String,
    pub va_source: crate::frame::VaSource,
    /// True when `[calibration]` (the site's neutral baseline) was applied
    /// to the reading before smoothing.
    pub calibrated: bool,
}

impl ExpressionMsg {
    /// The message for one tracked face: smoothed values on top, the raw
    /// reading under `raw`, numbers rounded for the wire, worded as
    /// `wording` says.
    pub fn new(
        stamp: FrameStamp,
        out: &crate::track::core::FaceOutput,
        smoothed: &crate::track::smooth::Smoothed,
        wording: &Wording,
    ) -> ExpressionMsg {
        let face = &out.reading;
        let track_id = out.track_id;
        let e = &face.emotion;
        let b = face.detection.bbox;
        let labels = wording.labels;
        ExpressionMsg {
            schema_version: SCHEMA_VERSION,
            run: &crate::run_id::RunId::current().id,
            track_id,
            timestamp: stamp.unix,
            frame_time: stamp.frame_time,
            frame_seq: stamp.frame_seq,
            expression: labels.name(smoothed.expression),
            confidence: round(smoothed.confidence, 4),
            valence: round(smoothed.valence, 4),
            arousal: round(smoothed.arousal, 4),
            probabilities: Probabilities::labelled(&smoothed.probabilities, labels),
            raw: wording.raw.then(|| Raw {
                expression: labels.name(e.expression),
                confidence: round(e.confidence, 4),
                valence: round(e.valence, 4),
                arousal: round(e.arousal, 4),
                probabilities: Probabilities::labelled(&e.probabilities, labels),
                age_s: round(out.reading_age_s, 3),
            }),
            bbox: [round(b.x, 1), round(b.y, 1), round(b.w, 1), round(b.h, 1)],
            bbox_normalized: {
                let (w, h) = (stamp.width.max(1) as f32, stamp.height.max(1) as f32);
                [
                    round(b.x / w, 4),
                    round(b.y / h, 4),
                    round(b.w / w, 4),
                    round(b.h / h, 4),
                ]
            },
            landmarks: wording
                .landmarks
                .then(|| LandmarksMsg::from(&face.detection.landmarks)),
            frame_width: stamp.width,
            frame_height: stamp.height,
            model: wording.model.clone(),
            va_source: e.va_source,
            calibrated: wording.calibrated,
        }
    }
}

/// `faces/tracked`.
#[derive(Debug, Serialize)]
pub struct TrackedMsg {
    pub schema_version: &'static str,
    /// This start of the daemon ([`crate::run_id`]): changes at every restart.
    pub run: &'static str,
    pub timestamp: f64,
    pub track_ids: Vec<u64>,
}

impl TrackedMsg {
    /// The ids of the tracks confirmed now (empty: nobody).
    pub fn new(track_ids: &[u64]) -> TrackedMsg {
        TrackedMsg {
            schema_version: SCHEMA_VERSION,
            run: &crate::run_id::RunId::current().id,
            timestamp: unix_now(),
            track_ids: track_ids.to_vec(),
        }
    }
}

/// `source` (retained): whether the camera delivers frames. Sent when the
/// state changes: `unavailable` with the reason when the source goes down
/// (or is down when the daemon starts), `ok` when frames come.
#[derive(Debug, Serialize)]
pub struct SourceMsg {
    pub schema_version: &'static str,
    /// This start of the daemon ([`crate::run_id`]): changes at every restart.
    pub run: &'static str,
    pub timestamp: f64,
    /// `ok` or `unavailable`.
    pub state: &'static str,
    /// Why it is unavailable (credentials redacted); absent when `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SourceMsg {
    /// `ok`, or `unavailable` for `reason`.
    pub fn new(down: Option<&str>) -> SourceMsg {
        SourceMsg {
            schema_version: SCHEMA_VERSION,
            run: &crate::run_id::RunId::current().id,
            timestamp: unix_now(),
            state: if down.is_some() { "unavailable" } else { "ok" },
            reason: down.map(str::to_string),
        }
    }
}

/// `events`.
#[derive(Debug, Serialize)]
pub struct EventMsg {
    pub schema_version: &'static str,
    /// This start of the daemon ([`crate::run_id`]): changes at every restart.
    pub run: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub track_id: u64,
    pub timestamp: f64,
    /// For `expression_changed`: the smoothed expression now and before,
    /// with the new one's confidence and the smoothed V/A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_expression: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valence: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arousal: Option<f32>,
    /// For `end`: seconds from the first to the last frame of the track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// For `end`: frames the track was read on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_valence: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_arousal: Option<f32>,
    /// For `end`: the expression reported most often.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dominant_expression: Option<&'static str>,
}

impl EventMsg {
    /// A `new` event: track `track_id` was confirmed.
    pub fn new(track_id: u64, timestamp: f64) -> EventMsg {
        EventMsg {
            schema_version: SCHEMA_VERSION,
            run: &crate::run_id::RunId::current().id,
            kind: "new",
            track_id,
            timestamp,
            expression: None,
            previous_expression: None,
            confidence: None,
            valence: None,
            arousal: None,
            duration_s: None,
            frames: None,
            mean_valence: None,
            mean_arousal: None,
            dominant_expression: None,
        }
    }

    /// An `expression_changed` event: the smoothed expression of
    /// `track_id` went from `before` to `now`'s.
    pub fn expression_changed(
        track_id: u64,
        timestamp: f64,
        before: Expression,
        now: &crate::track::smooth::Smoothed,
        labels: LabelSet,
    ) -> EventMsg {
        EventMsg {
            kind: "expression_changed",
            expression: Some(labels.name(now.expression)),
            previous_expression: Some(labels.name(before)),
            confidence: Some(round(now.confidence, 4)),
            valence: Some(round(now.valence, 4)),
            arousal: Some(round(now.arousal, 4)),
            ..EventMsg::new(track_id, timestamp)
        }
    }

    /// An `end` event with the track's summary.
    pub fn end(s: &TrackSummary, timestamp: f64, labels: LabelSet) -> EventMsg {
        EventMsg {
            kind: "end",
            duration_s: Some((s.duration_s * 1000.0).round() / 1000.0),
            frames: Some(s.frames),
            mean_valence: Some(round(s.mean_valence, 4)),
            mean_arousal: Some(round(s.mean_arousal, 4)),
            dominant_expression: Some(labels.name(s.dominant)),
            ..EventMsg::new(s.track_id, timestamp)
        }
    }
}

/// One face present, as `summary` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryFace {
    pub track_id: u64,
    /// Smoothed, with its smoothed probability.
    pub expression: &'static str,
    pub confidence: f32,
    pub valence: f32,
    pub arousal: f32,
}

/// `summary` (retained): who is present now and the group's mood.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryMsg {
    pub schema_version: &'static str,
    /// This start of the daemon ([`crate::run_id`]): changes at every restart.
    pub run: &'static str,
    pub timestamp: f64,
    /// Faces tracked now.
    pub faces: usize,
    pub tracks: Vec<SummaryFace>,
    /// The expression most of the faces show (ties: the first in the
    /// thesis order); null with nobody present.
    pub dominant_expression: Option<&'static str>,
    /// Means over the faces present; null with nobody present.
    pub mean_valence: Option<f32>,
    pub mean_arousal: Option<f32>,
}

/// MQTT counters inside `stats`.
#[derive(Debug, Serialize, Default, Clone)]
pub struct MqttStats {
    pub connected: bool,
    pub connections: u64,
    pub published: u64,
    pub dropped_queue_full: u64,
    pub dropped_offline: u64,
    pub requeued_after_reset: u64,
    pub connect_failures: ConnectFailures,
    /// The latest connection failure and its fix; `None` once connected.
    pub last_error: Option<String>,
}

impl From<&crate::telemetry::Totals> for MqttStats {
    fn from(t: &crate::telemetry::Totals) -> MqttStats {
        MqttStats {
            connected: t.mqtt_connected,
            connections: t.mqtt_connections,
            published: t.mqtt_published,
            dropped_queue_full: t.mqtt_dropped_queue_full,
            dropped_offline: t.mqtt_dropped_offline,
            requeued_after_reset: t.mqtt_requeued_after_reset,
            connect_failures: ConnectFailures {
                refused: t.mqtt_refused,
                tls: t.mqtt_tls_failures,
                network: t.mqtt_network_failures,
            },
            last_error: t.mqtt_last_error.clone(),
        }
    }
}

impl MqttStats {
    /// One line for `systemctl status`: says why a device publishes nothing.
    pub fn health(&self) -> String {
        match (&self.last_error, self.connected) {
            (_, true) => "running; MQTT connected".to_string(),
            (Some(e), false) => format!("running; MQTT NOT CONNECTED: {e}"),
            (None, false) => "running; MQTT connecting".to_string(),
        }
    }
}

/// Failed connection attempts by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConnectFailures {
    pub refused: u64,
    pub tls: u64,
    pub network: u64,
}

/// `stats`.
#[derive(Debug, Serialize)]
pub struct StatsMsg {
    pub schema_version: &'static str,
    /// This start of the daemon ([`crate::run_id`]): changes at every restart.
    pub run: &'static str,
    pub timestamp: f64,
    pub uptime_s: f64,
    pub source: String,
    pub backend: String,
    pub model: String,
    pub model_trained: bool,
    pub fps_in: f64,
    pub fps_out: f64,
    pub frames_captured: u64,
    pub frames_processed: u64,
    /// Frames replaced by a newer one before inference took them.
    pub frames_skipped: u64,
    /// Frames the camera driver lost (sequence gaps).
    pub frames_dropped_by_source: u64,
    /// Times the source went away and was reopened (or is being).
    pub source_outages: u64,
    pub frame_errors: u64,
    pub faces_tracked: usize,
    pub stages: std::collections::BTreeMap<String, StageSnapshot>,
    pub capture_to_publish_ms: Percentiles,
    pub mqtt: MqttStats,
    /// The ROS 2 output's counters; absent when it is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ros2: Option<Ros2Stats>,
}

/// ROS 2 output counters inside `stats`.
#[derive(Debug, Serialize, Default, Clone, PartialEq, Eq)]
pub struct Ros2Stats {
    /// Frames' readings handed to the DDS thread.
    pub sent: u64,
    /// Frames' readings dropped because the DDS thread fell behind.
    pub dropped_queue_full: u64,
}

/// What a `stats` message says about the daemon besides its counters.
#[derive(Debug, Clone)]
pub struct StatsContext {
    pub source: String,
    pub backend: String,
    /// `name@version` of the emotion bundle, and whether it was trained.
    pub model: String,
    pub model_trained: bool,
    /// The ROS 2 output runs: `stats` carries its counters.
    pub ros2: bool,
}

impl StatsMsg {
    /// The `stats` message of a daemon up `uptime_s` seconds, from its
    /// telemetry. Capture→publish latency is the `publish` stage's,
    /// reported apart from the per-stage table.
    pub fn new(ctx: &StatsContext, mut snap: Snapshot, totals: &Totals, uptime_s: f64) -> StatsMsg {
        let up = uptime_s.max(1e-3);
        let capture_to_publish_ms = snap
            .stages
            .remove(Stage::Publish.name())
            .map(|s| s.latency_ms)
            .unwrap_or_default();
        let get = |k: Stage| snap.stages.get(k.name()).cloned();
        let captured = get(Stage::Capture).map(|s| s.frames_in).unwrap_or(0);
        let processed = totals.frames_processed;
        let errors = |k: Stage| get(k).map(|s| s.errors).unwrap_or(0);
        StatsMsg {
            schema_version: SCHEMA_VERSION,
            run: &crate::run_id::RunId::current().id,
            timestamp: unix_now(),
            uptime_s: (up * 1000.0).round() / 1000.0,
            source: ctx.source.clone(),
            backend: ctx.backend.clone(),
            model: ctx.model.clone(),
            model_trained: ctx.model_trained,
            fps_in: ((captured as f64 / up) * 100.0).round() / 100.0,
            fps_out: ((processed as f64 / up) * 100.0).round() / 100.0,
            frames_captured: captured,
            frames_processed: processed,
            frames_skipped: get(Stage::Skipped).map(|s| s.dropped).unwrap_or(0),
            frames_dropped_by_source: totals.frames_dropped_by_source,
            source_outages: totals.source_outages,
            frame_errors: errors(Stage::Capture) + errors(Stage::Inference),
            faces_tracked: totals.tracks_active as usize,
            stages: snap.stages,
            capture_to_publish_ms,
            mqtt: MqttStats::from(totals),
            ros2: ctx.ros2.then_some(Ros2Stats {
                sent: totals.ros2_sent,
                dropped_queue_full: totals.ros2_dropped_queue_full,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_their_rates_and_errors_from_the_stage_counters() {
        let t = crate::telemetry::Telemetry::default();
        for _ in 0..20 {
            t.frame_in(Stage::Capture);
        }
        t.error(Stage::Capture);
        t.error(Stage::Inference);
        t.dropped(Stage::Skipped, 4);
        t.frame_out(Stage::Publish, 7.0);
        t.add(crate::telemetry::Counter::FramesProcessed, 10);
        let ctx = StatsContext {
            source: "s".into(),
            backend: "tract".into(),
            model: "m@1".into(),
            model_trained: true,
            ros2: false,
        };
        let m = StatsMsg::new(&ctx, t.snapshot(), &t.totals(), 2.0);
        assert_eq!((m.fps_in, m.fps_out), (10.0, 5.0));
        assert_eq!(
            (m.frames_captured, m.frames_skipped, m.frame_errors),
            (20, 4, 2)
        );
        assert_eq!(m.capture_to_publish_ms.p50, 7.0);
        assert!(!m.stages.contains_key("publish"));
        assert_eq!(TrackedMsg::new(&[3, 1]).track_ids, vec![3, 1]);
    }

    #[test]
    fn the_health_line_names_the_last_connection_failure() {
        let mut m = MqttStats {
            last_error: Some("the broker refused the login".into()),
            ..Default::default()
        };
        assert_eq!(
            m.health(),
            "running; MQTT NOT CONNECTED: the broker refused the login"
        );
        m.connected = true;
        assert_eq!(m.health(), "running; MQTT connected");
    }

    #[test]
    fn topics_follow_the_documented_layout() {
        let t = Topics::new("fer-edge", "kiosk-1");
        assert_eq!(t.status(), "fer-edge/kiosk-1/status");
        assert_eq!(t.tracked(), "fer-edge/kiosk-1/faces/tracked");
        assert_eq!(t.expression(7), "fer-edge/kiosk-1/faces/7/expression");
        assert_eq!(t.events(), "fer-edge/kiosk-1/events");
        assert_eq!(t.stats(), "fer-edge/kiosk-1/stats");
        assert_eq!(t.summary(), "fer-edge/kiosk-1/summary");
    }

    #[test]
    fn end_events_carry_their_summary_and_new_events_do_not() {
        let summary = crate::track::core::TrackSummary {
            track_id: 3,
            duration_s: 2.34567,
            frames: 41,
            mean_valence: 0.123456,
            mean_arousal: -0.5,
            dominant: crate::frame::Expression::Happy,
        };
        let end = serde_json::to_value(EventMsg::end(&summary, 9.5, LabelSet::FerEdge)).unwrap();
        assert_eq!(end["type"], "end");
        assert_eq!(end["track_id"], 3);
        assert_eq!(end["timestamp"], 9.5);
        assert_eq!(end["duration_s"], 2.346);
        assert_eq!(end["frames"], 41);
        assert_eq!(end["mean_valence"].as_f64().unwrap() as f32, 0.1235);
        assert_eq!(end["mean_arousal"], -0.5);
        assert_eq!(end["dominant_expression"], "happy");
        let new = serde_json::to_value(EventMsg::new(3, 1.0)).unwrap();
        assert_eq!(new["type"], "new");
        assert_eq!(new["track_id"], 3);
        for key in [
            "duration_s",
            "frames",
            "mean_valence",
            "mean_arousal",
            "dominant_expression",
        ] {
            assert!(new.get(key).is_none(), "{key} in a new event");
        }
    }
}
