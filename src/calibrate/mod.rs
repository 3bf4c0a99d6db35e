//! `fer-edge calibrate`: the field tool for installing a device.
//!
//! In: the config (layered files), the source (camera or replay), a
//! duration and an output folder. It runs the real chain (detect or follow
//! → align → emotion → track → smooth) on the source for the duration,
//! measures the camera, the faces and their image quality ([`survey`],
//! [`quality`]), times every engine of this build on frames from the run
//! (`bench::run_on`), and judges it all ([`advice`]). Out, in the folder:
//! `calibration.toml` (only the keys it recommends changing, each with its
//! reason), `report.json` (every figure) and `report.html` (one
//! self-contained page with plots, [`html`]); and the advice on stdout.
//!
//! ```text
//! capture::feed::Feed ──(newest wins)──> Follower::step ──> Survey::observe
//!                                                        ──> figures ──┐
//! frames kept from the run ──> bench::run_on (each engine) ─────────────┴─> advise ──> files
//! ```
//!
//! The frames come through the daemon's own capture feed and
//! [`Follower`] (chain and track core), so what calibrate measures is what
//! the daemon does. Wiring only: the measuring is in `quality`/`survey`, the judging in
//! `advice`, the drawing in `html`. No face image is kept or written unless
//! `--save-frames` asks for a few annotated thumbnails; the frames timed
//! for speed stay in memory.

pub mod advice;
pub mod html;
pub mod quality;
pub mod survey;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::feed::{Feed, Take};
use crate::capture::{self, CameraInfo, CaptureError, FrameSource, SourceKind};
use crate::config::Config;
use crate::faces::{FaceChain, SetupError};
use crate::follow::Follower;
use crate::frame::RgbImage;
use crate::telemetry::Telemetry;
use crate::track::core::FrameOutput;
use advice::{Advice, CameraFigures, Context, EngineSpeed, Level, Setting, Variant};
use survey::{FaceFacts, Figures, FrameFacts, Survey};

/// Frames of the run kept (in memory) to time the engines on.
const SPEED_FRAMES: usize = 30;
/// Annotated thumbnails `--save-frames` writes at most.
const THUMBNAILS: usize = 6;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    pub duration: Duration,
    pub out: PathBuf,
    pub baseline: bool,
    pub save_frames: bool,
    /// Frames/s the speed advice aims at; default `[source] fps`.
    pub target_fps: Option<f64>,
    /// Rounds over the kept frames per engine; 0 times none.
    pub speed_runs: usize,
    /// The config files given (for the report, and to check the written
    /// file layers onto them).
    pub config_files: Vec<PathBuf>,
}

/// Why calibration could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("cannot write to the output folder {dir}: {source}; choose another --out or fix its permissions")]
    Output {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{0}")]
    Source(#[from] CaptureError),
    #[error("cannot start the capture thread: {0}")]
    Thread(std::io::Error),
}

/// An engine that could not be timed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unmeasured {
    pub engine: String,
    pub why: String,
}

/// Everything `report.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub fer_edge: String,
    /// Unix seconds when the run started.
    pub started_unix: f64,
    pub machine: String,
    pub config_files: Vec<String>,
    pub duration_requested_s: f64,
    pub model: String,
    pub engine: String,
    pub target_fps: f64,
    pub camera: CameraFigures,
    /// V4L2 devices present (camera sources only).
    pub cameras: Vec<CameraInfo>,
    pub figures: Figures,
    pub speed: Vec<EngineSpeed>,
    pub speed_unmeasured: Vec<Unmeasured>,
    pub advice: Vec<Advice>,
    pub settings: Vec<Setting>,
    pub calibration_toml: String,
    /// Annotated thumbnails written (`--save-frames`), relative to the folder.
    pub thumbnails: Vec<String>,
}

impl Report {
    /// True when a finding is a problem (no faces, no frames, a camera
    /// that vanished, no baseline when one was asked for).
    pub fn has_problems(&self) -> bool {
        self.advice.iter().any(|a| a.level == Level::Problem)
    }

    /// The advice as plain lines, worst first.
    pub fn advice_text(&self) -> String {
        self.advice
            .iter()
            .map(|a| format!("{:>7} [{}] {}\n", a.level.tag(), a.topic, a.text))
            .collect()
    }
}

/// What the run produced: the report, and where it was written (or why
/// it could not be).
pub struct Outcome {
    pub report: Report,
    pub written: Vec<PathBuf>,
    pub write_error: Option<CalibrateError>,
}

/// Checks the output folder can be written, creating it if needed.
pub fn prepare_output(dir: &Path) -> Result<(), CalibrateError> {
    let fail = |source| CalibrateError::Output {
        dir: crate::fileio::shown(dir),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    tempfile::Builder::new()
        .prefix(".fer-edge-calibrate")
        .tempfile_in(dir)
        .map(drop)
        .map_err(fail)
}

/// Runs a calibration: survey, speed, advice, files.
pub fn run(cfg: &Config, opts: &CalibrateOptions) -> Result<Outcome, CalibrateError> {
    prepare_output(&opts.out)?;
    cfg.source
        .validate_for_run()
        .map_err(CalibrateError::Config)?;
    // The survey reads the model's own numbers: a baseline is measured
    // against them, and the written file replaces any earlier one.
    let mut cfg_raw = cfg.clone();
    cfg_raw.calibration = Default::default();
    let source = capture::open(&cfg.source)?;
    let started_unix = crate::frame::unix_now();
    let mut follower = Follower::for_source(&cfg_raw, source.is_live())?;
    // The engines are timed as the run went (an unpaced replay detects on
    // the frame thread).
    let cfg_raw = follower.config().clone();
    // Say up front what the whole run costs: the survey, then the timing
    // of each engine on its frames (a "20 s" run once took 71 s unsaid).
    eprintln!(
        "calibrate: surveying {} for {:.0} s{}",
        source.describe(),
        opts.duration.as_secs_f64(),
        if opts.speed_runs > 0 {
            format!(
                ", then timing each engine on those frames ({} rounds; --speed-runs 0 skips it)",
                opts.speed_runs
            )
        } else {
            String::new()
        }
    );
    let run = survey_source(&mut follower, source, opts)?;
    drop(follower);
    let figures = run.survey.figures();
    let target_fps = opts.target_fps.unwrap_or(cfg.source.fps);
    let context = Context {
        min_face_size: cfg.detector.min_face_size,
        engine: cfg.inference.backend.clone(),
        stage_engines: cfg.detector.backend.is_some() || cfg.emotion.backend.is_some(),
        target_fps,
        baseline: opts.baseline,
    };
    let (speed, unmeasured) = time_engines(&cfg_raw, &figures, &run.speed_frames, opts);
    let unavailable: Vec<(String, String)> = unmeasured
        .iter()
        .map(|u| (u.engine.clone(), u.why.clone()))
        .collect();
    let (advice, settings) = advice::advise(advice::Inputs {
        figures: &figures,
        camera: &run.camera,
        speed: &speed,
        unavailable: &unavailable,
        context: &context,
    });
    let toml_text = advice::settings_toml(&toml_header(cfg, opts, figures.span_s), &settings);
    let m = cfg.emotion.model.display().to_string();
    let mut report = Report {
        fer_edge: env!("CARGO_PKG_VERSION").to_string(),
        started_unix,
        machine: crate::host::machine(),
        config_files: opts
            .config_files
            .iter()
            .map(|p| crate::fileio::shown(p))
            .collect(),
        duration_requested_s: opts.duration.as_secs_f64(),
        model: m,
        engine: cfg.inference.backend.clone(),
        target_fps,
        camera: run.camera,
        cameras: if cfg.source.kind == SourceKind::V4l2 {
            capture::list_cameras()
        } else {
            Vec::new()
        },
        figures,
        speed,
        speed_unmeasured: unmeasured,
        advice,
        settings,
        calibration_toml: toml_text,
        thumbnails: Vec::new(),
    };
    let (written, write_error) = match write_files(&mut report, &run.thumbnails, opts) {
        Ok(w) => (w, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    Ok(Outcome {
        report,
        written,
        write_error,
    })
}

/// The header of calibration.toml; `measured_s` is how long the source
/// really delivered (a replay may end before the asked duration).
fn toml_header(cfg: &Config, opts: &CalibrateOptions, measured_s: f64) -> Vec<String> {
    let asked = opts.duration.as_secs_f64();
    let span = if measured_s + 1.0 < asked {
        // A short replay's half second would print as "0 s".
        let digits = if measured_s < 10.0 { 1 } else { 0 };
        format!("{measured_s:.digits$} s (of {asked:.0} s asked: the source ended early)")
    } else {
        format!("{asked:.0} s")
    };
    let base: Vec<String> = opts
        .config_files
        .iter()
        .map(|p| format!("--config {}", crate::fileio::shown(p)))
        .collect();
    vec![
        format!(
            "Written by `fer-edge calibrate` {} from {span} of {}.",
            env!("CARGO_PKG_VERSION"),
            match cfg.source.kind {
                SourceKind::V4l2 => crate::fileio::shown(&cfg.source.device),
                SourceKind::Replay => cfg
                    .source
                    .path
                    .as_deref()
                    .map(crate::fileio::shown)
                    .unwrap_or_default(),
                SourceKind::Gstreamer => cfg
                    .source
                    .uri
                    .as_deref()
                    .map(crate::capture::redact)
                    .or_else(|| cfg.source.pipeline.clone())
                    .unwrap_or_default(),
                SourceKind::Ros2 => format!("ros2://{}", cfg.source.topic.as_deref().unwrap_or("")),
            }
        ),
        "Only the keys it recommends changing; each says why, with the measured number.".into(),
        format!(
            "Use it on top of the device's config: fer-edge run {} --config {}",
            if base.is_empty() {
                "--config /etc/fer-edge/fer-edge.toml".to_string()
            } else {
                base.join(" ")
            },
            crate::fileio::shown(&opts.out.join("calibration.toml"))
        ),
    ]
}

/// What the survey loop hands back.
struct SurveyRun {
    survey: Survey,
    camera: CameraFigures,
    speed_frames: crate::bench::Frames,
    thumbnails: Vec<(String, RgbImage)>,
}

fn survey_source(
    follower: &mut Follower,
    source: Box<dyn FrameSource>,
    opts: &CalibrateOptions,
) -> Result<SurveyRun, CalibrateError> {
    let requested_fps = follower.config().source.fps;
    // The daemon's recorder: the feed and every frame's stages count here.
    let telemetry = Arc::new(Telemetry::default());
    let feed = Feed::start(source, telemetry.clone()).map_err(CalibrateError::Thread)?;
    let t0 = Instant::now();
    // At most ~600 points per track for the valence/arousal plot.
    let mut survey = Survey::with_va_step((opts.duration.as_secs_f64() / 600.0).max(0.1));
    let mut clip = SpeedClip::default();
    let mut thumbnails = Vec::new();
    let total_s = opts.duration.as_secs_f64();
    let bar = crate::progress::bar(total_s.ceil() as u64, "calibrate".into(), "s");
    let show = |wall_s: f64, survey: &Survey| {
        bar.set_position(wall_s.min(total_s) as u64);
        bar.set_message(format!(
            "calibrate: {} frames, {} face readings",
            survey.frames(),
            survey.face_readings()
        ));
    };
    let deadline = t0 + opts.duration;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let frame = match feed.take_timeout(left.min(Duration::from_millis(200))) {
            Take::Frame(f) => f,
            Take::Empty => {
                show(t0.elapsed().as_secs_f64(), &survey);
                continue;
            }
            Take::Closed => break,
        };
        let step = match follower.step_recorded(frame.timestamp, &frame.image, &telemetry) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(seq = frame.seq, "frame skipped: {e}");
                continue;
            }
        };
        let process_ms = step.times.frame_ms;
        let img = &frame.image;
        let faces = face_facts(follower.chain(), img, &step.output);
        let wall_s = t0.elapsed().as_secs_f64();
        survey.observe(
            FrameFacts {
                wall_s,
                process_ms,
                width: img.width(),
                height: img.height(),
            },
            &faces,
            &step.output,
        );
        clip.offer(img, !faces.is_empty());
        let due = thumbnails.len() as f64 * total_s / THUMBNAILS as f64;
        if opts.save_frames && !faces.is_empty() && thumbnails.len() < THUMBNAILS && wall_s >= due {
            thumbnails.push(thumbnail(img, frame.seq, &step.output));
        }
        show(wall_s, &survey);
    }
    let describe = feed.describe().to_string();
    let live = feed.is_live();
    let count = feed.stop();
    // Frames the chain could not read, as the daemon counts them.
    let inference_errors = telemetry
        .snapshot()
        .stages
        .get(crate::telemetry::Stage::Inference.name())
        .map_or(0, |s| s.errors);
    survey.end(&follower.finish());
    bar.finish_and_clear();
    let camera = CameraFigures {
        source: describe,
        live,
        requested_fps,
        delivered: count.delivered,
        delivered_fps: (count.delivered_fps() * 100.0).round() / 100.0,
        skipped: count.skipped,
        dropped_by_source: count.dropped_by_source,
        frame_errors: count.frame_errors + inference_errors,
        outages: count.outages,
        ended_at_s: count.ended_at_s,
    };
    Ok(SurveyRun {
        survey,
        camera,
        speed_frames: clip.frames,
        thumbnails,
    })
}

/// Measures each confirmed face of a frame: its detection, raw and
/// smoothed readings, and image quality on its box and aligned crop.
fn face_facts(chain: &FaceChain, img: &RgbImage, out: &FrameOutput) -> Vec<FaceFacts> {
    if out.faces.is_empty() {
        return Vec::new();
    }
    let scene = quality::mean_luma(img, 4);
    out.faces
        .iter()
        .map(|f| FaceFacts {
            track_id: f.track_id,
            detection: f.reading.detection.clone(),
            raw: f.reading.emotion.clone(),
            smoothed_va: [f.smoothed.valence, f.smoothed.arousal],
            quality: chain
                .aligned_crop(img, &f.reading)
                .and_then(|crop| quality::measure(img, &f.reading.detection.bbox, &crop, scene)),
        })
        .collect()
}

/// An annotated copy of a frame (`--save-frames`), named by its sequence number.
fn thumbnail(img: &RgbImage, seq: u64, out: &FrameOutput) -> (String, RgbImage) {
    let readings: Vec<_> = out.faces.iter().map(|f| f.reading.clone()).collect();
    (
        format!("frame-{seq:05}.png"),
        crate::annotate::annotate(img, &readings),
    )
}

/// Up to [`SPEED_FRAMES`] consecutive frames to time the engines on,
/// JPEG encoded in memory as a camera's MJPEG would be: from the first
/// frame with a face (the run's first frames, for a run without faces).
#[derive(Default)]
struct SpeedClip {
    frames: crate::bench::Frames,
    from_a_face: bool,
}

impl SpeedClip {
    fn offer(&mut self, img: &RgbImage, has_face: bool) {
        if has_face && !self.from_a_face {
            self.frames.clear();
            self.from_a_face = true;
        }
        if self.frames.len() >= SPEED_FRAMES {
            return;
        }
        let mut bytes = Vec::new();
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90);
        match img.write_with_encoder(enc) {
            Ok(()) => {
                let name = PathBuf::from(format!("frame {}", self.frames.len()));
                self.frames.push((name, bytes));
            }
            Err(e) => tracing::warn!("cannot keep a frame for timing: {e}"),
        }
    }
}

/// Times every engine of this build on the kept frames, side by side, and
/// the configured engine again with the `min_face_size` the survey backs.
fn time_engines(
    cfg: &Config,
    figures: &Figures,
    frames: &crate::bench::Frames,
    opts: &CalibrateOptions,
) -> (Vec<EngineSpeed>, Vec<Unmeasured>) {
    let mut unmeasured = Vec::new();
    if opts.speed_runs == 0 {
        unmeasured.push(Unmeasured {
            engine: "all".into(),
            why: "not asked for (--speed-runs 0)".into(),
        });
        return (Vec::new(), unmeasured);
    }
    if frames.is_empty() {
        unmeasured.push(Unmeasured {
            engine: "all".into(),
            why: "no frame to time them on".into(),
        });
        return (Vec::new(), unmeasured);
    }
    let mut runs: Vec<(Config, String, Variant)> = Vec::new();
    for name in crate::infer::backend_names() {
        if let Err(e) = crate::infer::backend(name, &cfg.inference) {
            unmeasured.push(Unmeasured {
                engine: name.into(),
                why: e.to_string(),
            });
            continue;
        }
        let mut c = cfg.clone();
        c.inference.backend = name.into();
        c.detector.backend = None;
        c.emotion.backend = None;
        runs.push((c, name.into(), Variant::AsConfigured));
    }
    if let Some(f) = figures
        .faces
        .as_ref()
        .filter(|f| f.readings >= advice::MIN_FACE_READINGS)
    {
        let m = advice::min_face_size_for(&f.size_px);
        if m > cfg.detector.min_face_size * 1.05 {
            let mut c = cfg.clone();
            c.detector.min_face_size = m;
            let engine = c.inference.backend.clone();
            runs.push((c, engine, Variant::MinFaceSize(m as u32)));
        }
    }
    let cfgs: Vec<Config> = runs.iter().map(|r| r.0.clone()).collect();
    eprintln!(
        "calibrate: timing {} on {} frames of this run ({} rounds each)",
        runs.iter()
            .map(|r| format!("{} ({})", r.1, r.2))
            .collect::<Vec<_>>()
            .join(", "),
        frames.len(),
        opts.speed_runs
    );
    let timing = std::time::Instant::now();
    let timed = crate::bench::run_on(&cfgs, frames, opts.speed_runs, &[]);
    eprintln!(
        "calibrate: engines timed in {:.0} s",
        timing.elapsed().as_secs_f64()
    );
    match timed {
        Ok(reports) => {
            let speed = reports
                .into_iter()
                .zip(runs)
                .map(|(r, (_, engine, variant))| EngineSpeed {
                    engine,
                    variant,
                    frames_per_s: r.frames_per_s,
                    end_to_end_ms_p50: r.end_to_end_ms.p50,
                    stages_ms_p50: r
                        .stages_ms
                        .iter()
                        .map(|(k, p)| (k.clone(), p.p50))
                        .collect(),
                    coverage: r.coverage,
                })
                .collect();
            (speed, unmeasured)
        }
        Err(e) => {
            unmeasured.push(Unmeasured {
                engine: runs
                    .iter()
                    .map(|r| r.1.clone())
                    .collect::<Vec<_>>()
                    .join(","),
                why: e.to_string(),
            });
            (Vec::new(), unmeasured)
        }
    }
}

/// Writes the files; returns their paths.
fn write_files(
    report: &mut Report,
    thumbnails: &[(String, RgbImage)],
    opts: &CalibrateOptions,
) -> Result<Vec<PathBuf>, CalibrateError> {
    let dir = &opts.out;
    let fail = |source| CalibrateError::Output {
        dir: crate::fileio::shown(dir),
        source,
    };
    let mut written = Vec::new();
    let mut pngs = Vec::new();
    if !thumbnails.is_empty() {
        let frames = dir.join("frames");
        std::fs::create_dir_all(&frames).map_err(fail)?;
        for (name, img) in thumbnails {
            let small =
                image::imageops::thumbnail(img, 480, 480 * img.height() / img.width().max(1));
            let mut bytes = Vec::new();
            small
                .write_to(
                    &mut std::io::Cursor::new(&mut bytes),
                    image::ImageFormat::Png,
                )
                .map_err(|e| fail(std::io::Error::other(e)))?;
            let path = frames.join(name);
            crate::fileio::write_atomic(&path, &bytes).map_err(fail)?;
            report.thumbnails.push(format!("frames/{name}"));
            pngs.push((format!("frames/{name}"), bytes));
            written.push(path);
        }
    }
    let files = [
        (
            "calibration.toml",
            report.calibration_toml.clone().into_bytes(),
        ),
        (
            "report.json",
            serde_json::to_vec_pretty(&*report).expect("the report serialises"),
        ),
        ("report.html", html::render(report, &pngs).into_bytes()),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        crate::fileio::write_atomic(&path, &bytes).map_err(fail)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Frame;

    /// A camera that vanishes: frames, then `Unavailable` for a while (as
    /// the V4L2 source reports an unplugged device while it reopens it),
    /// then frames again, then gone for good. No camera can be unplugged
    /// on the build machine; this drives the same bookkeeping.
    struct Vanishing {
        script: Vec<bool>,
        at: usize,
    }

    impl FrameSource for Vanishing {
        fn describe(&self) -> String {
            "scripted camera".into()
        }
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            std::thread::sleep(Duration::from_millis(2));
            let up = self.script.get(self.at).copied().unwrap_or(false);
            self.at += 1;
            if up {
                Ok(Some(Frame {
                    seq: self.at as u64,
                    timestamp: self.at as f64 / 15.0,
                    captured_at: Instant::now(),
                    image: RgbImage::new(4, 4),
                    origin: None,
                }))
            } else {
                Err(CaptureError::Unavailable {
                    what: "/dev/video0".into(),
                    reason: "device disappeared (No such device)".into(),
                })
            }
        }
        fn is_live(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_camera_that_vanishes_is_counted_as_outages_and_the_run_goes_on() {
        let mut script = vec![true; 5];
        script.extend([false; 4]);
        script.extend([true; 5]);
        let feed = Feed::start(
            Box::new(Vanishing { script, at: 0 }),
            Arc::new(Telemetry::default()),
        )
        .unwrap();
        // 10 frames, then it is gone for good: stop the run after a while.
        let t = Instant::now();
        while feed.counts().delivered < 10 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        let c = feed.stop();
        assert_eq!(c.delivered, 10);
        assert_eq!(c.outages.len(), 2, "{:?}", c.outages);
        let (first, last) = (&c.outages[0], &c.outages[1]);
        assert!(first.to_s.unwrap() > first.from_s);
        assert!(last.to_s.is_none() && last.reason.contains("disappeared"));
        // The advice names it, worst first.
        let camera = CameraFigures {
            source: "scripted camera".into(),
            live: true,
            requested_fps: 15.0,
            delivered: c.delivered,
            delivered_fps: 15.0,
            skipped: c.skipped,
            dropped_by_source: 0,
            frame_errors: 0,
            outages: c.outages,
            ended_at_s: None,
        };
        let figures = Survey::new().figures();
        let ctx = Context {
            min_face_size: 20.0,
            engine: "tract".into(),
            stage_engines: false,
            target_fps: 15.0,
            baseline: false,
        };
        let (advice, _) = advice::advise(advice::Inputs {
            figures: &figures,
            camera: &camera,
            speed: &[],
            unavailable: &[],
            context: &ctx,
        });
        assert!(advice.iter().any(|a| a.level == Level::Problem
            && a.text.contains("unavailable 2 time(s)")
            && a.text.contains("had not come back")));
    }
}
