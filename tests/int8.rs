//! The int8 twin of the default bundle (issue 32): it reads real faces as
//! the float model does on every engine of this build, `precision` picks it
//! or refuses clearly, a twin whose file changed is refused by its sha256,
//! and `auto` times both twins here and says which runs.
//!
//! Faces: the 98 FER2013 PublicTest images of tests/data/fer2013-sample
//! (whole image, 48x48 grey), never used to calibrate the twin (it was
//! calibrated on training images).

use std::path::{Path, PathBuf};

use fer_edge::emotion::precision::{self, INT8_MIN_GAIN};
use fer_edge::emotion::{EmotionConfig, EmotionError, EmotionModel, Precision};
use fer_edge::frame::RgbImage;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn engines() -> Vec<&'static str> {
    let mut e = vec!["tract"];
    if cfg!(feature = "onnxruntime") {
        e.push("onnxruntime");
    }
    e
}

fn model(bundle: &Path, engine: &str, precision: Precision) -> Result<EmotionModel, EmotionError> {
    let backend = fer_edge::infer::backend(engine, &Default::default())
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    let cfg = EmotionConfig {
        precision,
        ..EmotionConfig::for_bundle(bundle)
    };
    EmotionModel::from_config(&cfg, backend.as_ref())
}

fn faces() -> Vec<RgbImage> {
    let dir = root().join("tests/data/fer2013-sample");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flat_map(|class| std::fs::read_dir(class.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| image::open(f).unwrap().to_rgb8())
        .collect()
}

#[test]
fn the_int8_twin_reads_real_faces_as_the_float_model_does_on_every_engine() {
    let bundle = root().join("models/fernet-w16");
    let faces = faces();
    assert_eq!(faces.len(), 98);
    let mut int8_labels = Vec::new();
    for engine in engines() {
        let mut float = model(&bundle, engine, Precision::Fp32).unwrap();
        let mut int8 = model(&bundle, engine, Precision::Int8).unwrap();
        assert_eq!(int8.precision().used, Precision::Int8);
        let a = float.infer_batch(&faces).unwrap();
        let b = int8.infer_batch(&faces).unwrap();
        let agree = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x.expression == y.expression)
            .count();
        let mean_diff: f32 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| {
                x.probabilities
                    .iter()
                    .zip(&y.probabilities)
                    .map(|(p, q)| (p - q).abs())
                    .sum::<f32>()
            })
            .sum::<f32>()
            / (7 * faces.len()) as f32;
        eprintln!("{engine}: int8 agrees with fp32 on {agree}/98 faces, mean |Δp| {mean_diff:.4}");
        // The bundle records 0.99 agreement on all 3,589 PublicTest images.
        assert!(agree >= 93, "{engine}: int8 agrees on only {agree} of 98");
        assert!(mean_diff < 0.02, "{engine}: mean |Δp| {mean_diff}");
        int8_labels.push(b.iter().map(|e| e.expression).collect::<Vec<_>>());
    }
    // The same twin gives the same labels whichever engine runs it (the
    // check the issue asks for across machines, here across engines).
    if let [t, o] = &int8_labels[..] {
        let same = t.iter().zip(o).filter(|(x, y)| x == y).count();
        assert!(
            same >= 96,
            "int8 on tract and onnxruntime agree on only {same} of 98"
        );
    }
}

#[test]
fn precision_int8_without_a_twin_is_refused_with_the_fix() {
    let bundle = root().join("models/fernet-w24");
    let err = model(&bundle, "tract", Precision::Int8)
        .err()
        .expect("no twin: refused");
    let msg = err.to_string();
    assert!(
        msg.contains("no int8 twin")
            && msg.contains("precision = \"auto\"")
            && msg.contains("quantize"),
        "{msg}"
    );
    // auto and fp32 run the float model, and say so.
    let m = model(&bundle, "tract", Precision::Auto).unwrap();
    assert_eq!(m.precision().used, Precision::Fp32);
    assert!(
        m.precision().reason.contains("no int8 twin"),
        "{}",
        m.precision().reason
    );
}

#[test]
fn a_twin_whose_file_changed_is_refused_by_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["bundle.json", "model.onnx", "model.int8.onnx"] {
        std::fs::copy(root().join("models/fernet-w16").join(f), dir.path().join(f)).unwrap();
    }
    let q = dir.path().join("model.int8.onnx");
    let mut bytes = std::fs::read(&q).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&q, bytes).unwrap();
    // Even a config that asks for the float model: the bundle as a whole is not what was shipped.
    let refusal = || {
        model(dir.path(), "tract", Precision::Fp32)
            .err()
            .expect("refused")
            .to_string()
    };
    let msg = refusal();
    assert!(
        msg.contains("model.int8.onnx") && msg.contains("sha256"),
        "{msg}"
    );
    std::fs::remove_file(&q).unwrap();
    let msg = refusal();
    assert!(
        msg.contains("model.int8.onnx") && msg.contains("int8.model_file"),
        "{msg}"
    );
}

#[test]
fn auto_times_both_twins_here_and_keeps_int8_only_when_clearly_faster() {
    let bundle = root().join("models/fernet-w16");
    for engine in engines() {
        let m = model(&bundle, engine, Precision::Auto).unwrap();
        let c = m.precision();
        let (f, q) = c
            .timed_ms
            .unwrap_or_else(|| panic!("{engine}: auto did not time: {}", c.reason));
        eprintln!("{engine}: {}", c.reason);
        assert!(f > 0.0 && q > 0.0);
        assert_eq!(c.asked, Precision::Auto);
        let want = if f / q >= INT8_MIN_GAIN {
            Precision::Int8
        } else {
            Precision::Fp32
        };
        assert_eq!(c.used, want, "{engine}: {}", c.reason);
        assert!(c.reason.contains(precision::name(want)), "{}", c.reason);
    }
}
