//! `fer-edge model ...`: looking inside bundles, for researchers who bring
//! their own Emotion-GCN weights.
//!
//! In: a bundle folder (and for `run`, an already aligned face crop; for
//! `align`, an image and two eye centres). Out: text or JSON on stdout.
//! `inspect` prints the manifest and, when the bundle carries its GCN
//! parameters (`gcn.json`), the propagation matrix and the cosine
//! similarity between the 7 classifiers and 2 regressors (thesis Fig.
//! 6.4.3). `run` prints the model's raw outputs for one crop, which is how
//! the exporter's tests compare fer-edge with PyTorch.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::emotion::{BundleError, EmotionConfig, EmotionError, EmotionModel, Precision};
use crate::infer::Backend;

/// The part of `gcn.json` that `inspect` reads.
#[derive(Debug, Deserialize)]
pub struct GcnFile {
    pub nodes: Vec<String>,
    pub graph: serde_json::Value,
    #[serde(rename = "W")]
    pub w: Vec<Vec<f32>>,
}

/// Errors of the model commands.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Emotion(#[from] EmotionError),
    #[error("{path}: {reason}")]
    Gcn { path: String, reason: String },
    #[error("cannot read image {path}: {reason}")]
    Image { path: String, reason: String },
}

/// Cosine similarity between every pair of rows.
pub fn cosine_matrix(rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let norm = |r: &[f32]| r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    rows.iter()
        .map(|a| {
            rows.iter()
                .map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b)))
                .collect()
        })
        .collect()
}

fn matrix_text(out: &mut String, title: &str, names: &[String], m: &[Vec<f32>]) {
    let _ = writeln!(out, "{title}");
    let _ = write!(out, "{:>10}", "");
    for n in names {
        let _ = write!(out, " {:>9}", truncate(n));
    }
    let _ = writeln!(out);
    for (n, row) in names.iter().zip(m) {
        let _ = write!(out, "{:>10}", truncate(n));
        for v in row {
            let _ = write!(out, " {v:>9.3}");
        }
        let _ = writeln!(out);
    }
}

/// The first 9 characters (not bytes: node names may be any UTF-8).
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(9) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// The text `fer-edge model inspect` prints.
///
/// It vouches only for what `analyze` and `run` accept: besides the
/// manifest and the sha256, the ONNX file is loaded and prepared on tract
/// (the engine every build has), so an empty, truncated or foreign file, or
/// one whose input and output names differ from the manifest's, fails here.
pub fn inspect(path: &Path) -> Result<String, InspectError> {
    let backend = crate::infer::backend("tract", &Default::default())
        .map_err(|e| InspectError::Emotion(e.into()))?;
    let twin = |precision| EmotionConfig {
        precision,
        ..EmotionConfig::for_bundle(path)
    };
    let model = EmotionModel::from_config(&twin(Precision::Fp32), backend.as_ref())?;
    let bundle = model.bundle().clone();
    drop(model);
    if bundle.int8_path.is_some() {
        drop(EmotionModel::from_config(
            &twin(Precision::Int8),
            backend.as_ref(),
        )?);
    }
    let mut out = String::new();
    let m = &bundle.manifest;
    let _ = writeln!(out, "bundle:   {}", bundle.manifest_path.display());
    let _ = writeln!(
        out,
        "model:    {} {} ({}){}",
        m.name,
        m.version,
        m.architecture,
        if m.trained {
            ""
        } else {
            "  ** UNTRAINED: random weights **"
        }
    );
    let _ = writeln!(out, "sha256:   {} (verified)", m.sha256);
    if let Some(q) = &m.int8 {
        let _ = writeln!(
            out,
            "int8:     {} {} (verified, loads)",
            q.model_file, q.sha256
        );
    }
    let _ = writeln!(
        out,
        "manifest:\n{}",
        serde_json::to_string_pretty(m).unwrap_or_default()
    );
    let gcn_file = m
        .gcn
        .as_ref()
        .and_then(|g| g.get("file"))
        .and_then(|f| f.as_str());
    if let Some(file) = gcn_file {
        let p = bundle
            .manifest_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(file);
        let shown = p.display().to_string();
        let text =
            crate::fileio::read_text_bounded(&p, crate::fileio::MANIFEST_LIMIT, "a gcn.json")
                .map_err(|e| InspectError::Gcn {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
        let gcn: GcnFile = serde_json::from_str(&text).map_err(|e| InspectError::Gcn {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if gcn.w.iter().flatten().any(|v| !v.is_finite()) {
            return Err(InspectError::Gcn {
                path: shown,
                reason: "W holds a value that is not a finite number".into(),
            });
        }
        if gcn.w.len() != gcn.nodes.len() || gcn.nodes.len() != 9 {
            return Err(InspectError::Gcn {
                path: shown,
                reason: format!(
                    "W has {} rows for {} nodes; expected 9",
                    gcn.w.len(),
                    gcn.nodes.len()
                ),
            });
        }
        for key in ["binary", "reweighted", "propagation"] {
            if let Some(rows) = gcn
                .graph
                .get(key)
                .and_then(|v| serde_json::from_value::<Vec<Vec<f32>>>(v.clone()).ok())
            {
                matrix_text(
                    &mut out,
                    &format!(
                        "\n{key} adjacency (tau = {}, p = {}):",
                        gcn.graph["tau"], gcn.graph["p"]
                    ),
                    &gcn.nodes,
                    &rows,
                );
            }
        }
        let norms: Vec<f32> = gcn
            .w
            .iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect();
        matrix_text(
            &mut out,
            "\ncosine similarity of the classifiers (rows of W; thesis Fig. 6.4.3):",
            &gcn.nodes,
            &cosine_matrix(&gcn.w),
        );
        let _ = writeln!(
            out,
            "\n|W| per row: {}",
            gcn.nodes
                .iter()
                .zip(&norms)
                .map(|(n, v)| format!("{n} {v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let _ = writeln!(
            out,
            "\n(no gcn.json in this bundle: nothing to show of a graph)"
        );
    }
    Ok(out)
}

/// Raw outputs of the bundle's model for one aligned crop, as JSON.
pub fn run_aligned(
    bundle: &Path,
    crop_path: &Path,
    backend: &dyn Backend,
) -> Result<serde_json::Value, InspectError> {
    // The float model: what training code is compared with.
    let cfg = EmotionConfig {
        precision: Precision::Fp32,
        ..EmotionConfig::for_bundle(bundle)
    };
    let mut model = EmotionModel::from_config(&cfg, backend)?;
    let crop = crate::imageio::decode(crop_path).map_err(|reason| InspectError::Image {
        path: crate::fileio::shown(crop_path),
        reason,
    })?;
    let raw = model.run_raw(&crop)?;
    let e = model.infer(&crop)?;
    let names: Vec<String> = model.session_outputs();
    let mut outputs = serde_json::Map::new();
    for (n, v) in names.iter().zip(raw) {
        outputs.insert(n.clone(), serde_json::json!(v));
    }
    Ok(serde_json::json!({
        "outputs": outputs,
        "expression": e.expression.name(),
        "probabilities": crate::report::Probabilities::from_array(&e.probabilities),
        "valence": e.valence,
        "arousal": e.arousal,
        "va_source": e.va_source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_parallel_rows_is_one_and_of_orthogonal_rows_zero() {
        let m = cosine_matrix(&[vec![1.0, 0.0], vec![2.0, 0.0], vec![0.0, 3.0]]);
        assert!((m[0][1] - 1.0).abs() < 1e-6);
        assert!(m[0][2].abs() < 1e-6);
        assert!((m[2][2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn inspecting_the_shipped_bundle_says_it_has_no_graph() {
        let text = inspect(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/fer-minixception"
        )))
        .unwrap();
        assert!(
            text.contains("fer-minixception")
                && text.contains("verified")
                && text.contains("no gcn.json")
        );
    }
}
