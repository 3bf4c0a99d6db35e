//! `report.html`: one self-contained page for the technician.
//!
//! In: the [`Report`] (and, with `--save-frames`, PNG thumbnails). Out: an
//! HTML string with the advice in plain words at the top, then the figures
//! as tables and SVG plots drawn by `plotters` (face sizes, where faces
//! appear, face brightness, frame rate and latency over time, valence and
//! arousal per track over time). No script, no stylesheet or font from
//! the network: it opens the same on a laptop in the field with no
//! connection.

use std::fmt::Write as _;

use base64::Engine as _;
use plotters::prelude::*;

use crate::page::escape;
use crate::page::{figure, plot_err, Plot, FONT, H, STYLE, W};

use super::survey::{Bin, Figures, Spread, HEAT_COLS, HEAT_ROWS};
use super::Report;

/// A histogram as bars.
fn bars(title: &str, x_desc: &str, bins: &[Bin], colour: RGBColor) -> Plot {
    let (Some(first), Some(last)) = (bins.first(), bins.last()) else {
        return Err("no data".into());
    };
    let top = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(first.lo..last.hi, 0u32..top + top / 10 + 1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("count")
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(
                bins.iter()
                    .map(|b| Rectangle::new([(b.lo, 0), (b.hi, b.count)], colour.filled())),
            )
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Where face centres fell in the frame, as a grid of shaded cells.
fn heatmap(counts: &[u32], frame: [u32; 2]) -> Plot {
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (fw, fh) = (frame[0].max(1) as f64, frame[1].max(1) as f64);
    let height = (W as f64 * fh / fw).clamp(200.0, 600.0) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Where faces appear in the frame", (FONT, 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(50)
            // y grows downwards, as in the image.
            .build_cartesian_2d(0f64..fw, fh..0f64)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x (px)")
            .y_desc("y (px)")
            .draw()
            .map_err(plot_err)?;
        let (cw, ch) = (fw / HEAT_COLS as f64, fh / HEAT_ROWS as f64);
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                let (c, r) = ((i % HEAT_COLS) as f64, (i / HEAT_COLS) as f64);
                let v = n as f64 / top;
                // White (none) to deep red (most).
                let shade = RGBColor(
                    255 - (v * 55.0) as u8,
                    255 - (v * 215.0) as u8,
                    255 - (v * 215.0) as u8,
                );
                Rectangle::new(
                    [(c * cw, r * ch), ((c + 1.0) * cw, (r + 1.0) * ch)],
                    shade.filled(),
                )
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Width of the legend column beside a chart of several lines, in pixels.
const LEGEND_W: u32 = 170;

/// Lines over time, one per named series.
fn lines(
    title: &str,
    y_desc: &str,
    y: std::ops::Range<f32>,
    series: &[(String, Vec<(f32, f32)>)],
) -> Plot {
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f32, f32::max);
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err("no data".into());
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        // With several series the legend gets a column of its own at the
        // right, so that it never covers a curve.
        let legend = series.len() > 1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .margin_right(if legend { LEGEND_W } else { 12 })
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f32..x_max, y)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc(y_desc)
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(plot_err)?;
        for (i, (name, points)) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(plot_err)?;
            if legend && i < 12 {
                let x = W as i32 - LEGEND_W as i32 + 8;
                let y = 44 + 18 * i as i32;
                root.draw(&PathElement::new(
                    [(x, y), (x + 16, y)],
                    colour.stroke_width(2),
                ))
                .map_err(plot_err)?;
                let shown: String = name.chars().take(24).collect();
                root.draw(&Text::new(shown, (x + 22, y - 7), (FONT, 12)))
                    .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn spread_row(name: &str, unit: &str, s: Option<&Spread>) -> String {
    match s {
        Some(s) => format!(
            "<tr><th>{}</th><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>\n",
            escape(name), s.min, s.p10, s.p50, s.p90, s.max, escape(unit)
        ),
        None => format!("<tr><th>{}</th><td colspan=\"6\">not measured</td></tr>\n", escape(name)),
    }
}

fn spread_table(rows: &[(&str, &str, Option<&Spread>)]) -> String {
    let mut t = String::from("<table><tr><th></th><th>min</th><th>p10</th><th>median</th><th>p90</th><th>max</th><th></th></tr>\n");
    for (n, u, s) in rows {
        t += &spread_row(n, u, *s);
    }
    t + "</table>\n"
}

fn timeline_plots(out: &mut String, f: &Figures) {
    let fps: Vec<(f32, f32)> = f
        .timeline
        .iter()
        .map(|s| (s.s as f32 + 0.5, s.frames as f32))
        .collect();
    let top = fps.iter().map(|p| p.1).fold(1.0f32, f32::max) * 1.2;
    figure(
        out,
        "fps",
        lines(
            "Frames processed per second",
            "frames/s",
            0.0..top,
            &[("processed".into(), fps)],
        ),
    );
    let ms: Vec<(f32, f32)> = f
        .timeline
        .iter()
        .map(|s| (s.s as f32 + 0.5, s.process_ms_p50))
        .collect();
    let top = ms.iter().map(|p| p.1).fold(1.0f32, f32::max) * 1.2;
    figure(
        out,
        "latency",
        lines(
            "Processing time per frame (median of each second)",
            "ms",
            0.0..top,
            &[("per frame".into(), ms)],
        ),
    );
}

fn va_plots(out: &mut String, f: &Figures) {
    for (k, title, i) in [
        ("valence", "Valence over time, per track (smoothed)", 1usize),
        ("arousal", "Arousal over time, per track (smoothed)", 2),
    ] {
        let series: Vec<(String, Vec<(f32, f32)>)> = f
            .va_by_track
            .iter()
            .map(|(id, pts)| {
                (
                    format!("track {id}"),
                    pts.iter().map(|p| (p[0], p[i])).collect(),
                )
            })
            .collect();
        figure(out, k, lines(title, k, -1.0..1.0, &series));
    }
}

/// The whole page: one function per section.
pub fn render(r: &Report, thumbnails: &[(String, Vec<u8>)]) -> String {
    let mut out = String::new();
    section_header(&mut out, r);
    section_camera(&mut out, r);
    section_faces(&mut out, r);
    section_quality(&mut out, r);
    section_speed(&mut out, r);
    section_emotion(&mut out, r);
    if !thumbnails.is_empty() {
        out += "<h2 id=\"frames\">Frames (--save-frames)</h2>\n";
        for (name, png) in thumbnails {
            let _ = writeln!(
                out,
                "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
                escape(name),
                base64::engine::general_purpose::STANDARD.encode(png),
                escape(name)
            );
        }
    }
    out += "</body></html>\n";
    out
}

/// The title line and the advice.
fn section_header(out: &mut String, r: &Report) {
    let f = &r.figures;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>fer-edge calibration report</title><style>{STYLE}</style></head><body>\n<h1>fer-edge calibration report</h1>\n<p class=\"muted\">fer-edge {} on {} · source {} · {:.0} s asked, {:.1} s measured · model {} · config {}</p>\n",
        escape(&r.fer_edge),
        escape(&r.machine),
        escape(&r.camera.source),
        r.duration_requested_s,
        f.span_s,
        escape(&r.model),
        escape(&if r.config_files.is_empty() { "defaults".to_string() } else { r.config_files.join(" + ") }),
    );
    *out += "<h2 id=\"advice\">Advice</h2>\n<ul class=\"advice\">\n";
    for a in &r.advice {
        let tag = a.level.tag();
        let class = tag.to_lowercase();
        let _ = writeln!(
            out,
            "<li class=\"{class}\"><span class=\"tag\">{tag}</span> <b>{}</b>: {}</li>",
            escape(a.topic),
            escape(&a.text)
        );
    }
    *out += "</ul>\n<h3>calibration.toml</h3>\n";
    let _ = writeln!(
        out,
        "<pre id=\"toml\">{}</pre>",
        escape(&r.calibration_toml)
    );
}

/// What the source delivered.
fn section_camera(out: &mut String, r: &Report) {
    *out += "<h2 id=\"camera\">Camera</h2>\n<table>\n";
    let c = &r.camera;
    for (k, v) in [
        ("source", c.source.clone()),
        ("frames delivered", c.delivered.to_string()),
        (
            "frames/s delivered",
            format!("{:.2} (asked {:.0})", c.delivered_fps, c.requested_fps),
        ),
        ("skipped (a newer frame was ready)", c.skipped.to_string()),
        ("lost by the driver", c.dropped_by_source.to_string()),
        ("frames that failed", c.frame_errors.to_string()),
        ("outages", c.outages.len().to_string()),
    ] {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(k),
            escape(&v)
        );
    }
    *out += "</table>\n";
    if !r.cameras.is_empty() {
        *out += "<h3>Devices present</h3>\n<table><tr><th>device</th><th>name</th><th>formats</th></tr>\n";
        for cam in &r.cameras {
            let formats = cam
                .formats
                .iter()
                .map(|f| {
                    escape(&format!(
                        "{} ({}): {}",
                        f.fourcc,
                        f.description,
                        f.sizes.join("; ")
                    ))
                })
                .collect::<Vec<_>>()
                .join("<br>");
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}{}</td></tr>",
                escape(&cam.path.display().to_string()),
                escape(&cam.card),
                formats,
                cam.error.as_deref().map(escape).unwrap_or_default()
            );
        }
        *out += "</table>\n";
    }
}

/// Faces seen: sizes, roll, scores, tracks, where they appear.
fn section_faces(out: &mut String, r: &Report) {
    let f = &r.figures;
    *out += "<h2 id=\"faces\">Faces</h2>\n";
    match &f.faces {
        Some(faces) => {
            let _ = writeln!(
                out,
                "<p>{} face readings on {} of {} frames, up to {} at once; {} track(s), {} id switch(es), {} face(s) untracked for over 1 s{}.</p>",
                faces.readings, faces.frames_with_faces, f.frames, faces.most_faces_in_a_frame, f.tracks.tracks, f.tracks.id_switches,
                f.tracks.lost,
                f.tracks.longest_lost_s.map(|s| format!(" (longest {s:.1} s)")).unwrap_or_default()
            );
            *out += &spread_table(&[
                ("face size", "px", Some(&faces.size_px)),
                ("head roll", "degrees", Some(&faces.roll_deg)),
                ("detector score", "", Some(&faces.score)),
                ("track duration", "s", f.tracks.duration_s.as_ref()),
            ]);
            figure(
                out,
                "sizes",
                bars(
                    "Face sizes",
                    "face box side (px)",
                    &faces.size_histogram,
                    RGBColor(31, 95, 168),
                ),
            );
            figure(out, "heatmap", heatmap(&faces.heatmap, f.frame_size));
        }
        None => *out += "<p class=\"problem\">No face was seen.</p>\n",
    }
}

/// Image quality on the faces.
fn section_quality(out: &mut String, r: &Report) {
    let f = &r.figures;
    *out += "<h2 id=\"quality\">Image quality on the faces</h2>\n";
    match &f.quality {
        Some(q) => {
            *out += &spread_table(&[
                ("face brightness", "/255", Some(&q.face_brightness)),
                ("face contrast", "/127", Some(&q.face_contrast)),
                ("scene brightness", "/255", Some(&q.scene_brightness)),
                ("backlight", "stops", Some(&q.backlight_stops)),
                ("sharpness", "edges / contrast", Some(&q.sharpness)),
            ]);
            figure(
                out,
                "brightness",
                bars(
                    "Face brightness",
                    "mean luma of the face box (0-255)",
                    &q.face_brightness_histogram,
                    RGBColor(178, 92, 0),
                ),
            );
        }
        None => *out += "<p class=\"muted\">Not measured (no face).</p>\n",
    }
}

/// Each engine timed on this board, and the timelines of the run.
fn section_speed(out: &mut String, r: &Report) {
    let f = &r.figures;
    *out += "<h2 id=\"speed\">Speed on this board</h2>\n";
    if r.speed.is_empty() {
        *out += "<p class=\"muted\">No engine was timed.</p>\n";
    } else {
        let stages: std::collections::BTreeSet<&String> = r
            .speed
            .iter()
            .flat_map(|s| s.stages_ms_p50.keys())
            .collect();
        // Five columns per run; the stages (as many as the pipeline has)
        // are rows of a second table, one column per run, so that neither
        // grows wider than the page.
        *out += "<div class=\"wide\"><table><tr><th>engine</th><th>setting</th><th>frames/s</th><th>faces read</th><th>end to end (ms)</th></tr>\n";
        for s in &r.speed {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.0}%</td><td>{:.1}</td></tr>",
                escape(&s.engine),
                s.variant,
                s.frames_per_s,
                s.coverage * 100.0,
                s.end_to_end_ms_p50
            );
        }
        *out += "</table></div>\n<div class=\"wide\"><table><tr><th>stage (median ms)</th>";
        for s in &r.speed {
            let _ = write!(out, "<th>{} ({})</th>", escape(&s.engine), s.variant);
        }
        *out += "</tr>\n";
        for k in &stages {
            let _ = write!(out, "<tr><th>{}</th>", escape(k));
            for s in &r.speed {
                let _ = write!(
                    out,
                    "<td>{}</td>",
                    s.stages_ms_p50
                        .get(*k)
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or_default()
                );
            }
            *out += "</tr>\n";
        }
        *out += "</table></div>\n<p class=\"muted\">Medians over rounds on frames from this run; engines take turns round by round. <em>faces read</em>: of the faces a full detection finds on the timed frames, the share the run read (rates under 80%, or 5 points apart, are not compared).</p>\n";
    }
    for u in &r.speed_unmeasured {
        let _ = writeln!(
            out,
            "<p class=\"muted\">{}: not timed ({})</p>",
            escape(&u.engine),
            escape(&u.why)
        );
    }
    timeline_plots(out, f);
}

/// Valence and arousal over time, per track.
fn section_emotion(out: &mut String, r: &Report) {
    let f = &r.figures;
    *out += "<h2 id=\"emotion\">Valence and arousal</h2>\n";
    va_plots(out, f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_their_titles_and_empty_data_says_so() {
        let bins = super::super::survey::histogram(&[10.0, 12.0, 30.0], 0.0, 40.0, 4);
        let svg = bars("Face sizes", "px", &bins, RGBColor(0, 0, 0)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("Face sizes"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        assert!(svg.matches("<rect").count() >= 4);
        assert!(bars("x", "y", &[], RGBColor(0, 0, 0)).is_err());
        let hm = heatmap(&vec![1; HEAT_COLS * HEAT_ROWS], [640, 480]).unwrap();
        assert!(hm.contains("Where faces appear"));
        let l = lines(
            "Valence",
            "v",
            -1.0..1.0,
            &[("track 1".into(), vec![(0.0, 0.1), (1.0, 0.2)])],
        )
        .unwrap();
        assert!(l.contains("<polyline") || l.contains("<path"), "{l}");
    }
}
