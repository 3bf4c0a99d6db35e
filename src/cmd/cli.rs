//! Command-line interface: what a user can ask fer-edge to do.
//!
//! In: `argv`. Out: a parsed [`Cli`]. Usage errors exit with code 2 (clap's
//! convention), before any model is loaded. Each command's help lists its
//! exit codes; they are defined once, in `exit`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::ConfigArgs;

/// `fer-edge --version`: version, commit, target triple, built-in features.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FER_EDGE_COMMIT"),
    ", ",
    env!("FER_EDGE_TARGET"),
    ", features: ",
    env!("FER_EDGE_FEATURES"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_take_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("60s").unwrap().as_secs(), 60);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        for bad in ["0s", "-1s", "abc", "5 days", "25h", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "fer-edge",
    version = VERSION,
    about = "Facial expressions on the edge, with valence and arousal (derived from the expression by the shipped models, regressed by Emotion-GCN bundles)"
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
    /// be read or decoded (the others are still analysed), 2 for usage
    /// errors, 78 for config or model errors, 74 when the results cannot be
    /// written to stdout (a closed pipe, a full disk: the run stops there).
    Analyze(super::analyze::Args),
    /// Measure accuracy on a labelled set through the real code path: one
    /// JSON object per model and engine on stdout.
    ///
    /// Sets: class folders (`<root>/<label>/*.jpg`: neutral, happy, sad,
    /// surprise, fear, disgust, anger or their synonyms such as angry,
    /// surprised, scared), the FER2013 CSV (`emotion,pixels,Usage`, with
    /// `--usage PublicTest`), or the AffectNet CSV (with valence/arousal:
    /// CCC and RMSE too). End to end by default (detect, align, model; an
    /// image with no face found counts as wrong and is reported apart), or
    /// `--whole-image` (the image is the face crop). Exit code 0 when every
    /// image was read, 1 when some could not be (they are named and
    /// excluded), 2 for usage errors or a set that cannot be used (unknown
    /// class folders, no images), 78 for config or model errors, 73 when
    /// `--report` cannot be written, 74 when stdout cannot be.
    Eval(super::eval::Args),
    /// Run the daemon: capture → faces → tracks → MQTT, until the replay
    /// ends or SIGTERM/SIGINT.
    ///
    /// Exit code 0 on a clean end, 78 for a config or model error (systemd
    /// should not restart), 69 when a device or the broker address is
    /// unavailable (a restart may help), 70 when the embedded broker died
    /// (a restart helps), 2 for usage errors.
    Run(super::run::Args),
    /// Time the real stages on replayed frames (median, p90, p99, frames/s, peak RSS).
    ///
    /// Exit code 0 when timed, 1 when the engines read different work (their
    /// rates are not comparable), 2 for usage errors or frames that cannot
    /// be read, 78 for config or model errors.
    Bench(super::bench::Args),
    /// The field tool for installing a device: run the real chain on the
    /// camera (or a replay) for a while, then report how well it sees
    /// people here and what to change.
    ///
    /// Writes `calibration.toml` (only the keys it recommends changing,
    /// each with the measured reason), `report.json` and a self-contained
    /// `report.html` into `--out`, and prints the advice. Exit code 0 when
    /// the report was written, 1 when it was written and names a problem
    /// (no faces, no frames, a camera that vanished, no baseline; warnings
    /// such as exposure are advice and exit 0), 69 when
    /// the source cannot be opened or `--list` finds no camera, 73 when the
    /// output folder cannot be written, 78 for config or model errors.
    Calibrate(super::calibrate::Args),
    /// Look inside model bundles. Exit code 0, 2 for usage errors or an
    /// unreadable image, 78 for a bundle or engine that cannot be used.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Load the config and every model, open the source and read a frame,
    /// print what would run where and what the source gave, and exit.
    ///
    /// Exit code 0 when everything loads and the source delivers a frame
    /// (within 5 s), 2 for usage errors, 78 for config or model errors (the
    /// same checks `run` makes before it starts), 69 when the source cannot
    /// be opened or gives no frame (for a camera, the cameras present are
    /// listed).
    Check(super::check::Args),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Print a bundle's manifest (checking its sha256) and, for Emotion-GCN
    /// bundles, the graph and the cosine similarity of its classifiers.
    Inspect { bundle: PathBuf },
    /// Run a bundle on one already aligned face crop and print its raw outputs as JSON.
    Run {
        bundle: PathBuf,
        /// A PNG/JPEG crop of exactly the bundle's input size.
        #[arg(long)]
        aligned: PathBuf,
        /// Engine: `tract`, `onnxruntime` or `cuda` (default settings).
        #[arg(long, default_value = "tract")]
        backend: String,
    },
    /// Run the same real inputs (a photo's face) through several engines,
    /// model by model: agreement with the first engine, median latency at
    /// batch 1, and where the nodes ran.
    Compare {
        /// Engines, comma separated; the first is the reference.
        #[arg(long, default_value = "tract,onnxruntime")]
        engines: String,
        /// Photo with a face.
        #[arg(long, default_value = "tests/data/frames640/one_face.png")]
        image: PathBuf,
        /// Emotion bundles to compare besides the detector's networks
        /// (default: the config's emotion model).
        #[arg(long)]
        bundle: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
        /// Timed runs per engine and model, after warm-up.
        #[arg(long, default_value_t = 100)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Align one face as the daemon does (for comparing with training code).
    Align {
        #[arg(long)]
        image: PathBuf,
        /// Left eye centre (the one on the left of the image): X,Y in pixels.
        #[arg(long, value_parser = parse_point)]
        left: [f32; 2],
        #[arg(long, value_parser = parse_point)]
        right: [f32; 2],
        /// Output size (square).
        #[arg(long, default_value_t = 227)]
        size: u32,
        #[arg(long, default_value_t = 0.36)]
        eye_distance: f32,
        #[arg(long, default_value_t = 0.40)]
        eye_line: f32,
        #[arg(long)]
        out: PathBuf,
    },
}

/// `60s`, `2m`, `1h`, `500ms`, or plain seconds; more than 0, at most a day.
pub(super) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 60s, 2m or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?}; use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s:?}: must be more than 0 and at most 24h"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

pub(super) fn parse_point(s: &str) -> Result<[f32; 2], String> {
    let (x, y) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected X,Y"))?;
    let p = |v: &str| v.trim().parse::<f32>().map_err(|e| format!("{v:?}: {e}"));
    Ok([p(x)?, p(y)?])
}
