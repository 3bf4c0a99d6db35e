//! `fer-edge analyze`: still images in, one JSON line per image out.
//!
//! In: image files and folders (a folder's PNG/JPEG files, sorted by name).
//! Out: a JSON object per image on stdout, one line per file that could not
//! be read or decoded on stderr (the run goes on), and optionally an
//! annotated PNG per image. The caller turns the failure count into the
//! exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::annotate;
use crate::faces::FaceChain;
use crate::frame::{FaceReading, VaSource};

/// File extensions read from folders (files named explicitly are always tried).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Options of one `analyze` run.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    pub paths: Vec<PathBuf>,
    pub annotate_dir: Option<PathBuf>,
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
}

#[derive(Serialize)]
struct LandmarkReport {
    left_eye: [f32; 2],
    right_eye: [f32; 2],
    nose: [f32; 2],
    mouth_left: [f32; 2],
    mouth_right: [f32; 2],
}

/// The seven probabilities, in canonical order and named.
#[derive(Debug, Serialize)]
pub struct Probabilities {
    neutral: f32,
    happy: f32,
    sad: f32,
    surprise: f32,
    fear: f32,
    disgust: f32,
    anger: f32,
}

impl Probabilities {
    pub fn from_array(p: &[f32; 7]) -> Probabilities {
        let r = |v: f32| round(v, 4);
        Probabilities {
            neutral: r(p[0]),
            happy: r(p[1]),
            sad: r(p[2]),
            surprise: r(p[3]),
            fear: r(p[4]),
            disgust: r(p[5]),
            anger: r(p[6]),
        }
    }
}

/// Rounds for display: JSON consumers gain nothing from 9 digits.
pub fn round(v: f32, digits: i32) -> f32 {
    let k = 10f32.powi(digits);
    (v * k).round() / k
}

fn round_ms(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn face_report(f: &FaceReading) -> FaceReport {
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
    }
}

/// Expands files and folders into the list of images to read. A folder
/// contributes its files with an image extension, sorted by name; a path
/// that does not exist is reported as a failure.
pub fn expand_inputs(paths: &[PathBuf], err: &mut dyn Write) -> (Vec<PathBuf>, usize) {
    let mut files = Vec::new();
    let mut failed = 0;
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.is_file() && has_image_extension(f))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => {
                    let _ = writeln!(err, "error: {}: cannot list folder: {e}", p.display());
                    failed += 1;
                }
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            let _ = writeln!(err, "error: {}: no such file or folder", p.display());
            failed += 1;
        }
    }
    (files, failed)
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Reads and decodes one image file into RGB.
pub fn decode(path: &Path) -> Result<crate::frame::RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read file: {e}"))?;
    decode_bytes(&bytes)
}

/// Decodes PNG or JPEG bytes into RGB, refusing truncated JPEGs.
pub fn decode_bytes(bytes: &[u8]) -> Result<crate::frame::RgbImage, String> {
    let format = image::guess_format(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing;
        // a half-grey frame would then be analysed as if it were real.
        return Err(
            "cannot decode image: truncated JPEG (no end-of-image marker after the last scan)"
                .into(),
        );
    }
    let img = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| format!("cannot decode image: {e}"))?;
    Ok(img.to_rgb8())
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan
/// (FF DA). Inside entropy-coded data FF is always stuffed (FF 00) or a
/// restart marker, so FF D9 there is the real end.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(pos) => bytes[pos..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// Analyses every input, writing JSON lines to `out` and problems to `err`.
pub fn run(
    chain: &mut FaceChain,
    opts: &AnalyzeOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Summary> {
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
    for path in files {
        let t = Instant::now();
        let img = match decode(&path) {
            Ok(i) => i,
            Err(reason) => {
                writeln!(err, "error: {}: {reason}", path.display())?;
                failed += 1;
                continue;
            }
        };
        let decode_ms = t.elapsed().as_secs_f64() * 1000.0;
        let result = match chain.process(&img) {
            Ok(r) => r,
            Err(e) => {
                writeln!(err, "error: {}: {e}", path.display())?;
                failed += 1;
                continue;
            }
        };
        let shown = path.to_string_lossy();
        let report = ImageReport {
            image: &shown,
            width: img.width(),
            height: img.height(),
            faces: result.faces.iter().map(face_report).collect(),
            timings_ms: Timings {
                decode: round_ms(decode_ms),
                detect: round_ms(result.times.detect_ms),
                align: round_ms(result.times.align_ms),
                emotion: round_ms(result.times.emotion_ms),
            },
        };
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
        out.flush()?;
        if let Some(dir) = &opts.annotate_dir {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let target = dir.join(format!("{name}.annotated.png"));
            if let Err(e) = annotate::annotate(&img, &result.faces).save(&target) {
                writeln!(
                    err,
                    "error: {}: cannot write annotated image {}: {e}",
                    path.display(),
                    target.display()
                )?;
                failed += 1;
            }
        }
        analysed += 1;
    }
    Ok(Summary { analysed, failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_jpeg() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/group_t1.jpg"
        ))
        .unwrap()
    }

    #[test]
    fn a_whole_jpeg_decodes_and_a_truncated_one_is_refused() {
        let whole = real_jpeg();
        assert!(jpeg_is_complete(&whole));
        assert_eq!(decode_bytes(&whole).unwrap().dimensions(), (1280, 886));
        for cut in [3000, whole.len() / 2, whole.len() - 2] {
            let err = decode_bytes(&whole[..cut]).unwrap_err();
            assert!(err.contains("truncated JPEG"), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn a_truncated_png_is_refused() {
        let png = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/coffee.png"
        ))
        .unwrap();
        assert!(decode_bytes(&png).is_ok());
        let err = decode_bytes(&png[..png.len() / 2]).unwrap_err();
        assert!(err.contains("cannot decode"), "{err}");
    }

    #[test]
    fn bytes_that_are_no_image_are_refused() {
        assert!(decode_bytes(b"hello, world")
            .unwrap_err()
            .contains("cannot decode"));
        assert!(decode_bytes(b"").is_err());
    }
}
