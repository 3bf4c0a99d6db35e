//! `fer-edge calibrate`: the options, the run, the advice printed, the
//! files written and checked to layer onto the config; and `--list`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{self, Failure};
use super::ConfigArgs;
use super::{load_config, set_source};
use fer_edge::calibrate::CalibrateOptions;
use fer_edge::config::Config;

/// `fer-edge calibrate`'s arguments (its help is the variant's in `cli.rs`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Camera device (`/dev/video0`, `/dev/v4l/by-id/...`), an IP camera
    /// URL (`rtsp://...`), a ROS 2 image topic (`ros2:///camera/image_raw`)
    /// or a replay (a folder of images or a video file), overriding `[source]`.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// How long to watch: `60s`, `2m`, `90` (seconds), `500ms`.
    #[arg(long, default_value = "60s", value_parser = super::cli::parse_duration)]
    pub duration: std::time::Duration,
    /// Folder for calibration.toml, report.json and report.html.
    #[arg(long, default_value = "calibration")]
    pub out: PathBuf,
    /// One person holds a neutral face for the whole duration: write the
    /// `[calibration]` offsets and class bias measured on it.
    #[arg(long)]
    pub baseline: bool,
    /// List the V4L2 cameras and the formats, sizes and frame rates each
    /// offers, and exit.
    #[arg(long)]
    pub list: bool,
    /// Also write a few annotated thumbnails (face images: off by
    /// default, nothing of a face is written without it).
    #[arg(long)]
    pub save_frames: bool,
    /// Frames/s the speed advice aims at (default `[source] fps`).
    #[arg(long)]
    pub target_fps: Option<f64>,
    /// Timed rounds per engine over the frames kept from the run (0: do
    /// not time the engines).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub speed_runs: u64,
    /// Print the report as JSON on stdout instead of the advice.
    #[arg(long)]
    pub json: bool,
}

/// The package's config file.
const INSTALLED_CONFIG: &str = "/etc/fer-edge/fer-edge.toml";

const NO_CAMERA: &str = "no V4L2 camera found (no /dev/video* device): plug the camera in, check `dmesg` for the driver, and, when running as a service, that the fer-edge user is in group `video`";

impl Args {
    /// Runs it: `--list`, or a calibration.
    pub fn run(self) -> Result<ExitCode, Failure> {
        if self.list {
            return list_cameras(self.json);
        }
        command(self)
    }
}

/// `fer-edge calibrate` (without `--list`).
fn command(args: Args) -> Result<ExitCode, Failure> {
    // On an installed device a bare `fer-edge calibrate` measures the
    // device's own config.
    let installed = PathBuf::from(INSTALLED_CONFIG);
    let config = if args.config.files.is_empty() && installed.is_file() {
        eprintln!("calibrate: using {INSTALLED_CONFIG} (give --config to use another)");
        vec![installed]
    } else {
        args.config.files
    };
    let mut cfg = load_config(&config, None)?;
    if let Some(s) = args.source {
        set_source(&mut cfg, s);
    }
    let opts = CalibrateOptions {
        duration: args.duration,
        out: args.out,
        baseline: args.baseline,
        save_frames: args.save_frames,
        target_fps: args.target_fps,
        speed_runs: args.speed_runs as usize,
        config_files: config,
    };
    calibrate(&cfg, &opts, args.json)
}

/// `fer-edge calibrate --list`.
fn list_cameras(json: bool) -> Result<ExitCode, Failure> {
    let cams = fer_edge::capture::list_cameras();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&cams).map_err(exit::config)?
        );
    }
    if cams.is_empty() {
        return Err((exit::EX_UNAVAILABLE, NO_CAMERA.into()));
    }
    if !json {
        for c in &cams {
            println!(
                "{}  {}  ({}, {})",
                c.path.display(),
                c.card,
                c.driver,
                c.bus
            );
            for id in &c.by_id {
                println!("    stable name: {}", id.display());
            }
            if let Some(e) = &c.error {
                println!("    {e}");
            }
            if !c.captures_video && c.error.is_none() {
                println!("    not a video capture node (metadata)");
            }
            for f in &c.formats {
                let note = if f.supported {
                    ""
                } else {
                    "  (fer-edge cannot convert this one)"
                };
                println!("    {} {}{note}", f.fourcc, f.description);
                for s in &f.sizes {
                    println!("        {s}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `fer-edge calibrate`: runs, prints the advice, checks the file it wrote
/// layers onto the config it was given.
fn calibrate(cfg: &Config, opts: &CalibrateOptions, json: bool) -> Result<ExitCode, Failure> {
    use fer_edge::calibrate::{self, CalibrateError};
    let outcome = calibrate::run(cfg, opts).map_err(|e| {
        let code = match &e {
            CalibrateError::Output { .. } => exit::EX_CANTCREAT,
            CalibrateError::Source(_) => {
                super::source_hints(cfg, &e.to_string());
                exit::EX_UNAVAILABLE
            }
            CalibrateError::Thread(_) => exit::EX_SOFTWARE,
            _ => exit::EX_CONFIG,
        };
        (code, Box::new(e) as Box<dyn std::error::Error>)
    })?;
    let report = &outcome.report;
    if json || outcome.write_error.is_some() {
        // Nothing measured is lost when the folder fails at the end.
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(exit::config)?
        );
    } else {
        print!("{}", report.advice_text());
        println!();
        print!("{}", report.calibration_toml);
    }
    if let Some(e) = outcome.write_error {
        return Err((exit::EX_CANTCREAT, Box::new(e)));
    }
    for p in &outcome.written {
        eprintln!("wrote {}", fer_edge::fileio::shown(p));
    }
    // The file must layer onto the config it was measured with.
    let mut layers = opts.config_files.clone();
    layers.push(opts.out.join("calibration.toml"));
    load_config(&layers, None).map_err(|(_, e)| {
        (
            exit::EX_SOFTWARE,
            format!("the calibration.toml just written is not accepted on top of the config: {e}")
                .into(),
        )
    })?;
    // Exit 1 for a PROBLEM (the report's first lines say what to fix);
    // warnings (exposure, blur, a face small in the frame) are advice on a
    // complete, usable calibration, so they exit 0 and are counted here:
    // a provisioning script must not fail on advice.
    let warnings = report
        .advice
        .iter()
        .filter(|a| a.level == fer_edge::calibrate::advice::Level::Warning)
        .count();
    if warnings > 0 {
        eprintln!(
            "calibrate: {warnings} warning(s) above: advice, not failures (exit 0; a PROBLEM exits 1)"
        );
    }
    Ok(if report.has_problems() {
        ExitCode::from(exit::INPUT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
