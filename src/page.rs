//! Self-contained HTML report pages: the pieces `calibrate` and `eval`
//! share (escaping, the stylesheet, a figure that says why it is missing).
//!
//! In: text and SVG strings. Out: HTML fragments. No script, no stylesheet
//! or font from the network: a page opens the same with no connection.
//! A bottom layer: imports nothing of ours.

use std::fmt::Write as _;

/// An SVG drawing, or why it was not drawn.
pub type Plot = Result<String, String>;

/// Width and height of the plots, in pixels.
pub const W: u32 = 720;
pub const H: u32 = 300;
pub const FONT: &str = "sans-serif";

/// The pages' one stylesheet.
pub const STYLE: &str = "body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}\
th{background:#f4f4f4}.advice li{margin:.3em 0;list-style:none}.tag{display:inline-block;min-width:6em;font-weight:bold}\
.problem{color:#b00020}.warning{color:#b25c00}.info{color:#1f5fa8}.ok{color:#2e7d32}.muted{color:#777}\
pre{background:#f6f6f6;padding:1em;overflow-x:auto;white-space:pre-wrap}.wide{overflow-x:auto}figure{margin:1em 0}img{max-width:100%}";

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A drawing error as text.
pub fn plot_err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Appends the plot as a figure, or a line saying why it is missing.
pub fn figure(out: &mut String, id: &str, plot: Plot) {
    match plot {
        Ok(svg) => {
            let _ = writeln!(out, "<figure id=\"{id}\" class=\"plot\">{svg}</figure>");
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "<p class=\"muted\">({} not drawn: {})</p>",
                escape(id),
                escape(&e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_missing_plot_says_why() {
        let mut s = String::new();
        figure(&mut s, "sizes", Err("no <data>".into()));
        assert!(s.contains("sizes not drawn: no &lt;data&gt;"), "{s}");
    }
}
