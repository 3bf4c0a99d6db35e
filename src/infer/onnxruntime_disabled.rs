//! The disabled twin of the onnxruntime backend (cargo feature
//! `onnxruntime` off): it only says how to get it.

use std::path::Path;

use super::{Backend, InferError, InferenceConfig, Model};

/// Stands for onnxruntime in a build without it; it cannot be made.
pub enum OnnxRuntimeBackend {}

impl OnnxRuntimeBackend {
    pub fn new(_cfg: &InferenceConfig) -> Result<OnnxRuntimeBackend, InferError> {
        Err(InferError::NotBuilt {
            backend: "onnxruntime",
            feature: "onnxruntime",
        })
    }
}

impl Backend for OnnxRuntimeBackend {
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn check(&self) -> Result<String, InferError> {
        match *self {}
    }
    fn load(&self, _path: &Path) -> Result<Box<dyn Model>, InferError> {
        match *self {}
    }
}
