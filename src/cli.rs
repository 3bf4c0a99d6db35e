//! Command-line interface: what a user can ask fer-edge to do.
//!
//! In: `argv`. Out: a parsed [`Cli`]. Usage errors exit with code 2 (clap's
//! convention), before any model is loaded.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fer-edge",
    version,
    about = "Facial expression, valence and arousal on the edge (Emotion-GCN)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse still images: one JSON line per image on stdout.
    ///
    /// Exit code 0 when every input was analysed, 1 when any input could not
    /// be read or decoded (the others are still analysed), 2 for usage,
    /// config or model errors.
    Analyze {
        /// Image files (PNG, JPEG) or folders of them (read in name order).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// TOML config file (the daemon's format; every key has a default).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Emotion model bundle, overriding `[emotion] model`.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Also write `<name>.annotated.png` per image into this folder.
        #[arg(long, value_name = "DIR")]
        annotate: Option<PathBuf>,
    },
    /// Run the daemon: capture → faces → tracks → MQTT, until the replay
    /// ends or SIGTERM/SIGINT.
    ///
    /// Exit code 0 on a clean end, 78 for a config or model error (systemd
    /// should not restart), 69 when a device or the broker address is
    /// unavailable (a restart may help).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Load the config and every model, print what would run, and exit.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}
