//! The inference seam: a [`Backend`] loads an ONNX file into a [`Model`],
//! a model is prepared for one fixed input shape into a [`Session`], and a
//! session runs one input tensor into its output tensors.
//!
//! In: ONNX files, `f32` input buffers and the `[inference]` config. Out:
//! `f32` output buffers with their names and shapes, and for every session a
//! [`Placement`]: where its nodes really run. Nothing above this module knows
//! which engine runs the numbers.
//!
//! Engines, one file each:
//! - `tract` (`tract.rs`, always built): pure Rust on the CPU, and tract's
//!   CUDA runtime as backend `cuda` (cargo feature `cuda`; CUDA is loaded at
//!   run time, so the binary builds and starts without it). On the CPU its
//!   max pools, PReLUs and softmaxes run on kernels of ours
//!   (`tract_kernels.rs`), 1.5–3× faster models, the same values.
//! - `onnxruntime` (`onnxruntime.rs`, cargo feature `onnxruntime`, on by
//!   default): the ONNX Runtime library loaded at run time, with its CPU,
//!   CUDA and TensorRT execution providers. TensorRT is reached only this way
//!   (the `tensorrt-rs` crate binds TensorRT 5–7's UFF parser, gone from the
//!   TensorRT 8.5/10 of JetPack 5/6).
//!
//! A feature that is off has a disabled twin that fails with a sentence
//! saying how to rebuild. Shapes are fixed at prepare time. Several inputs
//! in one call ([`Session::run_batch`], the emotion model's faces of one
//! frame) are one call only where it pays: onnxruntime on the CPU or CUDA,
//! from a session made by [`Model::prepare_batching`] (the model's batch
//! axis freed). tract is ~2.5x slower with a symbolic batch and ~3.5x slower
//! per image at batch 4, and TensorRT builds one engine per shape, so those
//! run a batch one input at a time, with the same results.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[cfg(feature = "onnxruntime")]
mod engine_cache;
mod gpu_probe;
#[cfg(feature = "onnxruntime")]
mod onnxruntime;
#[cfg(not(feature = "onnxruntime"))]
#[path = "onnxruntime_disabled.rs"]
mod onnxruntime;
mod tract;
mod tract_kernels;
pub use tract::{onnx_signature, OnnxSignature};

pub use self::gpu_probe::{gpu_name, tensorrt_version};
pub use self::onnxruntime::OnnxRuntimeBackend;
pub use self::tract::TractBackend;

/// Errors from finding an engine, loading or running a model.
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
    #[error("the {backend} backend is not enabled in this build; rebuild with `cargo build --release --features {feature}`")]
    NotBuilt {
        backend: &'static str,
        feature: &'static str,
    },
    #[error("the {backend} backend cannot run here: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("{path}: [inference] require_gpu = true, but it {placement}; install a GPU build of the engine (see README, \"Engines\") or set require_gpu = false")]
    NotOnGpu { path: PathBuf, placement: Placement },
}

/// Name and fixed shape of one model output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// Where a prepared session's work really runs: nodes per device, as the
/// engine itself reports it, and the providers that were asked for but
/// could not take the model (with the engine's reason).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// `(device or execution provider, nodes)`, most nodes first.
    pub nodes: Vec<(String, usize)>,
    /// Requested providers that were not used, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl Placement {
    /// Every node on one device.
    pub fn all_on(device: &str, nodes: usize) -> Placement {
        Placement {
            nodes: vec![(device.to_string(), nodes)],
            skipped: Vec::new(),
        }
    }

    /// Whether any node runs on a GPU (CUDA, TensorRT, tract's CUDA runtime).
    pub fn uses_gpu(&self) -> bool {
        self.nodes.iter().any(|(d, n)| *n > 0 && is_gpu_device(d))
    }
}

/// Device names that mean a GPU, as engines spell them.
fn is_gpu_device(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("cuda") || n.contains("tensorrt") || n.contains("gpu")
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: usize = self.nodes.iter().map(|(_, n)| n).sum();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(d, n)| format!("{d} {n}/{total} nodes"))
            .collect();
        write!(f, "runs on {}", nodes.join(", "))?;
        for (p, why) in &self.skipped {
            write!(f, "; {p} not used: {why}")?;
        }
        Ok(())
    }
}

/// An inference engine (tract on the CPU or CUDA, onnxruntime).
pub trait Backend: Send + Sync {
    /// Short name, as written in config files (`backend = "tract"`).
    fn name(&self) -> &'static str;
    /// One line saying what this engine is and what it can run on here.
    fn check(&self) -> Result<String, InferError>;
    /// Parses a model file. Preparation for a shape comes later.
    fn load(&self, path: &Path) -> Result<Box<dyn Model>, InferError>;
}

/// A parsed model, not yet bound to an input shape.
pub trait Model: Send + Sync {
    /// Names of the model's outputs, in order.
    fn output_names(&self) -> Vec<String>;
    /// Fixes the (single) input's shape, optimises, warms up, and makes it
    /// runnable.
    fn prepare(&self, input_shape: &[usize]) -> Result<Box<dyn Session>, InferError>;
    /// [`Model::prepare`] for a model whose inputs often come several at
    /// once: where the engine gains by it, the session's
    /// [`Session::run_batch`] runs them in one call (see [`Session::batches`]).
    fn prepare_batching(&self, input_shape: &[usize]) -> Result<Box<dyn Session>, InferError> {
        self.prepare(input_shape)
    }
}

/// A model ready to run on inputs of one fixed shape.
pub trait Session: Send {
    fn input_shape(&self) -> &[usize];
    fn outputs(&self) -> &[OutputInfo];
    /// Where this session's nodes run.
    fn placement(&self) -> &Placement;
    /// Runs one input (row-major, `input_shape` elements) and returns one
    /// flat buffer per output, in the order of [`Session::outputs`].
    fn run(&mut self, input: &[f32]) -> Result<Vec<Vec<f32>>, InferError>;
    /// Runs `n` inputs stacked on the first axis (`n` × `input_shape`
    /// elements) and returns each output stacked the same way. Sessions
    /// that do not batch (see [`Session::batches`]) run them one by one.
    fn run_batch(&mut self, n: usize, input: &[f32]) -> Result<Vec<Vec<f32>>, InferError> {
        run_one_by_one(self, n, input)
    }
    /// Whether [`Session::run_batch`] runs its inputs in one call.
    fn batches(&self) -> bool {
        false
    }
}

/// [`Session::run_batch`] as `n` calls of [`Session::run`].
pub(crate) fn run_one_by_one<S: Session + ?Sized>(
    s: &mut S,
    n: usize,
    input: &[f32],
) -> Result<Vec<Vec<f32>>, InferError> {
    let one = element_count(s.input_shape());
    check_batch_len(s.input_shape(), n, input)?;
    let mut stacked: Vec<Vec<f32>> = Vec::new();
    for item in input.chunks_exact(one.max(1)).take(n) {
        let outs = s.run(item)?;
        if stacked.is_empty() {
            stacked = outs;
        } else {
            for (all, o) in stacked.iter_mut().zip(outs) {
                all.extend(o);
            }
        }
    }
    Ok(stacked)
}

/// Refuses a batch whose length is not `n` inputs of `shape`.
pub(crate) fn check_batch_len(shape: &[usize], n: usize, input: &[f32]) -> Result<(), InferError> {
    let want = element_count(shape) * n;
    if n > 0 && input.len() == want {
        Ok(())
    } else {
        let mut batch = shape.to_vec();
        if let Some(d) = batch.first_mut() {
            *d *= n;
        }
        Err(InferError::InputSize {
            got: input.len(),
            want,
            shape: batch,
        })
    }
}

/// An onnxruntime execution provider, in the config's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA TensorRT (JetPack builds, onnxruntime-gpu).
    Tensorrt,
    /// NVIDIA CUDA (JetPack builds, onnxruntime-gpu).
    Cuda,
    /// The CPU; always present.
    Cpu,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }
}

/// `[inference.tensorrt]`: options of onnxruntime's TensorRT provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtConfig {
    /// Let TensorRT pick FP16 kernels (Jetson GPUs are much faster in FP16).
    pub fp16: bool,
    /// INT8 kernels: needs a QDQ-quantised model or `int8_calibration_table`.
    pub int8: bool,
    /// INT8 calibration table file (TensorRT's format), used with `int8`.
    pub int8_calibration_table: Option<PathBuf>,
    /// Builder workspace limit in MiB.
    pub workspace_mb: u32,
    /// Run on this DLA core (Jetson AGX Xavier/Orin), else on the GPU.
    pub dla_core: Option<u32>,
    /// Keep built engines on disk, so a restart does not rebuild them.
    pub engine_cache: bool,
    /// Folder of the engine cache. Default: `$STATE_DIRECTORY/engines` under
    /// systemd, else `~/.cache/fer-edge/engines`.
    pub engine_cache_dir: Option<PathBuf>,
}

impl Default for TensorRtConfig {
    fn default() -> Self {
        TensorRtConfig {
            fp16: true,
            int8: false,
            int8_calibration_table: None,
            workspace_mb: 1024,
            dla_core: None,
            engine_cache: true,
            engine_cache_dir: None,
        }
    }
}

/// `[inference]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Engine of every model whose stage names none: `tract` (CPU, always
    /// there), `onnxruntime`, or `cuda` (tract on an NVIDIA GPU).
    pub backend: String,
    /// Threads inside one onnxruntime session (tract runs one thread).
    pub threads: usize,
    /// The onnxruntime library (`libonnxruntime.so.1.x`). Default: the
    /// `ORT_DYLIB_PATH` variable, else the usual places (README, "Engines").
    pub onnxruntime_library: Option<PathBuf>,
    /// onnxruntime execution providers, most preferred first.
    pub providers: Vec<Provider>,
    /// GPU index for the CUDA and TensorRT providers.
    pub device: u32,
    /// Refuse to start when a model that asked for a GPU would run on the CPU.
    pub require_gpu: bool,
    /// Buffers of at least this many KiB are mapped and returned to the
    /// kernel when freed (0: glibc's own rule); see
    /// [`crate::host::set_mmap_threshold`].
    pub malloc_mmap_threshold_kb: u32,
    pub tensorrt: TensorRtConfig,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            backend: "auto".into(),
            threads: 1,
            onnxruntime_library: None,
            providers: vec![Provider::Cpu],
            device: 0,
            require_gpu: false,
            malloc_mmap_threshold_kb: 1024,
            tensorrt: TensorRtConfig::default(),
        }
    }
}

impl InferenceConfig {
    /// Checks values without touching the file system.
    pub fn validate(&self) -> Result<(), String> {
        validate_backend_name("inference.backend", &self.backend)?;
        if self.malloc_mmap_threshold_kb > crate::host::MAX_MMAP_THRESHOLD_KB {
            return Err(format!(
                "inference.malloc_mmap_threshold_kb = {} is above glibc's limit of {} (32 MiB); use 0 to 32768 (0: glibc's own rule)",
                self.malloc_mmap_threshold_kb,
                crate::host::MAX_MMAP_THRESHOLD_KB
            ));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(format!(
                "inference.threads = {} must be 1 to 64",
                self.threads
            ));
        }
        if self.providers.is_empty() {
            return Err("inference.providers is empty: list one or more of \"tensorrt\", \"cuda\", \"cpu\" (most preferred first)".into());
        }
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].contains(p) {
                return Err(format!("inference.providers names {:?} twice", p.name()));
            }
        }
        if self.tensorrt.workspace_mb < 16 {
            return Err(format!(
                "inference.tensorrt.workspace_mb = {} is too small: use 16 or more (1024 is usual)",
                self.tensorrt.workspace_mb
            ));
        }
        if self.tensorrt.int8_calibration_table.is_some() && !self.tensorrt.int8 {
            return Err("inference.tensorrt.int8_calibration_table is set but int8 = false: set int8 = true or remove the table".into());
        }
        Ok(())
    }

    /// Whether this config asks onnxruntime for a GPU provider.
    pub fn wants_gpu_provider(&self) -> bool {
        self.providers.iter().any(|p| *p != Provider::Cpu)
    }
}

/// The variable that turns off the telemetry of official onnxruntime
/// builds: since 1.2x they send usage events to Microsoft from Linux too
/// and keep a device id and an event database under
/// `~/.cache/Microsoft/DeveloperTools/` (and a file in `$TMPDIR`).
/// Set before the library is loaded, it stops all of that.
pub const ORT_TELEMETRY_VAR: &str = "ORT_DISABLE_TELEMETRY";

/// Privacy by default: turns engine telemetry off for this process
/// ([`ORT_TELEMETRY_VAR`] = 1) unless the environment already says
/// otherwise (a value the user set is kept).
///
/// Call it first thing in `main`, before any thread starts: it sets a
/// process environment variable, which must not race with other threads
/// reading the environment.
pub fn turn_off_engine_telemetry() {
    if std::env::var_os(ORT_TELEMETRY_VAR).is_none() {
        std::env::set_var(ORT_TELEMETRY_VAR, "1");
    }
}

/// Checks that `name` is a backend this build knows (built or not).
pub fn validate_backend_name(key: &str, name: &str) -> Result<(), String> {
    if KNOWN_BACKENDS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "{key} = {name:?} is not an inference backend; use one of: {}",
            KNOWN_BACKENDS.join(", ")
        ))
    }
}

/// `auto` says which engine it took once per process.
static AUTO_SAID: std::sync::Once = std::sync::Once::new();

/// Every backend name fer-edge knows, whether or not this build has it.
pub const KNOWN_BACKENDS: &[&str] = &["auto", "tract", "onnxruntime", "cuda"];

/// The backends compiled into this build, by config name.
pub fn backend_names() -> Vec<&'static str> {
    let mut names = vec!["auto", "tract"];
    if cfg!(feature = "onnxruntime") {
        names.push("onnxruntime");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

/// Looks a backend up by its config name and makes it ready: for
/// onnxruntime that finds and loads the library; for `cuda` it checks the
/// driver and CUDA libraries. Fails with what is missing and how to fix it.
/// `auto` is onnxruntime where its library loads (1.5-2x tract's speed on
/// a CPU), else tract, and says once which and why.
pub fn backend(name: &str, cfg: &InferenceConfig) -> Result<Box<dyn Backend>, InferError> {
    match name {
        "auto" => Ok(match OnnxRuntimeBackend::new(cfg) {
            Ok(ort) => {
                AUTO_SAID.call_once(|| {
                    tracing::info!("inference backend auto: onnxruntime");
                });
                Box::new(ort)
            }
            Err(e) => {
                AUTO_SAID.call_once(|| {
                    tracing::info!(
                        "inference backend auto: tract, as onnxruntime is not here ({e})"
                    );
                });
                Box::new(TractBackend::cpu())
            }
        }),
        "tract" => Ok(Box::new(TractBackend::cpu())),
        "cuda" => Ok(Box::new(TractBackend::cuda()?)),
        "onnxruntime" => Ok(Box::new(OnnxRuntimeBackend::new(cfg)?)),
        other => Err(InferError::UnknownBackend(
            other.to_string(),
            backend_names().join(", "),
        )),
    }
}

pub(crate) fn element_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Refuses an input whose length does not fit the session's fixed shape.
pub(crate) fn check_input_len(shape: &[usize], input: &[f32]) -> Result<(), InferError> {
    let want = element_count(shape);
    if input.len() == want {
        Ok(())
    } else {
        Err(InferError::InputSize {
            got: input.len(),
            want,
            shape: shape.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_with_a_cuda_node_uses_the_gpu_and_a_cpu_only_one_does_not() {
        let cpu = Placement::all_on("CPUExecutionProvider", 12);
        assert!(!cpu.uses_gpu());
        let mixed = Placement {
            nodes: vec![
                ("CUDAExecutionProvider".into(), 10),
                ("CPUExecutionProvider".into(), 2),
            ],
            skipped: vec![("tensorrt".into(), "not in this build".into())],
        };
        assert!(mixed.uses_gpu());
        let text = mixed.to_string();
        assert!(
            text.contains("CUDAExecutionProvider 10/12 nodes")
                && text.contains("tensorrt not used: not in this build"),
            "{text}"
        );
    }

    #[test]
    fn providers_must_be_known_and_listed_once() {
        let mut cfg = InferenceConfig {
            providers: vec![Provider::Cuda, Provider::Cuda],
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().contains("twice"));
        cfg.providers.clear();
        assert!(cfg.validate().unwrap_err().contains("empty"));
    }

    #[test]
    fn auto_takes_tract_when_onnxruntime_cannot_load() {
        let cfg = InferenceConfig {
            onnxruntime_library: Some(PathBuf::from("/nonexistent/libonnxruntime.so.1.32.0")),
            ..Default::default()
        };
        assert_eq!(cfg.backend, "auto");
        assert!(cfg.validate().is_ok());
        assert_eq!(backend("auto", &cfg).unwrap().name(), "tract");
    }

    #[test]
    fn an_unknown_backend_name_lists_the_known_ones() {
        let cfg = InferenceConfig {
            backend: "tensorrt".into(),
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(
            err.contains("\"tensorrt\"") && err.contains("onnxruntime") && err.contains("cuda"),
            "{err}"
        );
    }

    #[test]
    fn the_tract_cpu_backend_is_always_built_and_always_ready() {
        assert!(backend_names().contains(&"tract"));
        let b = backend("tract", &InferenceConfig::default()).unwrap();
        assert!(b.check().unwrap().contains("CPU"));
    }
}
