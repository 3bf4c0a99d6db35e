//! What a calibration run saw, accumulated frame by frame and summed up.
//!
//! In: per processed frame a [`FrameFacts`], the faces the track core
//! confirmed on it as [`FaceFacts`] (with their [`FaceQuality`]), and the
//! frame's [`FrameOutput`] (tracks started and ended). Out: [`Figures`]:
//! face sizes (with a histogram), where faces appear (a heat map), head
//! roll, detector scores, image quality on the faces, track durations, id
//! switches, a per-second timeline, valence/arousal per track over time,
//! and the model's raw readings for a neutral baseline. Pure: no I/O, no
//! clock; judging the figures is `advice.rs`'s job.

use std::collections::BTreeMap;

use serde::Serialize;

use super::quality::FaceQuality;
use crate::frame::{BBox, Detection, Emotion};
use crate::telemetry::nearest_rank;
use crate::track::core::FrameOutput;

/// A new track that starts within this long of another track's end, near
/// where it ended, is counted as an id switch (the same person, a new id).
const SWITCH_WINDOW_S: f64 = 1.0;
/// A new track that starts later than that but within this long, near
/// where another ended, is counted as a face that went untracked (a person
/// who stayed while the tracker lost them, or left and came back).
const LOST_WINDOW_S: f64 = 30.0;
/// Heat map cells across and down the frame.
pub const HEAT_COLS: usize = 16;
pub const HEAT_ROWS: usize = 12;

/// One processed frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameFacts {
    /// Seconds since the run started (wall clock).
    pub wall_s: f64,
    /// Time to process the frame (detect or follow, align, emotion, track).
    pub process_ms: f64,
    pub width: u32,
    pub height: u32,
}

/// One confirmed face on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceFacts {
    pub track_id: u64,
    pub detection: Detection,
    /// The model's reading, before smoothing and before any calibration.
    pub raw: Emotion,
    /// Smoothed valence and arousal (what the daemon publishes).
    pub smoothed_va: [f32; 2],
    /// None when the face could not be measured (box outside the frame,
    /// no aligned crop).
    pub quality: Option<FaceQuality>,
}

/// Order statistics of a set of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub min: f32,
    pub p1: f32,
    pub p10: f32,
    pub p50: f32,
    pub p90: f32,
    pub max: f32,
    pub mean: f32,
}

impl Spread {
    /// Nearest-rank quantiles; None for no values.
    pub fn of(values: impl IntoIterator<Item = f32>) -> Option<Spread> {
        let mut v: Vec<f32> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f32::total_cmp);
        let n = v.len();
        let at = |q: f64| nearest_rank(&v, q);
        let r = |x: f32| (x * 1000.0).round() / 1000.0;
        Some(Spread {
            count: n,
            min: r(v[0]),
            p1: r(at(0.01)),
            p10: r(at(0.10)),
            p50: r(at(0.50)),
            p90: r(at(0.90)),
            max: r(v[n - 1]),
            mean: r(v.iter().map(|&x| x as f64).sum::<f64>() as f32 / n as f32),
        })
    }
}

/// One bar of a histogram: values in [lo, hi).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    pub lo: f32,
    pub hi: f32,
    pub count: u32,
}

/// Counts of `values` in `bins` equal bins from `lo` to `hi` (values
/// outside land in the first or last bin).
pub fn histogram(values: &[f32], lo: f32, hi: f32, bins: usize) -> Vec<Bin> {
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f32;
    let mut out: Vec<Bin> = (0..bins)
        .map(|i| Bin {
            lo: lo + i as f32 * width,
            hi: lo + (i + 1) as f32 * width,
            count: 0,
        })
        .collect();
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        out[i].count += 1;
    }
    out
}

/// Faces: how many, how big, where, how tilted, how sure the detector was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceFigures {
    /// Face readings (one per confirmed face per frame).
    pub readings: usize,
    pub frames_with_faces: usize,
    pub most_faces_in_a_frame: usize,
    /// Face box side in pixels of the frame (√(w·h)).
    pub size_px: Spread,
    pub size_histogram: Vec<Bin>,
    /// Face centres counted on a [`HEAT_COLS`]×[`HEAT_ROWS`] grid over the
    /// frame, row by row from the top left.
    pub heatmap: Vec<u32>,
    /// Head roll from the eye line, degrees (positive: clockwise in the image).
    pub roll_deg: Spread,
    /// Detector score.
    pub score: Spread,
}

/// Image quality on the faces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityFigures {
    pub face_brightness: Spread,
    pub face_contrast: Spread,
    pub scene_brightness: Spread,
    pub backlight_stops: Spread,
    pub sharpness: Spread,
    pub face_brightness_histogram: Vec<Bin>,
}

/// Tracks: how long they lasted, how often a person got a new id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackFigures {
    pub tracks: usize,
    /// Durations of tracks that ended (the run's end ends the rest).
    pub duration_s: Option<Spread>,
    pub id_switches: usize,
    /// Faces that went untracked for longer than an id switch (over 1 s, at
    /// most 30 s) and came back where they had been, as a new track.
    pub lost: usize,
    /// The longest such gap, seconds.
    pub longest_lost_s: Option<f32>,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the start (the second's start).
    pub s: u32,
    pub frames: u32,
    /// Median processing time of its frames, ms.
    pub process_ms_p50: f32,
    pub faces: u32,
}

/// The model's own readings (before smoothing and calibration): what a
/// neutral baseline is made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawReadings {
    pub readings: usize,
    pub mean_valence: f32,
    pub mean_arousal: f32,
    /// Mean probability per expression, canonical order.
    pub mean_probability: [f32; 7],
    /// Mean log-probability per expression (geometric mean's log).
    pub mean_log_probability: [f32; 7],
    /// Most faces confirmed at once (a baseline wants exactly one).
    pub most_faces_at_once: usize,
}

/// Everything the survey measured, ready for advice and the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub frames: usize,
    /// Wall-clock span of the processed frames, seconds.
    pub span_s: f64,
    /// Frame size of the last frame, pixels.
    pub frame_size: [u32; 2],
    pub process_ms: Option<Spread>,
    pub faces: Option<FaceFigures>,
    pub quality: Option<QualityFigures>,
    pub tracks: TrackFigures,
    pub timeline: Vec<Second>,
    /// Smoothed [seconds, valence, arousal] per track id (thinned to the
    /// survey's step).
    pub va_by_track: BTreeMap<u64, Vec<[f32; 3]>>,
    pub raw: Option<RawReadings>,
}

#[derive(Debug, Clone, Copy)]
struct TrackSpan {
    last_s: f64,
    last_box: BBox,
}

#[derive(Debug, Clone)]
struct FaceRow {
    size: f32,
    centre: [f32; 2],
    roll: f32,
    score: f32,
    quality: Option<FaceQuality>,
}

/// The accumulator.
#[derive(Debug, Default)]
pub struct Survey {
    frames: Vec<FrameFacts>,
    frame_faces: Vec<usize>,
    faces: Vec<FaceRow>,
    live: BTreeMap<u64, TrackSpan>,
    ended: Vec<(TrackSpan, bool)>,
    durations: Vec<f32>,
    id_switches: usize,
    lost_gaps: Vec<f32>,
    tracks: usize,
    va: BTreeMap<u64, Vec<[f32; 3]>>,
    raw_sum: [f64; 2],
    prob_sum: [f64; 7],
    logp_sum: [f64; 7],
    raw_n: usize,
    /// Shortest time between two kept valence/arousal points of a track.
    va_step_s: f64,
}

/// Degrees the eye line is turned from horizontal.
pub fn roll_deg(d: &Detection) -> f32 {
    let [l, r] = [d.landmarks.left_eye, d.landmarks.right_eye];
    (r[1] - l[1]).atan2(r[0] - l[0]).to_degrees()
}

fn near(a: &BBox, b: &BBox) -> bool {
    let (sa, sb) = (a.area().sqrt(), b.area().sqrt());
    let [ax, ay] = a.center();
    let [bx, by] = b.center();
    let dist = ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt();
    sa > 0.0 && sb > 0.0 && dist <= 0.5 * sa.max(sb) && (0.67..=1.5).contains(&(sa / sb))
}

impl Survey {
    /// Keeps every valence/arousal point.
    pub fn new() -> Survey {
        Survey::default()
    }

    /// Keeps a track's valence/arousal points at least `step_s` apart (the
    /// report plots them; a long run would otherwise keep every frame's).
    pub fn with_va_step(step_s: f64) -> Survey {
        Survey {
            va_step_s: step_s.max(0.0),
            ..Survey::default()
        }
    }

    /// Adds one processed frame: its facts, its confirmed faces, and what
    /// the track core did on it.
    pub fn observe(&mut self, frame: FrameFacts, faces: &[FaceFacts], out: &FrameOutput) {
        let now = frame.wall_s;
        for f in faces {
            let b = f.detection.bbox;
            let [cx, cy] = b.center();
            self.faces.push(FaceRow {
                size: b.area().max(0.0).sqrt(),
                centre: [cx / frame.width as f32, cy / frame.height as f32],
                roll: roll_deg(&f.detection),
                score: f.detection.score,
                quality: f.quality,
            });
            let span = self.live.entry(f.track_id).or_insert(TrackSpan {
                last_s: now,
                last_box: b,
            });
            if out.started.contains(&f.track_id) {
                self.tracks += 1;
                // The most recent track that ended where this one begins.
                let before = self
                    .ended
                    .iter_mut()
                    .filter(|(e, used)| {
                        !*used && now - e.last_s <= LOST_WINDOW_S && near(&e.last_box, &b)
                    })
                    .max_by(|x, y| x.0.last_s.total_cmp(&y.0.last_s));
                if let Some((e, used)) = before {
                    *used = true;
                    let gap = now - e.last_s;
                    if gap <= SWITCH_WINDOW_S {
                        self.id_switches += 1;
                    } else {
                        self.lost_gaps.push(gap as f32);
                    }
                }
            }
            span.last_s = now;
            span.last_box = b;
            let points = self.va.entry(f.track_id).or_default();
            if points
                .last()
                .is_none_or(|p| now - p[0] as f64 >= self.va_step_s)
            {
                points.push([now as f32, f.smoothed_va[0], f.smoothed_va[1]]);
            }
            self.raw_sum[0] += f.raw.valence as f64;
            self.raw_sum[1] += f.raw.arousal as f64;
            for (i, &p) in f.raw.probabilities.iter().enumerate() {
                self.prob_sum[i] += p as f64;
                self.logp_sum[i] += (p.max(1e-6) as f64).ln();
            }
            self.raw_n += 1;
        }
        for summary in &out.ended {
            self.durations.push(summary.duration_s as f32);
            if let Some(span) = self.live.remove(&summary.track_id) {
                self.ended.push((span, false));
            }
        }
        self.ended.retain(|(e, _)| now - e.last_s <= LOST_WINDOW_S);
        self.frames.push(frame);
        self.frame_faces.push(faces.len());
    }

    /// The tracks still open when the run ended (the track core's
    /// `finish`): their durations count too.
    pub fn end(&mut self, out: &FrameOutput) {
        for summary in &out.ended {
            self.durations.push(summary.duration_s as f32);
            self.live.remove(&summary.track_id);
        }
    }

    /// Frames observed so far.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Face readings observed so far.
    pub fn face_readings(&self) -> usize {
        self.faces.len()
    }

    /// Sums everything up.
    pub fn figures(&self) -> Figures {
        let last = self.frames.last();
        let span_s = match (self.frames.first(), last) {
            (Some(a), Some(b)) => b.wall_s - a.wall_s,
            _ => 0.0,
        };
        Figures {
            frames: self.frames.len(),
            span_s,
            frame_size: last.map_or([0, 0], |f| [f.width, f.height]),
            process_ms: Spread::of(self.frames.iter().map(|f| f.process_ms as f32)),
            faces: self.face_figures(),
            quality: self.quality_figures(),
            tracks: TrackFigures {
                tracks: self.tracks,
                duration_s: Spread::of(self.durations.iter().copied()),
                id_switches: self.id_switches,
                lost: self.lost_gaps.len(),
                longest_lost_s: self.lost_gaps.iter().copied().reduce(f32::max),
            },
            timeline: self.timeline(),
            va_by_track: self.va.clone(),
            raw: self.raw_readings(),
        }
    }

    fn face_figures(&self) -> Option<FaceFigures> {
        let sizes: Vec<f32> = self.faces.iter().map(|f| f.size).collect();
        let size_px = Spread::of(sizes.iter().copied())?;
        let mut heatmap = vec![0u32; HEAT_COLS * HEAT_ROWS];
        for f in &self.faces {
            let c = ((f.centre[0].clamp(0.0, 0.9999)) * HEAT_COLS as f32) as usize;
            let r = ((f.centre[1].clamp(0.0, 0.9999)) * HEAT_ROWS as f32) as usize;
            heatmap[r * HEAT_COLS + c] += 1;
        }
        let top = (size_px.max * 1.1).max(size_px.min + 16.0);
        let lo = (size_px.min * 0.9).floor();
        Some(FaceFigures {
            readings: self.faces.len(),
            frames_with_faces: self.frame_faces.iter().filter(|&&n| n > 0).count(),
            most_faces_in_a_frame: self.frame_faces.iter().copied().max().unwrap_or(0),
            size_px,
            size_histogram: histogram(&sizes, lo, top.ceil(), 20),
            heatmap,
            roll_deg: Spread::of(self.faces.iter().map(|f| f.roll))?,
            score: Spread::of(self.faces.iter().map(|f| f.score))?,
        })
    }

    fn quality_figures(&self) -> Option<QualityFigures> {
        let q: Vec<FaceQuality> = self.faces.iter().filter_map(|f| f.quality).collect();
        let of = |g: fn(&FaceQuality) -> f32| Spread::of(q.iter().map(g));
        let bright: Vec<f32> = q.iter().map(|q| q.brightness).collect();
        Some(QualityFigures {
            face_brightness: of(|q| q.brightness)?,
            face_contrast: of(|q| q.contrast)?,
            scene_brightness: of(|q| q.scene_brightness)?,
            backlight_stops: of(|q| q.backlight_stops)?,
            sharpness: of(|q| q.sharpness)?,
            face_brightness_histogram: histogram(&bright, 0.0, 256.0, 32),
        })
    }

    fn timeline(&self) -> Vec<Second> {
        let mut by_second: BTreeMap<u32, (Vec<f32>, u32)> = BTreeMap::new();
        for (f, &n) in self.frames.iter().zip(&self.frame_faces) {
            let e = by_second.entry(f.wall_s.max(0.0) as u32).or_default();
            e.0.push(f.process_ms as f32);
            e.1 += n as u32;
        }
        by_second
            .into_iter()
            .map(|(s, (ms, faces))| Second {
                s,
                frames: ms.len() as u32,
                process_ms_p50: Spread::of(ms).map_or(0.0, |m| m.p50),
                faces,
            })
            .collect()
    }

    fn raw_readings(&self) -> Option<RawReadings> {
        if self.raw_n == 0 {
            return None;
        }
        let n = self.raw_n as f64;
        let r4 = |x: f64| ((x * 10_000.0).round() / 10_000.0) as f32;
        Some(RawReadings {
            readings: self.raw_n,
            mean_valence: r4(self.raw_sum[0] / n),
            mean_arousal: r4(self.raw_sum[1] / n),
            mean_probability: self.prob_sum.map(|s| r4(s / n)),
            mean_log_probability: self.logp_sum.map(|s| r4(s / n)),
            most_faces_at_once: self.frame_faces.iter().copied().max().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Landmarks, VaSource};
    use crate::track::core::TrackSummary;

    fn face(id: u64, x: f32, side: f32, valence: f32) -> FaceFacts {
        FaceFacts {
            track_id: id,
            detection: Detection {
                bbox: BBox::from_corners(x, 100.0, x + side, 100.0 + side),
                score: 0.99,
                landmarks: Landmarks {
                    left_eye: [x + 0.3 * side, 130.0],
                    right_eye: [x + 0.7 * side, 130.0 + 0.4 * side * 0.1763],
                    ..Landmarks::default()
                },
            },
            raw: Emotion::from_parts(
                [0.5, 0.2, 0.1, 0.05, 0.05, 0.05, 0.05],
                valence,
                0.1,
                VaSource::Derived,
            ),
            smoothed_va: [valence, 0.1],
            quality: None,
        }
    }

    fn frame(s: f64) -> FrameFacts {
        FrameFacts {
            wall_s: s,
            process_ms: 10.0,
            width: 640,
            height: 480,
        }
    }

    fn started(ids: &[u64]) -> FrameOutput {
        FrameOutput {
            started: ids.to_vec(),
            ..FrameOutput::default()
        }
    }

    fn ended(id: u64, d: f64) -> FrameOutput {
        FrameOutput {
            ended: vec![TrackSummary {
                track_id: id,
                duration_s: d,
                frames: 1,
                mean_valence: 0.0,
                mean_arousal: 0.0,
                dominant: crate::frame::Expression::Neutral,
            }],
            ..FrameOutput::default()
        }
    }

    #[test]
    fn sizes_positions_roll_and_raw_means_are_summed_up() {
        let mut s = Survey::new();
        s.observe(frame(0.0), &[face(1, 100.0, 60.0, 0.2)], &started(&[1]));
        s.observe(
            frame(0.1),
            &[face(1, 102.0, 80.0, 0.4)],
            &FrameOutput::default(),
        );
        s.observe(frame(0.2), &[], &FrameOutput::default());
        let f = s.figures();
        let faces = f.faces.unwrap();
        assert_eq!((faces.readings, faces.frames_with_faces), (2, 2));
        assert_eq!((faces.size_px.min, faces.size_px.max), (60.0, 80.0));
        assert!(
            (faces.roll_deg.p50 - 10.0).abs() < 0.1,
            "{:?}",
            faces.roll_deg
        );
        assert_eq!(faces.heatmap.iter().sum::<u32>(), 2);
        // Centres near (130..142, 130..140) of 640×480: column 3, row 3.
        assert_eq!(faces.heatmap[3 * HEAT_COLS + 3], 2);
        let raw = f.raw.unwrap();
        assert!((raw.mean_valence - 0.3).abs() < 1e-4);
        assert!((raw.mean_log_probability[0] - 0.5f32.ln()).abs() < 1e-3);
        assert_eq!(f.tracks.tracks, 1);
        assert_eq!(f.va_by_track[&1].len(), 2);
        // Thinned: points closer than the step are not kept.
        let mut thin = Survey::with_va_step(0.5);
        for i in 0..10 {
            let out = if i == 0 {
                started(&[1])
            } else {
                FrameOutput::default()
            };
            thin.observe(frame(i as f64 * 0.1), &[face(1, 100.0, 60.0, 0.2)], &out);
        }
        assert_eq!(thin.figures().va_by_track[&1].len(), 2);
        assert!(f.quality.is_none());
    }

    #[test]
    fn a_new_id_where_a_track_just_ended_is_an_id_switch_and_one_far_away_is_not() {
        let mut s = Survey::new();
        s.observe(frame(0.0), &[face(1, 100.0, 60.0, 0.0)], &started(&[1]));
        s.observe(frame(0.5), &[], &ended(1, 0.5));
        s.observe(frame(0.8), &[face(2, 105.0, 62.0, 0.0)], &started(&[2]));
        s.observe(frame(0.9), &[face(3, 400.0, 60.0, 0.0)], &started(&[3]));
        s.observe(frame(1.0), &[], &ended(2, 0.2));
        s.observe(frame(3.0), &[face(4, 105.0, 60.0, 0.0)], &started(&[4]));
        let t = s.figures().tracks;
        // Track 4 began 2 s after track 2 ended where it had been: a face
        // that went untracked, not an id switch.
        assert_eq!((t.tracks, t.id_switches, t.lost), (4, 1, 1));
        assert!((t.longest_lost_s.unwrap() - 2.2).abs() < 1e-5, "{t:?}");
        assert_eq!(t.duration_s.unwrap().count, 2);
    }

    #[test]
    fn a_face_untracked_for_seven_seconds_is_reported_lost_not_as_nothing() {
        let mut s = Survey::new();
        s.observe(frame(0.0), &[face(1, 100.0, 60.0, 0.0)], &started(&[1]));
        s.observe(
            frame(2.0),
            &[face(1, 100.0, 60.0, 0.0)],
            &FrameOutput::default(),
        );
        s.observe(frame(2.5), &[], &ended(1, 2.0));
        s.observe(frame(9.0), &[face(2, 102.0, 60.0, 0.0)], &started(&[2]));
        let t = s.figures().tracks;
        assert_eq!((t.id_switches, t.lost), (0, 1));
        assert_eq!(t.longest_lost_s, Some(7.0));
        // Past 30 s it is someone else (or no telling).
        s.observe(frame(10.0), &[], &ended(2, 1.0));
        s.observe(frame(45.0), &[face(3, 102.0, 60.0, 0.0)], &started(&[3]));
        assert_eq!(s.figures().tracks.lost, 1);
    }

    #[test]
    fn histograms_put_outliers_in_the_end_bins_and_spreads_use_nearest_rank() {
        let h = histogram(&[-5.0, 0.0, 9.9, 10.0, 99.0], 0.0, 20.0, 2);
        assert_eq!(h.iter().map(|b| b.count).collect::<Vec<_>>(), [3, 2]);
        let s = Spread::of((1..=100).map(|i| i as f32)).unwrap();
        assert_eq!((s.p1, s.p10, s.p50, s.max), (1.0, 10.0, 50.0, 100.0));
        assert!(Spread::of([f32::NAN]).is_none());
    }
}
