//! The emotion stage: aligned face crop in, [`Emotion`] out.
//!
//! In: an aligned RGB crop of the bundle's input size. Out: probabilities
//! over the seven expressions in canonical order, the top expression, and
//! valence/arousal, either regressed by the model (Emotion-GCN) or derived
//! from the posterior and per-class anchors (models without a V/A head).
//! Owns the bundle, the prepared session and its input buffer.

use std::path::PathBuf;

use serde::Deserialize;

use crate::align::{AlignConfig, Framing};
use crate::frame::{Emotion, RgbImage, VaSource};
use crate::infer::{Backend, InferError, Session};

pub mod bundle;
pub mod calibration;
pub mod precision;

pub use self::bundle::{Bundle, BundleError, Color, Manifest, ScoreKind};
pub use self::precision::{Precision, PrecisionChoice};

/// `[emotion]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmotionConfig {
    /// Model bundle: a folder with `bundle.json` and the ONNX file.
    pub model: PathBuf,
    /// Engine for the emotion model; default `[inference] backend`.
    pub backend: Option<String>,
    /// `auto` (the bundle's int8 twin where it measures faster on this
    /// machine, see [`precision`]), `fp32` or `int8`.
    pub precision: Precision,
}

impl Default for EmotionConfig {
    fn default() -> Self {
        EmotionConfig {
            model: PathBuf::from("models/fernet-w32"),
            backend: None,
            precision: Precision::Auto,
        }
    }
}

impl EmotionConfig {
    /// The config for one bundle with every other key at its default.
    pub fn for_bundle(model: &std::path::Path) -> EmotionConfig {
        EmotionConfig {
            model: model.to_path_buf(),
            ..EmotionConfig::default()
        }
    }
}

impl EmotionConfig {
    /// Checks values without touching the file system.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(b) = &self.backend {
            crate::infer::validate_backend_name("emotion.backend", b)?;
        }
        Ok(())
    }
}

/// Errors of the emotion stage.
#[derive(Debug, thiserror::Error)]
pub enum EmotionError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("{path}: the model has no output named {name:?} (its outputs are {available:?}); fix outputs in bundle.json")]
    MissingOutput {
        path: PathBuf,
        name: String,
        available: Vec<String>,
    },
    #[error("{path}: input.name is {name:?} but the model's input is {available:?}; fix input.name in bundle.json")]
    MissingInput {
        path: PathBuf,
        name: String,
        available: Vec<String>,
    },
    #[error("{path}: output {name:?} has shape {got:?}, expected {want:?}")]
    OutputShape {
        path: PathBuf,
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("{path}: emotion.precision = \"int8\" but this bundle has no int8 twin; set precision = \"auto\" or \"fp32\", or add one with `python -m emotion_gcn.fer2013 quantize --bundle …` (tools/emotion_gcn)")]
    NoInt8 { path: PathBuf },
    #[error("aligned crop is {got:?} but the model takes {want:?}")]
    CropSize { got: (u32, u32), want: (u32, u32) },
}

/// A loaded, checked emotion model.
pub struct EmotionModel {
    bundle: Bundle,
    session: Box<dyn Session>,
    precision: PrecisionChoice,
    expr_ix: usize,
    va_ix: Option<usize>,
    input: Vec<f32>,
}

impl EmotionModel {
    /// Opens the bundle, loads it on `backend` and checks its output shapes.
    pub fn from_config(
        cfg: &EmotionConfig,
        backend: &dyn Backend,
    ) -> Result<EmotionModel, EmotionError> {
        let bundle = Bundle::open(&cfg.model)?;
        let m = &bundle.manifest;
        // The manifest must describe the file: checked on the ONNX graph
        // itself, whatever the engine (some feed inputs by position).
        let signature = crate::infer::onnx_signature(&bundle.model_path)?;
        if !signature.inputs.contains(&m.input.name) {
            return Err(EmotionError::MissingInput {
                path: bundle.manifest_path.clone(),
                name: m.input.name.clone(),
                available: signature.inputs,
            });
        }
        let ch = m.input.color.channels();
        let shape = [1, ch, m.input.height as usize, m.input.width as usize];
        let (session, precision) = choose_twin(cfg.precision, &bundle, backend, &shape)?;
        let find = |name: &str, want: &[usize]| -> Result<usize, EmotionError> {
            let outs = session.outputs();
            let ix = outs.iter().position(|o| o.name == name).ok_or_else(|| {
                EmotionError::MissingOutput {
                    path: bundle.manifest_path.clone(),
                    name: name.to_string(),
                    available: outs.iter().map(|o| o.name.clone()).collect(),
                }
            })?;
            if outs[ix].shape != want {
                return Err(EmotionError::OutputShape {
                    path: bundle.model_path.clone(),
                    name: name.to_string(),
                    got: outs[ix].shape.clone(),
                    want: want.to_vec(),
                });
            }
            Ok(ix)
        };
        let expr_ix = find(&m.outputs.expressions, &[1, 7])?;
        let va_ix = match (&m.va_source, &m.outputs.va) {
            (VaSource::Model, Some(name)) => Some(find(name, &[1, 2])?),
            _ => None,
        };
        if !m.trained {
            tracing::warn!(
                model = %bundle.manifest_path.display(),
                "THIS MODEL IS UNTRAINED (random weights, for latency work only): its expressions and valence/arousal mean nothing"
            );
        }
        tracing::info!(model = %bundle.manifest_path.display(), "{}", precision.reason);
        Ok(EmotionModel {
            bundle,
            session,
            precision,
            expr_ix,
            va_ix,
            input: Vec::new(),
        })
    }

    /// Whether a frame's faces go through the model in one call (see
    /// [`crate::infer::Session::batches`]); else one by one.
    pub fn batches(&self) -> bool {
        self.session.batches()
    }

    /// Which of the bundle's twins runs (float or int8), and why.
    pub fn precision(&self) -> &PrecisionChoice {
        &self.precision
    }

    /// Where the model's nodes run.
    pub fn placement(&self) -> &crate::infer::Placement {
        self.session.placement()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The crop framing: the config's overrides, else the bundle's.
    pub fn framing(&self, overrides: &AlignConfig) -> Framing {
        let m = &self.bundle.manifest;
        Framing {
            width: m.input.width,
            height: m.input.height,
            eye_distance: overrides.eye_distance.unwrap_or(m.alignment.eye_distance),
            eye_line: overrides.eye_line.unwrap_or(m.alignment.eye_line),
        }
    }

    /// Names of the model's outputs, in session order.
    pub fn session_outputs(&self) -> Vec<String> {
        self.session
            .outputs()
            .iter()
            .map(|o| o.name.clone())
            .collect()
    }

    /// The model's raw outputs for one aligned crop (no softmax, model order).
    pub fn run_raw(&mut self, crop: &RgbImage) -> Result<Vec<Vec<f32>>, EmotionError> {
        self.input.clear();
        self.push_input(crop)?;
        Ok(self.session.run(&self.input)?)
    }

    /// Appends one crop's input tensor to `self.input`.
    fn push_input(&mut self, crop: &RgbImage) -> Result<(), EmotionError> {
        let m = &self.bundle.manifest;
        let want = (m.input.width, m.input.height);
        if crop.dimensions() != want {
            return Err(EmotionError::CropSize {
                got: crop.dimensions(),
                want,
            });
        }
        preprocess(
            crop,
            m.input.color,
            &m.input.mean,
            &m.input.std,
            &mut self.input,
        );
        Ok(())
    }

    /// Reads the emotion of one aligned crop.
    pub fn infer(&mut self, crop: &RgbImage) -> Result<Emotion, EmotionError> {
        let out = self.run_raw(crop)?;
        Ok(self.emotion_of(&out[self.expr_ix], self.va_ix.map(|ix| &out[ix][..])))
    }

    /// Reads the emotion of several aligned crops (a frame's faces), in one
    /// call of the model where its engine batches
    /// ([`crate::infer::Session::batches`]), else one by one; the same
    /// readings either way, in the crops' order.
    pub fn infer_batch(&mut self, crops: &[RgbImage]) -> Result<Vec<Emotion>, EmotionError> {
        let mut all = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(MAX_BATCH) {
            if chunk.len() == 1 || !self.session.batches() {
                for c in chunk {
                    all.push(self.infer(c)?);
                }
                continue;
            }
            self.input.clear();
            for c in chunk {
                self.push_input(c)?;
            }
            let n = chunk.len();
            let out = self.session.run_batch(n, &self.input)?;
            let expr = &out[self.expr_ix];
            let (ne, nv) = (expr.len() / n, self.va_ix.map_or(0, |ix| out[ix].len() / n));
            for k in 0..n {
                let va = self.va_ix.map(|ix| &out[ix][k * nv..(k + 1) * nv]);
                all.push(self.emotion_of(&expr[k * ne..(k + 1) * ne], va));
            }
        }
        Ok(all)
    }

    /// One face's emotion from its raw expression scores (model order) and,
    /// for a model that regresses them, its valence and arousal.
    fn emotion_of(&self, raw: &[f32], va: Option<&[f32]>) -> Emotion {
        let m = &self.bundle.manifest;
        let probs_model = match m.outputs.expressions_kind {
            ScoreKind::Logits => softmax(raw),
            ScoreKind::Probabilities => raw.to_vec(),
        };
        let mut probs = [0.0f32; 7];
        for (i, p) in probs_model.iter().enumerate() {
            probs[self.bundle.class_to_canonical[i]] = *p;
        }
        let (v, a, source) = match va {
            Some(va) => (va[0], va[1], VaSource::Model),
            None => {
                let [v, a] = derive_va(&probs, &self.bundle.anchors);
                (v, a, VaSource::Derived)
            }
        };
        Emotion::from_parts(probs, v, a, source)
    }
}

/// Prepares the twin `asked` names on `backend` (a frame's faces go through
/// in one call where the engine gains by it); for `auto` with an int8 twin
/// on a CPU engine, prepares both, times them and keeps the faster (see
/// [`precision`]).
fn choose_twin(
    asked: Precision,
    bundle: &Bundle,
    backend: &dyn Backend,
    shape: &[usize],
) -> Result<(Box<dyn Session>, PrecisionChoice), EmotionError> {
    let prepare = |path: &std::path::Path| -> Result<Box<dyn Session>, EmotionError> {
        Ok(backend.load(path)?.prepare_batching(shape)?)
    };
    let fixed = |used: Precision, reason: String| PrecisionChoice {
        used,
        asked,
        timed_ms: None,
        reason,
    };
    let int8_path = bundle.int8_path.as_deref();
    match (asked, int8_path) {
        (Precision::Int8, None) => Err(EmotionError::NoInt8 {
            path: bundle.manifest_path.clone(),
        }),
        (Precision::Int8, Some(p)) => Ok((
            prepare(p)?,
            fixed(
                Precision::Int8,
                "precision int8 (asked in the config)".into(),
            ),
        )),
        (Precision::Fp32, _) => Ok((
            prepare(&bundle.model_path)?,
            fixed(
                Precision::Fp32,
                "precision fp32 (asked in the config)".into(),
            ),
        )),
        (Precision::Auto, None) => Ok((
            prepare(&bundle.model_path)?,
            fixed(
                Precision::Fp32,
                "precision auto: fp32 (the bundle has no int8 twin)".into(),
            ),
        )),
        (Precision::Auto, Some(p)) => {
            let mut float = prepare(&bundle.model_path)?;
            if float.placement().uses_gpu() {
                return Ok((
                    float,
                    fixed(
                        Precision::Fp32,
                        "precision auto: fp32 (on a GPU the engine's own FP16/INT8 settings apply)"
                            .into(),
                    ),
                ));
            }
            let mut int8 = prepare(p)?;
            let input = precision::timing_input(shape.iter().product());
            let (tf, tq) = precision::time_both(float.as_mut(), int8.as_mut(), &input)?;
            let choice = precision::decide(&tf, &tq);
            let keep = if choice.used == Precision::Int8 {
                int8
            } else {
                float
            };
            Ok((keep, choice))
        }
    }
}

/// Most faces in one call of the emotion model; more are split into calls
/// of at most this many (bounds the input buffer and the engine's scratch).
pub const MAX_BATCH: usize = 16;

/// Crop → `[1, C, H, W]` floats appended to `out` (a batch is several in
/// a row): pixel / 255, then (x − mean) / std.
pub fn preprocess(crop: &RgbImage, color: Color, mean: &[f32], std: &[f32], out: &mut Vec<f32>) {
    let (w, h) = crop.dimensions();
    let plane = (w * h) as usize;
    let base = out.len();
    out.resize(base + plane * color.channels(), 0.0);
    let out = &mut out[base..];
    match color {
        Color::Gray => {
            let (m, s) = (mean[0], std[0]);
            for (i, p) in crop.pixels().enumerate() {
                let y = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
                out[i] = (y / 255.0 - m) / s;
            }
        }
        Color::Rgb => {
            for (i, p) in crop.pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
                }
            }
        }
    }
}

/// Numerically stable softmax.
pub fn softmax(z: &[f32]) -> Vec<f32> {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Posterior-weighted mean of the per-class anchors (canonical order).
pub fn derive_va(probs: &[f32; 7], anchors: &[[f32; 2]; 7]) -> [f32; 2] {
    let total: f32 = probs.iter().sum();
    let mut va = [0.0f32; 2];
    for (p, a) in probs.iter().zip(anchors) {
        va[0] += p * a[0];
        va[1] += p * a[1];
    }
    if total > 0.0 {
        va[0] /= total;
        va[1] /= total;
    }
    va
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] < p[1] && p[1] < p[2]);
        // Large logits do not overflow.
        let p = softmax(&[0.0, 1000.0]);
        assert!(p[1] > 0.999 && p.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn a_certain_posterior_yields_that_class_anchor() {
        let anchors = [
            [0.0, 0.0],
            [0.8, 0.3],
            [-0.7, -0.3],
            [0.3, 0.8],
            [-0.3, 0.8],
            [-0.7, 0.3],
            [-0.6, 0.6],
        ];
        let mut p = [0.0; 7];
        p[1] = 1.0;
        assert_eq!(derive_va(&p, &anchors), [0.8, 0.3]);
        let half = [0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0];
        let va = derive_va(&half, &anchors);
        assert!((va[0] - 0.05).abs() < 1e-6 && va[1].abs() < 1e-6);
    }

    #[test]
    fn grey_preprocessing_uses_bt601_luma_and_the_bundle_normalisation() {
        let crop = RgbImage::from_pixel(2, 1, image::Rgb([255, 255, 255]));
        let mut out = Vec::new();
        preprocess(&crop, Color::Gray, &[0.5], &[0.5], &mut out);
        assert_eq!(out.len(), 2);
        assert!((out[0] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn rgb_preprocessing_writes_planar_channels() {
        let crop = RgbImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let mut out = Vec::new();
        preprocess(&crop, Color::Rgb, &[0.0; 3], &[1.0; 3], &mut out);
        assert_eq!(out, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        // A second crop goes after the first: a batch of two.
        preprocess(&crop, Color::Rgb, &[0.0; 3], &[1.0; 3], &mut out);
        assert_eq!(out.len(), 12);
        assert_eq!(out[6..], out[..6]);
    }
}
