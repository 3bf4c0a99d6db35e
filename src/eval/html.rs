//! `report.html` of `fer-edge eval`: one self-contained page.
//!
//! In: the [`EvalRun`]s of one invocation (models × engines). Out: an HTML
//! string: a summary table of every run side by side, then per run the
//! confusion matrix (an SVG heat map, row-normalised, with counts) and the
//! per-class precision/recall bars, drawn by `plotters` as `calibrate`
//! draws its report. Nothing fetched, no script.

use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::EvalRun;
use crate::page::{escape, figure, plot_err, Plot, FONT, H, STYLE, W};

/// The confusion matrix: rows true class, columns predicted (+ no face),
/// shaded by the share of the row.
fn confusion(run: &EvalRun) -> Plot {
    let s = &run.scores;
    let mut cols: Vec<String> = s.classes.iter().map(|c| c.to_string()).collect();
    cols.push("no face".into());
    let rows = s.classes.len();
    let mut svg = String::new();
    {
        let (cw, ch) = (78i32, 34i32);
        let (left, top) = (90i32, 40i32);
        let width = (left + cw * cols.len() as i32 + 20) as u32;
        let height = (top + ch * rows as i32 + 50) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let title = (
            "Confusion matrix: true class (rows) → reading (columns)",
            (FONT, 16),
        );
        root.draw(&Text::new(title.0, (10, 8), title.1))
            .map_err(plot_err)?;
        let label = (FONT, 13).into_font();
        for (j, c) in cols.iter().enumerate() {
            root.draw(&Text::new(
                c.clone(),
                (left + cw * j as i32 + 6, top - 14),
                label.clone(),
            ))
            .map_err(plot_err)?;
        }
        for (i, row) in s.confusion_matrix.iter().enumerate() {
            let total: usize = row.iter().sum();
            let y = top + ch * i as i32;
            root.draw(&Text::new(
                s.classes[i].to_string(),
                (8, y + ch / 2 - 6),
                label.clone(),
            ))
            .map_err(plot_err)?;
            for (j, &n) in row.iter().enumerate() {
                let share = if total == 0 {
                    0.0
                } else {
                    n as f64 / total as f64
                };
                let x = left + cw * j as i32;
                // White to deep blue; the diagonal is what is right.
                let shade = |full: u8| (255.0 - share * (255.0 - full as f64)) as u8;
                let fill = if i == j {
                    RGBColor(shade(25), shade(110), shade(60))
                } else {
                    RGBColor(shade(30), shade(70), shade(160))
                };
                root.draw(&Rectangle::new(
                    [(x, y), (x + cw - 2, y + ch - 2)],
                    fill.filled(),
                ))
                .map_err(plot_err)?;
                let ink = if share > 0.55 { WHITE } else { BLACK };
                let text = format!("{n} ({:.0}%)", share * 100.0);
                root.draw(&Text::new(
                    text,
                    (x + 6, y + ch / 2 - 6),
                    label.clone().color(&ink),
                ))
                .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Precision and recall per class, side by side.
fn class_bars(run: &EvalRun) -> Plot {
    let pc = &run.scores.per_class;
    let n = pc.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Per class: precision (blue), recall (orange)", (FONT, 16))
            .margin(12)
            .x_label_area_size(10)
            .y_label_area_size(40)
            // Room under 0 for the class names, each centred under its pair
            // of bars (axis labels fall where the mesh puts them, which is
            // not under the bars: the names were missing).
            .build_cartesian_2d(0f64..n as f64, -0.1f64..1.0)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(6)
            .y_label_formatter(&|y| {
                if *y < 0.0 {
                    String::new()
                } else {
                    format!("{y:.1}")
                }
            })
            .y_desc("share")
            .draw()
            .map_err(plot_err)?;
        let label =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series(pc.iter().enumerate().map(|(i, c)| {
                Text::new(c.class.to_string(), (i as f64 + 0.5, -0.05), label.clone())
            }))
            .map_err(plot_err)?;
        let blue = RGBColor(31, 95, 168);
        let orange = RGBColor(230, 126, 34);
        chart
            .draw_series(pc.iter().enumerate().map(|(i, c)| {
                let x = i as f64;
                Rectangle::new([(x + 0.1, 0.0), (x + 0.48, c.precision)], blue.filled())
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(pc.iter().enumerate().map(|(i, c)| {
                let x = i as f64;
                Rectangle::new([(x + 0.52, 0.0), (x + 0.9, c.recall)], orange.filled())
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The whole page.
pub fn render(runs: &[EvalRun]) -> String {
    let mut out = String::new();
    let set = runs.first().map(|r| &r.dataset);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fer-edge eval</title><style>{STYLE}</style></head><body>\n<h1>fer-edge eval</h1>\n<p class=\"muted\">fer-edge {} · set {} ({}{}, {} images)</p>\n",
        escape(env!("CARGO_PKG_VERSION")),
        escape(set.map(|s| s.path.as_str()).unwrap_or("-")),
        escape(set.map(|s| s.format).unwrap_or("-")),
        escape(
            &set.and_then(|s| s.usage.as_ref())
                .map(|u| format!(", Usage {u}"))
                .unwrap_or_default()
        ),
        set.map(|s| s.samples).unwrap_or(0),
    );
    out += "<h2 id=\"summary\">Summary</h2>\n<div class=\"wide\"><table>\n<tr><th>model</th><th>engine</th><th>mode</th><th>accuracy</th><th>macro-F1</th><th>faces found</th><th>accuracy when found</th><th>ECE</th><th>CCC V / A</th><th>unreadable</th><th>images/s</th></tr>\n";
    for r in runs {
        let s = &r.scores;
        let ccc = match (&r.valence, &r.arousal) {
            (Some(v), Some(a)) => format!("{:.3} / {:.3}", v.ccc, a.ccc),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
            escape(&r.model),
            escape(&format!("{} ({})", r.engine, r.precision)),
            r.mode,
            pct(s.accuracy),
            s.macro_f1,
            pct(s.face_found_rate),
            pct(s.accuracy_when_found),
            s.ece,
            ccc,
            r.unreadable,
            r.images_per_s
        );
    }
    out += "</table></div>\n";
    for (k, r) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "<h2 id=\"run{k}\">{} on {} ({})</h2>\n<p class=\"muted\">{} · sha256 {}</p>",
            escape(&r.model),
            escape(&format!("{} ({})", r.engine, r.precision)),
            r.mode,
            escape(&r.model_path),
            escape(&r.model_sha256)
        );
        figure(&mut out, &format!("confusion{k}"), confusion(r));
        figure(&mut out, &format!("classes{k}"), class_bars(r));
        out += "<table><tr><th>class</th><th>images</th><th>precision</th><th>recall</th><th>F1</th></tr>\n";
        for c in &r.scores.per_class {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                c.class, c.support, c.precision, c.recall, c.f1
            );
        }
        out += "</table>\n";
        if !r.unreadable_files.is_empty() {
            let _ = writeln!(out, "<h3>Unreadable ({})</h3>\n<ul>", r.unreadable);
            for f in &r.unreadable_files {
                let _ = writeln!(out, "<li>{}</li>", escape(f));
            }
            out += "</ul>\n";
        }
    }
    out += "</body></html>\n";
    out
}
