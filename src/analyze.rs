//! `fer-edge analyze`: still images in, one JSON line per image out.
//!
//! In: image files and folders (a folder's PNG/JPEG files, sorted by name).
//! Out: a JSON object per image on stdout, one line per file that could not
//! be read or decoded on stderr (the run goes on), and optionally an
//! annotated PNG per image. The caller turns the failure count into the
//! exit code.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::annotate;
use crate::faces::FaceChain;
use crate::fileio::{shown, IMAGE_LIMIT_DEFAULT};
use crate::frame::{FaceReading, VaSource};
use crate::imageio::{decode_limited, expand_inputs};
use crate::report::{round, Probabilities};

/// Options of one `analyze` run.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    pub paths: Vec<PathBuf>,
    pub annotate_dir: Option<PathBuf>,
    /// Largest image file read, in bytes (0: the default cap).
    pub max_image_bytes: u64,
}

/// How a run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub analysed: usize,
    pub failed: usize,
}

#[derive(Serialize)]
struct ImageReport<'a> {
    image: &'a str,
    width: u32,
    height: u32,
    faces: Vec<FaceReport>,
    timings_ms: Timings,
}

#[derive(Serialize)]
struct Timings {
    decode: f64,
    detect: f64,
    align: f64,
    emotion: f64,
}

#[derive(Serialize)]
struct FaceReport {
    bbox: [f32; 4],
    score: f32,
    landmarks: LandmarkReport,
    expression: &'static str,
    confidence: f32,
    probabilities: Probabilities,
    valence: f32,
    arousal: f32,
    va_source: VaSource,
    /// `[calibration]` applied to this reading.
    calibrated: bool,
}

#[derive(Serialize)]
struct LandmarkReport {
    left_eye: [f32; 2],
    right_eye: [f32; 2],
    nose: [f32; 2],
    mouth_left: [f32; 2],
    mouth_right: [f32; 2],
}

fn round_ms(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn face_report(f: &FaceReading, calibrated: bool) -> FaceReport {
    let b = f.detection.bbox;
    let l = &f.detection.landmarks;
    let p = |q: [f32; 2]| [round(q[0], 1), round(q[1], 1)];
    FaceReport {
        bbox: [round(b.x, 1), round(b.y, 1), round(b.w, 1), round(b.h, 1)],
        score: round(f.detection.score, 4),
        landmarks: LandmarkReport {
            left_eye: p(l.left_eye),
            right_eye: p(l.right_eye),
            nose: p(l.nose),
            mouth_left: p(l.mouth_left),
            mouth_right: p(l.mouth_right),
        },
        expression: f.emotion.expression.name(),
        confidence: round(f.emotion.confidence, 4),
        probabilities: Probabilities::from_array(&f.emotion.probabilities),
        valence: round(f.emotion.valence, 4),
        arousal: round(f.emotion.arousal, 4),
        va_source: f.emotion.va_source,
        calibrated,
    }
}

/// Why `analyze` stopped before the end of its inputs.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The results cannot be written (a closed pipe, a full disk): going on
    /// would lose them, so the run stops.
    #[error("cannot write the results to standard output ({source}): stopped after {analysed} of {total} image(s); nothing after the last complete line was written")]
    Output {
        source: std::io::Error,
        analysed: usize,
        total: usize,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Analyses every input, writing JSON lines to `out` and problems to `err`.
pub fn run(
    chain: &mut FaceChain,
    opts: &AnalyzeOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Summary, AnalyzeError> {
    let (files, mut failed) = expand_inputs(&opts.paths, err);
    if let Some(dir) = &opts.annotate_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot create --annotate folder {}: {e}", dir.display()),
            )
        })?;
    }
    let mut analysed = 0;
    let total = files.len();
    for path in files {
        let t = Instant::now();
        let limit = match opts.max_image_bytes {
            0 => IMAGE_LIMIT_DEFAULT,
            n => n,
        };
        let img = match decode_limited(&path, limit) {
            Ok(i) => i,
            Err(reason) => {
                writeln!(err, "error: {}: {reason}", shown(&path))?;
                failed += 1;
                continue;
            }
        };
        let decode_ms = t.elapsed().as_secs_f64() * 1000.0;
        let result = match chain.process(&img) {
            Ok(r) => r,
            Err(e) => {
                writeln!(err, "error: {}: {e}", shown(&path))?;
                failed += 1;
                continue;
            }
        };
        let image = shown(&path);
        let report = ImageReport {
            image: &image,
            width: img.width(),
            height: img.height(),
            faces: result
                .faces()
                .iter()
                .map(|f| face_report(f, chain.is_calibrated()))
                .collect(),
            timings_ms: Timings {
                decode: round_ms(decode_ms),
                detect: round_ms(result.times.detect_ms),
                align: round_ms(result.times.align_ms),
                emotion: round_ms(result.times.emotion_ms),
            },
        };
        let line = serde_json::to_string(&report).map_err(std::io::Error::other)?;
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|source| AnalyzeError::Output {
                source,
                analysed,
                total,
            })?;
        if let Some(dir) = &opts.annotate_dir {
            // The stem's own bytes: two non-UTF-8 names never collide.
            let mut name = path
                .file_stem()
                .map(|s| s.to_os_string())
                .unwrap_or_else(|| "image".into());
            name.push(".annotated.png");
            let target = dir.join(name);
            if let Err(e) = annotate::annotate(&img, result.faces()).save(&target) {
                writeln!(
                    err,
                    "error: {}: cannot write annotated image {}: {e}",
                    shown(&path),
                    shown(&target)
                )?;
                failed += 1;
            }
        }
        analysed += 1;
    }
    Ok(Summary { analysed, failed })
}
