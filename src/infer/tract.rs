//! The tract backends: `tract` on the CPU and `cuda`, tract's CUDA runtime
//! (cargo feature `cuda`). With `tract_kernels.rs` (the CPU kernels swapped
//! into tract's graphs), the only files that name tract.
//!
//! In: an ONNX path, then an input shape, then `f32` inputs. Out: `f32`
//! outputs. One run state per session is reused across calls (it keeps
//! tract's scratch buffers, and on the GPU its device buffers, alive).
//!
//! The CUDA runtime loads the driver, cudart, NVRTC, cuBLAS and cuDNN at run
//! time (through cudarc) and compiles its kernels with NVRTC, so this build
//! starts on machines without CUDA and only `backend = "cuda"` needs them.
//! Operators it does not cover (MaxPool and AveragePool in tract 0.23.9) stay
//! on the CPU with copies in between; [`Placement`] counts them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::tract_kernels;
use super::{
    check_input_len, element_count, Backend, InferError, Model, OutputInfo, Placement, Session,
};

/// Which tract runtime a backend prepares models for.
#[derive(Debug, Clone, Copy)]
enum Target {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(&'static dyn tract_onnx::tract_core::runtime::Runtime),
}

/// tract, single-threaded on the CPU, or on an NVIDIA GPU.
#[derive(Debug, Clone, Copy)]
pub struct TractBackend {
    target: Target,
}

impl TractBackend {
    /// The pure-Rust CPU engine: always available.
    pub fn cpu() -> TractBackend {
        TractBackend {
            target: Target::Cpu,
        }
    }

    /// tract's CUDA runtime, after checking that the driver and the CUDA
    /// libraries it needs can be loaded.
    #[cfg(feature = "cuda")]
    pub fn cuda() -> Result<TractBackend, InferError> {
        use tract_onnx::tract_core::runtime::runtime_for_name;
        // Keeps tract-cuda linked in, so its runtime registers itself.
        let _ = tract_cuda::CudaTransform;
        let unavailable = |reason: String| {
            InferError::Unavailable {
            backend: "cuda",
            reason: format!(
                "{reason}; it needs an NVIDIA driver for CUDA ≥ 13.0 and the cudart, NVRTC, cuBLAS and cuDNN 9 libraries on the loader path (LD_LIBRARY_PATH)"
            ),
        }
        };
        match runtime_for_name("cuda") {
            Ok(Some(rt)) => Ok(TractBackend {
                target: Target::Cuda(rt),
            }),
            Ok(None) => Err(unavailable(
                "tract's CUDA runtime did not register".to_string(),
            )),
            Err(e) => Err(unavailable(format!("{e:#}"))),
        }
    }

    /// Without the `cuda` feature: a sentence saying how to rebuild.
    #[cfg(not(feature = "cuda"))]
    pub fn cuda() -> Result<TractBackend, InferError> {
        Err(InferError::NotBuilt {
            backend: "cuda",
            feature: "cuda",
        })
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        match self.target {
            Target::Cpu => "tract",
            #[cfg(feature = "cuda")]
            Target::Cuda(_) => "cuda",
        }
    }

    fn check(&self) -> Result<String, InferError> {
        match self.target {
            Target::Cpu => Ok(format!(
                "tract (ONNX) on the CPU ({}), 1 thread",
                std::env::consts::ARCH
            )),
            #[cfg(feature = "cuda")]
            Target::Cuda(rt) => {
                rt.check().map_err(|e| InferError::Unavailable {
                    backend: "cuda",
                    reason: format!("{e:#}"),
                })?;
                Ok(
                    "tract's CUDA runtime on GPU 0 (kernels compiled by NVRTC at start)"
                        .to_string(),
                )
            }
        }
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Model>, InferError> {
        let mut onnx = tract_onnx::onnx();
        if matches!(self.target, Target::Cpu) {
            tract_kernels::register(&mut onnx);
        }
        let model = onnx.model_for_path(path).map_err(|e| InferError::Load {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
        Ok(Box::new(TractModel {
            path: path.to_path_buf(),
            model,
            target: self.target,
        }))
    }
}

struct TractModel {
    path: PathBuf,
    model: InferenceModel,
    target: Target,
}

impl TractModel {
    /// The model typed and simplified for one input shape, with the
    /// concrete shape of every output.
    fn typed(&self, input_shape: &[usize]) -> TractResult<(TypedModel, Vec<OutputInfo>)> {
        let names = self.output_names();
        let mut typed = self
            .model
            .clone()
            .with_input_fact(0, f32::fact(input_shape).into())?
            .into_typed()?
            .into_decluttered()?;
        if matches!(self.target, Target::Cpu) {
            tract_kernels::swap(&mut typed)?;
        }
        let mut outputs = Vec::with_capacity(names.len());
        for (ix, name) in names.into_iter().enumerate() {
            let fact = typed.output_fact(ix)?;
            let Some(shape) = fact.shape.as_concrete().map(|s| s.to_vec()) else {
                return Err(TractError::msg(format!(
                    "output {name} keeps a symbolic shape {:?} even with a fixed input",
                    fact.shape
                )));
            };
            outputs.push(OutputInfo { name, shape });
        }
        Ok((typed, outputs))
    }
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
        let (typed, outputs) = self.typed(input_shape).map_err(err)?;
        let (state, placement): (Box<dyn RunState>, Placement) = match self.target {
            Target::Cpu => {
                let optimized = typed.into_optimized().map_err(err)?;
                let nodes = optimized.nodes().len();
                let plan: Arc<TypedSimplePlan> = optimized.into_runnable().map_err(err)?;
                let state = plan.spawn().map_err(err)?;
                (Box::new(state), Placement::all_on("CPU (tract)", nodes))
            }
            #[cfg(feature = "cuda")]
            Target::Cuda(rt) => {
                let runnable = rt.prepare(typed).map_err(err)?;
                let placement = cuda_placement(runnable.as_ref());
                let state = runnable.spawn().map_err(err)?;
                (Box::new(state), placement)
            }
        };
        let mut session = TractSession {
            path: self.path.clone(),
            input_shape: input_shape.to_vec(),
            outputs,
            placement,
            state,
        };
        // Warm-up: the first run allocates scratch space (and on the GPU
        // compiles kernels); do it now rather than on the first frame.
        session.run(&vec![0.0; element_count(input_shape)])?;
        Ok(Box::new(session))
    }
}

/// Names of an ONNX file's graph outputs, read from its protobuf without
/// building the model (for engines that need the names up front).
#[cfg_attr(not(feature = "onnxruntime"), allow(dead_code))]
pub(super) fn onnx_output_names(path: &Path) -> Result<Vec<String>, InferError> {
    Ok(onnx_signature(path)?.outputs)
}

/// The names of an ONNX graph's real inputs (initializers excluded) and
/// outputs, read from the protobuf without building the model.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxSignature {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// Reads [`OnnxSignature`]; an empty, truncated or non-ONNX file fails here.
pub fn onnx_signature(path: &Path) -> Result<OnnxSignature, InferError> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| InferError::Load {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
    let graph = proto.graph.as_ref().ok_or_else(|| InferError::Load {
        path: path.to_path_buf(),
        reason: "the file holds no graph (empty or not an ONNX model)".into(),
    })?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    Ok(OnnxSignature {
        inputs: graph
            .input
            .iter()
            .map(|i| i.name.clone())
            .filter(|n| !initializers.contains(n.as_str()))
            .collect(),
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
    })
}

/// Counts the nodes of a CUDA plan that run on the GPU (tract's CUDA and
/// GPU ops, host↔device copies) and those left on the CPU, by op name.
#[cfg(feature = "cuda")]
fn cuda_placement(runnable: &dyn tract_onnx::tract_core::runtime::Runnable) -> Placement {
    let Some(model) = runnable.typed_model() else {
        return Placement::default();
    };
    let mut gpu = 0;
    let mut cpu_ops: std::collections::BTreeMap<String, usize> = Default::default();
    for node in model.nodes() {
        let op = node.op().name();
        if op.starts_with("Cuda") || op.starts_with("Gpu") || op.contains("Sync") {
            gpu += 1;
        } else if op != "Source" && op != "Const" {
            *cpu_ops.entry(op.to_string()).or_default() += 1;
        }
    }
    let cpu: usize = cpu_ops.values().sum();
    let mut nodes = vec![("GPU (tract CUDA)".to_string(), gpu)];
    if cpu > 0 {
        let ops: Vec<String> = cpu_ops.iter().map(|(o, n)| format!("{o}×{n}")).collect();
        nodes.push((format!("CPU (tract: {})", ops.join(" ")), cpu));
    }
    Placement {
        nodes,
        skipped: Vec::new(),
    }
}

/// A tract run state, CPU plan or runtime-prepared.
trait RunState: Send {
    fn run_tensor(&mut self, input: Tensor) -> TractResult<TVec<TValue>>;
}

impl RunState for TypedSimpleState {
    fn run_tensor(&mut self, input: Tensor) -> TractResult<TVec<TValue>> {
        self.run(tvec!(input.into()))
    }
}

#[cfg(feature = "cuda")]
impl RunState for Box<dyn tract_onnx::tract_core::runtime::State> {
    fn run_tensor(&mut self, input: Tensor) -> TractResult<TVec<TValue>> {
        self.as_mut().run(tvec!(input.into()))
    }
}

struct TractSession {
    path: PathBuf,
    input_shape: Vec<usize>,
    outputs: Vec<OutputInfo>,
    placement: Placement,
    state: Box<dyn RunState>,
}

impl Session for TractSession {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn outputs(&self) -> &[OutputInfo] {
        &self.outputs
    }

    fn placement(&self) -> &Placement {
        &self.placement
    }

    fn run(&mut self, input: &[f32]) -> Result<Vec<Vec<f32>>, InferError> {
        check_input_len(&self.input_shape, input)?;
        let err = |e: TractError| InferError::Run {
            path: self.path.clone(),
            reason: format!("{e:#}"),
        };
        let tensor = Tensor::from_shape(&self.input_shape, input).map_err(err)?;
        let results = self.state.run_tensor(tensor);
        // What runs next in this thread is ours: give it clean vector state.
        tract_kernels::clear_upper_vector_state();
        let results = results.map_err(err)?;
        results
            .iter()
            .map(|t| {
                let view = t.to_plain_array_view::<f32>().map_err(err)?;
                Ok(view.iter().copied().collect())
            })
            .collect()
    }
}
