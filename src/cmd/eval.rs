//! `fer-edge eval`: every model on every engine over one labelled set.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{self, Failure};
use super::ConfigArgs;
use super::{load_config, set_engine};

/// `fer-edge eval`'s arguments (its help is the variant's in `cli.rs`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The labelled set: a folder of class folders, or a CSV.
    pub dataset: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Emotion model bundle(s), overriding `[emotion] model`; several are
    /// scored side by side (repeat the flag).
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// Engine(s) for every model, comma separated (`tract,onnxruntime`),
    /// scored side by side; default the config's.
    #[arg(long, value_delimiter = ',')]
    pub backend: Vec<String>,
    /// Which of each bundle's twins to score, comma separated
    /// (`fp32,int8`), side by side; default the config's `[emotion]
    /// precision` (`auto`: the int8 twin where it measures faster here).
    #[arg(long, value_delimiter = ',')]
    pub precision: Vec<fer_edge::emotion::Precision>,
    /// The image is the face crop: no detection or alignment, resized
    /// to the model's input (how FER2013 results are usually quoted).
    #[arg(long)]
    pub whole_image: bool,
    /// FER2013 CSV: only rows of this Usage (PublicTest, PrivateTest, Training).
    #[arg(long)]
    pub usage: Option<String>,
    /// AffectNet CSV: the folder its image paths are relative to
    /// (default: the CSV's folder).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Score only the first N images (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Also write report.html (confusion matrices, per-class bars) and
    /// report.json into this folder.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Also write every image's reading into this CSV, for error
    /// analysis: model, engine, image, label, prediction, confidence,
    /// face_found, error.
    #[arg(long, value_name = "FILE.csv")]
    pub predictions: Option<PathBuf>,
    /// Largest image file read, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_image_mb: u64,
}

impl Args {
    /// Runs it.
    pub fn run(self) -> Result<ExitCode, Failure> {
        let opts = fer_edge::eval::EvalOptions {
            dataset: self.dataset,
            usage: self.usage,
            images: self.images,
            whole_image: self.whole_image,
            limit: self.limit,
            max_image_bytes: self.max_image_mb << 20,
        };
        command(
            &self.config.files,
            self.model,
            self.backend,
            self.precision,
            &opts,
            self.report.as_deref(),
            self.predictions.as_deref(),
        )
    }
}

/// `eval`: every model on every engine over one set, a JSON line each.
fn command(
    config: &[PathBuf],
    models: Vec<PathBuf>,
    engines: Vec<String>,
    precisions: Vec<fer_edge::emotion::Precision>,
    opts: &fer_edge::eval::EvalOptions,
    report: Option<&std::path::Path>,
    predictions: Option<&std::path::Path>,
) -> Result<ExitCode, Failure> {
    use fer_edge::eval;
    use std::io::Write as _;
    let set = eval::open(opts).map_err(exit::usage)?;
    // A few reasons are worth reading; two million lines are not.
    const SHOWN: usize = 20;
    for s in set.skipped.iter().take(SHOWN) {
        eprintln!("skipped: {s}");
    }
    if set.skipped.len() > SHOWN {
        eprintln!(
            "skipped: {} more (all {} are left out of the results; the first {SHOWN} are listed above)",
            set.skipped.len() - SHOWN,
            set.skipped.len()
        );
    }
    let models: Vec<Option<PathBuf>> = match models.len() {
        0 => vec![None],
        _ => models.into_iter().map(Some).collect(),
    };
    let engines: Vec<Option<String>> = match engines.len() {
        0 => vec![None],
        _ => engines.into_iter().map(Some).collect(),
    };
    let precisions: Vec<Option<fer_edge::emotion::Precision>> = match precisions.len() {
        0 => vec![None],
        _ => precisions.into_iter().map(Some).collect(),
    };
    let mut runs = Vec::new();
    let mut stdout = std::io::stdout().lock();
    let mut combos = Vec::new();
    for m in &models {
        for e in &engines {
            combos.extend(precisions.iter().map(|p| (m, e, p)));
        }
    }
    for (m, e, p) in combos {
        let mut cfg = load_config(config, m.clone())?;
        if let Some(e) = e {
            set_engine(&mut cfg, e.clone())?;
        }
        if let Some(p) = p {
            cfg.emotion.precision = *p;
        }
        let bar = eval::progress_bar(set.samples.len(), &cfg);
        let run = eval::run(&cfg, &set, opts, &mut || bar.inc(1)).map_err(exit::config)?;
        bar.finish_and_clear();
        for f in &run.unreadable_files {
            eprintln!("error: {f}");
        }
        let line = serde_json::to_string(&run).map_err(exit::io)?;
        writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .map_err(|e| exit::io(format!("cannot write the results to stdout: {e}")))?;
        runs.push(run);
    }
    write_files(&runs, report, predictions)?;
    let unreadable: usize = runs.iter().map(|r| r.unreadable).max().unwrap_or(0);
    if unreadable > 0 {
        eprintln!("{unreadable} image(s) could not be read and were left out");
        return Ok(ExitCode::from(exit::INPUT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--report DIR` and `--predictions FILE.csv`, when asked for.
fn write_files(
    runs: &[fer_edge::eval::EvalRun],
    report: Option<&std::path::Path>,
    predictions: Option<&std::path::Path>,
) -> Result<(), Failure> {
    use fer_edge::eval;
    if let Some(dir) = report {
        eval::write_report(dir, runs).map_err(|e| {
            (
                exit::EX_CANTCREAT,
                format!(
                    "cannot write the report into {} ({e}): --report names a folder to create or reuse",
                    dir.display()
                )
                .into(),
            )
        })?;
        eprintln!(
            "eval: report written to {}",
            dir.join("report.html").display()
        );
    }
    if let Some(path) = predictions {
        let mut csv = String::from(eval::Prediction::CSV_HEADER);
        csv.push('\n');
        for r in runs {
            for p in &r.predictions {
                csv += &p.csv_row(r);
                csv.push('\n');
            }
        }
        fer_edge::fileio::write_atomic(path, csv.as_bytes()).map_err(|e| {
            (
                exit::EX_CANTCREAT,
                format!("cannot write --predictions {}: {e}", path.display()).into(),
            )
        })?;
        eprintln!("eval: every image's reading written to {}", path.display());
    }
    Ok(())
}
