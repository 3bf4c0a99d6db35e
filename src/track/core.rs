//! The per-track core: what to run on each frame, and what each frame's
//! readings mean for the tracks. The daemon and `fer-edge bench` both drive
//! it, so the bench measures exactly what the daemon does.
//!
//! In: the frame's time (seconds, as a value: no clock is read) and the
//! readings the face chain produced on the [`Plan`] this core asked for.
//! Out: a [`FrameOutput`]: tracks that started, one smoothed reading per
//! confirmed face, tracks that ended with their summary, and the new list
//! of tracked ids when it changed. A pure state machine over [`Tracker`]
//! and one [`EmotionSmoother`] per confirmed track.
//!
//! Detect, then follow: the first frame runs the full detector, then every
//! `interval + 1`-th frame, and the frame after a followed face was lost.
//! The frames between follow the faces that were seen on the previous
//! frame: the chain refines each predicted box alone (O-Net), which costs
//! a fraction of a full detection. A new face therefore waits at most
//! `interval` frames for the next full detection. With a background
//! detector the detection runs on another thread while frames go on being
//! followed; what it finds arrives frames later through [`TrackCore::seed`],
//! and the faces no track covers are refined on the next frame.
//!
//! Order per track is a guarantee: `started` comes before that track's
//! first face, and no face of a track follows the frame it `ended` on
//! (the tracker never reuses an id).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::smooth::{EmotionSmoother, Smoothed, SmoothingConfig};
use super::{Track, Tracker, TrackerConfig};
use crate::frame::{BBox, Emotion, Expression, FaceReading};

/// `[follow]`: how the daemon detects faces once and then follows them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowConfig {
    /// Frames followed between two full detections (DeepStream's
    /// `interval`): 0 runs the full detector on every frame. A followed
    /// frame runs only O-Net, once per face already tracked; a new face is
    /// found at the next full detection, so this bounds how many frames a
    /// newcomer waits.
    pub interval: u32,
    /// O-Net score below which a followed face counts as lost; the next
    /// frame then runs a full detection.
    pub threshold: f32,
    /// Run full detections on their own thread, so that no frame waits for
    /// one: frames follow the tracked faces, and new faces join a few
    /// frames after the detection started (when it finishes).
    pub background: bool,
    /// Most expression readings per face and second (0: every frame). A
    /// followed face between two readings keeps its box fresh and its
    /// last reading, which its smoother goes on averaging; the smoother's
    /// time constants (~0.5 s) make a reading every 0.2 s lose nothing a
    /// subscriber sees, and six faces cost a third as much at 15 fps.
    pub expression_rate_hz: f64,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            interval: 10,
            threshold: 0.7,
            background: true,
            expression_rate_hz: 5.0,
        }
    }
}

impl FollowConfig {
    /// Checks values without touching the file system.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval > 1000 {
            return Err(format!(
                "follow.interval = {} frames is too long for new faces to be found: use 0 (detect every frame) to 1000",
                self.interval
            ));
        }
        if !(0.0..1.0).contains(&self.threshold) {
            return Err(format!(
                "follow.threshold = {} must be in [0, 1)",
                self.threshold
            ));
        }
        if !(self.expression_rate_hz == 0.0 || (0.01..=1000.0).contains(&self.expression_rate_hz)) {
            return Err(format!(
                "follow.expression_rate_hz = {} must be 0 (read every frame) or 0.01..1000 readings per second",
                self.expression_rate_hz
            ));
        }
        Ok(())
    }

    /// `background` applies to live sources only: an unpaced replay
    /// processes every frame as fast as it can, and a detection on another
    /// thread would finish frames later than the frame it read, at a place
    /// that depends on the machine's speed. Returns true when it turned
    /// `background` off.
    pub fn fit_to_source(&mut self, live: bool) -> bool {
        let off = self.background && !live;
        if off {
            self.background = false;
        }
        off
    }
}

/// Readings that overlap a better one by more than this IoU are the same
/// face found twice (two followed tracks that converged on one face).
const DUPLICATE_IOU: f32 = 0.5;

/// A reading is due this much before its time (seconds): frame times are
/// sums of 1/fps, and a period that is a whole number of frames must not
/// slip to the frame after.
const DUE_SLACK_S: f64 = 0.002;

/// A tracked face's last reading, kept instead of reading the face again
/// on a frame where its next reading is not due.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub track_id: u64,
    pub emotion: Emotion,
}

/// What the face chain should do on the next frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// A full detection is due: run it on this frame (or, with a background
    /// detector, hand this frame to it).
    pub detect: bool,
    /// Boxes to refine on this frame: first the predicted boxes of the
    /// faces seen on the previous frame, then new faces a background
    /// detection found (seeds). A synchronous detection ignores them.
    pub follow: Vec<BBox>,
    /// How many of `follow` are tracked faces (the rest are seeds).
    pub tracked: usize,
    /// Per tracked face (the first `tracked` of `follow`): its last
    /// reading when the next is not due yet (`[follow]
    /// expression_rate_hz`). The chain follows that face and keeps this
    /// reading instead of aligning and reading it again.
    pub held: Vec<Option<Held>>,
}

/// What the chain produced on one frame.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Faces found: tracked faces first, then seeds.
    pub readings: Vec<FaceReading>,
    /// How many readings at the end come from seeds (background detection).
    pub seeded: usize,
    /// True when a full detection ran on this frame or was handed to the
    /// background detector (the interval restarts).
    pub detected: bool,
    /// Tracked faces the follower lost on this frame (score too low).
    pub lost: usize,
}

/// What an `end` event reports about a track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSummary {
    pub track_id: u64,
    /// From the first to the last frame the face was seen, seconds.
    pub duration_s: f64,
    /// Frames with a published reading.
    pub frames: u64,
    pub mean_valence: f32,
    pub mean_arousal: f32,
    /// The smoothed expression published most often (ties: canonical order).
    pub dominant: Expression,
}

/// One confirmed face on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceOutput {
    pub track_id: u64,
    pub reading: FaceReading,
    pub smoothed: Smoothed,
    /// Seconds since `reading.emotion` was read off the face: 0 when it
    /// was read on this frame, up to one read period when it is the
    /// face's held reading (`[follow] expression_rate_hz`).
    pub reading_age_s: f32,
}

/// Everything one frame did, in the order it must be published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameOutput {
    /// Tracks confirmed on this frame (`new` events): before their faces.
    pub started: Vec<u64>,
    pub faces: Vec<FaceOutput>,
    /// Tracks that ended on this frame (`end` events): after every face.
    pub ended: Vec<TrackSummary>,
    /// The confirmed track ids, when they changed on this frame.
    pub tracked: Option<Vec<u64>>,
    /// True when the full detector ran on this frame.
    pub detected: bool,
    /// Readings dropped as a second copy of a face.
    pub duplicates: usize,
}

/// Running sums of one confirmed track.
struct PerTrack {
    smoother: EmotionSmoother,
    frames: u64,
    sum_v: f64,
    sum_a: f64,
    label_counts: [u64; 7],
    /// The last reading made on the face (not a held one).
    last: Option<Emotion>,
    /// When `last` was read, seconds (frame time).
    read_at: f64,
    /// When the next reading is due.
    next_read: f64,
}

impl PerTrack {
    fn summary(&self, track: &Track) -> TrackSummary {
        let n = self.frames.max(1) as f64;
        let best = (0..7)
            .max_by_key(|&i| (self.label_counts[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        TrackSummary {
            track_id: track.id,
            duration_s: track.last_seen - track.first_seen,
            frames: self.frames,
            mean_valence: (self.sum_v / n) as f32,
            mean_arousal: (self.sum_a / n) as f32,
            dominant: Expression::ALL[best],
        }
    }
}

/// The tracker, the follower's schedule and every track's smoothing and
/// summary, behind one `plan` / `update` pair.
pub struct TrackCore {
    tracker: Tracker,
    smoothing: SmoothingConfig,
    interval: u32,
    /// Seconds between two readings of one face (0: every frame).
    read_period_s: f64,
    per_track: BTreeMap<u64, PerTrack>,
    tracked: Vec<u64>,
    /// Frames followed since the last full detection; None before the first.
    since_detect: Option<u32>,
    /// A followed face was lost on the last frame: detect on the next.
    lost: bool,
    /// New faces from a background detection, to refine on the next frame.
    seeds: Vec<BBox>,
}

impl TrackCore {
    /// `interval`: frames followed between two full detections (0: none).
    pub fn new(tracker: TrackerConfig, smoothing: SmoothingConfig, interval: u32) -> TrackCore {
        TrackCore {
            tracker: Tracker::new(tracker),
            smoothing,
            interval,
            read_period_s: 0.0,
            per_track: BTreeMap::new(),
            tracked: Vec::new(),
            since_detect: None,
            lost: false,
            seeds: Vec::new(),
        }
    }

    /// Numbers new tracks from `first` on (the run's first track id, or
    /// where the previous core of the same run stopped).
    pub fn numbering_from(mut self, first: u64) -> TrackCore {
        self.tracker = self.tracker.numbering_from(first);
        self
    }

    /// The id the next new track will get.
    pub fn next_track_id(&self) -> u64 {
        self.tracker.next_id()
    }

    /// Reads each confirmed face's expression at most `hz` times a second
    /// (0: on every frame). Between two readings a followed face keeps its
    /// box fresh and its last reading ([`Plan::held`]), which its smoother
    /// goes on averaging: a sample-and-hold of the face's expression.
    /// Faces that start together are read on different frames.
    pub fn with_expression_rate(mut self, hz: f64) -> TrackCore {
        self.read_period_s = if hz > 0.0 { 1.0 / hz } else { 0.0 };
        self
    }

    /// What to run on the frame at time `t`.
    pub fn plan(&self, t: f64) -> Plan {
        let due = match self.since_detect {
            None => true,
            Some(n) => n >= self.interval,
        };
        let seen: Vec<&Track> = self.tracker.seen_last().collect();
        let mut follow: Vec<BBox> = seen.iter().map(|tr| tr.predicted(t)).collect();
        let held = seen.iter().map(|tr| self.held(tr.id, t)).collect();
        let tracked = follow.len();
        follow.extend(self.seeds.iter().copied());
        Plan {
            detect: due || self.lost,
            follow,
            tracked,
            held,
        }
    }

    /// Track `id`'s last reading, when its next one is not due at `t`.
    fn held(&self, id: u64, t: f64) -> Option<Held> {
        if self.read_period_s <= 0.0 {
            return None;
        }
        let st = self.per_track.get(&id)?;
        let last = st.last.as_ref()?;
        (t + DUE_SLACK_S < st.next_read).then(|| Held {
            track_id: id,
            emotion: last.clone(),
        })
    }

    /// Takes what a background detection found (on an earlier frame): the
    /// faces no track already covers become seeds, refined on the next
    /// frame like tracked faces and tracked from there. A face the
    /// follower already has is left to the follower (it is fresher).
    pub fn seed(&mut self, t: f64, found: &[BBox]) {
        let tracked = self.predicted_seen(t);
        self.seeds = found
            .iter()
            .filter(|b| !tracked.iter().any(|k| same_face(k, b)))
            .copied()
            .collect();
    }

    /// Where the faces seen on the last frame are predicted at time `t`.
    fn predicted_seen(&self, t: f64) -> Vec<BBox> {
        self.tracker.seen_last().map(|tr| tr.predicted(t)).collect()
    }

    /// Confirmed track ids, in order.
    pub fn tracked(&self) -> &[u64] {
        &self.tracked
    }

    /// Takes the frame at time `t` (non-decreasing) and what the chain saw.
    pub fn update(&mut self, t: f64, obs: Observation) -> FrameOutput {
        self.since_detect = Some(if obs.detected {
            0
        } else {
            self.since_detect.map_or(0, |n| n + 1)
        });
        self.lost = obs.lost > 0;
        self.seeds.clear();
        let total = obs.readings.len();
        let first_seed = total.saturating_sub(obs.seeded);
        let readings = drop_duplicates(obs.readings, first_seed);
        let mut out = FrameOutput {
            detected: obs.detected,
            duplicates: total - readings.len(),
            ..FrameOutput::default()
        };
        let boxes: Vec<BBox> = readings.iter().map(|r| r.detection.bbox).collect();
        let update = self.tracker.update(t, &boxes);
        for id in &update.started {
            self.per_track.insert(
                *id,
                PerTrack {
                    smoother: EmotionSmoother::new(&self.smoothing),
                    frames: 0,
                    sum_v: 0.0,
                    sum_a: 0.0,
                    label_counts: [0; 7],
                    last: None,
                    read_at: t,
                    next_read: t,
                },
            );
        }
        out.started = update.started;
        for (reading, id) in readings.into_iter().zip(update.assigned) {
            let Some(id) = id else { continue };
            let Some(st) = self.per_track.get_mut(&id) else {
                continue;
            };
            match reading.held_from {
                // A held reading that the tracker gave to another face
                // (two faces crossing) is not that face's: it waits for
                // its own reading, due now.
                Some(src) if src != id => {
                    tracing::debug!(
                        track = id,
                        from = src,
                        "held reading of another face dropped"
                    );
                    continue;
                }
                Some(_) => {}
                None => {
                    // The first reading of a track sets its phase, spread
                    // by id so that faces confirmed together are read on
                    // different frames; later ones come a period apart.
                    let wait = if st.last.is_none() { phase(id) } else { 1.0 };
                    st.next_read = t + self.read_period_s * wait;
                    st.last = Some(reading.emotion.clone());
                    st.read_at = t;
                }
            }
            let reading_age_s = match reading.held_from {
                Some(_) => (t - st.read_at).max(0.0) as f32,
                None => 0.0,
            };
            let smoothed = st.smoother.update(t, &reading.emotion);
            st.frames += 1;
            st.sum_v += f64::from(smoothed.valence);
            st.sum_a += f64::from(smoothed.arousal);
            st.label_counts[smoothed.expression.index()] += 1;
            out.faces.push(FaceOutput {
                track_id: id,
                reading,
                smoothed,
                reading_age_s,
            });
        }
        out.ended = update.ended.iter().map(|tr| self.end(tr)).collect();
        out.tracked = self.refresh_tracked();
        out
    }

    /// Ends every confirmed track (shutdown, end of a replay).
    pub fn finish(&mut self) -> FrameOutput {
        let ended: Vec<Track> = self.tracker.end_all();
        let mut out = FrameOutput {
            ended: ended.iter().map(|tr| self.end(tr)).collect(),
            ..FrameOutput::default()
        };
        out.tracked = self.refresh_tracked();
        self.since_detect = None;
        out
    }

    fn end(&mut self, tr: &Track) -> TrackSummary {
        match self.per_track.remove(&tr.id) {
            Some(st) => st.summary(tr),
            None => TrackSummary {
                track_id: tr.id,
                duration_s: tr.last_seen - tr.first_seen,
                frames: 0,
                mean_valence: 0.0,
                mean_arousal: 0.0,
                dominant: Expression::Neutral,
            },
        }
    }

    fn refresh_tracked(&mut self) -> Option<Vec<u64>> {
        let now: Vec<u64> = self.tracker.confirmed().map(|t| t.id).collect();
        if now == self.tracked {
            return None;
        }
        self.tracked = now.clone();
        Some(now)
    }
}

/// A fraction in [0, 1) that differs between consecutive ids (the golden
/// ratio's multiples, modulo 1).
fn phase(id: u64) -> f64 {
    // Ids start high (the run's start in ms): keep the product exact.
    ((id % (1 << 24)) as f64 * 0.618_033_988_749_895).fract()
}

/// True when box `b` lies on the face of box `k`: overlapping, or its
/// centre within half the box size of `k`'s.
fn same_face(k: &BBox, b: &BBox) -> bool {
    let (kc, bc) = (k.center(), b.center());
    let d = ((kc[0] - bc[0]).powi(2) + (kc[1] - bc[1]).powi(2)).sqrt();
    k.iou(b) > 0.2 || d < 0.5 * k.w.max(k.h)
}

/// Keeps readings in order, dropping each that overlaps a kept one by more
/// than [`DUPLICATE_IOU`]. Tracked faces are kept before seeds (readings
/// from `first_seed` on), then higher scores first: a seed that lands on a
/// tracked face never takes the face from its track.
fn drop_duplicates(readings: Vec<FaceReading>, first_seed: usize) -> Vec<FaceReading> {
    let mut order: Vec<usize> = (0..readings.len()).collect();
    order.sort_by(|&a, &b| {
        (a >= first_seed)
            .cmp(&(b >= first_seed))
            .then(
                readings[b]
                    .detection
                    .score
                    .total_cmp(&readings[a].detection.score),
            )
            .then(a.cmp(&b))
    });
    let mut keep = vec![false; readings.len()];
    let mut kept: Vec<BBox> = Vec::new();
    for i in order {
        let b = readings[i].detection.bbox;
        if kept.iter().all(|k| k.iou(&b) <= DUPLICATE_IOU) {
            keep[i] = true;
            kept.push(b);
        }
    }
    readings
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Detection, Emotion, Landmarks, VaSource};

    fn reading(x: f32, score: f32, happy: f32) -> FaceReading {
        let mut p = [0.0; 7];
        p[1] = happy;
        p[0] = 1.0 - happy;
        FaceReading {
            detection: Detection {
                bbox: BBox {
                    x,
                    y: 50.0,
                    w: 80.0,
                    h: 100.0,
                },
                score,
                landmarks: Landmarks::default(),
            },
            emotion: Emotion::from_parts(p, 0.5, -0.5, VaSource::Derived),
            held_from: None,
        }
    }

    fn core(interval: u32) -> TrackCore {
        TrackCore::new(
            TrackerConfig {
                min_hits: 2,
                max_age_s: 0.3,
                ..Default::default()
            },
            SmoothingConfig::default(),
            interval,
        )
    }

    fn obs(readings: Vec<FaceReading>, detected: bool, lost: usize) -> Observation {
        Observation {
            readings,
            seeded: 0,
            detected,
            lost,
        }
    }

    #[test]
    fn detection_runs_first_then_every_interval_plus_one_frames() {
        let mut c = core(3);
        let mut plans = Vec::new();
        for i in 0..9 {
            let t = i as f64 / 10.0;
            let detected = c.plan(t).detect;
            plans.push(detected);
            c.update(
                t,
                obs(vec![reading(100.0 + i as f32, 0.99, 0.9)], detected, 0),
            );
        }
        assert_eq!(
            plans,
            [true, false, false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn interval_zero_detects_on_every_frame() {
        let mut c = core(0);
        for i in 0..5 {
            assert!(c.plan(i as f64).detect);
            c.update(i as f64, obs(vec![], true, 0));
        }
    }

    #[test]
    fn followed_boxes_are_the_faces_seen_on_the_last_frame_moved_by_their_motion() {
        let mut c = core(10);
        c.update(0.0, obs(vec![reading(100.0, 0.99, 0.9)], true, 0));
        c.update(0.1, obs(vec![reading(110.0, 0.99, 0.9)], false, 0));
        let plan = c.plan(0.2);
        assert!(!plan.detect);
        let boxes = plan.follow;
        assert_eq!(boxes.len(), 1);
        // Velocity is half the last step's (light smoothing): 50 px/s.
        assert!((boxes[0].x - 115.0).abs() < 1e-3, "{:?}", boxes[0]);
    }

    #[test]
    fn a_lost_face_makes_the_next_frame_a_full_detection() {
        let mut c = core(10);
        c.update(0.0, obs(vec![reading(100.0, 0.99, 0.9)], true, 0));
        assert!(!c.plan(0.1).detect);
        c.update(0.1, obs(vec![], false, 1));
        assert!(c.plan(0.2).detect);
        c.update(0.2, obs(vec![], true, 0));
        // The face is no longer followed: nothing to refine.
        let plan = c.plan(0.3);
        assert!(!plan.detect && plan.follow.is_empty());
    }

    #[test]
    fn a_track_starts_before_its_first_face_and_ends_after_its_last() {
        let mut c = core(10);
        let mut log: Vec<String> = Vec::new();
        for i in 0..10 {
            let t = i as f64 * 0.1;
            let seen = if i < 5 {
                vec![reading(100.0, 0.99, 0.9)]
            } else {
                vec![]
            };
            let out = c.update(t, obs(seen, i == 0, 0));
            log.extend(out.started.iter().map(|id| format!("new {id}")));
            log.extend(out.faces.iter().map(|f| format!("face {}", f.track_id)));
            log.extend(out.ended.iter().map(|s| format!("end {}", s.track_id)));
        }
        let want = ["new 1", "face 1", "face 1", "face 1", "face 1", "end 1"];
        assert_eq!(log, want);
    }

    #[test]
    fn finish_ends_every_confirmed_track_once_with_its_summary() {
        let mut c = core(10);
        for i in 0..4 {
            let out = c.update(
                i as f64 * 0.1,
                obs(
                    vec![reading(100.0, 0.99, 0.9), reading(400.0, 0.98, 0.1)],
                    true,
                    0,
                ),
            );
            if i == 1 {
                assert_eq!(out.started, vec![1, 2]);
                assert_eq!(out.tracked, Some(vec![1, 2]));
            }
        }
        let out = c.finish();
        assert_eq!(out.tracked, Some(vec![]));
        let ids: Vec<u64> = out.ended.iter().map(|s| s.track_id).collect();
        assert_eq!(ids, vec![1, 2]);
        let happy = &out.ended[0];
        assert_eq!(happy.frames, 3);
        assert_eq!(happy.dominant, Expression::Happy);
        assert!((happy.duration_s - 0.3).abs() < 1e-9);
        assert_eq!(out.ended[1].dominant, Expression::Neutral);
        assert!(c.finish().ended.is_empty(), "a second finish ends nothing");
    }

    #[test]
    fn a_background_detection_seeds_only_faces_no_track_covers() {
        let mut c = core(10);
        for i in 0..3 {
            c.update(
                i as f64 * 0.1,
                obs(vec![reading(100.0, 0.99, 0.9)], i == 0, 0),
            );
        }
        // The detector (on an older frame) saw the tracked face, a little
        // behind where the follower has it now, and a new face.
        let b = |x: f32| reading(x, 0.9, 0.5).detection.bbox;
        c.seed(0.3, &[b(90.0), b(400.0)]);
        let plan = c.plan(0.3);
        assert_eq!(plan.tracked, 1);
        assert_eq!(plan.follow.len(), 2);
        assert!((plan.follow[1].x - 400.0).abs() < 1e-6);
        // The seed becomes a track of its own; the tracked face keeps its id.
        let mut o = obs(
            vec![reading(100.0, 0.99, 0.9), reading(400.0, 0.97, 0.5)],
            false,
            0,
        );
        o.seeded = 1;
        let out = c.update(0.3, o);
        assert_eq!(out.faces.len(), 1);
        assert_eq!(out.faces[0].track_id, 1);
        // Seeds are used once.
        assert_eq!(c.plan(0.4).follow.len(), 2, "both faces are now followed");
    }

    #[test]
    fn a_seed_that_lands_on_a_tracked_face_never_takes_it_from_its_track() {
        let mut c = core(10);
        for i in 0..3 {
            c.update(
                i as f64 * 0.1,
                obs(vec![reading(100.0, 0.95, 0.9)], i == 0, 0),
            );
        }
        // The seed refined onto the same face with a higher score.
        let mut o = obs(
            vec![reading(100.0, 0.95, 0.9), reading(101.0, 0.999, 0.9)],
            false,
            0,
        );
        o.seeded = 1;
        let out = c.update(0.3, o);
        assert_eq!(out.duplicates, 1);
        assert_eq!(out.faces.len(), 1);
        assert_eq!(out.faces[0].track_id, 1);
        assert!(out.started.is_empty() && out.ended.is_empty());
    }

    #[test]
    fn two_followed_tracks_on_one_face_become_one_reading() {
        let mut c = core(10);
        // Two faces, then the follower puts both boxes on the same face.
        for i in 0..3 {
            c.update(
                i as f64 * 0.1,
                obs(
                    vec![reading(100.0, 0.99, 0.9), reading(160.0, 0.98, 0.9)],
                    true,
                    0,
                ),
            );
        }
        let out = c.update(
            0.3,
            obs(
                vec![reading(130.0, 0.97, 0.9), reading(132.0, 0.99, 0.9)],
                false,
                0,
            ),
        );
        assert_eq!(out.duplicates, 1);
        assert_eq!(out.faces.len(), 1);
        assert!((out.faces[0].reading.detection.bbox.x - 132.0).abs() < 1e-6);
    }

    /// Runs `frames` frames at 15 fps of faces standing at `xs`, reading a
    /// face only when the plan holds no reading for it (as the chain does):
    /// per frame, which faces (by x) were read fresh, and the output.
    fn run_capped(c: &mut TrackCore, xs: &[f32], frames: usize) -> Vec<(Vec<f32>, FrameOutput)> {
        let mut log = Vec::new();
        for i in 0..frames {
            let t = i as f64 / 15.0;
            let plan = c.plan(t);
            let mut fresh = Vec::new();
            let readings = xs
                .iter()
                .map(|&x| {
                    let k = plan.follow[..plan.tracked]
                        .iter()
                        .position(|b| (b.x - x).abs() < 20.0);
                    match k.and_then(|k| plan.held[k].clone()) {
                        Some(h) => FaceReading {
                            held_from: Some(h.track_id),
                            emotion: h.emotion,
                            ..reading(x, 0.99, 0.0)
                        },
                        None => {
                            fresh.push(x);
                            reading(x, 0.99, 0.2 + i as f32 / 100.0)
                        }
                    }
                })
                .collect();
            let out = c.update(t, obs(readings, plan.detect, 0));
            log.push((fresh, out));
        }
        log
    }

    #[test]
    fn a_capped_rate_reads_each_face_a_period_apart_and_publishes_it_on_every_frame() {
        let mut c = core(10).with_expression_rate(5.0);
        let log = run_capped(&mut c, &[100.0], 30);
        // Every frame after confirmation publishes the face.
        assert!(log[2..].iter().all(|(_, out)| out.faces.len() == 1));
        let read_on: Vec<usize> = (0..30).filter(|&i| !log[i].0.is_empty()).collect();
        // Tentative frames read every frame; then 3 frames (0.2 s at 15 fps)
        // apart, never slipping to 4 on the sums of 1/15.
        assert_eq!(&read_on[..2], &[0, 1]);
        let gaps: Vec<usize> = read_on[2..].windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g == 3), "{read_on:?}");
        assert!(read_on.len() >= 10 && read_on.len() <= 12, "{read_on:?}");
        // A held frame carries the last reading made on the face.
        for i in 3..30 {
            if log[i].0.is_empty() {
                let last = *read_on.iter().rfind(|&&r| r < i).unwrap();
                let held = &log[i].1.faces[0].reading;
                assert_eq!(held.held_from, Some(log[i].1.faces[0].track_id));
                assert_eq!(held.emotion, log[last].1.faces[0].reading.emotion);
                // ... and says how old it is: the frames since it was read.
                let age = log[i].1.faces[0].reading_age_s;
                let want = (i - last) as f32 / 15.0;
                assert!(
                    (age - want).abs() < 1e-4,
                    "frame {i}: age {age}, want {want}"
                );
            } else {
                assert_eq!(log[i].1.faces[0].reading_age_s, 0.0, "frame {i}");
            }
        }
        // Rate 0 reads every frame.
        let mut every = core(10);
        assert!(run_capped(&mut every, &[100.0], 10)
            .iter()
            .all(|(f, _)| f.len() == 1));
    }

    #[test]
    fn faces_confirmed_together_are_read_on_different_frames() {
        let mut c = core(10).with_expression_rate(5.0);
        let log = run_capped(&mut c, &[100.0, 300.0, 500.0], 30);
        let per_frame: Vec<usize> = log[6..].iter().map(|(f, _)| f.len()).collect();
        // Three faces, each read once in three frames: spread, not 3-0-0.
        assert!(per_frame.iter().all(|&n| n <= 2), "{per_frame:?}");
        assert!(log[6..].iter().all(|(_, out)| out.faces.len() == 3));
    }

    #[test]
    fn a_held_reading_given_to_another_track_is_dropped_not_published_as_its() {
        let mut c = core(10).with_expression_rate(5.0);
        run_capped(&mut c, &[100.0, 300.0], 4);
        let ids = c.tracked().to_vec();
        assert_eq!(ids.len(), 2);
        let t = 4.0 / 15.0;
        let plan = c.plan(t);
        // Two fresh readings, one carrying the first track's held reading
        // but standing where the second track is.
        let wrong = FaceReading {
            held_from: Some(ids[0]),
            ..reading(300.0, 0.99, 0.9)
        };
        let out = c.update(
            t,
            obs(vec![reading(100.0, 0.99, 0.5), wrong], plan.detect, 0),
        );
        assert_eq!(out.faces.len(), 1, "{:?}", out.faces);
        assert_eq!(out.faces[0].track_id, ids[0]);
    }
}
