//! `fer-edge bench`: the engines and detector modes named, timed side by
//! side on the daemon's own frame path; or `--peak`.

use std::process::ExitCode;

use super::exit::{self, Failure};
use super::{load_config, set_engine};
use crate::cmd::cli::ConfigArgs;

/// What `fer-edge bench` was asked on the command line.
pub struct Args {
    pub config: ConfigArgs,
    pub model: Option<std::path::PathBuf>,
    pub backend: Option<String>,
    pub interval: Option<u32>,
    pub background: Vec<bool>,
    pub opts: fer_edge::bench::BenchOptions,
    pub json: bool,
}

/// `--peak`: this core's FP32 rate.
pub fn peak(json: bool) -> Result<ExitCode, Failure> {
    let g = fer_edge::bench::peak_gflops();
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

pub fn command(a: Args) -> Result<ExitCode, Failure> {
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
    let cfgs: Vec<_> = if a.background.is_empty() {
        engines
    } else {
        engines
            .iter()
            .flat_map(|c| {
                a.background.iter().map(|&b| {
                    let mut c = c.clone();
                    c.follow.background = b;
                    c
                })
            })
            .collect()
    };
    let reports = fer_edge::bench::run(&cfgs, &a.opts).map_err(exit::bench_error)?;
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
