//! `fer-edge model compare`: the same real inputs through several engines,
//! model by model.
//!
//! In: a photo with a face, the detector config, emotion bundles, and a list
//! of engines (the first is the reference). Out: per model and engine the
//! largest output difference from the reference, the median and p90 latency
//! at batch 1 over interleaved runs, and where the nodes ran; an engine that
//! cannot prepare or run a model gets its error in its row (that is a
//! result, e.g. an operator a GPU runtime lacks), not a failed command.
//! `tools/gpu-check.sh` runs it with `cuda` against `tract` on a GPU machine;
//! CI runs it with `onnxruntime` against `tract`.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::align;
use crate::detect::{self, DetectError, Detector, DetectorConfig};
use crate::emotion::{self, Bundle, BundleError};
use crate::imageio;
use crate::infer::{self, InferError, InferenceConfig, Session};
use crate::telemetry::Percentiles;

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Engine names; the first is the reference.
    pub engines: Vec<String>,
    pub image: PathBuf,
    pub bundles: Vec<PathBuf>,
    pub runs: usize,
    pub inference: InferenceConfig,
    pub detector: DetectorConfig,
}

/// Errors that stop the comparison before any engine runs.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{0}: no face found to build the inputs from; use a photo with a face")]
    NoFace(PathBuf),
    #[error("reference detector: {0}")]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("reference engine: {0}")]
    Reference(#[from] InferError),
    #[error("name at least one engine")]
    NoEngine,
}

/// The whole comparison.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    pub machine: String,
    pub gpu: Option<String>,
    pub image: String,
    pub runs: usize,
    pub reference: String,
    pub models: Vec<ModelRow>,
}

/// One model on every engine.
#[derive(Debug, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub input_shape: Vec<usize>,
    pub engines: Vec<EngineRow>,
}

/// One model on one engine.
#[derive(Debug, Serialize)]
pub struct EngineRow {
    pub engine: String,
    /// Why the engine could not prepare or run the model, if it could not.
    pub error: Option<String>,
    pub latency_ms: Option<Percentiles>,
    /// Largest |output − reference output| over every output value.
    pub max_abs_diff: Option<f32>,
    pub placement: Option<String>,
    pub uses_gpu: bool,
}

/// One model's file and real input.
struct Input {
    name: String,
    file: PathBuf,
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Runs the comparison.
pub fn run(opts: &CompareOptions) -> Result<CompareReport, CompareError> {
    if opts.engines.is_empty() {
        return Err(CompareError::NoEngine);
    }
    let inputs = real_inputs(opts)?;
    let backends: Vec<Result<Box<dyn infer::Backend>, String>> = opts
        .engines
        .iter()
        .map(|e| infer::backend(e, &opts.inference).map_err(|err| err.to_string()))
        .collect();
    if let Err(e) = &backends[0] {
        return Err(CompareError::Reference(InferError::Unavailable {
            backend: "reference",
            reason: e.clone(),
        }));
    }
    let models = inputs
        .iter()
        .map(|input| compare_model(input, &opts.engines, &backends, opts.runs))
        .collect();
    Ok(CompareReport {
        machine: crate::host::machine(),
        gpu: infer::gpu_name(opts.inference.device),
        image: opts.image.display().to_string(),
        runs: opts.runs,
        reference: opts.engines[0].clone(),
        models,
    })
}

/// The detector nets' and each bundle's inputs, from the photo's best face
/// (found with the reference-free tract CPU detector).
fn real_inputs(opts: &CompareOptions) -> Result<Vec<Input>, CompareError> {
    let img = imageio::decode(&opts.image).map_err(|reason| CompareError::Image {
        path: opts.image.clone(),
        reason,
    })?;
    let mut detector = Detector::from_config(&opts.detector, &infer::TractBackend::cpu())?;
    let face = detector
        .detect(&img)?
        .into_iter()
        .next()
        .ok_or_else(|| CompareError::NoFace(opts.image.clone()))?;
    let mut inputs: Vec<Input> = detect::network_inputs(&img, face.bbox, &opts.detector)
        .into_iter()
        .map(|(file, shape, data)| Input {
            name: format!("mtcnn/{file}"),
            file: opts.detector.model_dir.join(file),
            shape,
            data,
        })
        .collect();
    for dir in &opts.bundles {
        let bundle = Bundle::open(dir)?;
        let m = &bundle.manifest;
        let framing = align::Framing {
            width: m.input.width,
            height: m.input.height,
            eye_distance: m.alignment.eye_distance,
            eye_line: m.alignment.eye_line,
        };
        let (crop, _) =
            align::align(&img, &face.landmarks, &framing).map_err(|e| CompareError::Image {
                path: opts.image.clone(),
                reason: format!("face cannot be aligned: {e}"),
            })?;
        let mut data = Vec::new();
        emotion::preprocess(&crop, m.input.color, &m.input.mean, &m.input.std, &mut data);
        inputs.push(Input {
            name: format!("{} ({})", m.name, dir.display()),
            file: bundle.model_path.clone(),
            shape: vec![
                1,
                m.input.color.channels(),
                m.input.height as usize,
                m.input.width as usize,
            ],
            data,
        });
    }
    Ok(inputs)
}

fn compare_model(
    input: &Input,
    names: &[String],
    backends: &[Result<Box<dyn infer::Backend>, String>],
    runs: usize,
) -> ModelRow {
    let mut sessions: Vec<Result<Box<dyn Session>, String>> = backends
        .iter()
        .map(|b| {
            let b = b.as_ref().map_err(Clone::clone)?;
            b.load(&input.file)
                .and_then(|m| m.prepare(&input.shape))
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut outputs: Vec<Result<Vec<Vec<f32>>, String>> = sessions
        .iter_mut()
        .map(|s| {
            let s = s.as_mut().map_err(|e| e.clone())?;
            s.run(&input.data).map_err(|e| e.to_string())
        })
        .collect();
    // Interleaved timing: each run visits every engine, so load spikes on
    // a noisy machine fall on all of them alike.
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); sessions.len()];
    for _ in 0..runs {
        for (i, s) in sessions.iter_mut().enumerate() {
            let Ok(s) = s else { continue };
            if outputs[i].is_err() {
                continue;
            }
            let t = Instant::now();
            if let Err(e) = s.run(&input.data) {
                outputs[i] = Err(e.to_string());
                continue;
            }
            times[i].push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let reference = outputs[0].as_ref().ok().cloned();
    let engines = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let session = sessions[i].as_ref().ok();
            let placement = session.map(|s| s.placement().clone());
            let error = match (&sessions[i], &outputs[i]) {
                (Err(e), _) | (_, Err(e)) => Some(e.clone()),
                _ => None,
            };
            let diff = match (&reference, &outputs[i]) {
                (Some(r), Ok(o)) => Some(max_abs_diff(r, o)),
                _ => None,
            };
            EngineRow {
                engine: name.clone(),
                latency_ms: (!times[i].is_empty()).then(|| Percentiles::of(&times[i])),
                max_abs_diff: diff,
                uses_gpu: placement.as_ref().is_some_and(|p| p.uses_gpu()),
                placement: placement.map(|p| p.to_string()),
                error,
            }
        })
        .collect();
    ModelRow {
        model: input.name.clone(),
        input_shape: input.shape.clone(),
        engines,
    }
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    let mut m = 0f32;
    for (x, y) in a.iter().zip(b) {
        if x.len() != y.len() {
            return f32::INFINITY;
        }
        for (p, q) in x.iter().zip(y) {
            m = m.max((p - q).abs());
        }
    }
    m
}

/// The report as a table.
pub fn text(r: &CompareReport) -> String {
    let mut s = format!(
        "machine: {}\ngpu: {}\nimage: {}, {} runs per engine, reference {}\n\n",
        r.machine,
        r.gpu.as_deref().unwrap_or("none found"),
        r.image,
        r.runs,
        r.reference
    );
    for m in &r.models {
        s += &format!("{} {:?}\n", m.model, m.input_shape);
        for e in &m.engines {
            match (&e.error, &e.latency_ms) {
                (Some(err), _) => s += &format!("  {:<12} FAILED: {err}\n", e.engine),
                (None, Some(l)) => {
                    s += &format!(
                        "  {:<12} median {:>9.3} ms  p90 {:>9.3} ms  max|Δ| {:.2e}  {}\n",
                        e.engine,
                        l.p50,
                        l.p90,
                        e.max_abs_diff.unwrap_or(f32::NAN),
                        e.placement.as_deref().unwrap_or("")
                    )
                }
                (None, None) => s += &format!("  {:<12} not timed\n", e.engine),
            }
        }
    }
    s
}
