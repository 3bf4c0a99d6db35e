//! `fer-edge eval`: every model on every engine over one labelled set.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{self, Failure};
use super::{load_config, set_engine};

/// `eval`: every model on every engine over one set, a JSON line each.
pub fn command(
    config: &[PathBuf],
    models: Vec<PathBuf>,
    engines: Vec<String>,
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
    let mut runs = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for m in &models {
        for e in &engines {
            let mut cfg = load_config(config, m.clone())?;
            if let Some(e) = e {
                set_engine(&mut cfg, e.clone())?;
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
    }
    if let Some(dir) = report {
        eval::write_report(dir, &runs).map_err(|e| {
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
        for r in &runs {
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
    let unreadable: usize = runs.iter().map(|r| r.unreadable).max().unwrap_or(0);
    if unreadable > 0 {
        eprintln!("{unreadable} image(s) could not be read and were left out");
        return Ok(ExitCode::from(exit::INPUT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
