//! `fer-edge bench`: the engines and detector modes named, timed side by
//! side on the daemon's own frame path; or `--peak`.

use std::process::ExitCode;

use super::exit::{self, Failure};
use super::{load_config, set_engine};
use crate::cmd::cli::ConfigArgs;
use fer_edge::config::Config;

/// What `fer-edge bench` was asked on the command line.
pub struct Args {
    pub config: ConfigArgs,
    pub model: Option<std::path::PathBuf>,
    pub backend: Option<String>,
    pub interval: Option<u32>,
    pub background: Vec<bool>,
    pub expression_rate: Vec<f64>,
    pub opts: fer_edge::bench::BenchOptions,
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
    let cfgs = vary(engines, &a.background, |c, &b| c.follow.background = b);
    let cfgs = vary(cfgs, &a.expression_rate, |c, &hz| {
        c.follow.expression_rate_hz = hz
    });
    for c in &cfgs {
        c.follow
            .validate()
            .map_err(|m| exit::usage(format!("--expression-rate: {m}")))?;
    }
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
