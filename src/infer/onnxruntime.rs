//! The onnxruntime backend: the ONNX Runtime library, loaded at run time,
//! with its TensorRT, CUDA and CPU execution providers.
//!
//! In: the `[inference]` config, an ONNX path, an input shape, `f32` inputs.
//! Out: `f32` outputs and, per session, the [`Placement`] onnxruntime really
//! chose. Owns the process's one onnxruntime environment.
//!
//! Nothing is downloaded at build time (`ort` with `load-dynamic`). The
//! library is, in order: `[inference] onnxruntime_library`, else the
//! `ORT_DYLIB_PATH` variable, else the first found of the places in
//! [`default_library_candidates`] (beside the binary, the package's folder,
//! the cache `tools/setup.sh` fills from the PyPI wheel, the loader's path).
//!
//! onnxruntime quietly runs a model on the CPU when a provider is missing
//! from the library or cannot take the model. To make that visible, every
//! provider is registered on its own (its error kept), and the warm-up run at
//! prepare time is profiled: the profile names the provider of every node,
//! which is what [`Placement`] reports and `require_gpu` checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::builder::SessionBuilder;
use ort::session::Session as OrtSession;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};

use super::engine_cache::{self, CacheEntry, CacheKey};
use super::{
    check_input_len, element_count, gpu_probe, Backend, InferError, InferenceConfig, Model,
    OutputInfo, Placement, Provider, Session,
};

/// Oldest onnxruntime whose C API we use (ort without `api-*` features asks
/// for API 17; JetPack 5's onnxruntime-gpu builds are 1.17 or newer).
const MIN_MINOR: u32 = 17;

/// The library this process loaded, its version, and the environment.
struct Loaded {
    path: PathBuf,
    version: String,
    env: ort::environment::Environment,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
/// Serialises the first load (ort allows one library and one environment).
static LOADING: Mutex<()> = Mutex::new(());

/// onnxruntime with the configured providers.
pub struct OnnxRuntimeBackend {
    cfg: InferenceConfig,
    loaded: &'static Loaded,
}

impl OnnxRuntimeBackend {
    /// Finds and loads the library (once per process) and checks its version.
    pub fn new(cfg: &InferenceConfig) -> Result<OnnxRuntimeBackend, InferError> {
        let loaded = load_library(cfg)?;
        Ok(OnnxRuntimeBackend {
            cfg: cfg.clone(),
            loaded,
        })
    }
}

fn unavailable(reason: String) -> InferError {
    InferError::Unavailable {
        backend: "onnxruntime",
        reason,
    }
}

const HOW_TO_GET_IT: &str = "run `bash tools/setup.sh` (it unpacks the pinned onnxruntime wheel from PyPI into ~/.cache/fer-edge/onnxruntime), install JetPack's onnxruntime-gpu on a Jetson, or set [inference] onnxruntime_library to the libonnxruntime.so.1.* file";

fn load_library(cfg: &InferenceConfig) -> Result<&'static Loaded, InferError> {
    let _guard = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let (candidates, origin) = match (&cfg.onnxruntime_library, std::env::var_os("ORT_DYLIB_PATH"))
    {
        (Some(p), _) => (vec![p.clone()], "[inference] onnxruntime_library"),
        (None, Some(p)) if !p.is_empty() => (vec![PathBuf::from(p)], "ORT_DYLIB_PATH"),
        _ => (default_library_candidates(), "the default places"),
    };
    if let Some(loaded) = LOADED.get() {
        // ort keeps the first library for the whole process: a different
        // explicit choice later would silently get the first one.
        if origin != "the default places" && !candidates.iter().any(|c| c == &loaded.path) {
            return Err(unavailable(format!(
                "onnxruntime is already loaded from {} in this process; {} asks for {}: one library per process",
                loaded.path.display(),
                origin,
                candidates[0].display()
            )));
        }
        return Ok(loaded);
    }
    let mut tried = Vec::new();
    for path in &candidates {
        match try_load(path) {
            Ok(loaded) => return Ok(LOADED.get_or_init(|| loaded)),
            Err(TryLoad::Absent) => tried.push(format!("{} (not found)", path.display())),
            Err(TryLoad::Broken(reason)) => {
                return Err(unavailable(format!(
                    "{} (from {origin}): {reason}; {HOW_TO_GET_IT}",
                    path.display()
                )))
            }
        }
    }
    Err(unavailable(format!(
        "no onnxruntime library found; tried {}: {}; {HOW_TO_GET_IT}",
        origin,
        tried.join(", ")
    )))
}

enum TryLoad {
    /// Nothing at this place: try the next one.
    Absent,
    /// Something is there but unusable: stop and say why.
    Broken(String),
}

fn try_load(path: &Path) -> Result<Loaded, TryLoad> {
    // A bare file name goes to the system loader (ld.so.cache, LD_LIBRARY_PATH).
    let bare = path.components().count() == 1;
    if !bare {
        match std::fs::metadata(path) {
            Err(_) => return Err(TryLoad::Absent),
            Ok(m) if !m.is_file() => {
                return Err(TryLoad::Broken("is not a regular file".into()));
            }
            Ok(_) => {}
        }
    }
    let version = match library_version(path) {
        Ok(v) => v,
        Err(e) if bare => {
            tracing::debug!("{}: {e}", path.display());
            return Err(TryLoad::Absent);
        }
        Err(e) => return Err(TryLoad::Broken(e)),
    };
    check_version(&version).map_err(TryLoad::Broken)?;
    let env = ort::init_from(path)
        .map_err(|e| TryLoad::Broken(e.to_string()))?
        .with_name("fer-edge")
        // Also asked of the environment itself (the process variable set
        // by `main`, super::ORT_TELEMETRY_VAR, is what stops the uploader
        // and its files; this stops the events of a library that predates it).
        .with_telemetry(false)
        .build()
        .map_err(|e| TryLoad::Broken(format!("cannot create its environment: {e}")))?;
    tracing::info!(library = %path.display(), %version, "onnxruntime loaded");
    Ok(Loaded {
        path: path.to_path_buf(),
        version,
        env,
    })
}

/// Accepts onnxruntime 1.17 and newer (the C API ort asks for).
fn check_version(version: &str) -> Result<(), String> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) if major > 1 || (major == 1 && minor >= MIN_MINOR) => Ok(()),
        (Some(_), Some(_)) => Err(format!(
            "onnxruntime {version} is too old: fer-edge needs 1.{MIN_MINOR} or newer"
        )),
        _ => Err(format!("reports an unreadable version {version:?}")),
    }
}

/// Reads the version string of an onnxruntime library without keeping it
/// loaded, so a wrong or too old file gives our message, not a panic.
fn library_version(path: &Path) -> Result<String, String> {
    // SAFETY: loading a shared library runs its initialisers; this is the
    // file the user (or our search) named as onnxruntime. The symbol's type
    // is onnxruntime's C API (`const OrtApiBase* OrtGetApiBase(void)`).
    unsafe {
        let lib = libloading::Library::new(path).map_err(|e| format!("cannot be loaded: {e}"))?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase\0").map_err(|_| {
                "is not an onnxruntime library (it has no OrtGetApiBase symbol)".to_string()
            })?;
        let base = get_base();
        if base.is_null() {
            return Err("OrtGetApiBase returned nothing".into());
        }
        let v = ((*base).GetVersionString)();
        if v.is_null() {
            return Err("it reports no version".into());
        }
        Ok(std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

/// Where fer-edge looks for onnxruntime when nothing names it, in order.
pub fn default_library_candidates() -> Vec<PathBuf> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = &exe_dir {
        dirs.push(d.clone());
        dirs.push(d.join("../lib/fer-edge"));
    }
    dirs.push(PathBuf::from("/usr/lib/fer-edge"));
    let mut caches: Vec<PathBuf> = Vec::new();
    if let Some(c) = std::env::var_os("FER_EDGE_CACHE") {
        caches.push(PathBuf::from(c));
    }
    if let Some(c) = std::env::var_os("XDG_CACHE_HOME") {
        caches.push(PathBuf::from(c).join("fer-edge"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        caches.push(PathBuf::from(h).join(".cache/fer-edge"));
    }
    for c in caches {
        // tools/setup.sh unpacks into <cache>/onnxruntime/<version>/.
        let mut versions: Vec<PathBuf> = std::fs::read_dir(c.join("onnxruntime"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    let mut out = Vec::new();
    for d in dirs {
        out.extend(libraries_in(&d));
    }
    // Last, the system loader's own search (ld.so.cache, LD_LIBRARY_PATH).
    out.push(PathBuf::from("libonnxruntime.so.1"));
    out.push(PathBuf::from("libonnxruntime.so"));
    let mut seen = BTreeSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// `libonnxruntime.so*` files in a folder, newest version first (the
/// providers' helper libraries are not onnxruntime itself).
fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| b.cmp(a));
    found
}

impl Backend for OnnxRuntimeBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn check(&self) -> Result<String, InferError> {
        let in_library: Vec<&str> = [
            ("tensorrt", ep::TensorRT::is_available()),
            ("cuda", ep::CUDA::is_available()),
            ("cpu", Ok(true)),
        ]
        .into_iter()
        .filter_map(|(n, ok)| matches!(ok, Ok(true)).then_some(n))
        .collect();
        let wanted: Vec<&str> = self.cfg.providers.iter().map(|p| p.name()).collect();
        Ok(format!(
            "onnxruntime {} from {}, {} thread(s); providers in this library: {}; asked for: {}",
            self.loaded.version,
            self.loaded.path.display(),
            self.cfg.threads,
            in_library.join(", "),
            wanted.join(", ")
        ))
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Model>, InferError> {
        let load_err = |reason: String| InferError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
        let output_names = super::tract::onnx_output_names(path)?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Box::new(OrtModel {
            path: path.to_path_buf(),
            bytes,
            sha256,
            output_names,
            cfg: self.cfg.clone(),
            loaded: self.loaded,
            gpu_stack: OnceLock::new(),
            batch_free: false,
        }))
    }
}

struct OrtModel {
    path: PathBuf,
    bytes: Vec<u8>,
    sha256: String,
    output_names: Vec<String>,
    cfg: InferenceConfig,
    loaded: &'static Loaded,
    /// TensorRT version and GPU name, probed once per model (P-Net is
    /// prepared once per pyramid level and thread).
    gpu_stack: OnceLock<(Option<i32>, Option<String>)>,
    /// The batch axis is free ([`Model::prepare_batching`]): inputs of
    /// varying size, so no memory pattern (onnxruntime plans one per shape
    /// and keeps each).
    batch_free: bool,
}

impl OrtModel {
    fn gpu_stack(&self) -> &(Option<i32>, Option<String>) {
        self.gpu_stack.get_or_init(|| {
            (
                gpu_probe::tensorrt_version(),
                gpu_probe::gpu_name(self.cfg.device),
            )
        })
    }

    fn prepare_err(&self, shape: &[usize], reason: String) -> InferError {
        InferError::Prepare {
            path: self.path.clone(),
            shape: shape.to_vec(),
            reason,
        }
    }

    /// The TensorRT engine-cache entry for this model and shape, if the
    /// cache is on and has a usable folder (a cache problem is never fatal).
    fn engine_cache_entry(&self, shape: &[usize]) -> Option<CacheEntry> {
        let trt = &self.cfg.tensorrt;
        if !trt.engine_cache {
            return None;
        }
        let root = trt
            .engine_cache_dir
            .clone()
            .or_else(engine_cache::default_root)?;
        let key = CacheKey {
            model: self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model_sha256: self.sha256.clone(),
            tensorrt: self.gpu_stack().0,
            gpu: self.gpu_stack().1.clone(),
            precision: if trt.int8 {
                "int8"
            } else if trt.fp16 {
                "fp16"
            } else {
                "fp32"
            }
            .to_string(),
            dla_core: trt.dla_core,
            shape: shape.to_vec(),
        };
        match engine_cache::open(&root, &key) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::warn!("TensorRT engine cache off for {}: {e}", self.path.display());
                None
            }
        }
    }

    fn dispatch(&self, p: Provider, cache: Option<&CacheEntry>) -> ExecutionProviderDispatch {
        let device = self.cfg.device as i32;
        match p {
            Provider::Cpu => ep::CPU::default().build().error_on_failure(),
            Provider::Cuda => ep::CUDA::default()
                .with_device_id(device)
                .build()
                .error_on_failure(),
            Provider::Tensorrt => {
                let t = &self.cfg.tensorrt;
                let mut trt = ep::TensorRT::default()
                    .with_device_id(device)
                    .with_fp16(t.fp16)
                    .with_int8(t.int8)
                    .with_max_workspace_size((t.workspace_mb as usize) << 20);
                if let Some(core) = t.dla_core {
                    trt = trt.with_dla(true).with_dla_core(core);
                }
                if let Some(table) = &t.int8_calibration_table {
                    trt = trt.with_int8_calibration_table_name(table.display());
                }
                if let Some(entry) = cache {
                    let dir = entry.dir().display().to_string();
                    trt = trt
                        .with_engine_cache(true)
                        .with_engine_cache_path(&dir)
                        .with_timing_cache(true)
                        .with_timing_cache_path(&dir);
                }
                trt.build().error_on_failure()
            }
        }
    }

    /// Builds a session with the configured providers, leaving out those in
    /// `excluded`; returns it with the providers that registered.
    fn build(
        &self,
        excluded: &[Provider],
        cache: Option<&CacheEntry>,
        profile: &Path,
        skipped: &mut Vec<(String, String)>,
    ) -> Result<(OrtSession, Vec<Provider>), (Vec<Provider>, String)> {
        let fail = |e: ort::Error<SessionBuilder>| (Vec::new(), e.to_string());
        let mut builder = SessionBuilder::new(&self.loaded.env)
            .map_err(|e| (Vec::new(), e.to_string()))?
            .with_intra_threads(self.cfg.threads)
            .map_err(fail)?
            .with_inter_threads(1)
            .map_err(fail)?
            .with_profiling(profile)
            .map_err(fail)?
            .with_memory_pattern(!self.batch_free)
            .map_err(fail)?;
        let mut registered = Vec::new();
        for p in self.cfg.providers.iter().filter(|p| !excluded.contains(p)) {
            match self.dispatch(*p, cache).register(&mut builder) {
                Ok(()) => registered.push(*p),
                Err(e) => {
                    if !skipped.iter().any(|(n, _)| n == p.name()) {
                        skipped.push((p.name().to_string(), reason(e)));
                    }
                }
            }
        }
        match builder.commit_from_memory(&self.bytes) {
            Ok(s) => Ok((s, registered)),
            Err(e) => Err((registered, reason(e))),
        }
    }
}

impl Model for OrtModel {
    fn output_names(&self) -> Vec<String> {
        self.output_names.clone()
    }

    fn prepare(&self, input_shape: &[usize]) -> Result<Box<dyn Session>, InferError> {
        Ok(Box::new(self.prepare_run(input_shape)?))
    }

    /// One call for a frame's faces: the model's batch axis freed (its
    /// graph is unchanged), checked by a warm-up at batch 2. TensorRT
    /// builds one engine per shape, so with it, and with a model whose
    /// batch cannot be freed, the session runs faces one by one (said once
    /// in the log).
    fn prepare_batching(&self, input_shape: &[usize]) -> Result<Box<dyn Session>, InferError> {
        let why_not = if self.wants_tensorrt() {
            Some("TensorRT builds one engine per input shape".to_string())
        } else {
            match batch_free(&self.bytes) {
                Ok(bytes) => {
                    let free = OrtModel {
                        path: self.path.clone(),
                        bytes,
                        sha256: self.sha256.clone(),
                        output_names: self.output_names.clone(),
                        cfg: self.cfg.clone(),
                        loaded: self.loaded,
                        gpu_stack: OnceLock::new(),
                        batch_free: true,
                    };
                    let mut run = free.prepare_run(input_shape)?;
                    run.batching = true;
                    let two = vec![0.0; 2 * element_count(input_shape)];
                    match run.run_batch(2, &two) {
                        Ok(_) => return Ok(Box::new(run)),
                        Err(e) => Some(format!("a batch of 2 does not run ({e})")),
                    }
                }
                Err(why) => Some(why),
            }
        };
        if let Some(why) = why_not {
            tracing::info!(
                "{}: onnxruntime runs its inputs one by one: {why}",
                self.path.display()
            );
        }
        self.prepare(input_shape)
    }
}

impl OrtModel {
    /// Whether this session would run on TensorRT (asked for, and in the library).
    fn wants_tensorrt(&self) -> bool {
        self.cfg.providers.contains(&Provider::Tensorrt)
            && matches!(ep::TensorRT::is_available(), Ok(true))
    }

    fn prepare_run(&self, input_shape: &[usize]) -> Result<OrtRun, InferError> {
        // Only a library with the TensorRT provider builds engines to cache.
        let cache = if self.wants_tensorrt() {
            self.engine_cache_entry(input_shape)
        } else {
            None
        };
        let profile_dir = tempfile::Builder::new()
            .prefix("fer-edge-ort-")
            .tempdir()
            .map_err(|e| self.prepare_err(input_shape, format!("temporary folder: {e}")))?;
        let profile = profile_dir.path().join("profile");
        let mut skipped = Vec::new();
        let mut excluded: Vec<Provider> = Vec::new();
        let mut cache_wiped = false;
        let (session, registered) = loop {
            match self.build(&excluded, cache.as_ref(), &profile, &mut skipped) {
                Ok(ok) => break ok,
                Err((registered, reason)) => {
                    // A stale or corrupt cached engine: drop it and rebuild once.
                    if let (Some(entry), false, true) = (
                        &cache,
                        cache_wiped,
                        registered.contains(&Provider::Tensorrt),
                    ) {
                        tracing::warn!(
                            "{}: TensorRT could not use its engine cache entry {} ({reason}); rebuilding it",
                            self.path.display(),
                            entry.dir().display()
                        );
                        entry.wipe();
                        cache_wiped = true;
                        continue;
                    }
                    // A GPU provider that registered but cannot take the
                    // model: say so and go on with the next one.
                    match registered.iter().find(|p| **p != Provider::Cpu) {
                        Some(p) => {
                            tracing::warn!(
                                "{}: {} cannot run this model ({reason}); trying the next provider",
                                self.path.display(),
                                p.name()
                            );
                            skipped.push((p.name().to_string(), reason));
                            excluded.push(*p);
                        }
                        None => return Err(self.prepare_err(input_shape, reason)),
                    }
                }
            }
        };
        let mut s = OrtRun {
            path: self.path.clone(),
            input_shape: input_shape.to_vec(),
            shape_i64: input_shape.iter().map(|&d| d as i64).collect(),
            outputs: Vec::new(),
            placement: Placement::default(),
            session,
            batching: false,
        };
        // Warm-up (also builds TensorRT engines and sizes the outputs).
        let out = s.run_raw(&vec![0.0; element_count(input_shape)])?;
        s.outputs = out
            .iter()
            .zip(self.output_names.iter())
            .map(|((shape, _), name)| OutputInfo {
                name: name.clone(),
                shape: shape.clone(),
            })
            .collect();
        let profile_file = s
            .session
            .end_profiling()
            .map_err(|e| self.prepare_err(input_shape, format!("profiling: {e}")))?;
        let text = std::fs::read_to_string(&profile_file).unwrap_or_default();
        let _ = std::fs::remove_file(&profile_file);
        s.placement = placement_from_profile(&text);
        s.placement.skipped = skipped;
        if s.placement.nodes.is_empty() {
            s.placement = Placement {
                nodes: vec![("unknown (no profile)".into(), 0)],
                ..s.placement
            };
        }
        if registered.contains(&Provider::Tensorrt) && s.placement.uses_gpu() {
            if let Some(entry) = &cache {
                entry.mark_complete();
            }
        }
        let gpu_asked = self.cfg.wants_gpu_provider();
        if gpu_asked && !s.placement.uses_gpu() {
            if self.cfg.require_gpu {
                return Err(InferError::NotOnGpu {
                    path: self.path.clone(),
                    placement: s.placement.clone(),
                });
            }
            if first_report(&self.path) {
                tracing::warn!(
                    "{}: a GPU provider was asked for, but onnxruntime {}",
                    self.path.display(),
                    s.placement
                );
            }
        } else if first_report(&self.path) {
            tracing::info!("{}: onnxruntime {}", self.path.display(), s.placement);
        }
        Ok(s)
    }
}

/// Whether this is the first session of `path` to report where it runs
/// (P-Net is prepared once per pyramid level and thread: say it once).
fn first_report(path: &Path) -> bool {
    static SEEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    SEEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_path_buf())
}

/// An onnxruntime message without its closing full stop, to go into ours.
fn reason(e: impl std::fmt::Display) -> String {
    e.to_string().trim_end().trim_end_matches('.').to_string()
}

/// Nodes per execution provider, from an onnxruntime profile (a JSON array
/// of trace events; node events carry `args.provider`).
pub(crate) fn placement_from_profile(json: &str) -> Placement {
    let events: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    let mut nodes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        if e["cat"] != "Node" {
            continue;
        }
        let (Some(provider), Some(name)) = (e["args"]["provider"].as_str(), e["name"].as_str())
        else {
            continue;
        };
        let node = name
            .trim_end_matches("_kernel_time")
            .trim_end_matches("_fence_before")
            .trim_end_matches("_fence_after");
        nodes
            .entry(provider.to_string())
            .or_default()
            .insert(node.to_string());
    }
    let mut counts: Vec<(String, usize)> = nodes.into_iter().map(|(p, n)| (p, n.len())).collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Placement {
        nodes: counts,
        skipped: Vec::new(),
    }
}

/// One output: its shape and its values.
type ShapedOutput = (Vec<usize>, Vec<f32>);

struct OrtRun {
    path: PathBuf,
    input_shape: Vec<usize>,
    /// The input shape as onnxruntime takes it, made once.
    shape_i64: Vec<i64>,
    outputs: Vec<OutputInfo>,
    placement: Placement,
    session: OrtSession,
    /// The model's batch axis is free: `run_batch` is one call.
    batching: bool,
}

impl OrtRun {
    /// Runs once; returns each output's shape and values.
    fn run_raw(&mut self, input: &[f32]) -> Result<Vec<ShapedOutput>, InferError> {
        check_input_len(&self.input_shape, input)?;
        let shape = self.shape_i64.clone();
        self.run_shaped(shape, input)
    }

    fn run_shaped(
        &mut self,
        shape: Vec<i64>,
        input: &[f32],
    ) -> Result<Vec<ShapedOutput>, InferError> {
        let err = |e: ort::Error| InferError::Run {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let tensor = TensorRef::from_array_view((shape, input)).map_err(err)?;
        let outputs = self.session.run(ort::inputs![tensor]).map_err(err)?;
        let mut out = Vec::with_capacity(outputs.len());
        for (_, value) in outputs.iter() {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(err)?;
            out.push((
                shape.iter().map(|&d| d.max(0) as usize).collect(),
                data.to_vec(),
            ));
        }
        Ok(out)
    }
}

impl Session for OrtRun {
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
        Ok(self.run_raw(input)?.into_iter().map(|(_, v)| v).collect())
    }

    fn run_batch(&mut self, n: usize, input: &[f32]) -> Result<Vec<Vec<f32>>, InferError> {
        if !self.batching || n == 1 {
            return super::run_one_by_one(self, n, input);
        }
        super::check_batch_len(&self.input_shape, n, input)?;
        let mut shape = self.shape_i64.clone();
        shape[0] *= n as i64;
        Ok(self
            .run_shaped(shape, input)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    fn batches(&self) -> bool {
        self.batching
    }
}

/// The ONNX model in `bytes` with the first axis of its input and outputs
/// made symbolic (`N`), re-encoded; the graph itself is untouched. Refused
/// (with the reason) when that axis is not a batch of 1 everywhere, or the
/// graph declares intermediate shapes that could pin it.
pub(crate) fn batch_free(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use prost::Message as _;
    use tract_onnx::pb::{tensor_shape_proto::dimension::Value as Dim, type_proto, ModelProto};
    let mut model = ModelProto::decode(bytes).map_err(|e| format!("not an ONNX protobuf: {e}"))?;
    let graph = model.graph.as_mut().ok_or("the file holds no graph")?;
    if !graph.value_info.is_empty() {
        return Err("the graph declares intermediate shapes (value_info)".into());
    }
    let initializers: BTreeSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut freed = 0;
    for v in graph
        .input
        .iter_mut()
        .filter(|v| !initializers.contains(&v.name))
        .chain(graph.output.iter_mut())
    {
        let dim = v
            .r#type
            .as_mut()
            .and_then(|t| match t.value.as_mut() {
                Some(type_proto::Value::TensorType(t)) => t.shape.as_mut(),
                None => None,
            })
            .and_then(|s| s.dim.first_mut())
            .ok_or_else(|| format!("{} has no shape", v.name))?;
        match &dim.value {
            Some(Dim::DimValue(1)) => dim.value = Some(Dim::DimParam("N".into())),
            Some(Dim::DimParam(_)) => {}
            other => {
                return Err(format!(
                    "{}'s first axis is {other:?}, not a batch of 1",
                    v.name
                ))
            }
        }
        freed += 1;
    }
    if freed == 0 {
        return Err("the graph has no inputs or outputs".into());
    }
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shipped_model_gets_a_free_batch_axis_and_keeps_its_graph() {
        use prost::Message as _;
        use tract_onnx::pb::{tensor_shape_proto::dimension::Value as Dim, type_proto, ModelProto};
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fernet-w16/model.onnx");
        let bytes = std::fs::read(path).unwrap();
        let free = ModelProto::decode(&batch_free(&bytes).unwrap()[..]).unwrap();
        let before = ModelProto::decode(&bytes[..]).unwrap();
        let (g, g0) = (free.graph.unwrap(), before.graph.unwrap());
        assert_eq!(g.node, g0.node);
        assert_eq!(g.initializer, g0.initializer);
        for v in g.input.iter().chain(&g.output) {
            let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref()
            else {
                panic!("{} is not a tensor", v.name)
            };
            let dims = &t.shape.as_ref().unwrap().dim;
            assert_eq!(dims[0].value, Some(Dim::DimParam("N".into())), "{}", v.name);
            assert!(
                matches!(dims[1].value, Some(Dim::DimValue(_))),
                "{}",
                v.name
            );
        }
        assert!(batch_free(b"not a model").is_err());
    }

    #[test]
    fn the_profile_counts_each_node_once_per_provider() {
        let json = r#"[
          {"cat":"Session","name":"model_loading_uri","args":{}},
          {"cat":"Node","name":"conv1_fence_before","args":{"op_name":"Conv","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","name":"conv1_kernel_time","args":{"op_name":"Conv","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","name":"conv1_fence_after","args":{"op_name":"Conv","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","name":"relu1_kernel_time","args":{"op_name":"Relu","provider":"CUDAExecutionProvider"}},
          {"cat":"Node","name":"shape_kernel_time","args":{"op_name":"Shape","provider":"CPUExecutionProvider"}}
        ]"#;
        let p = placement_from_profile(json);
        assert_eq!(
            p.nodes,
            vec![
                ("CUDAExecutionProvider".to_string(), 2),
                ("CPUExecutionProvider".to_string(), 1)
            ]
        );
        assert!(p.uses_gpu());
    }

    #[test]
    fn library_search_looks_in_the_setup_cache_before_the_system_loader() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("onnxruntime/1.32.0");
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("libonnxruntime.so.1.32.0"), b"").unwrap();
        std::fs::write(v.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        // Only this test sets the variable, and the search only reads it.
        std::env::set_var("FER_EDGE_CACHE", dir.path());
        let c = default_library_candidates();
        std::env::remove_var("FER_EDGE_CACHE");
        let ours = c
            .iter()
            .position(|p| p == &v.join("libonnxruntime.so.1.32.0"))
            .expect("cache library listed");
        let system = c
            .iter()
            .position(|p| p == Path::new("libonnxruntime.so.1"))
            .unwrap();
        assert!(ours < system, "{c:?}");
        assert!(!c
            .iter()
            .any(|p| p.ends_with("libonnxruntime_providers_shared.so")));
    }

    #[test]
    fn versions_before_1_17_are_refused_and_later_ones_accepted() {
        assert!(check_version("1.32.0").is_ok());
        assert!(check_version("1.17.3").is_ok());
        assert!(check_version("2.0.0").is_ok());
        let err = check_version("1.16.3").unwrap_err();
        assert!(err.contains("too old") && err.contains("1.17"), "{err}");
        assert!(check_version("garbage").is_err());
    }

    #[test]
    fn a_file_that_is_not_onnxruntime_is_refused_with_the_reason() {
        let err = library_version(Path::new("/nonexistent/libonnxruntime.so.1")).unwrap_err();
        assert!(err.contains("cannot be loaded"), "{err}");
    }
}
