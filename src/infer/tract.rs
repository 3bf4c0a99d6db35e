//! The tract CPU backend: the one file that names tract.
//!
//! In: an ONNX path, then an input shape, then `f32` inputs. Out: `f32`
//! outputs. One run state per session is reused across calls (it keeps
//! tract's scratch buffers alive).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{element_count, Backend, InferError, Model, OutputInfo, Session};

/// tract, single-threaded, on the CPU.
#[derive(Debug, Default)]
pub struct TractBackend;

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn check(&self) -> Result<String, InferError> {
        Ok(format!(
            "tract (ONNX) on the CPU ({}), 1 thread",
            std::env::consts::ARCH
        ))
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Model>, InferError> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| InferError::Load {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
        Ok(Box::new(TractModel {
            path: path.to_path_buf(),
            model,
        }))
    }
}

struct TractModel {
    path: PathBuf,
    model: InferenceModel,
}

impl Model for TractModel {
    fn output_names(&self) -> Vec<String> {
        // ONNX names its graph outputs by tensor, which tract keeps as outlet
        // labels; the producing node's name is only a fallback.
        self.model
            .output_outlets()
            .map(|outs| {
                outs.iter()
                    .map(|o| {
                        self.model
                            .outlet_label(*o)
                            .map(str::to_string)
                            .unwrap_or_else(|| self.model.node(o.node).name.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn prepare(&self, input_shape: &[usize]) -> Result<Box<dyn Session>, InferError> {
        let err = |e: TractError| InferError::Prepare {
            path: self.path.clone(),
            shape: input_shape.to_vec(),
            reason: format!("{e:#}"),
        };
        let names = self.output_names();
        let typed = self
            .model
            .clone()
            .with_input_fact(0, f32::fact(input_shape).into())
            .and_then(|m| m.into_optimized())
            .map_err(err)?;
        let mut outputs = Vec::with_capacity(typed.output_outlets().map_err(err)?.len());
        for (ix, name) in names.into_iter().enumerate() {
            let fact = typed.output_fact(ix).map_err(err)?;
            let Some(shape) = fact.shape.as_concrete().map(|s| s.to_vec()) else {
                return Err(InferError::Prepare {
                    path: self.path.clone(),
                    shape: input_shape.to_vec(),
                    reason: format!(
                        "output {name} keeps a symbolic shape {:?} even with a fixed input",
                        fact.shape
                    ),
                });
            };
            outputs.push(OutputInfo { name, shape });
        }
        let plan: Arc<TypedSimplePlan> = typed.into_runnable().map_err(err)?;
        let state = plan.spawn().map_err(err)?;
        Ok(Box::new(TractSession {
            path: self.path.clone(),
            input_shape: input_shape.to_vec(),
            outputs,
            state,
        }))
    }
}

struct TractSession {
    path: PathBuf,
    input_shape: Vec<usize>,
    outputs: Vec<OutputInfo>,
    state: TypedSimpleState,
}

impl Session for TractSession {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn outputs(&self) -> &[OutputInfo] {
        &self.outputs
    }

    fn run(&mut self, input: &[f32]) -> Result<Vec<Vec<f32>>, InferError> {
        let want = element_count(&self.input_shape);
        if input.len() != want {
            return Err(InferError::InputSize {
                got: input.len(),
                want,
                shape: self.input_shape.clone(),
            });
        }
        let err = |e: TractError| InferError::Run {
            path: self.path.clone(),
            reason: format!("{e:#}"),
        };
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(err)?;
        let results = self.state.run(tvec!(tensor.into())).map_err(err)?;
        results
            .iter()
            .map(|t| {
                let view = t.to_plain_array_view::<f32>().map_err(err)?;
                Ok(view.iter().copied().collect())
            })
            .collect()
    }
}
