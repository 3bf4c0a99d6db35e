//! The engines end to end, through the real binary: the same photos give the
//! same faces and labels on tract and on onnxruntime; `check` says where each
//! model runs; and each way an engine can be missing or misconfigured gives
//! a clear error (missing library, a file that is not onnxruntime, a GPU
//! provider the library lacks, `require_gpu`, an unknown engine, a GPU
//! engine on a machine without a GPU).
//!
//! onnxruntime is the library `tools/setup.sh` unpacks from the PyPI wheel.
#![cfg(feature = "onnxruntime")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data(p: &str) -> PathBuf {
    root().join("tests/data").join(p)
}

fn fer_edge(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    cmd.current_dir(root())
        .args(args)
        .env_remove("ORT_DYLIB_PATH");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The onnxruntime library tools/setup.sh unpacked, found the way fer-edge
/// finds it by default.
fn setup_library() -> PathBuf {
    let caches = [
        std::env::var_os("FER_EDGE_CACHE").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fer-edge")),
    ];
    for c in caches.into_iter().flatten() {
        if let Ok(rd) = std::fs::read_dir(c.join("onnxruntime")) {
            for v in rd.flatten() {
                if let Ok(files) = std::fs::read_dir(v.path()) {
                    for f in files.flatten() {
                        let n = f.file_name().to_string_lossy().to_string();
                        if n.starts_with("libonnxruntime.so.1.") {
                            return f.path();
                        }
                    }
                }
            }
        }
    }
    panic!("no onnxruntime library from tools/setup.sh; run `bash tools/setup.sh`")
}

/// `check` with the config at `cfg` and pan1 as its source (`check`
/// reads the source's first frame).
fn check_with(cfg: &Path) -> Output {
    fer_edge(
        &[
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--source",
            "tests/data/sequences/pan1",
        ],
        &[],
    )
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("fer-edge.toml");
    std::fs::write(&p, body).unwrap();
    p
}

fn analyze_with(backend: &str, photos: &[PathBuf]) -> Vec<Value> {
    // The float model on both (`auto` may take the int8 twin on one engine
    // and not the other: tests/int8.rs compares the twins).
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[emotion]\nprecision = \"fp32\"\n");
    let cfg = cfg.display().to_string();
    let mut args = vec!["analyze", "--config", &cfg, "--backend", backend];
    let paths: Vec<String> = photos.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = fer_edge(&args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn analyze_gives_the_same_faces_and_labels_on_tract_and_onnxruntime() {
    let photos = [
        data("group_t1.jpg"),
        data("astronaut.png"),
        data("frames640/one_face.png"),
        data("frames640/six_faces.png"),
        data("coffee.png"),
    ];
    let tract = analyze_with("tract", &photos);
    let ort = analyze_with("onnxruntime", &photos);
    assert_eq!(tract.len(), photos.len());
    assert_eq!(ort.len(), photos.len());
    let mut compared = 0;
    for (t, o) in tract.iter().zip(&ort) {
        let (tf, of) = (
            t["faces"].as_array().unwrap(),
            o["faces"].as_array().unwrap(),
        );
        assert_eq!(tf.len(), of.len(), "{}: face count", t["file"]);
        for (a, b) in tf.iter().zip(of) {
            assert_eq!(a["expression"], b["expression"], "{}", t["file"]);
            for k in 0..4 {
                let (x, y) = (
                    a["bbox"][k].as_f64().unwrap(),
                    b["bbox"][k].as_f64().unwrap(),
                );
                assert!((x - y).abs() < 1.0, "{}: bbox {a} vs {b}", t["file"]);
            }
            for k in ["valence", "arousal"] {
                let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
                assert!((x - y).abs() < 1e-3, "{}: {k} {x} vs {y}", t["file"]);
            }
            compared += 1;
        }
    }
    assert!(compared >= 14, "compared {compared} faces");
}

#[test]
fn check_names_the_provider_that_really_runs_each_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[inference]\nbackend = \"onnxruntime\"\n");
    let out = check_with(&cfg);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for model in [
        "detector P-Net",
        "detector R-Net",
        "detector O-Net",
        "emotion",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("model:") && l.contains(model))
            .unwrap_or_else(|| panic!("no line for {model}:\n{stdout}"));
        assert!(
            line.contains("onnxruntime") && line.contains("CPUExecutionProvider"),
            "{line}"
        );
    }
    assert!(stdout.contains("onnxruntime 1."), "{stdout}");
}

#[test]
fn onnxruntime_is_found_without_any_setting_where_setup_put_it() {
    // HOME points at a folder holding only the setup cache's library.
    let lib = setup_library();
    let home = tempfile::tempdir().unwrap();
    let v = home.path().join(".cache/fer-edge/onnxruntime/1.32.0");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::copy(&lib, v.join(lib.file_name().unwrap())).unwrap();
    let out = fer_edge(
        &["check", "--backend", "onnxruntime"],
        &[
            ("HOME", home.path().to_str().unwrap()),
            ("FER_EDGE_CACHE", "/nonexistent"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&v.display().to_string()),
        "{}",
        text(&out)
    );
}

#[test]
fn a_missing_library_is_a_start_up_error_naming_the_places_tried_and_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let out = fer_edge(
        &["check", "--backend", "onnxruntime"],
        &[
            ("HOME", empty.path().to_str().unwrap()),
            ("FER_EDGE_CACHE", "/nonexistent"),
            ("LD_LIBRARY_PATH", ""),
        ],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no onnxruntime library found")
            && err.contains(".cache/fer-edge")
            && err.contains("tools/setup.sh"),
        "{err}"
    );

    // A named path that does not exist: the path is in the message, and
    // `run` exits 78 (a config problem systemd should not retry).
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[inference]\nbackend = \"onnxruntime\"\nonnxruntime_library = \"/opt/none/libonnxruntime.so.1\"\n[source]\nkind = \"replay\"\npath = \"tests/data/sequences/pan1\"\n",
    );
    let out = fer_edge(&["run", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/opt/none/libonnxruntime.so.1") && err.contains("onnxruntime_library"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_onnxruntime_is_refused_with_the_reason() {
    // A real shared library from the same wheel, but not onnxruntime itself.
    let other = setup_library()
        .parent()
        .unwrap()
        .join("libonnxruntime_providers_shared.so");
    let out = fer_edge(
        &["check", "--backend", "onnxruntime"],
        &[("ORT_DYLIB_PATH", other.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("libonnxruntime_providers_shared.so")
            && err.contains("not an onnxruntime library")
            && err.contains("ORT_DYLIB_PATH"),
        "{err}"
    );
}

#[test]
fn a_gpu_provider_the_library_lacks_falls_back_visibly_and_require_gpu_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[inference]\nbackend = \"onnxruntime\"\nproviders = [\"tensorrt\", \"cuda\", \"cpu\"]\n",
    );
    let out = check_with(&cfg);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let emotion = stdout
        .lines()
        .find(|l| l.starts_with("model:") && l.contains("emotion"))
        .unwrap();
    assert!(
        emotion.contains("CPUExecutionProvider")
            && emotion.contains("cuda not used")
            && emotion.contains("tensorrt not used"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a GPU provider was asked for"),
        "the fallback is logged: {}",
        text(&out)
    );

    let cfg = write_config(
        dir.path(),
        "[inference]\nbackend = \"onnxruntime\"\nproviders = [\"cuda\", \"cpu\"]\nrequire_gpu = true\n[source]\nkind = \"replay\"\npath = \"tests/data/sequences/pan1\"\n",
    );
    let out = check_with(&cfg);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let out = fer_edge(&["run", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("require_gpu = true") && err.contains("CPUExecutionProvider"),
        "{err}"
    );
}

#[test]
fn an_unknown_engine_name_is_refused_with_the_known_ones() {
    let out = fer_edge(
        &[
            "analyze",
            "--backend",
            "tensorrt",
            "tests/data/astronaut.png",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"tensorrt\"") && err.contains("tract, onnxruntime, cuda"),
        "{err}"
    );
}

#[test]
fn the_cuda_engine_without_a_gpu_or_without_the_feature_says_what_is_missing() {
    let out = fer_edge(
        &["analyze", "--backend", "cuda", "tests/data/astronaut.png"],
        &[],
    );
    if Path::new("/dev/nvidiactl").exists() && cfg!(feature = "cuda") {
        return; // a GPU machine: tools/gpu-check.sh covers it
    }
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "cuda") {
        assert!(err.contains("driver"), "{err}");
    } else {
        assert!(err.contains("--features cuda"), "{err}");
    }
}

#[test]
fn bench_times_two_engines_side_by_side_in_one_run() {
    let out = fer_edge(
        &[
            "bench",
            "--backend",
            "tract,onnxruntime",
            "--background",
            "false",
            "--runs",
            "2",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let reports: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["backend"], "tract");
    assert_eq!(reports[1]["backend"], "onnxruntime");
    for r in &reports {
        assert_eq!(r["faces_per_frame"], serde_json::json!(vec![1; 30]), "{r}");
        assert!(r["stages_ms"]["detect"]["p50"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn model_compare_runs_one_real_input_through_both_engines_and_they_agree() {
    let out = fer_edge(
        &[
            "model",
            "compare",
            "--engines",
            "tract,onnxruntime",
            "--runs",
            "5",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = r["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names[..3]
        .iter()
        .zip(["pnet", "rnet", "onet"])
        .all(|(n, net)| n.contains(net)));
    for m in models {
        let engines = m["engines"].as_array().unwrap();
        assert_eq!(engines.len(), 2);
        for e in engines {
            assert!(e["error"].is_null(), "{e}");
            assert!(e["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{e}");
            assert_eq!(e["latency_ms"]["samples"], 5);
        }
        let diff = engines[1]["max_abs_diff"].as_f64().unwrap();
        assert!(diff < 1e-4, "{}: onnxruntime vs tract {diff}", m["model"]);
        assert!(engines[1]["placement"]
            .as_str()
            .unwrap()
            .contains("CPUExecutionProvider"));
    }
}
