//! `fer-edge bench`: the real stages on replayed frames, timed.
//!
//! In: a folder of frames replayed as one video (default the bundled
//! 640×480 sequence with one face), the config and optionally another model
//! bundle. Each frame goes through exactly what the daemon does with it:
//! the [`TrackCore`] plans it (full detection, or following the faces it
//! tracks), the chain runs that plan, the core tracks and smooths, and the
//! messages are serialised. Out: per stage (decode, detect, follow, align,
//! emotion per face, track+smooth, serialise) the median, p90 and p99 in
//! milliseconds; end-to-end times of detection frames and followed frames
//! apart; the amortised frames/s and faces/s; peak RSS; and the work done:
//! the faces a full detection finds on each frame and the share of them the
//! run read on its timed frames (`coverage`; runs that read different work
//! are not compared); as text or JSON. `--model-only` times just the
//! emotion model on one aligned crop, the number to compare engines on;
//! `--batch 1,6,12` times it on that many faces at once, the way the daemon
//! reads a frame's faces (one call where the engine batches), per face.
//! Benchmarks, not tests:
//! nothing here fails on a slow machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::faces::{FaceChain, SetupError};
use crate::follow::Follower;
use crate::frame::{FrameStamp, RgbImage};
use crate::host::{machine, peak_rss_mb};
use crate::imageio;
use crate::publish::announce::Announcer;
use crate::telemetry::{Percentiles, Stage};
use crate::track::core::FrameOutput;

/// Options of one bench run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub frames: PathBuf,
    pub runs: usize,
    pub model_only: bool,
    /// `--model-only`: faces per call, each timed side by side (empty: 1).
    pub batch: Vec<usize>,
}

/// Errors of the bench command.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{0}")]
    Input(String),
    #[error("frame processing failed: {0}")]
    Frame(#[from] crate::faces::FrameError),
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub backend: String,
    pub model: String,
    /// Which of the bundle's twins ran (`fp32` or `int8`), and why.
    pub precision: String,
    pub precision_reason: String,
    pub model_input: String,
    pub frames: Vec<String>,
    pub runs: usize,
    /// `--model-only`: faces per call of the model (1 otherwise).
    pub batch: usize,
    pub faces_per_frame: Vec<usize>,
    /// Per frame, under the daemon's stage names (`decode` and `serialise`
    /// are the bench's own: the daemon's sources decode in `capture`).
    pub stages_ms: BTreeMap<String, Percentiles>,
    /// Per face read: `align` and `emotion` divided by the faces the frame
    /// aligned and read.
    pub per_face_ms: BTreeMap<String, Percentiles>,
    /// Every frame, detection and followed frames together.
    pub end_to_end_ms: Percentiles,
    /// Frames that ran the full detector.
    pub detection_frames: FrameKind,
    /// Frames that only followed the tracked faces.
    pub followed_frames: FrameKind,
    /// `[follow] interval`: frames followed between full detections.
    pub interval: u32,
    /// `[follow] background`: full detections on their own thread.
    pub background: bool,
    /// `[follow] expression_rate_hz`: most readings per face and second
    /// (0: every frame), at the frame times of `[source] fps`.
    pub expression_rate_hz: f64,
    /// `[source] fps`: the frame times the rate applies to.
    pub source_fps: f64,
    /// Of the faces found on the timed frames, the share aligned and read
    /// on that frame (the others kept their held reading).
    pub read_share: f64,
    /// Faces a full detection finds on each frame (the work).
    pub expected_faces_per_frame: Vec<usize>,
    /// Of those faces, on the timed frames, the share this engine read
    /// (1 = all): a frame rate counts only with the faces read.
    pub coverage: f64,
    /// Frames run before the first one with all its faces read, per round
    /// summed: not timed (the background detector's first result).
    pub untimed_frames: usize,
    /// Amortised over detection and followed frames.
    pub frames_per_s: f64,
    pub faces_per_s: f64,
    pub peak_rss_mb: f64,
}

/// End-to-end times of one kind of frame.
#[derive(Debug, Serialize)]
pub struct FrameKind {
    pub frames: usize,
    pub end_to_end_ms: Percentiles,
}

/// One engine's chain and what was measured on it.
struct EngineBench {
    /// The daemon's per-frame path: chain and track core.
    follower: Follower,
    /// `--model-only`: the aligned crops the emotion model reads in one
    /// call (copies of one face, as many as the batch).
    crops: Vec<RgbImage>,
    stages: BTreeMap<Stage, Vec<f64>>,
    per_face: BTreeMap<Stage, Vec<f64>>,
    e2e: Vec<f64>,
    e2e_detected: Vec<f64>,
    e2e_followed: Vec<f64>,
    faces_per_frame: Vec<usize>,
    /// Faces a full detection finds on each frame: the work every engine
    /// must do for its frame rate to count.
    expected_faces: Vec<usize>,
    /// Over the timed frames: faces read up to the expected number per
    /// frame, and the expected number.
    covered_faces: usize,
    expected_timed: usize,
    /// Frames run before the first frame with all its faces read (not timed).
    untimed_frames: usize,
    total_faces: usize,
    /// Of `total_faces`, those aligned and read on their frame.
    total_read: usize,
    /// Time spent in this engine's rounds only (rounds interleave engines).
    busy_s: f64,
}

/// One frame's measurements, committed once the round knows whether the
/// frame is timed.
struct FrameTimes {
    index: usize,
    faces: usize,
    read: usize,
    stages: Vec<(Stage, f64)>,
    e2e: f64,
    detected: bool,
}

/// Encoded frames (PNG/JPEG bytes), each with a name for the report.
pub type Frames = Vec<(PathBuf, Vec<u8>)>;

fn read_frames(dir: &std::path::Path) -> Result<Frames, BenchError> {
    let mut sink = Vec::new();
    let (files, _) = imageio::expand_inputs(std::slice::from_ref(&dir.to_path_buf()), &mut sink);
    if files.is_empty() {
        return Err(BenchError::Input(format!(
            "{}: no PNG/JPEG frames to replay",
            dir.display()
        )));
    }
    files
        .iter()
        .map(|f| {
            crate::fileio::read_bounded(f, crate::fileio::IMAGE_LIMIT_DEFAULT, "one frame", "")
                .map(|b| (f.clone(), b))
                .map_err(|e| BenchError::Input(e.to_string()))
        })
        .collect()
}

impl EngineBench {
    /// Loads the chain and warms it up on the frames.
    /// `batch`: `Some(faces per call)` for `--model-only`.
    fn new(cfg: &Config, frames: &Frames, batch: Option<usize>) -> Result<EngineBench, BenchError> {
        let model_only = batch.is_some();
        let mut follower = Follower::from_config(cfg)?;
        let chain = follower.chain_mut();
        let mut crops = Vec::new();
        let mut expected_faces = Vec::new();
        if let Some(n) = batch {
            let img = imageio::decode_bytes(&frames[0].1).map_err(BenchError::Input)?;
            let first = chain.process(&img)?;
            let reading = first.faces().first().ok_or_else(|| {
                BenchError::Input(format!(
                    "{}: no face to align for --model-only",
                    frames[0].0.display()
                ))
            })?;
            let c = chain
                .aligned_crop(&img, reading)
                .ok_or_else(|| BenchError::Input("the face could not be aligned".into()))?;
            crops = vec![c; n.max(1)];
            for _ in 0..3 {
                chain_infer(chain, &crops)?;
            }
        } else {
            // The work: what a full detection finds on each frame.
            for (_, bytes) in frames.iter() {
                let img = imageio::decode_bytes(bytes).map_err(BenchError::Input)?;
                expected_faces.push(chain.process(&img)?.faces().len());
            }
            // Warm-up, the way the rounds run: prepares the detector's
            // pyramid (on the detector thread when it has one) and the
            // followers' run states.
            for (i, (_, bytes)) in frames.iter().take(2).enumerate() {
                let img = imageio::decode_bytes(bytes).map_err(BenchError::Input)?;
                follower.step(i as f64 / cfg.source.fps, &img)?;
            }
            follower.restart();
        }
        Ok(EngineBench {
            follower,
            crops,
            stages: BTreeMap::new(),
            per_face: BTreeMap::new(),
            e2e: Vec::new(),
            e2e_detected: Vec::new(),
            e2e_followed: Vec::new(),
            faces_per_frame: vec![0; if model_only { 1 } else { frames.len() }],
            expected_faces,
            covered_faces: 0,
            expected_timed: 0,
            untimed_frames: 0,
            total_faces: 0,
            total_read: 0,
            busy_s: 0.0,
        })
    }

    /// One timed call of the emotion model on the aligned crops.
    fn model_round(&mut self) -> Result<(), BenchError> {
        let n = self.crops.len();
        let t = Instant::now();
        chain_infer(self.follower.chain_mut(), &self.crops)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        self.stages.entry(Stage::Emotion).or_default().push(ms);
        self.per_face
            .entry(Stage::Emotion)
            .or_default()
            .push(ms / n as f64);
        self.e2e.push(ms);
        self.busy_s += ms / 1000.0;
        self.faces_per_frame = vec![n];
        self.total_faces += n;
        self.total_read += n;
        self.covered_faces += n;
        self.expected_timed += n;
        Ok(())
    }

    /// One pass over every frame, as the daemon processes a video: the
    /// track core plans each frame, the chain runs the plan, the core
    /// tracks and smooths, the messages are serialised. Frame times come
    /// from `[source] fps`. With a background detector the frames arrive
    /// at that rate, as from a camera (a detection then finishes a few
    /// frames after the one it read, as it would live); the waiting is not
    /// counted. Without one they come as fast as they are processed.
    ///
    /// Timing starts at the first frame on which every face a full
    /// detection finds there is read: before it, a slow background
    /// detector would be timed on frames where it read nobody (a frame
    /// rate without faces is not one). A round that never reads them all
    /// is timed whole, and its coverage says so.
    fn pipeline_round(&mut self, frames: &Frames) -> Result<(), BenchError> {
        self.follower.restart();
        let paced = self.follower.chain().detects_in_background();
        let t_round = Instant::now();
        let fps = self.follower.config().source.fps;
        // The daemon's own announcer: shaped and worded by the same `[mqtt]` keys.
        let mut announcer = crate::publish::announcer(
            &self.follower.config().mqtt,
            self.follower
                .chain()
                .emotion_model()
                .manifest()
                .name
                .clone(),
            false,
        );
        let mut round = Vec::with_capacity(frames.len());
        let mut first_full = None;
        for (i, (_, bytes)) in frames.iter().enumerate() {
            let t = i as f64 / fps;
            if paced {
                let due = std::time::Duration::from_secs_f64(t);
                std::thread::sleep(due.saturating_sub(t_round.elapsed()));
            }
            let t0 = Instant::now();
            let img = imageio::decode_bytes(bytes).map_err(BenchError::Input)?;
            let t_decode = t0.elapsed().as_secs_f64() * 1000.0;
            let step = self.follower.step(t, &img)?;
            let (n, read, out) = (step.faces, step.read, &step.output);
            // Frames that waited for a full detection (none with a background detector).
            let detected = step.detected_inline();
            let t_ser = announce(&mut announcer, out, (i, t), &img, t0);
            let mut stages = vec![(Stage::Decode, t_decode)];
            stages.extend(step.stage_times());
            stages.push((Stage::Serialise, t_ser));
            if first_full.is_none() && n >= self.expected_faces[i] {
                first_full = Some(round.len());
            }
            round.push(FrameTimes {
                index: i,
                faces: n,
                read,
                stages,
                e2e: t0.elapsed().as_secs_f64() * 1000.0,
                detected,
            });
        }
        self.follower.finish();
        let timed = first_full.unwrap_or(0);
        self.untimed_frames += timed;
        for f in round.into_iter().skip(timed) {
            let expected = self.expected_faces[f.index];
            self.faces_per_frame[f.index] = f.faces;
            self.total_faces += f.faces;
            self.total_read += f.read;
            self.covered_faces += f.faces.min(expected);
            self.expected_timed += expected;
            for (k, v) in f.stages {
                if f.read > 0 && matches!(k, Stage::Align | Stage::Emotion) {
                    self.per_face.entry(k).or_default().push(v / f.read as f64);
                }
                self.stages.entry(k).or_default().push(v);
            }
            self.e2e.push(f.e2e);
            if f.detected {
                self.e2e_detected.push(f.e2e);
            } else {
                self.e2e_followed.push(f.e2e);
            }
            self.busy_s += f.e2e / 1000.0;
        }
        Ok(())
    }

    fn report(self, frames: &Frames, runs: usize) -> BenchReport {
        let chain = self.follower.chain();
        let m = chain.emotion_model().manifest();
        let secs = self.busy_s.max(1e-9);
        BenchReport {
            machine: machine(),
            backend: chain.engine_label(),
            model: format!(
                "{}@{}{}",
                m.name,
                m.version,
                if m.trained { "" } else { " (untrained)" }
            ),
            precision: crate::emotion::precision::name(chain.emotion_model().precision().used)
                .into(),
            precision_reason: chain.emotion_model().precision().reason.clone(),
            model_input: format!("{}x{} {:?}", m.input.width, m.input.height, m.input.color),
            frames: frames.iter().map(|f| f.0.display().to_string()).collect(),
            runs,
            batch: self.crops.len().max(1),
            faces_per_frame: self.faces_per_frame,
            stages_ms: self
                .stages
                .iter()
                .map(|(k, v)| (k.name().to_string(), Percentiles::of(v)))
                .collect(),
            per_face_ms: self
                .per_face
                .iter()
                .map(|(k, v)| (k.name().to_string(), Percentiles::of(v)))
                .collect(),
            end_to_end_ms: Percentiles::of(&self.e2e),
            detection_frames: FrameKind {
                frames: self.e2e_detected.len(),
                end_to_end_ms: Percentiles::of(&self.e2e_detected),
            },
            followed_frames: FrameKind {
                frames: self.e2e_followed.len(),
                end_to_end_ms: Percentiles::of(&self.e2e_followed),
            },
            interval: self.follower.config().follow.interval,
            background: self.follower.config().follow.background,
            expression_rate_hz: self.follower.config().follow.expression_rate_hz,
            source_fps: self.follower.config().source.fps,
            read_share: if self.total_faces == 0 {
                1.0
            } else {
                (self.total_read as f64 / self.total_faces as f64 * 1000.0).round() / 1000.0
            },
            expected_faces_per_frame: self.expected_faces,
            coverage: if self.expected_timed == 0 {
                1.0
            } else {
                (self.covered_faces as f64 / self.expected_timed as f64 * 1000.0).round() / 1000.0
            },
            untimed_frames: self.untimed_frames,
            frames_per_s: (self.e2e.len() as f64 / secs * 100.0).round() / 100.0,
            faces_per_s: (self.total_faces as f64 / secs * 100.0).round() / 100.0,
            peak_rss_mb: peak_rss_mb(),
        }
    }
}

/// Runs the benchmark: one report per config (engine), the engines taking
/// turns round by round so that a noisy machine slows them alike.
pub fn run(cfgs: &[Config], opts: &BenchOptions) -> Result<Vec<BenchReport>, BenchError> {
    let frames = read_frames(&opts.frames)?;
    if !opts.model_only {
        return run_on(cfgs, &frames, opts.runs, &[]);
    }
    let batch = if opts.batch.is_empty() {
        vec![1]
    } else {
        opts.batch.clone()
    };
    run_on(cfgs, &frames, opts.runs, &batch)
}

/// [`run`] on frames already in memory (`fer-edge calibrate` times the
/// frames its camera gave). `model_batches` not empty: `--model-only`,
/// each config at each batch size (one report each, engine by engine).
pub fn run_on(
    cfgs: &[Config],
    frames: &Frames,
    runs: usize,
    model_batches: &[usize],
) -> Result<Vec<BenchReport>, BenchError> {
    if frames.is_empty() {
        return Err(BenchError::Input("no frames to time".into()));
    }
    let model_only = !model_batches.is_empty();
    let mut benches = Vec::new();
    for c in cfgs {
        if model_only {
            for &n in model_batches {
                benches.push(EngineBench::new(c, frames, Some(n))?);
            }
        } else {
            benches.push(EngineBench::new(c, frames, None)?);
        }
    }
    let total = runs * benches.len() * if model_only { 1 } else { frames.len() };
    let bar = crate::progress::bar(total as u64, "bench".into(), "frames");
    for _ in 0..runs {
        for b in benches.iter_mut() {
            if model_only {
                b.model_round()?;
                bar.inc(1);
            } else {
                b.pipeline_round(frames)?;
                bar.inc(frames.len() as u64);
            }
        }
    }
    bar.finish_and_clear();
    Ok(benches
        .into_iter()
        .map(|b| b.report(frames, runs))
        .collect())
}

/// Coverage under which a frame rate is flagged: the faces were not read.
pub const MIN_COVERAGE: f64 = 0.8;

/// Whether reports did the same work: every one read at least
/// [`MIN_COVERAGE`] of the faces, and their coverages differ by at most 5
/// points. `Err` says which engine read what.
pub fn comparable(reports: &[BenchReport]) -> Result<(), String> {
    let lo = reports
        .iter()
        .map(|r| r.coverage)
        .fold(f64::INFINITY, f64::min);
    let hi = reports.iter().map(|r| r.coverage).fold(0.0, f64::max);
    if reports.is_empty() || (lo >= MIN_COVERAGE && hi - lo <= 0.05) {
        return Ok(());
    }
    let each = reports
        .iter()
        .map(|r| format!("{} read {:.0}%", label(r), r.coverage * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    Err(format!(
        "the runs did not read the same faces ({each} of the faces a full detection finds): their frame rates are not comparable; give the detector time (more --runs, a longer sequence) or compare with --background false"
    ))
}

fn label(r: &BenchReport) -> String {
    format!(
        "{}{}",
        r.backend,
        if r.background {
            " (background detector)"
        } else {
            ""
        }
    )
}

/// The daemon's announcer on one frame's output: its messages made and
/// serialised (not sent). Returns the milliseconds it took.
fn announce(
    announcer: &mut Announcer,
    out: &FrameOutput,
    (seq, t): (usize, f64),
    img: &RgbImage,
    captured: Instant,
) -> f64 {
    let t0 = Instant::now();
    let stamp = FrameStamp {
        unix: t,
        frame_time: t,
        frame_seq: seq as u64,
        width: img.width(),
        height: img.height(),
    };
    let bytes: usize = announcer
        .frame(out, Some((stamp, captured)), t)
        .iter()
        .map(|m| m.message().payload.len())
        .sum();
    std::hint::black_box(bytes);
    t0.elapsed().as_secs_f64() * 1000.0
}

fn chain_infer(chain: &mut FaceChain, crops: &[RgbImage]) -> Result<(), BenchError> {
    chain
        .infer_crops(crops)
        .map(|_| ())
        .map_err(|e| BenchError::Frame(crate::faces::FrameError::Emotion(e)))
}

/// Human-readable report.
pub fn text(r: &BenchReport) -> String {
    let mut s = format!(
        "machine: {}\nbackend: {}   model: {} ({}, {}){}\nframes: {} x {} runs, faces per frame {:?}\nfaces read: {:.0}% of those a full detection finds{}{}\n\n{:<18} {:>9} {:>9} {:>9}\n",
        r.machine, r.backend, r.model, r.model_input, r.precision,
        if r.batch > 1 { format!("   {} faces per call", r.batch) } else { String::new() },
        r.frames.len(), r.runs, r.faces_per_frame,
        r.coverage * 100.0,
        if r.untimed_frames > 0 { format!(" ({} frames before all faces were read not timed)", r.untimed_frames) } else { String::new() },
        if r.coverage < MIN_COVERAGE { "   WARNING: too few faces read; this frame rate is not the real one" } else { "" },
        "stage (ms)", "median", "p90", "p99"
    );
    // Pipeline order, then the per-face figures.
    let rows = Stage::ALL
        .iter()
        .filter_map(|st| Some((st.name().to_string(), r.stages_ms.get(st.name())?)))
        .chain(Stage::ALL.iter().filter_map(|st| {
            Some((
                format!("{} per face", st.name()),
                r.per_face_ms.get(st.name())?,
            ))
        }));
    for (k, p) in rows {
        s += &format!("{k:<18} {:>9.3} {:>9.3} {:>9.3}\n", p.p50, p.p90, p.p99);
    }
    for (label, p) in [
        (
            format!("detection frames ({})", r.detection_frames.frames),
            &r.detection_frames.end_to_end_ms,
        ),
        (
            format!("followed frames ({})", r.followed_frames.frames),
            &r.followed_frames.end_to_end_ms,
        ),
    ] {
        if p.samples > 0 {
            s += &format!("{label:<18} {:>9.3} {:>9.3} {:>9.3}\n", p.p50, p.p90, p.p99);
        }
    }
    s += &format!(
        "{:<18} {:>9.3} {:>9.3} {:>9.3}\n\nframes/s {:.2} (amortised, interval {}{})   faces/s {:.2}   peak RSS {:.1} MB\n",
        "end to end",
        r.end_to_end_ms.p50,
        r.end_to_end_ms.p90,
        r.end_to_end_ms.p99,
        r.frames_per_s,
        r.interval,
        if r.background { ", background detector" } else { "" },
        r.faces_per_s,
        r.peak_rss_mb
    );
    // `--model-only` reads one face, no video: no share of face-frames to tell.
    let video = r.detection_frames.frames + r.followed_frames.frames > 0;
    if r.expression_rate_hz > 0.0 && video {
        s += &format!(
            "expressions read on {:.0}% of face-frames (at most {} per face and second at {} frames/s; the others kept their last reading)\n",
            r.read_share * 100.0,
            r.expression_rate_hz,
            r.source_fps
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(backend: &str, coverage: f64) -> BenchReport {
        let kind = || FrameKind {
            frames: 0,
            end_to_end_ms: Percentiles::default(),
        };
        BenchReport {
            machine: String::new(),
            backend: backend.into(),
            model: String::new(),
            precision: "fp32".into(),
            precision_reason: String::new(),
            model_input: String::new(),
            frames: Vec::new(),
            runs: 1,
            batch: 1,
            faces_per_frame: Vec::new(),
            stages_ms: BTreeMap::new(),
            per_face_ms: BTreeMap::new(),
            end_to_end_ms: Percentiles::default(),
            detection_frames: kind(),
            followed_frames: kind(),
            interval: 10,
            background: true,
            expression_rate_hz: 5.0,
            source_fps: 15.0,
            read_share: 0.4,
            expected_faces_per_frame: Vec::new(),
            coverage,
            untimed_frames: 0,
            frames_per_s: 100.0,
            faces_per_s: 100.0,
            peak_rss_mb: 1.0,
        }
    }

    #[test]
    fn runs_that_read_different_faces_are_not_compared() {
        assert!(comparable(&[report("tract", 1.0), report("onnxruntime", 0.97)]).is_ok());
        // issue 19 case 13: tract read 0-4 of 6 faces, onnxruntime 4-6.
        let e = comparable(&[report("tract", 0.4), report("onnxruntime", 0.9)]).unwrap_err();
        assert!(
            e.contains("tract (background detector) read 40%") && e.contains("not comparable"),
            "{e}"
        );
        // One engine alone that read too few is flagged too.
        assert!(comparable(&[report("tract", 0.5)]).is_err());
        assert!(comparable(&[report("tract", 0.9), report("onnxruntime", 0.8)]).is_err());
    }

    #[test]
    fn the_text_report_warns_when_faces_were_not_read() {
        assert!(text(&report("tract", 0.5)).contains("WARNING: too few faces read"));
        assert!(!text(&report("tract", 0.95)).contains("WARNING"));
    }
}
