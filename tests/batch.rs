//! A frame's faces read in one call of the emotion model give the same
//! readings as one by one, on every engine of this build and every shipped
//! bundle (the int8 twins of fernet-w32 and fernet-w16 too), on real faces
//! (the six people of `pan6`, two frames: 12 crops);
//! and onnxruntime really takes them in one call (tract and TensorRT read
//! them one by one: see `infer`'s module doc).
//!
//! onnxruntime is the library `tools/setup.sh` unpacks (its absence fails).

use std::path::{Path, PathBuf};

use fer_edge::config::Config;
use fer_edge::emotion::Precision;
use fer_edge::faces::FaceChain;
use fer_edge::frame::RgbImage;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config(model: &str, backend: &str, precision: Precision) -> Config {
    let mut cfg = Config::default();
    cfg.detector.model_dir = root().join("models/mtcnn");
    cfg.emotion.model = root().join("models").join(model);
    cfg.emotion.precision = precision;
    cfg.inference.backend = backend.into();
    cfg.follow.background = false;
    cfg
}

/// The aligned faces of the first two frames of pan6, as the chain aligns them.
fn crops(chain: &mut FaceChain) -> Vec<RgbImage> {
    let dir = root().join("tests/data/sequences/pan6");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut crops = Vec::new();
    for f in files.iter().take(2) {
        let img = image::open(f).unwrap().to_rgb8();
        let found = chain.process(&img).unwrap();
        for face in found.faces() {
            crops.push(chain.aligned_crop(&img, face).unwrap());
        }
    }
    crops
}

#[test]
fn a_batch_reads_the_same_as_one_by_one_on_every_engine_and_bundle() {
    let mut engines = vec!["tract"];
    if cfg!(feature = "onnxruntime") {
        engines.push("onnxruntime");
    }
    let bundles = [
        ("fernet-w32", Precision::Fp32),
        ("fernet-w32", Precision::Int8),
        ("fernet-w16", Precision::Fp32),
        ("fernet-w16", Precision::Int8),
        ("fernet-w24", Precision::Fp32),
        ("fer-minixception", Precision::Fp32),
    ];
    for (name, precision) in bundles {
        let model = format!("{name} {precision:?}");
        for engine in &engines {
            let mut chain = FaceChain::from_config(&config(name, engine, precision))
                .unwrap_or_else(|e| panic!("{model} on {engine}: {e}"));
            assert_eq!(chain.emotion_model().precision().used, precision);
            assert_eq!(
                chain.emotion_model().batches(),
                *engine == "onnxruntime",
                "{model} on {engine}: one call per frame where it pays, and only there"
            );
            let crops = crops(&mut chain);
            assert_eq!(
                crops.len(),
                12,
                "{model} on {engine}: six faces on each frame"
            );
            let together = chain.infer_crops(&crops).unwrap();
            // Past the largest call too: 16 + 4.
            let many: Vec<RgbImage> = crops.iter().chain(&crops[..8]).cloned().collect();
            let split = chain.infer_crops(&many).unwrap();
            assert_eq!(split.len(), 20);
            let mut worst = 0f32;
            for (i, c) in crops.iter().enumerate() {
                let alone = &chain.infer_crops(std::slice::from_ref(c)).unwrap()[0];
                // Crop i is at i in both calls, and again at 12 + i in the
                // second when i < 8.
                let mut got = vec![&together[i], &split[i]];
                if i < 8 {
                    got.push(&split[12 + i]);
                }
                for g in got {
                    assert_eq!(
                        g.expression, alone.expression,
                        "{model} on {engine}, face {i}"
                    );
                    for (a, b) in g.probabilities.iter().zip(&alone.probabilities) {
                        worst = worst.max((a - b).abs());
                    }
                    worst = worst
                        .max((g.valence - alone.valence).abs())
                        .max((g.arousal - alone.arousal).abs());
                }
            }
            assert!(
                worst <= 1e-5,
                "{model} on {engine}: a batch differs by {worst}"
            );
            eprintln!(
                "{model} on {engine}: batch of 12 and of 20 vs one by one, max diff {worst:e}"
            );
        }
    }
}
