//! `fer-edge analyze`: still images, one JSON line each on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{self, Failure};
use super::ChainArgs;
use fer_edge::analyze::{self, AnalyzeError, AnalyzeOptions};
use fer_edge::faces::FaceChain;

/// `fer-edge analyze`'s arguments (its help is the variant's in `cli.rs`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image files (PNG, JPEG) or folders of them (read in name order).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Also write `<name>.annotated.png` per image into this folder.
    #[arg(long, value_name = "DIR")]
    pub annotate: Option<PathBuf>,
    /// Largest image file read, in MiB (larger ones fail with their size).
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_image_mb: u64,
}

impl Args {
    /// Runs it.
    pub fn run(self) -> Result<ExitCode, Failure> {
        let opts = AnalyzeOptions {
            paths: self.paths,
            annotate_dir: self.annotate,
            max_image_bytes: self.max_image_mb << 20,
        };
        command(&self.chain, &opts)
    }
}

fn command(chain: &ChainArgs, opts: &AnalyzeOptions) -> Result<ExitCode, Failure> {
    let cfg = chain.load()?;
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
