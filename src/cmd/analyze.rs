//! `fer-edge analyze`: still images, one JSON line each on stdout.

use std::process::ExitCode;

use super::exit::{self, Failure};
use super::{load_config, set_engine};
use crate::cmd::cli::ConfigArgs;
use fer_edge::analyze::{self, AnalyzeError, AnalyzeOptions};
use fer_edge::faces::FaceChain;

pub fn command(
    config: &ConfigArgs,
    model: Option<std::path::PathBuf>,
    backend: Option<String>,
    opts: &AnalyzeOptions,
) -> Result<ExitCode, Failure> {
    let mut cfg = load_config(&config.files, model)?;
    if let Some(b) = backend {
        set_engine(&mut cfg, b)?;
    }
    let mut chain = FaceChain::from_config(&cfg).map_err(exit::config)?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let summary = analyze::run(&mut chain, opts, &mut stdout.lock(), &mut stderr.lock()).map_err(
        |e| match e {
            AnalyzeError::Output { .. } => exit::io(e),
            e => (exit::EX_CANTCREAT, Box::new(e) as _),
        },
    )?;
    if summary.failed > 0 {
        eprintln!(
            "{} of {} input(s) failed",
            summary.failed,
            summary.failed + summary.analysed
        );
        return Ok(ExitCode::from(exit::INPUT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
