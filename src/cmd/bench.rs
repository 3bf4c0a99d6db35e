//! `fer-edge bench`: the engines and detector modes named, timed side by
//! side on the daemon's own frame path; or `--peak`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{self, Failure};
use super::ConfigArgs;
use super::{load_config, set_engine};
use fer_edge::config::Config;

/// `fer-edge bench`'s arguments (its help is the variant's in `cli.rs`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Emotion model bundle, overriding `[emotion] model`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Engine for every model, overriding the config's; several, comma
    /// separated (`tract,onnxruntime`), are timed side by side in
    /// interleaved rounds.
    #[arg(long)]
    pub backend: Option<String>,
    /// Override `[follow] interval` (frames followed between full
    /// detections; 0 detects every frame).
    #[arg(long)]
    pub interval: Option<u32>,
    /// Override `[follow] background`; `false,true` times both side
    /// by side in interleaved rounds.
    #[arg(long, value_delimiter = ',')]
    pub background: Vec<bool>,
    /// Override `[follow] expression_rate_hz` (most readings per face
    /// and second, 0 every frame); `0,5` times both side by side.
    #[arg(long, value_delimiter = ',')]
    pub expression_rate: Vec<f64>,
    /// Override `[emotion] precision`; `fp32,int8` times the bundle's
    /// float model and its int8 twin side by side.
    #[arg(long, value_delimiter = ',')]
    pub precision: Vec<fer_edge::emotion::Precision>,
    /// Folder of frames to replay as one video, in name order
    /// (`tests/data/sequences/pan6` has six faces).
    #[arg(long, default_value = "tests/data/sequences/pan1")]
    pub frames: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Time only the emotion model on one aligned crop (batch 1).
    #[arg(long)]
    pub model_only: bool,
    /// With `--model-only`: faces per call of the model (copies of the
    /// crop, read as a frame's faces are); `1,6,12` times each side by side.
    #[arg(long, value_delimiter = ',', requires = "model_only", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub batch: Vec<u64>,
    /// Measure this core's peak FP32 rate (an FMA loop) and exit.
    #[arg(long)]
    pub peak: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Every config once per value (`values` empty: the configs as they are).
fn vary<T>(cfgs: Vec<Config>, values: &[T], set: impl Fn(&mut Config, &T)) -> Vec<Config> {
    if values.is_empty() {
        return cfgs;
    }
    cfgs.iter()
        .flat_map(|c| {
            values.iter().map(|v| {
                let mut c = c.clone();
                set(&mut c, v);
                c
            })
        })
        .collect()
}

/// `--peak`: this core's FP32 rate.
fn peak(json: bool) -> Result<ExitCode, Failure> {
    let g = fer_edge::host::peak_gflops();
    if json {
        println!(
            "{}",
            serde_json::json!({ "peak_gflops_1_thread": (g * 10.0).round() / 10.0 })
        );
    } else {
        println!("peak FP32, one thread: {g:.1} GFLOP/s");
    }
    Ok(ExitCode::SUCCESS)
}

impl Args {
    /// Runs it.
    pub fn run(self) -> Result<ExitCode, Failure> {
        if self.peak {
            return peak(self.json);
        }
        command(self)
    }
}

fn command(a: Args) -> Result<ExitCode, Failure> {
    let mut cfg = load_config(&a.config.files, a.model)?;
    if let Some(n) = a.interval {
        cfg.follow.interval = n;
        cfg.validate()
            .map_err(|m| exit::usage(format!("--interval: {m}")))?;
    }
    // One config per engine and detector mode named; none named: the
    // config's own.
    let engines = match a.backend {
        None => vec![cfg],
        Some(list) => list
            .split(',')
            .map(|b| {
                let mut c = cfg.clone();
                set_engine(&mut c, b.trim().to_string()).map(|_| c)
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let cfgs = vary(engines, &a.background, |c, &b| c.follow.background = b);
    let cfgs = vary(cfgs, &a.expression_rate, |c, &hz| {
        c.follow.expression_rate_hz = hz
    });
    let cfgs = vary(cfgs, &a.precision, |c, &p| c.emotion.precision = p);
    for c in &cfgs {
        c.follow
            .validate()
            .map_err(|m| exit::usage(format!("--expression-rate: {m}")))?;
    }
    let reports = fer_edge::bench::run(
        &cfgs,
        &fer_edge::bench::BenchOptions {
            frames: a.frames.clone(),
            runs: a.runs.max(1),
            model_only: a.model_only,
            batch: a.batch.iter().map(|&n| n as usize).collect(),
        },
    )
    .map_err(exit::bench_error)?;
    for report in &reports {
        if a.json {
            // One JSON line per engine.
            println!("{}", serde_json::to_string(report).map_err(exit::io)?);
        } else {
            print!("{}", fer_edge::bench::text(report));
        }
    }
    // A frame rate that read fewer faces is no frame rate.
    if let Err(why) = fer_edge::bench::comparable(&reports) {
        eprintln!("error: {why}");
        return Ok(ExitCode::from(exit::INPUT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
