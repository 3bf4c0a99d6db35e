//! `fer-edge run`: the daemon.

use std::process::ExitCode;

use super::exit::{self, Failure};
use super::{load_config, set_source};
use crate::cmd::cli::ConfigArgs;

pub fn command(
    config: &ConfigArgs,
    source: Option<std::path::PathBuf>,
) -> Result<ExitCode, Failure> {
    // First of all: a SIGTERM from here on stops the daemon cleanly.
    fer_edge::pipeline::early_stop::install();
    let mut cfg = load_config(&config.files, None)?;
    if let Some(s) = source {
        set_source(&mut cfg, s);
    }
    fer_edge::pipeline::run(cfg).map_err(exit::run_error)?;
    Ok(ExitCode::SUCCESS)
}
