//! Progress bars of the long-running commands (`eval`, `bench`), drawn by
//! `indicatif` on stderr when it is a terminal and hidden otherwise (logs
//! and pipes get no control characters).
//!
//! In: a total and a label. Out: an [`indicatif::ProgressBar`] the command
//! advances. A bottom layer: imports nothing of ours.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` items called `unit`, labelled `message`.
pub fn bar(total: u64, message: String, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template =
        format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{per_sec}}, {{eta}} left");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("#>-"));
    }
    bar.set_message(message);
    bar
}
