//! `fer-edge eval`: how often the readings are right, on a labelled set,
//! through the real code path.
//!
//! In: a labelled set ([`dataset`]: class folders, the FER2013 CSV, the
//! AffectNet CSV), one or more model bundles and engines, and the mode:
//! end to end (the daemon's chain: detect → align → model; an image where
//! no face is found counts as wrong and is reported apart) or
//! `--whole-image` (the image is the face crop, resized to the model's
//! input: how FER2013 results are usually quoted). Out: one [`EvalRun`]
//! per model and engine (JSON on stdout: [`metrics::Scores`], valence and
//! arousal CCC/RMSE when the set has them, unreadable files named), and
//! with `--report DIR` a self-contained `report.html` ([`html`]) and
//! `report.json`.
//!
//! ```text
//! dataset::open ──> samples ──> FaceChain (process | read_whole) ──> Outcome ──> metrics::score
//! ```
//!
//! Wiring only: reading sets is in `dataset`, arithmetic in `metrics`,
//! drawing in `html`. Unreadable images are counted and named, never
//! fatal; an empty set is an error.

pub mod dataset;
pub mod html;
pub mod metrics;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::faces::{FaceChain, SetupError};
use crate::fileio::shown;
use crate::frame::{BBox, Expression, FaceReading, RgbImage};
use dataset::{Dataset, DatasetError, Pixels, Sample};
use metrics::{Dimension, Outcome, Scores};

/// Unreadable files named in a run's report (all are counted).
const NAMED_FAILURES: usize = 20;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    pub dataset: PathBuf,
    /// FER2013 CSV: keep rows of this `Usage`.
    pub usage: Option<String>,
    /// AffectNet CSV: the image root (default: the CSV's folder).
    pub images: Option<PathBuf>,
    /// The image is the face: no detection, no alignment.
    pub whole_image: bool,
    /// Score the first N samples only (0: all).
    pub limit: usize,
    /// Largest image file read, in bytes.
    pub max_image_bytes: u64,
}

/// Errors that stop an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("model {model} on {engine}: {source}")]
    Setup {
        model: String,
        engine: String,
        #[source]
        source: Box<SetupError>,
    },
    #[error("{path}: every one of the {count} image(s) was unreadable (first: {first})")]
    NothingRead {
        path: String,
        count: usize,
        first: String,
    },
}

/// The set, as the report states it.
#[derive(Debug, Clone, Serialize)]
pub struct SetInfo {
    pub path: String,
    pub format: &'static str,
    pub usage: Option<String>,
    pub samples: usize,
    /// Rows or files the set itself left out (bad rows, unlisted folders).
    pub skipped_rows: usize,
}

/// One model on one engine over the set.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRun {
    pub model: String,
    pub model_path: String,
    pub model_sha256: String,
    pub engine: String,
    /// Which of the bundle's twins ran: `fp32` or `int8`.
    pub precision: &'static str,
    /// `end-to-end` or `whole-image`.
    pub mode: &'static str,
    /// `[calibration]` applied to the readings.
    pub calibrated: bool,
    pub dataset: SetInfo,
    #[serde(flatten)]
    pub scores: Scores,
    /// Valence/arousal against the set's labels (sets that have them).
    pub valence: Option<Dimension>,
    pub arousal: Option<Dimension>,
    /// Where the model's valence/arousal come from (`model` or `derived`).
    pub va_source: crate::frame::VaSource,
    pub unreadable: usize,
    /// The first unreadable files, each with its reason.
    pub unreadable_files: Vec<String>,
    pub seconds: f64,
    pub images_per_s: f64,
    /// Every image's reading, in the set's order (`eval --predictions`).
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// One image's reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub image: String,
    pub truth: Expression,
    /// The expression read, with its probability; None when no face was
    /// found or the image could not be read.
    pub reading: Option<(Expression, f32)>,
    /// Why the image could not be read.
    pub error: Option<String>,
}

impl Prediction {
    /// The reading of `sample`: the class its scored outcome predicts (the
    /// confusion matrix's own rule) with that class's probability, or why
    /// there is none.
    fn of(sample: &Sample, outcome: Option<&Outcome>, error: Option<String>) -> Prediction {
        let reading = outcome.and_then(|o| {
            let e = o.predicted()?;
            Some((e, o.probabilities?[e.index()]))
        });
        Prediction {
            image: sample.id.clone(),
            truth: sample.truth,
            reading,
            error,
        }
    }

    /// The CSV header of [`Self::csv_row`].
    pub const CSV_HEADER: &'static str =
        "model,engine,precision,image,label,prediction,confidence,face_found,error";

    /// One CSV row (RFC 4180 quoting) for `run`'s model and engine.
    pub fn csv_row(&self, run: &EvalRun) -> String {
        let q = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let (pred, conf) = match self.reading {
            Some((e, p)) => (e.name().to_string(), format!("{p:.4}")),
            None => (String::new(), String::new()),
        };
        format!(
            "{},{},{},{},{},{},{},{},{}",
            q(&run.model),
            q(&run.engine),
            run.precision,
            q(&self.image),
            self.truth.name(),
            pred,
            conf,
            self.error.is_none() && self.reading.is_some(),
            q(self.error.as_deref().unwrap_or(""))
        )
    }
}

impl EvalOptions {
    pub fn mode(&self) -> &'static str {
        if self.whole_image {
            "whole-image"
        } else {
            "end-to-end"
        }
    }
}

/// Opens the set once; [`run`] scores it per model and engine.
pub fn open(opts: &EvalOptions) -> Result<Dataset, EvalError> {
    Ok(dataset::open(
        &opts.dataset,
        opts.usage.as_deref(),
        opts.images.as_deref(),
        opts.limit,
    )?)
}

/// Scores one config (its `[emotion] model` and engines) over the set.
/// `tick` is called after every sample (progress).
pub fn run(
    cfg: &Config,
    set: &Dataset,
    opts: &EvalOptions,
    tick: &mut dyn FnMut(),
) -> Result<EvalRun, EvalError> {
    let mut cfg = cfg.clone();
    // Stills: every image is detected on this thread.
    cfg.follow.background = false;
    let model = shown(&cfg.emotion.model);
    let mut chain = FaceChain::from_config(&cfg).map_err(|source| EvalError::Setup {
        model: model.clone(),
        engine: cfg.inference.backend.clone(),
        source: Box::new(source),
    })?;
    let t0 = Instant::now();
    let mut outcomes = Vec::with_capacity(set.samples.len());
    let (mut valence, mut arousal) = (Vec::new(), Vec::new());
    let mut unreadable = Vec::new();
    let mut predictions = Vec::with_capacity(set.samples.len());
    for s in &set.samples {
        let p = match read(&mut chain, s, opts) {
            Ok(reading) => {
                if let (Some([v, a]), Some((_, ev, ea))) = (s.va, reading) {
                    valence.push((ev, v));
                    arousal.push((ea, a));
                }
                outcomes.push(Outcome {
                    truth: s.truth,
                    probabilities: reading.map(|(p, _, _)| p),
                });
                Prediction::of(s, outcomes.last(), None)
            }
            Err(reason) => {
                unreadable.push(format!("{}: {reason}", s.id));
                Prediction::of(s, None, Some(reason))
            }
        };
        predictions.push(p);
        tick();
    }
    let seconds = t0.elapsed().as_secs_f64();
    let Some(scores) = metrics::score(&outcomes) else {
        return Err(EvalError::NothingRead {
            path: shown(&opts.dataset),
            count: unreadable.len(),
            first: unreadable.first().cloned().unwrap_or_default(),
        });
    };
    let manifest = chain.emotion_model().manifest();
    let used = chain.emotion_model().precision().used;
    Ok(EvalRun {
        model: manifest.name.clone(),
        model_path: model,
        model_sha256: match (&manifest.int8, used) {
            (Some(q), crate::emotion::Precision::Int8) => q.sha256.clone(),
            _ => manifest.sha256.clone(),
        },
        engine: chain.engine_label(),
        precision: crate::emotion::precision::name(used),
        mode: opts.mode(),
        calibrated: chain.is_calibrated(),
        dataset: SetInfo {
            path: shown(&opts.dataset),
            format: set.format,
            usage: opts.usage.clone(),
            samples: set.samples.len(),
            skipped_rows: set.skipped.len(),
        },
        scores,
        valence: metrics::dimension(&valence),
        arousal: metrics::dimension(&arousal),
        va_source: manifest.va_source,
        unreadable: unreadable.len(),
        unreadable_files: unreadable.into_iter().take(NAMED_FAILURES).collect(),
        images_per_s: outcomes.len() as f64 / seconds.max(1e-9),
        seconds,
        predictions,
    })
}

/// One sample's reading: `Ok(None)` when no face was found, `Err` when the
/// image cannot be read or run.
fn read(
    chain: &mut FaceChain,
    s: &Sample,
    opts: &EvalOptions,
) -> Result<Option<([f32; 7], f32, f32)>, String> {
    let img = pixels(&s.pixels, opts.max_image_bytes)?;
    if opts.whole_image {
        let face = match s.face {
            Some(b) => crop(&img, &b).ok_or("the labelled face box lies outside the image")?,
            None => img,
        };
        let e = chain.read_whole(&face).map_err(|e| e.to_string())?;
        return Ok(Some((e.probabilities, e.valence, e.arousal)));
    }
    let result = chain.process(&img).map_err(|e| e.to_string())?;
    Ok(pick(result.faces(), s.face.as_ref()).map(|f| {
        (
            f.emotion.probabilities,
            f.emotion.valence,
            f.emotion.arousal,
        )
    }))
}

/// The face a label is about: the one overlapping the labelled box most
/// (none overlapping: not found), or the largest when the set gives no box.
pub fn pick<'a>(faces: &'a [FaceReading], labelled: Option<&BBox>) -> Option<&'a FaceReading> {
    match labelled {
        Some(b) => faces
            .iter()
            .map(|f| (f.detection.bbox.iou(b), f))
            .filter(|(iou, _)| *iou > 0.0)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, f)| f),
        None => faces
            .iter()
            .max_by(|a, b| a.detection.bbox.area().total_cmp(&b.detection.bbox.area())),
    }
}

fn pixels(p: &Pixels, limit: u64) -> Result<RgbImage, String> {
    match p {
        Pixels::File(path) => crate::imageio::decode_limited(path, limit),
        Pixels::Gray {
            width,
            height,
            data,
        } => {
            let grey = image::GrayImage::from_raw(*width, *height, data.clone())
                .ok_or("pixel count does not match the size")?;
            Ok(image::DynamicImage::ImageLuma8(grey).into_rgb8())
        }
    }
}

/// The box, clamped to the image; `None` when nothing of it is inside.
fn crop(img: &RgbImage, b: &BBox) -> Option<RgbImage> {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let x0 = b.x.max(0.0).floor();
    let y0 = b.y.max(0.0).floor();
    let x1 = (b.x + b.w).min(w).ceil();
    let y1 = (b.y + b.h).min(h).ceil();
    if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
        return None;
    }
    Some(
        image::imageops::crop_imm(
            img,
            x0 as u32,
            y0 as u32,
            (x1 - x0) as u32,
            (y1 - y0) as u32,
        )
        .to_image(),
    )
}

/// The progress bar of one run, labelled with the model and engine.
pub fn progress_bar(total: usize, cfg: &Config) -> indicatif::ProgressBar {
    let model = cfg
        .emotion
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::progress::bar(
        total as u64,
        format!("eval {model} on {}", cfg.inference.backend),
        "images",
    )
}

/// Writes `report.html` and `report.json` for the runs into `dir`.
pub fn write_report(dir: &Path, runs: &[EvalRun]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(runs).map_err(std::io::Error::other)?;
    crate::fileio::write_atomic(&dir.join("report.json"), json.as_bytes())?;
    crate::fileio::write_atomic(&dir.join("report.html"), html::render(runs).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Detection, Emotion, Landmarks, VaSource};

    fn face(x: f32, w: f32) -> FaceReading {
        FaceReading {
            detection: Detection {
                bbox: BBox { x, y: 0.0, w, h: w },
                score: 0.9,
                landmarks: Landmarks::default(),
            },
            emotion: Emotion::from_parts([1.0 / 7.0; 7], 0.0, 0.0, VaSource::Derived),
            held_from: None,
        }
    }

    #[test]
    fn the_labelled_box_picks_its_face_and_otherwise_the_largest() {
        let faces = [face(0.0, 50.0), face(100.0, 30.0)];
        let near_second = BBox {
            x: 105.0,
            y: 0.0,
            w: 30.0,
            h: 30.0,
        };
        assert_eq!(
            pick(&faces, Some(&near_second)).unwrap().detection.bbox.x,
            100.0
        );
        assert_eq!(pick(&faces, None).unwrap().detection.bbox.w, 50.0);
        let elsewhere = BBox {
            x: 500.0,
            y: 500.0,
            w: 10.0,
            h: 10.0,
        };
        assert!(pick(&faces, Some(&elsewhere)).is_none());
        assert!(pick(&[], None).is_none());
    }

    #[test]
    fn crops_are_clamped_to_the_image() {
        let img = RgbImage::new(100, 80);
        let c = crop(
            &img,
            &BBox {
                x: -10.0,
                y: 70.0,
                w: 50.0,
                h: 50.0,
            },
        )
        .unwrap();
        assert_eq!(c.dimensions(), (40, 10));
        assert!(crop(
            &img,
            &BBox {
                x: 200.0,
                y: 0.0,
                w: 5.0,
                h: 5.0
            }
        )
        .is_none());
    }
}
