//! `fer-edge analyze` end to end: the real binary, the shipped models, real
//! photos (provenance in tests/data/README.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data(p: &str) -> PathBuf {
    root().join("tests/data").join(p)
}

fn analyze(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .arg("analyze")
        .args(args)
        .output()
        .unwrap()
}

fn reports(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect()
}

fn faces(r: &Value) -> &Vec<Value> {
    r["faces"].as_array().unwrap()
}

#[test]
fn a_group_photo_gives_all_six_faces_with_eyes_inside_their_boxes() {
    let out = analyze(&[data("group_t1.jpg").as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = &reports(&out)[0];
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(1280), Some(886))
    );
    let f = faces(r);
    assert_eq!(f.len(), 6, "{r}");
    for face in f {
        let b: Vec<f64> = face["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for eye in ["left_eye", "right_eye"] {
            let p = &face["landmarks"][eye];
            let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
            assert!(
                x > b[0] && x < b[0] + b[2] && y > b[1] && y < b[1] + b[3],
                "{eye} outside {b:?}"
            );
        }
        assert!(
            face["landmarks"]["left_eye"][0].as_f64() < face["landmarks"]["right_eye"][0].as_f64()
        );
        assert!(face["score"].as_f64().unwrap() > 0.9);
    }
    // Faces from ~90 to ~120 px wide, spread over the whole frame.
    let xs: Vec<f64> = f.iter().map(|v| v["bbox"][0].as_f64().unwrap()).collect();
    assert!(
        xs.iter().cloned().fold(f64::MAX, f64::min) < 100.0
            && xs.iter().cloned().fold(0.0, f64::max) > 1100.0
    );
}

#[test]
fn a_clear_smile_reads_as_happy_with_positive_valence() {
    let out = analyze(&[data("astronaut.png").as_os_str()]);
    assert!(out.status.success());
    let r = &reports(&out)[0];
    let f = faces(r);
    assert_eq!(f.len(), 1);
    let face = &f[0];
    assert_eq!(face["expression"], "happy", "{face}");
    assert!(face["confidence"].as_f64().unwrap() > 0.8);
    assert!(face["valence"].as_f64().unwrap() > 0.3);
    assert_eq!(face["va_source"], "derived");
    let p = face["probabilities"].as_object().unwrap();
    assert_eq!(p.len(), 7);
    // Keys appear in the thesis' order in the printed JSON.
    let line = String::from_utf8_lossy(&out.stdout);
    let at = |k: &str| {
        line.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} missing"))
    };
    let order = [
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger",
    ]
    .map(at);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{line}");
    let sum: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-3);
    for k in ["decode", "detect", "align", "emotion"] {
        assert!(r["timings_ms"][k].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn the_broadest_smiles_in_the_group_photo_read_as_happy() {
    let out = analyze(&[data("group_t1.jpg").as_os_str()]);
    let r = &reports(&out)[0];
    // The two men laughing at the table's centre (x ≈ 464 and 741).
    for x0 in [464.0, 741.0] {
        let face = faces(r)
            .iter()
            .find(|f| (f["bbox"][0].as_f64().unwrap() - x0).abs() < 20.0)
            .expect("face present");
        assert_eq!(face["expression"], "happy", "{face}");
        assert!(face["valence"].as_f64().unwrap() > 0.2);
    }
}

#[test]
fn images_without_people_give_no_faces() {
    let out = analyze(&[
        data("coffee.png").as_os_str(),
        data("chelsea.png").as_os_str(),
    ]);
    assert!(out.status.success());
    let r = reports(&out);
    assert_eq!(r.len(), 2);
    for rep in r {
        assert!(faces(&rep).is_empty(), "{rep}");
    }
}

#[test]
fn a_corrupt_file_is_reported_and_the_others_still_analysed_with_exit_code_1() {
    let out = analyze(&[
        data("astronaut.png").as_os_str(),
        data("corrupt_truncated.jpg").as_os_str(),
        data("coffee.png").as_os_str(),
        data("no_such_file.png").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let r = reports(&out);
    assert_eq!(r.len(), 2, "both good files reported");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt_truncated.jpg") && stderr.contains("cannot decode"),
        "{stderr}"
    );
    assert!(stderr.contains("no_such_file.png"), "{stderr}");
}

#[test]
fn a_folder_is_read_in_name_order_and_annotations_are_written_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let out = analyze(&[
        data("frames640").as_os_str(),
        "--annotate".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = reports(&out);
    let names: Vec<&str> = r.iter().map(|v| v["image"].as_str().unwrap()).collect();
    assert!(
        names[0].ends_with("one_face.png") && names[1].ends_with("six_faces.png"),
        "{names:?}"
    );
    assert_eq!(faces(&r[0]).len(), 1);
    assert_eq!(faces(&r[1]).len(), 6);
    let ann = image::open(dir.path().join("six_faces.annotated.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(ann.dimensions(), (640, 480));
    let orig = image::open(data("frames640/six_faces.png"))
        .unwrap()
        .to_rgb8();
    assert_ne!(ann.as_raw(), orig.as_raw(), "annotation drew nothing");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Variables by which onnxruntime 1.32 decides it runs under CI and turns
/// its telemetry off by itself (read from the library's strings; `CI`,
/// `GITHUB_ACTIONS` and `TF_BUILD` tried by hand). The watch clears them so
/// that it sees what a user's device would do, in CI as on a desk.
const CI_MARKERS: [&str; 12] = [
    "CI",
    "TF_BUILD",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "CODEBUILD_BUILD_ID",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
];

/// Runs `analyze` on one photo with the working folder, HOME, the XDG cache
/// and TMPDIR empty folders of the test's (whatever it writes by a relative
/// path, a cache or a temporary file lands there), no CI marker set, and the
/// setup cache where the onnxruntime library is (`FER_EDGE_CACHE`, as CI
/// sets it, or the real HOME's). Returns the files written there.
fn files_written_by_analyze(extra: &[&str], envs: &[(&str, &str)]) -> Vec<PathBuf> {
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("fer-edge.toml");
    std::fs::write(
        &conf,
        format!(
            "[detector]\nmodel_dir = \"{r}/models/mtcnn\"\n[emotion]\nmodel = \"{r}/models/fer-minixception\"\n",
            r = root().display()
        ),
    )
    .unwrap();
    let cache = std::env::var_os("FER_EDGE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fer-edge")))
        .unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["cwd", "home", "tmp"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    for var in CI_MARKERS {
        cmd.env_remove(var);
    }
    let out = cmd
        .current_dir(dir.path().join("cwd"))
        .env("HOME", dir.path().join("home"))
        .env("XDG_CACHE_HOME", dir.path().join("home/.cache"))
        .env("TMPDIR", dir.path().join("tmp"))
        .env("FER_EDGE_CACHE", cache)
        .env_remove("ORT_DISABLE_TELEMETRY")
        .envs(envs.iter().copied())
        .arg("analyze")
        .arg(data("astronaut.png"))
        .arg("--config")
        .arg(&conf)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reports(&out).len(), 1);
    files_under(dir.path())
}

#[test]
fn nothing_is_written_to_disk_without_annotate() {
    // With --annotate (a relative folder) the same watch sees the
    // annotated image, so the watch itself works.
    assert_eq!(files_written_by_analyze(&[], &[]), Vec::<PathBuf>::new());
    let written = files_written_by_analyze(&["--annotate", "annotated"], &[]);
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].ends_with("cwd/annotated/astronaut.annotated.png"),
        "{written:?}"
    );
}

/// Official onnxruntime builds (1.32, what tools/setup.sh unpacks) upload
/// usage events to Microsoft from Linux and keep a device id and an event
/// database under `~/.cache/Microsoft/DeveloperTools/` and a file in
/// `$TMPDIR`, unless `ORT_DISABLE_TELEMETRY` is set before they load.
/// (The library stays quiet by itself where a CI variable is set, which is
/// why the watch clears them.) fer-edge sets it for itself; a user who sets
/// the variable to 0 gets the library's default back, which is how this
/// test knows its watch would see those files.
#[cfg(feature = "onnxruntime")]
#[test]
fn onnxruntime_sends_no_telemetry_and_leaves_no_device_id() {
    let ort = ["--backend", "onnxruntime"];
    assert_eq!(files_written_by_analyze(&ort, &[]), Vec::<PathBuf>::new());
    let allowed = files_written_by_analyze(&ort, &[("ORT_DISABLE_TELEMETRY", "0")]);
    assert!(
        allowed
            .iter()
            .any(|p| p.to_string_lossy().contains(".cache/Microsoft")),
        "with telemetry allowed, this onnxruntime wrote no device id \
         ({allowed:?}): the check above can no longer tell"
    );
}

#[test]
fn results_that_cannot_be_written_stop_the_run_with_exit_74() {
    let args = |c: &mut Command| {
        c.current_dir(root())
            .args([
                "analyze",
                "tests/data/astronaut.png",
                "tests/data/coffee.png",
            ])
            .stderr(std::process::Stdio::piped());
    };
    // A full disk.
    let mut c = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    args(&mut c);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = c.stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(
        err.contains("cannot write the results to standard output"),
        "{err}"
    );
    assert!(err.contains("stopped after 0 of 2"), "{err}");
    // A pipe whose reader is gone before the first result.
    let mut c = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    args(&mut c);
    let mut child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(err.contains("Broken pipe"), "{err}");
}

#[test]
fn a_bad_config_key_or_missing_model_exits_78_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[detector]\nmin_face_sise = 30\n").unwrap();
    let out = analyze(&[
        data("astronaut.png").as_os_str(),
        "--config".as_ref(),
        cfg.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("min_face_sise") && err.contains("bad.toml"),
        "{err}"
    );

    let out = analyze(&[
        data("astronaut.png").as_os_str(),
        "--model".as_ref(),
        dir.path().join("nope").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope") && err.contains("[emotion] model") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn a_tampered_model_is_refused_with_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("bundle");
    std::fs::create_dir(&b).unwrap();
    std::fs::copy(
        root().join("models/fer-minixception/bundle.json"),
        b.join("bundle.json"),
    )
    .unwrap();
    let mut onnx = std::fs::read(root().join("models/fer-minixception/model.onnx")).unwrap();
    let n = onnx.len();
    onnx[n - 10] ^= 0xff;
    std::fs::write(b.join("model.onnx"), onnx).unwrap();
    let out = analyze(&[
        data("astronaut.png").as_os_str(),
        "--model".as_ref(),
        b.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sha256") && err.contains("model.onnx"),
        "{err}"
    );
}

#[test]
fn a_second_config_file_overrides_the_first_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let over = dir.path().join("calibration.toml");
    std::fs::write(&over, "[mqtt]\ndevice_id = \"lobby-2\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .args(["check", "--config", "config/fer-edge.toml", "--config"])
        .arg(&over)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The override took; the first file's models are still found beside it.
    assert!(s.contains("client id fer-edge-lobby-2"), "{s}");
    assert!(s.contains("fernet-w32"), "{s}");
}

#[test]
fn check_loads_everything_and_says_what_would_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .args(["check", "--config", "config/fer-edge.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("fernet-w32") && s.contains("MTCNN"), "{s}");
    // The default engine says what `auto` took: onnxruntime where
    // tools/setup.sh put its library, tract elsewhere.
    assert!(
        s.contains("detector: onnxruntime (auto)") || s.contains("detector: tract (auto)"),
        "{s}"
    );
}

#[test]
fn detection_gives_the_same_answer_on_one_thread_and_on_two() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for threads in [1, 2] {
        let cfg = dir.path().join(format!("t{threads}.toml"));
        std::fs::write(&cfg, format!("[detector]\nthreads = {threads}\n")).unwrap();
        let out = analyze(&[
            data("group_t1.jpg").as_os_str(),
            "--config".as_ref(),
            cfg.as_os_str(),
        ]);
        assert!(out.status.success());
        let mut r = reports(&out).remove(0);
        r["timings_ms"] = Value::Null;
        lines.push(r);
    }
    assert_eq!(lines[0], lines[1]);
    assert_eq!(faces(&lines[0]).len(), 6);
}

#[test]
fn models_named_in_a_config_file_are_found_beside_it_from_any_folder() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("mtcnn")).unwrap();
    std::fs::create_dir_all(models.join("fer-minixception")).unwrap();
    for (sub, files) in [
        (
            "mtcnn",
            &["pnet.onnx", "rnet.onnx", "onet.onnx", "SHA256SUMS"][..],
        ),
        ("fer-minixception", &["model.onnx", "bundle.json"][..]),
    ] {
        for f in files {
            std::fs::copy(
                root().join("models").join(sub).join(f),
                models.join(sub).join(f),
            )
            .unwrap();
        }
    }
    let cfg = dir.path().join("site.toml");
    std::fs::write(
        &cfg,
        "[detector]\nmodel_dir = \"models/mtcnn\"\n[emotion]\nmodel = \"models/fer-minixception\"\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(elsewhere.path())
        .args(["check", "--config"])
        .arg(&cfg)
        .arg("--source")
        .arg(root().join("tests/data/sequences/pan1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let beside = dir.path().canonicalize().unwrap().join("models/mtcnn");
    assert!(
        stdout.contains(&beside.display().to_string()),
        "detector models should come from beside the config:\n{stdout}"
    );
}

#[test]
fn a_model_path_found_nowhere_is_an_error_listing_the_places_tried() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("site.toml");
    std::fs::write(&cfg, "[detector]\nmodel_dir = \"models/nothing-here\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(dir.path())
        .args(["analyze", "--config"])
        .arg(&cfg)
        .arg(data("astronaut.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[detector] model_dir")
            && err.contains(&dir.path().join("models/nothing-here").display().to_string())
            && err.contains("/usr/share/fer-edge/models/nothing-here"),
        "{err}"
    );
}

/// A copy of the shipped bundle marked untrained: loading it logs a WARN.
fn untrained_bundle(dir: &Path) -> PathBuf {
    let b = dir.join("untrained");
    std::fs::create_dir(&b).unwrap();
    std::fs::copy(
        root().join("models/fer-minixception/model.onnx"),
        b.join("model.onnx"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(root().join("models/fer-minixception/bundle.json"))
        .unwrap()
        .replace("\"trained\": true", "\"trained\": false");
    std::fs::write(b.join("bundle.json"), manifest).unwrap();
    b
}

fn analyze_env(model: &Path, envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    c.current_dir(root())
        .env_remove("JOURNAL_STREAM")
        .env_remove("NO_COLOR")
        .args(["analyze", "--model"])
        .arg(model)
        .arg(data("astronaut.png"));
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn under_systemd_log_lines_carry_their_priority_and_no_timestamp_of_their_own() {
    // issue 19, case 12: journald stamps each entry; `journalctl -p warning`
    // filters on the `<N>` priority prefix.
    let dir = tempfile::tempdir().unwrap();
    let model = untrained_bundle(dir.path());
    let out = analyze_env(&model, &[("JOURNAL_STREAM", "8:12345")]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("UNTRAINED"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(line.starts_with("<4>fer_edge"), "{line}");
    assert!(!line.contains("WARN") && !line.contains('\u{1b}'), "{line}");
    let year = line.chars().take(4).all(|c| c.is_ascii_digit());
    assert!(
        !year && !line.contains("T1") && !line.contains("Z "),
        "{line}"
    );
    // On a plain stream: the usual line, with its level and timestamp.
    let out = analyze_env(&model, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("UNTRAINED")).unwrap();
    assert!(line.contains("WARN") && !line.starts_with('<'), "{line}");
    assert!(!line.contains('\u{1b}'), "no colour on a pipe: {line}");
}

#[test]
fn no_color_turns_colours_off_on_a_terminal() {
    // A real terminal (util-linux `script` allocates one): coloured levels,
    // unless NO_COLOR is set (https://no-color.org).
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "util-linux `script` is needed to give the test a terminal: apt-get install bsdutils (tools/setup.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let model = untrained_bundle(dir.path());
    let run = |no_color: bool| {
        let cmd = format!(
            "{} {} analyze --model {} {} >/dev/null",
            if no_color { "NO_COLOR=1" } else { "" },
            env!("CARGO_BIN_EXE_fer-edge"),
            model.display(),
            data("astronaut.png").display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(root())
            .env_remove("JOURNAL_STREAM")
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let coloured = run(false);
    assert!(
        coloured.contains("UNTRAINED") && coloured.contains('\u{1b}'),
        "{coloured:?}"
    );
    let plain = run(true);
    assert!(
        plain.contains("UNTRAINED") && !plain.contains('\u{1b}'),
        "{plain:?}"
    );
}

#[test]
fn check_opens_the_source_from_any_folder_and_names_one_that_cannot_be_opened() {
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = root().join("config/fer-edge.toml");
    let check = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fer-edge"))
            .current_dir(elsewhere.path())
            .arg("check")
            .arg("--config")
            .arg(&cfg)
            .args(extra)
            .output()
            .unwrap()
    };
    // Run from a folder that is not the repository: the example config's
    // models and replay are found beside it, and its first frame is read.
    let out = check(&[]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.contains("source:   replay of")
            && s.contains("pan6")
            && s.contains("first frame 640x480"),
        "{s}"
    );
    // A source that is not there: exit 69, naming it, as `run` would.
    let out = check(&["--source", "no-such-recording"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("no-such-recording"), "{err}");
    // A camera that is not there: the cameras present are listed.
    let out = check(&["--source", "/dev/video-none"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains("/dev/video-none") && err.contains("cameras present"),
        "{err}"
    );
}
