//! `fer-edge run`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{self, Failure};
use super::ConfigArgs;
use super::{load_config, set_source};

/// `fer-edge run`'s arguments (its help is the variant's in `cli.rs`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A source overriding `[source]`: a camera device (`/dev/video0`,
    /// `/dev/v4l/by-id/...`), an IP camera or stream URL (`rtsp://`,
    /// `http://`, `file://`, read through GStreamer), a ROS 2 image topic
    /// (`ros2:///camera/image_raw`, on `[ros2] domain_id`) or a replay (a
    /// folder of images or a video file).
    #[arg(long)]
    pub source: Option<PathBuf>,
}

impl Args {
    /// Runs it.
    pub fn run(self) -> Result<ExitCode, Failure> {
        command(&self.config, self.source)
    }
}

fn command(config: &ConfigArgs, source: Option<std::path::PathBuf>) -> Result<ExitCode, Failure> {
    // First of all: a SIGTERM from here on stops the daemon cleanly.
    fer_edge::pipeline::early_stop::install();
    let mut cfg = load_config(&config.files, None)?;
    if let Some(s) = source {
        set_source(&mut cfg, s);
    }
    fer_edge::pipeline::run(cfg).map_err(exit::run_error)?;
    Ok(ExitCode::SUCCESS)
}
