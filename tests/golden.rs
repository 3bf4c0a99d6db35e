//! Every backend must reproduce the reference runtime's outputs (onnxruntime,
//! recorded by `tools/make_test_fixtures.py`) on real image inputs, for every
//! model we ship.
//!
//! Every engine compiled into the build runs: `tract` always, `onnxruntime`
//! with the library `tools/setup.sh` unpacks (its absence fails the test),
//! and `cuda` where a GPU is present; without one, `cuda` must refuse with a
//! message naming the driver, which is asserted instead.

use std::path::Path;

use fer_edge::infer;

fn data(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(p)
}

fn input_tensor(case: &serde_json::Value) -> Vec<f32> {
    let img = image::open(data(case["input"].as_str().unwrap())).unwrap();
    match case["layout"].as_str().unwrap() {
        "nchw_gray" => img
            .to_luma8()
            .pixels()
            .map(|p| (p[0] as f32 / 255.0 - 0.5) / 0.5)
            .collect(),
        "mtcnn_wh" => {
            let rgb = img.to_rgb8();
            let (w, h) = rgb.dimensions();
            let mut out = Vec::with_capacity((w * h * 3) as usize);
            for x in 0..w {
                for y in 0..h {
                    for c in 0..3 {
                        out.push((rgb.get_pixel(x, y)[c] as f32 - 127.5) * 0.0078125);
                    }
                }
            }
            out
        }
        other => panic!("unknown layout {other}"),
    }
}

#[test]
fn every_backend_matches_onnxruntime_on_every_shipped_model() {
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("golden/golden.json")).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    let mut ran = Vec::new();
    for name in infer::backend_names() {
        let backend = match infer::backend(name, &infer::InferenceConfig::default()) {
            Ok(b) => b,
            Err(e) if name == "cuda" => {
                let msg = e.to_string();
                assert!(
                    msg.contains("driver"),
                    "cuda refusal should name the driver: {msg}"
                );
                eprintln!("cuda not run (no GPU here): {msg}");
                continue;
            }
            Err(e) => panic!("{name} is built in but cannot run: {e}"),
        };
        ran.push(name);
        for case in cases {
            let model_path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(case["model"].as_str().unwrap());
            let shape: Vec<usize> = case["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let mut session = backend.load(&model_path).unwrap().prepare(&shape).unwrap();
            let outputs = session.run(&input_tensor(case)).unwrap();
            let want = case["outputs"].as_array().unwrap();
            assert_eq!(
                outputs.len(),
                want.len(),
                "{name} {model_path:?}: output count"
            );
            let mut max_diff = 0f32;
            for (got, want) in outputs.iter().zip(want) {
                let want: Vec<f32> = want
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{name} {model_path:?}: output length"
                );
                for (g, w) in got.iter().zip(&want) {
                    max_diff = max_diff.max((g - w).abs());
                }
            }
            eprintln!(
                "{name} vs {}: {} max abs diff {max_diff:e}",
                golden["runtime"], case["model"]
            );
            // The GPU computes in other orders (and TensorRT in FP16).
            let tolerance = if name == "cuda" { 1e-3 } else { 1e-4 };
            assert!(
                max_diff < tolerance,
                "{name} on {model_path:?} differs from onnxruntime by {max_diff}"
            );
        }
    }
    if cfg!(feature = "onnxruntime") {
        assert!(ran.contains(&"onnxruntime"), "onnxruntime did not run");
    }
}
