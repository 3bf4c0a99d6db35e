//! Command-line interface: what a user can ask fer-edge to do.
//!
//! In: `argv`. Out: a parsed [`Cli`]. Usage errors exit with code 2 (clap's
//! convention), before any model is loaded. Each command's help lists its
//! exit codes; they are defined once, in `exit`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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

/// The config files of every command that reads one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Config file(s) in the daemon's format (every key has a default); a
    /// later file overrides an earlier one key by key (e.g. --config
    /// /etc/fer-edge/fer-edge.toml --config calibration.toml). `calibrate`
    /// without one uses /etc/fer-edge/fer-edge.toml when it exists.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub files: Vec<PathBuf>,
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
    Analyze {
        /// Image files (PNG, JPEG) or folders of them (read in name order).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
        /// Emotion model bundle, overriding `[emotion] model`.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Engine for every model (`tract`, `onnxruntime`, `cuda`),
        /// overriding the config's.
        #[arg(long)]
        backend: Option<String>,
        /// Also write `<name>.annotated.png` per image into this folder.
        #[arg(long, value_name = "DIR")]
        annotate: Option<PathBuf>,
        /// Largest image file read, in MiB (larger ones fail with their size).
        #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        max_image_mb: u64,
    },
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
    Eval {
        /// The labelled set: a folder of class folders, or a CSV.
        dataset: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
        /// Emotion model bundle(s), overriding `[emotion] model`; several are
        /// scored side by side (repeat the flag).
        #[arg(long)]
        model: Vec<PathBuf>,
        /// Engine(s) for every model, comma separated (`tract,onnxruntime`),
        /// scored side by side; default the config's.
        #[arg(long, value_delimiter = ',')]
        backend: Vec<String>,
        /// The image is the face crop: no detection or alignment, resized
        /// to the model's input (how FER2013 results are usually quoted).
        #[arg(long)]
        whole_image: bool,
        /// FER2013 CSV: only rows of this Usage (PublicTest, PrivateTest, Training).
        #[arg(long)]
        usage: Option<String>,
        /// AffectNet CSV: the folder its image paths are relative to
        /// (default: the CSV's folder).
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
        /// Score only the first N images (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// Also write report.html (confusion matrices, per-class bars) and
        /// report.json into this folder.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Also write every image's reading into this CSV, for error
        /// analysis: model, engine, image, label, prediction, confidence,
        /// face_found, error.
        #[arg(long, value_name = "FILE.csv")]
        predictions: Option<PathBuf>,
        /// Largest image file read, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        max_image_mb: u64,
    },
    /// Run the daemon: capture → faces → tracks → MQTT, until the replay
    /// ends or SIGTERM/SIGINT.
    ///
    /// Exit code 0 on a clean end, 78 for a config or model error (systemd
    /// should not restart), 69 when a device or the broker address is
    /// unavailable (a restart may help), 70 when the embedded broker died
    /// (a restart helps), 2 for usage errors.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// A source overriding `[source]`: a camera device (`/dev/video0`,
        /// `/dev/v4l/by-id/...`), an IP camera or stream URL (`rtsp://`,
        /// `http://`, `file://`, read through GStreamer) or a replay (a
        /// folder of images or a video file).
        #[arg(long)]
        source: Option<PathBuf>,
    },
    /// Time the real stages on replayed frames (median, p90, p99, frames/s, peak RSS).
    ///
    /// Exit code 0 when timed, 1 when the engines read different work (their
    /// rates are not comparable), 2 for usage errors or frames that cannot
    /// be read, 78 for config or model errors.
    Bench {
        #[command(flatten)]
        config: ConfigArgs,
        /// Emotion model bundle, overriding `[emotion] model`.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Engine for every model, overriding the config's; several, comma
        /// separated (`tract,onnxruntime`), are timed side by side in
        /// interleaved rounds.
        #[arg(long)]
        backend: Option<String>,
        /// Override `[follow] interval` (frames followed between full
        /// detections; 0 detects every frame).
        #[arg(long)]
        interval: Option<u32>,
        /// Override `[follow] background`; `false,true` times both side
        /// by side in interleaved rounds.
        #[arg(long, value_delimiter = ',')]
        background: Vec<bool>,
        /// Override `[follow] expression_rate_hz` (most readings per face
        /// and second, 0 every frame); `0,5` times both side by side.
        #[arg(long, value_delimiter = ',')]
        expression_rate: Vec<f64>,
        /// Folder of frames to replay as one video, in name order
        /// (`tests/data/sequences/pan6` has six faces).
        #[arg(long, default_value = "tests/data/sequences/pan1")]
        frames: PathBuf,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Time only the emotion model on one aligned crop (batch 1).
        #[arg(long)]
        model_only: bool,
        /// Measure this core's peak FP32 rate (an FMA loop) and exit.
        #[arg(long)]
        peak: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    Calibrate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Camera device (`/dev/video0`, `/dev/v4l/by-id/...`), an IP camera
        /// URL (`rtsp://...`) or a replay (a folder of images or a video
        /// file), overriding `[source]`.
        #[arg(long)]
        source: Option<PathBuf>,
        /// How long to watch: `60s`, `2m`, `90` (seconds), `500ms`.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Folder for calibration.toml, report.json and report.html.
        #[arg(long, default_value = "calibration")]
        out: PathBuf,
        /// One person holds a neutral face for the whole duration: write the
        /// `[calibration]` offsets and class bias measured on it.
        #[arg(long)]
        baseline: bool,
        /// List the V4L2 cameras and the formats, sizes and frame rates each
        /// offers, and exit.
        #[arg(long)]
        list: bool,
        /// Also write a few annotated thumbnails (face images: off by
        /// default, nothing of a face is written without it).
        #[arg(long)]
        save_frames: bool,
        /// Frames/s the speed advice aims at (default `[source] fps`).
        #[arg(long)]
        target_fps: Option<f64>,
        /// Timed rounds per engine over the frames kept from the run (0: do
        /// not time the engines).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=100))]
        speed_runs: u64,
        /// Print the report as JSON on stdout instead of the advice.
        #[arg(long)]
        json: bool,
    },
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
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Engine for every model, overriding the config's.
        #[arg(long)]
        backend: Option<String>,
        /// A source overriding `[source]`: a camera device, an IP camera URL
        /// (`rtsp://...`) or a replay.
        #[arg(long)]
        source: Option<PathBuf>,
    },
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
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
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

fn parse_point(s: &str) -> Result<[f32; 2], String> {
    let (x, y) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected X,Y"))?;
    let p = |v: &str| v.trim().parse::<f32>().map_err(|e| format!("{v:?}: {e}"));
    Ok([p(x)?, p(y)?])
}
