//! The `fer-edge` commands: one module per command, each returning its exit
//! code; the config loading they share; the exit codes in [`exit`].
//!
//! In: a parsed [`cli::Cli`]. Out: an [`ExitCode`], or a [`Failure`]
//! (code and error) that `main` prints.

use std::path::PathBuf;
use std::process::ExitCode;

use fer_edge::config::Config;

pub mod analyze;
pub mod bench;
pub mod calibrate;
pub mod check;
pub mod cli;
pub mod eval;
pub mod exit;
pub mod model;
pub mod run;

use cli::{Cli, Command};

/// The config files of every command that reads one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Config file(s) in the daemon's format (every key has a default); a
    /// later file overrides an earlier one key by key (e.g. --config
    /// /etc/fer-edge/fer-edge.toml --config calibration.toml). `calibrate`
    /// without one uses /etc/fer-edge/fer-edge.toml when it exists.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// The config, model and engine of a command that runs one chain
/// (`analyze`, `check`); `bench` and `eval` take several of each, side by side.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Emotion model bundle, overriding `[emotion] model`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Engine for every model (`tract`, `onnxruntime`, `cuda`),
    /// overriding the config's.
    #[arg(long)]
    pub backend: Option<String>,
}

impl ChainArgs {
    /// The config files, then `--model` and `--backend` over them.
    pub fn load(&self) -> Result<Config, Failure> {
        let mut cfg = load_config(&self.config.files, self.model.clone())?;
        if let Some(b) = &self.backend {
            set_engine(&mut cfg, b.clone())?;
        }
        Ok(cfg)
    }
}

use exit::Failure;

/// Loads the config files (later ones override earlier ones; none: the
/// defaults), applies `--model`, and points the model paths at the files
/// they name. Any problem is a config error (78).
pub fn load_config(paths: &[PathBuf], model: Option<PathBuf>) -> Result<Config, Failure> {
    let (mut cfg, origins) = Config::load_layered(paths).map_err(exit::config)?;
    if let Some(m) = model {
        // A path typed on the command line is relative to where it is typed.
        cfg.emotion.model = std::path::absolute(&m).unwrap_or(m);
    }
    cfg.locate_models(&origins).map_err(exit::config)?;
    // Process-wide, before any pipeline thread allocates.
    if let Some(done) = fer_edge::host::set_mmap_threshold(cfg.inference.malloc_mmap_threshold_kb) {
        tracing::debug!("{done}");
    }
    Ok(cfg)
}

/// `--backend NAME`: one engine for every stage, as the flag says.
pub fn set_engine(cfg: &mut Config, name: String) -> Result<(), Failure> {
    cfg.inference.backend = name;
    cfg.detector.backend = None;
    cfg.emotion.backend = None;
    cfg.validate().map_err(exit::config_msg)
}

/// `--source`: a device under /dev is a camera, anything else a replay.
pub fn set_source(cfg: &mut Config, s: PathBuf) {
    use fer_edge::capture::SourceKind;
    // A ROS 2 topic: ros2:///camera/image_raw.
    if let Some(topic) = s.to_str().and_then(|t| t.strip_prefix("ros2://")) {
        cfg.source.kind = SourceKind::Ros2;
        cfg.source.topic = Some(topic.to_string());
        return;
    }
    // A URL stays a URL (rtsp://host/x is not a path).
    if let Some(uri) = s.to_str().filter(|t| t.contains("://")) {
        cfg.source.kind = SourceKind::Gstreamer;
        cfg.source.uri = Some(uri.to_string());
        cfg.source.pipeline = None;
    } else if s.starts_with("/dev") {
        cfg.source.kind = SourceKind::V4l2;
        cfg.source.device = s;
    } else {
        cfg.source.kind = SourceKind::Replay;
        cfg.source.path = Some(std::path::absolute(&s).unwrap_or(s));
    }
}

/// After a source failed to open: for a camera, the cameras present (and
/// who holds a busy one), printed as hints.
pub fn source_hints(cfg: &Config, error: &str) {
    if cfg.source.kind != fer_edge::capture::SourceKind::V4l2 {
        return;
    }
    let present: Vec<String> = fer_edge::capture::list_cameras()
        .iter()
        .filter(|c| c.captures_video)
        .map(|c| c.path.display().to_string())
        .collect();
    eprintln!(
        "hint: cameras present: {} (`fer-edge calibrate --list` shows what each offers)",
        if present.is_empty() {
            "none".into()
        } else {
            present.join(", ")
        }
    );
    if error.contains("busy") {
        eprintln!("hint: another process holds the camera, most likely the fer-edge service: `sudo systemctl stop fer-edge`, then try again, then `sudo systemctl start fer-edge`");
    }
}

/// Runs the command the command line names.
pub fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Analyze(a) => a.run(),
        Command::Eval(a) => a.run(),
        Command::Run(a) => a.run(),
        Command::Bench(a) => a.run(),
        Command::Calibrate(a) => a.run(),
        Command::Check(a) => a.run(),
        Command::Model(cmd) => model::command(cmd),
    }
}
