//! The inference seam: a [`Backend`] loads an ONNX file into a [`Model`],
//! a model is prepared for one fixed input shape into a [`Session`], and a
//! session runs one input tensor into its output tensors.
//!
//! In: ONNX files and `f32` input buffers. Out: `f32` output buffers with
//! their names and shapes. Nothing above this module knows which engine runs
//! the numbers; tract (CPU) lives in `tract.rs` and is the only file that
//! names tract.
//!
//! Shapes are always fixed at prepare time: tract is ~2.5x slower with a
//! symbolic batch, and ~3.5x slower per image at batch 4 than at batch 1,
//! so callers loop faces at batch 1.

use std::path::{Path, PathBuf};

mod tract;

pub use self::tract::TractBackend;

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("cannot load model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot prepare model {path} for input shape {shape:?}: {reason}")]
    Prepare {
        path: PathBuf,
        shape: Vec<usize>,
        reason: String,
    },
    #[error("inference failed in {path}: {reason}")]
    Run { path: PathBuf, reason: String },
    #[error("input has {got} values but the model expects shape {shape:?} ({want} values)")]
    InputSize {
        got: usize,
        want: usize,
        shape: Vec<usize>,
    },
    #[error("unknown inference backend {0:?}; available in this build: {1}")]
    UnknownBackend(String, String),
}

/// Name and fixed shape of one model output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// An inference engine (tract on the CPU; others plug in here).
pub trait Backend: Send + Sync {
    /// Short name, as written in config files (`backend = "tract"`).
    fn name(&self) -> &'static str;
    /// One line saying whether this engine can run here and on what.
    fn check(&self) -> Result<String, InferError>;
    /// Parses a model file. Preparation for a shape comes later.
    fn load(&self, path: &Path) -> Result<Box<dyn Model>, InferError>;
}

/// A parsed model, not yet bound to an input shape.
pub trait Model: Send + Sync {
    /// Names of the model's outputs, in order.
    fn output_names(&self) -> Vec<String>;
    /// Fixes the (single) input's shape, optimises, and makes it runnable.
    fn prepare(&self, input_shape: &[usize]) -> Result<Box<dyn Session>, InferError>;
}

/// A model ready to run on inputs of one fixed shape.
pub trait Session: Send {
    fn input_shape(&self) -> &[usize];
    fn outputs(&self) -> &[OutputInfo];
    /// Runs one input (row-major, `input_shape` elements) and returns one
    /// flat buffer per output, in the order of [`Session::outputs`].
    fn run(&mut self, input: &[f32]) -> Result<Vec<Vec<f32>>, InferError>;
}

/// `[inference]` in the config file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Engine that runs every model: `tract` (CPU).
    pub backend: String,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            backend: "tract".into(),
        }
    }
}

impl InferenceConfig {
    pub fn validate(&self) -> Result<(), String> {
        if backend_names().contains(&self.backend.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "inference.backend = {:?} is not available in this build; use one of: {}",
                self.backend,
                backend_names().join(", ")
            ))
        }
    }
}

/// The backends compiled into this build, by config name.
pub fn backend_names() -> &'static [&'static str] {
    &["tract"]
}

/// Looks a backend up by its config name.
pub fn backend(name: &str) -> Result<Box<dyn Backend>, InferError> {
    match name {
        "tract" => Ok(Box::new(TractBackend)),
        other => Err(InferError::UnknownBackend(
            other.to_string(),
            backend_names().join(", "),
        )),
    }
}

pub(crate) fn element_count(shape: &[usize]) -> usize {
    shape.iter().product()
}
