//! Which messages each frame becomes, within the limits subscribers set.
//!
//! In: the follower's [`FrameOutput`] for every frame, with its
//! [`FrameStamp`], and `[mqtt]`'s shaping keys (`max_rate_hz`,
//! `on_change`, `change_threshold`, `summary_rate_hz`) and wording
//! (`labels`, `raw`, `landmarks`). Out: [`Outgoing`] messages in their
//! promised order: `new` events; per face its `expression_changed` event
//! (when the smoothed expression changed) and its `expression` message
//! (when the rate cap and the on-change test let it through); `end`
//! events; the track list; the summary.
//!
//! Pure: no I/O and no clock. Time is the frame's source time, so a
//! replay is shaped the same however fast it is read.

use std::collections::BTreeMap;
use std::time::Instant;

use super::config::MqttConfig;
use super::payload::{
    EventMsg, ExpressionMsg, FrameStamp, SummaryFace, SummaryMsg, Topics, TrackedMsg, Wording,
    SCHEMA_VERSION,
};
use super::Message;
use crate::frame::Expression;
use crate::report::round;
use crate::track::core::FrameOutput;

/// A message and the queue it belongs in.
#[derive(Debug)]
pub enum Outgoing {
    /// Outbox: at-least-once, kept while offline.
    Event(Message),
    /// Per-frame queue: sent only while connected.
    Frame(Message),
}

impl Outgoing {
    pub fn message(&self) -> &Message {
        match self {
            Outgoing::Event(m) | Outgoing::Frame(m) => m,
        }
    }
}

/// The shaping keys of `[mqtt]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shaping {
    /// Most `expression` messages per track and second; 0: every frame.
    pub max_rate_hz: f64,
    /// Send a track's `expression` only when its label changed or V/A
    /// moved more than `change_threshold` since the last one sent.
    pub on_change: bool,
    pub change_threshold: f32,
    /// Most `summary` messages per second (each only on change); 0: none.
    pub summary_rate_hz: f64,
}

impl Shaping {
    pub fn from_config(c: &MqttConfig) -> Shaping {
        Shaping {
            max_rate_hz: c.max_rate_hz,
            on_change: c.on_change,
            change_threshold: c.change_threshold,
            summary_rate_hz: c.summary_rate_hz,
        }
    }
}

/// Slack on rate caps: frame times jitter by a little.
const RATE_SLACK_S: f64 = 1e-3;

/// What was last sent about one track.
#[derive(Debug, Clone, Copy)]
struct Sent {
    t: f64,
    expression: Expression,
    confidence: f32,
    valence: f32,
    arousal: f32,
}

/// One confirmed track as the announcer knows it.
#[derive(Debug, Clone)]
struct TrackState {
    /// The smoothed reading of its latest frame.
    now: Sent,
    /// Its latest `expression` message.
    sent: Option<Sent>,
}

/// Turns each frame's output into messages; one per daemon.
pub struct Announcer {
    topics: Topics,
    wording: Wording,
    shaping: Shaping,
    tracks: BTreeMap<u64, TrackState>,
    /// Source time of the latest frame.
    latest_t: f64,
    /// The latest summary sent, and when (source time).
    summary_sent: Option<(f64, SummaryMsg)>,
}

impl Announcer {
    pub fn new(topics: Topics, wording: Wording, shaping: Shaping) -> Announcer {
        Announcer {
            topics,
            wording,
            shaping,
            tracks: BTreeMap::new(),
            latest_t: 0.0,
            summary_sent: None,
        }
    }

    /// What a starting daemon says: nobody tracked, nobody present (both
    /// retained, replacing what a previous run left).
    pub fn start(&mut self, unix: f64) -> Vec<Outgoing> {
        let mut out = vec![self.tracked(&[])];
        if self.shaping.summary_rate_hz > 0.0 {
            let msg = self.summary(unix);
            out.push(self.summary_message(&msg));
            self.summary_sent = Some((f64::NEG_INFINITY, msg));
        }
        out
    }

    /// The messages of one frame's output. `frame` is None for the output
    /// of shutdown (every track ended, no faces); its summary is sent
    /// whatever the rate cap.
    pub fn frame(
        &mut self,
        out: &FrameOutput,
        frame: Option<(FrameStamp, Instant)>,
        unix: f64,
    ) -> Vec<Outgoing> {
        let labels = self.wording.labels;
        let t = frame.map_or(self.latest_t, |(s, _)| s.frame_time);
        self.latest_t = t;
        let mut msgs = Vec::new();
        let event = |m: &EventMsg| Outgoing::Event(Message::json(self.topics.events(), m, false));
        for id in &out.started {
            msgs.push(event(&EventMsg::new(*id, unix)));
        }
        if let Some((stamp, captured_at)) = frame {
            for f in &out.faces {
                let s = &f.smoothed;
                let now = Sent {
                    t,
                    expression: s.expression,
                    confidence: s.confidence,
                    valence: s.valence,
                    arousal: s.arousal,
                };
                let state = self
                    .tracks
                    .entry(f.track_id)
                    .or_insert(TrackState { now, sent: None });
                if state.now.expression != s.expression {
                    msgs.push(event(&EventMsg::expression_changed(
                        f.track_id,
                        unix,
                        state.now.expression,
                        s,
                        labels,
                    )));
                }
                state.now = now;
                if self.shaping.lets_through(state.sent.as_ref(), &now) {
                    state.sent = Some(now);
                    let msg = ExpressionMsg::new(stamp, f, s, &self.wording);
                    msgs.push(Outgoing::Frame(Message::frame_json(
                        self.topics.expression(f.track_id),
                        &msg,
                        captured_at,
                    )));
                }
            }
        }
        for summary in &out.ended {
            msgs.push(event(&EventMsg::end(summary, unix, labels)));
            self.tracks.remove(&summary.track_id);
        }
        if let Some(ids) = &out.tracked {
            msgs.push(self.tracked(ids));
            self.tracks.retain(|id, _| ids.contains(id));
        }
        if let Some(m) = self.summary_due(t, unix, frame.is_none()) {
            msgs.push(m);
        }
        msgs
    }

    fn tracked(&self, ids: &[u64]) -> Outgoing {
        Outgoing::Event(Message::json(
            self.topics.tracked(),
            &TrackedMsg::new(ids),
            true,
        ))
    }

    /// The summary, when it changed and the rate cap allows (or `force`).
    fn summary_due(&mut self, t: f64, unix: f64, force: bool) -> Option<Outgoing> {
        let rate = self.shaping.summary_rate_hz;
        if rate <= 0.0 {
            return None;
        }
        // The cap first: within it, no summary is built at all (per frame).
        let last_t = self
            .summary_sent
            .as_ref()
            .map_or(f64::NEG_INFINITY, |s| s.0);
        if !force && within_cap(t - last_t, rate) {
            return None;
        }
        let msg = self.summary(unix);
        let changed = self
            .summary_sent
            .as_ref()
            .is_none_or(|(_, last)| summary_changed(last, &msg, self.shaping.change_threshold));
        if !changed {
            return None;
        }
        let out = self.summary_message(&msg);
        self.summary_sent = Some((t, msg));
        Some(out)
    }

    fn summary_message(&self, msg: &SummaryMsg) -> Outgoing {
        Outgoing::Event(Message::json(self.topics.summary(), msg, true))
    }

    /// The summary of the tracks present now.
    fn summary(&self, unix: f64) -> SummaryMsg {
        let labels = self.wording.labels;
        let tracks: Vec<SummaryFace> = self
            .tracks
            .iter()
            .map(|(id, s)| SummaryFace {
                track_id: *id,
                expression: labels.name(s.now.expression),
                confidence: round(s.now.confidence, 4),
                valence: round(s.now.valence, 4),
                arousal: round(s.now.arousal, 4),
            })
            .collect();
        let n = tracks.len();
        let mean = |f: fn(&SummaryFace) -> f32| {
            (n > 0).then(|| round(tracks.iter().map(f).sum::<f32>() / n as f32, 4))
        };
        // The expression most faces show; ties go to canonical order.
        let mut counts = [0usize; 7];
        for s in self.tracks.values() {
            counts[s.now.expression.index()] += 1;
        }
        let dominant = (n > 0).then(|| {
            let best = *counts.iter().max().unwrap_or(&0);
            let i = counts.iter().position(|c| *c == best).unwrap_or(0);
            labels.name(Expression::ALL[i])
        });
        SummaryMsg {
            schema_version: SCHEMA_VERSION,
            run: &crate::run_id::RunId::current().id,
            timestamp: unix,
            faces: n,
            mean_valence: mean(|f| f.valence),
            mean_arousal: mean(|f| f.arousal),
            dominant_expression: dominant,
            tracks,
        }
    }
}

/// True when `dt` seconds after the last message is too soon for `rate`
/// per second. A source clock that went back (a ROS 2 publisher restarted
/// on simulated time) is a new timeline, not "too soon".
fn within_cap(dt: f64, rate: f64) -> bool {
    (0.0..1.0 / rate - RATE_SLACK_S).contains(&dt)
}

impl Shaping {
    /// Whether a track's reading `now` may go out, given the last one sent.
    fn lets_through(&self, sent: Option<&Sent>, now: &Sent) -> bool {
        let Some(sent) = sent else { return true };
        if self.max_rate_hz > 0.0 && within_cap(now.t - sent.t, self.max_rate_hz) {
            return false;
        }
        !self.on_change
            || sent.expression != now.expression
            || (now.valence - sent.valence).abs() > self.change_threshold
            || (now.arousal - sent.arousal).abs() > self.change_threshold
    }
}

/// True when the group changed: other faces, another expression on one,
/// or V/A moved more than `threshold` on one.
fn summary_changed(a: &SummaryMsg, b: &SummaryMsg, threshold: f32) -> bool {
    a.tracks.len() != b.tracks.len()
        || a.tracks.iter().zip(&b.tracks).any(|(x, y)| {
            x.track_id != y.track_id
                || x.expression != y.expression
                || (x.valence - y.valence).abs() > threshold
                || (x.arousal - y.arousal).abs() > threshold
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{BBox, Detection, Emotion, FaceReading, Landmarks, VaSource};
    use crate::report::LabelSet;
    use crate::track::core::FaceOutput;
    use crate::track::smooth::Smoothed;

    fn face(track_id: u64, e: Expression, valence: f32) -> FaceOutput {
        let mut p = [0.0f32; 7];
        p[e.index()] = 0.9;
        FaceOutput {
            track_id,
            reading: FaceReading {
                detection: Detection {
                    bbox: BBox {
                        x: 10.0,
                        y: 20.0,
                        w: 50.0,
                        h: 60.0,
                    },
                    score: 0.99,
                    landmarks: Landmarks::default(),
                },
                emotion: Emotion::from_parts(p, valence, 0.2, VaSource::Model),
                held_from: None,
            },
            smoothed: Smoothed {
                expression: e,
                confidence: 0.9,
                probabilities: p,
                valence,
                arousal: 0.2,
            },
            reading_age_s: 0.0,
        }
    }

    fn stamp(t: f64) -> Option<(FrameStamp, Instant)> {
        let s = FrameStamp {
            unix: 1000.0 + t,
            frame_time: t,
            frame_seq: (t * 100.0) as u64,
            width: 640,
            height: 480,
        };
        Some((s, Instant::now()))
    }

    fn announcer(shaping: Shaping, labels: LabelSet) -> Announcer {
        let mqtt = MqttConfig {
            labels,
            ..Default::default()
        };
        let wording = Wording::from_config(&mqtt, "m@1".into(), false);
        Announcer::new(Topics::new("p", "d"), wording, shaping)
    }

    fn shaping() -> Shaping {
        Shaping::from_config(&MqttConfig::default())
    }

    /// (topic tail, payload) of each message, events and frames alike.
    fn tails(msgs: &[Outgoing]) -> Vec<(String, serde_json::Value)> {
        msgs.iter()
            .map(|o| {
                let m = match o {
                    Outgoing::Event(m) | Outgoing::Frame(m) => m,
                };
                let v = serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null);
                (m.topic.trim_start_matches("p/d/").to_string(), v)
            })
            .collect()
    }

    fn output(faces: Vec<FaceOutput>) -> FrameOutput {
        FrameOutput {
            faces,
            ..Default::default()
        }
    }

    #[test]
    fn by_default_every_frame_is_sent_in_the_promised_order() {
        let mut a = announcer(shaping(), LabelSet::FerEdge);
        let start = tails(&a.start(1.0));
        assert_eq!(start[0].0, "faces/tracked");
        assert_eq!(
            (start[1].0.as_str(), &start[1].1["faces"]),
            ("summary", &serde_json::json!(0))
        );
        let first = FrameOutput {
            started: vec![4],
            tracked: Some(vec![4]),
            ..output(vec![face(4, Expression::Happy, 0.5)])
        };
        let m = tails(&a.frame(&first, stamp(0.0), 1000.0));
        let topics: Vec<&str> = m.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics,
            ["events", "faces/4/expression", "faces/tracked", "summary"]
        );
        assert_eq!(m[3].1["dominant_expression"], "happy");
        assert_eq!(m[3].1["mean_valence"], 0.5);
        for i in 1..5 {
            let m = tails(&a.frame(
                &output(vec![face(4, Expression::Happy, 0.5)]),
                stamp(i as f64 / 15.0),
                0.0,
            ));
            assert_eq!(
                m.len(),
                1,
                "one expression message per frame, no summary without change"
            );
        }
    }

    #[test]
    fn the_rate_cap_holds_per_track_and_changes_pass_it_later_not_never() {
        let mut a = announcer(
            Shaping {
                max_rate_hz: 5.0,
                ..shaping()
            },
            LabelSet::FerEdge,
        );
        let mut sent = 0;
        // 3 s at 15 frames/s: at most 5 per second.
        for i in 0..45 {
            let m = a.frame(
                &output(vec![
                    face(1, Expression::Neutral, 0.0),
                    face(2, Expression::Neutral, 0.0),
                ]),
                stamp(i as f64 / 15.0),
                0.0,
            );
            sent += tails(&m)
                .iter()
                .filter(|(t, _)| t.ends_with("expression"))
                .count();
        }
        assert_eq!(sent, 2 * 15, "5 per second per track over 3 s");
    }

    #[test]
    fn a_source_clock_that_goes_back_starts_a_new_timeline_instead_of_silencing_a_face() {
        // A ROS 2 camera restarted on simulated time: its stamps start again at 0.
        let mut a = announcer(
            Shaping {
                max_rate_hz: 5.0,
                ..shaping()
            },
            LabelSet::FerEdge,
        );
        let mut sent_at = Vec::new();
        for t in [100.0, 100.1, 100.25, 0.0, 0.05, 0.2, 0.3] {
            let m = a.frame(
                &output(vec![face(1, Expression::Neutral, 0.0)]),
                stamp(t),
                0.0,
            );
            if tails(&m)
                .iter()
                .any(|(topic, _)| topic.ends_with("expression"))
            {
                sent_at.push(t);
            }
        }
        assert_eq!(sent_at, [100.0, 100.25, 0.0, 0.2]);
    }

    #[test]
    fn on_change_sends_label_changes_and_large_moves_only_with_an_event_per_label_change() {
        let mut a = announcer(
            Shaping {
                on_change: true,
                ..shaping()
            },
            LabelSet::Ros4hri,
        );
        let frames = [
            (Expression::Neutral, 0.0),   // first: sent
            (Expression::Neutral, 0.05),  // small move: not sent
            (Expression::Neutral, 0.12),  // 0.12 from the last sent: sent
            (Expression::Surprise, 0.12), // new label: sent, with an event
            (Expression::Surprise, 0.15),
        ];
        let mut got = Vec::new();
        for (i, (e, v)) in frames.iter().enumerate() {
            got.push(tails(&a.frame(
                &output(vec![face(7, *e, *v)]),
                stamp(i as f64),
                0.0,
            )));
        }
        let counts: Vec<usize> = got
            .iter()
            .map(|m| m.iter().filter(|(t, _)| t.ends_with("expression")).count())
            .collect();
        assert_eq!(counts, [1, 0, 1, 1, 0]);
        let events: Vec<&serde_json::Value> = got
            .iter()
            .flatten()
            .filter(|(t, _)| t == "events")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "expression_changed");
        assert_eq!(events[0]["expression"], "surprised", "ROS4HRI's label");
        assert_eq!(events[0]["previous_expression"], "neutral");
        let msg = &got[3]
            .iter()
            .find(|(t, _)| t.ends_with("expression"))
            .unwrap()
            .1;
        assert_eq!(msg["expression"], "surprised");
        assert_eq!(msg["probabilities"]["surprised"], 0.9);
        assert!(msg["probabilities"].get("surprise").is_none());
    }

    #[test]
    fn the_summary_goes_out_on_change_at_most_at_its_rate_and_always_at_the_end() {
        let mut a = announcer(
            Shaping {
                summary_rate_hz: 1.0,
                ..shaping()
            },
            LabelSet::FerEdge,
        );
        a.start(0.0);
        let summaries = |m: &[Outgoing]| -> Vec<serde_json::Value> {
            tails(m)
                .into_iter()
                .filter(|(t, _)| t == "summary")
                .map(|(_, v)| v)
                .collect()
        };
        let two = output(vec![
            face(1, Expression::Happy, 0.6),
            face(2, Expression::Sad, -0.4),
        ]);
        assert_eq!(summaries(&a.frame(&two, stamp(0.0), 0.0)).len(), 1);
        // A change 0.5 s later waits for the second to pass...
        let changed = output(vec![
            face(1, Expression::Happy, 0.6),
            face(2, Expression::Happy, 0.4),
        ]);
        assert!(summaries(&a.frame(&changed, stamp(0.5), 0.0)).is_empty());
        // ...and goes out on the first frame after it.
        let s = summaries(&a.frame(&changed, stamp(1.0), 0.0));
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0]["faces"].as_u64(), s[0]["dominant_expression"].as_str()),
            (Some(2), Some("happy"))
        );
        assert_eq!(s[0]["mean_valence"], 0.5);
        // Nothing changed: nothing sent, however long.
        assert!(summaries(&a.frame(&changed, stamp(5.0), 0.0)).is_empty());
        // Shutdown ends both tracks: an empty summary, whatever the rate.
        let end = FrameOutput {
            ended: vec![1, 2]
                .into_iter()
                .map(|id| crate::track::core::TrackSummary {
                    track_id: id,
                    duration_s: 5.0,
                    frames: 10,
                    mean_valence: 0.0,
                    mean_arousal: 0.0,
                    dominant: Expression::Happy,
                })
                .collect(),
            tracked: Some(vec![]),
            ..Default::default()
        };
        let s = summaries(&a.frame(&end, None, 0.0));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0]["faces"], 0);
        assert!(s[0]["mean_valence"].is_null() && s[0]["dominant_expression"].is_null());
    }
}
