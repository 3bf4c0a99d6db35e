//! The fault matrix of docs/RELIABILITY.md, on real processes: the
//! fer-edge binary against bad configs, bundles, files and images,
//! mosquitto with passwords and TLS certificates made here with openssl,
//! and shutdown under load. The embedded broker, as a hostile client would
//! try it, is `tests/broker_trust.rs`.

mod common;
use common::hostile::*;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_decompression_bomb_as_frame_0_of_a_looping_replay_is_skipped_and_the_rest_published() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let pan1 = root().join("tests/data/sequences/pan1");
    for e in std::fs::read_dir(&pan1).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, frames.join(p.file_name().unwrap())).unwrap();
    }
    // Frame 0 declares 12000x12000 (once 8.6 GB of daemon memory).
    let bomb = declaring(std::fs::read(pan1.join("0000.jpg")).unwrap(), 12000, 12000);
    std::fs::write(frames.join("0000.jpg"), &bomb).unwrap();
    let port = free_port();
    let mut c = DaemonConfig::live(port);
    c.embedded = true;
    let seq = frames.display().to_string();
    c.sequence = &seq;
    let cfg = write_config(dir.path(), &c);
    let log = dir.path().join("daemon.log");
    let mut d = daemon_logged(&cfg, &log, "info");
    assert!(wait_for_log(
        &log,
        "embedded MQTT broker listening",
        Duration::from_secs(60)
    )
    .is_some());
    let watch = Subscriber::start(port);
    assert!(
        watch.wait_for(Duration::from_secs(30), |m| expressions(m).len() >= 20),
        "the other frames are published: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let line = wait_for_log(&log, "refused before decoding", Duration::from_secs(5));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("0000.jpg") && l.contains("12000x12000")),
        "{line:?}"
    );
    let peak = peak_rss_mb(d.0.id());
    assert!(peak < 1024.0, "peak memory {peak:.0} MB");
    eprintln!("peak memory with a 12000x12000 bomb looping as frame 0: {peak:.0} MB");
    watch.stop();
    d.stop_cleanly();
}

#[test]
fn tls_to_mosquitto_works_with_its_ca_and_a_wrong_ca_or_password_is_an_error_naming_the_fix() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = make_certs(d, "site");
    let (other_ca, _, _) = make_certs(d, "other");
    let port = free_port();
    let pw = d.join("mosquitto.passwd");
    assert!(run(Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&pw)
        .args(["kiosk", "right"]))
    .status
    .success());
    let _broker = mosquitto_with(
        port,
        d,
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n",
            ca.display(),
            cert.display(),
            key.display(),
            pw.display()
        ),
    );
    let tls = |ca: &Path, password_file: &Path| {
        format!(
            "username = \"kiosk\"\npassword_file = \"{}\"\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"\n",
            password_file.display(),
            ca.display()
        )
    };
    let right = d.join("right.txt");
    std::fs::write(&right, "right\n").unwrap();
    let wrong = d.join("wrong.txt");
    std::fs::write(&wrong, "wrong\n").unwrap();
    let sub_args = [
        "--cafile",
        ca.to_str().unwrap(),
        "-u",
        "kiosk",
        "-P",
        "right",
    ];

    // The right CA and password: connected over TLS.
    let cfg = external_config(d, port, &tls(&ca, &right));
    let log = d.join("ok.log");
    let mut daemon = daemon_logged(&cfg, &log, "info");
    assert!(wait_for_log(
        &log,
        "connected to the MQTT broker",
        Duration::from_secs(60)
    )
    .is_some());
    let o = mosquitto_sub(port, &sub_args, STATUS, 1);
    assert_eq!(text(&o).trim(), format!("{STATUS} online"));
    daemon.stop_cleanly();

    // A CA that did not sign the broker's certificate: ERROR naming ca_file, still running.
    let cfg = external_config(d, port, &tls(&other_ca, &right));
    let log = d.join("ca.log");
    let mut daemon = daemon_logged(&cfg, &log, "warn");
    let line = wait_for_log(&log, "mqtt.tls.ca_file", Duration::from_secs(60)).expect("an error");
    assert!(line.contains("ERROR"), "{line}");
    assert!(daemon.alive());
    daemon.signal("TERM");
    let _ = daemon.wait_exit(Duration::from_secs(5));

    // A wrong password: ERROR naming password_file, repeated ever more rarely.
    let cfg = external_config(d, port, &tls(&ca, &wrong));
    let log = d.join("pw.log");
    let mut daemon = daemon_logged(&cfg, &log, "warn");
    let line = wait_for_log(&log, "mqtt.password_file", Duration::from_secs(60)).expect("an error");
    assert!(
        line.contains("ERROR")
            && (line.contains("not authorised") || line.contains("bad user name or password")),
        "{line}"
    );
    std::thread::sleep(Duration::from_secs(6));
    assert!(daemon.alive());
    let errors = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("mqtt.password_file"))
        .count();
    // Backoff 0.5 s: ~12+ attempts in 6 s, logged on attempts 1, 2, 4, 8 (16).
    assert!((2..=5).contains(&errors), "{errors} error lines");
    daemon.stop_cleanly();
}

#[test]
fn sigterm_under_load_sends_every_end_and_offline_exactly_once() {
    shutdown_under_load_sends_every_end_and_offline_exactly_once("TERM");
}

/// SIGHUP (a closed terminal or SSH session) ends the daemon as SIGTERM
/// does (issue 19, case 8: it used to kill it with no `end`, no `offline`).
#[test]
fn sighup_under_load_shuts_down_like_sigterm() {
    shutdown_under_load_sends_every_end_and_offline_exactly_once("HUP");
}

fn shutdown_under_load_sends_every_end_and_offline_exactly_once(signal: &str) {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    let mut c = DaemonConfig::live(port);
    c.sequence = "pan6";
    let cfg = write_config(dir.path(), &c);
    let sub = Subscriber::start(port);
    let mut d = daemon(&cfg);
    assert!(
        sub.wait_for(Duration::from_secs(90), |m| on(m, "/events")
            .iter()
            .filter(|p| p.contains("\"type\":\"new\""))
            .count()
            >= 5),
        "at least five faces tracked"
    );
    let t0 = Instant::now();
    d.signal(signal);
    let code = d.wait_exit(Duration::from_secs(5)).and_then(|s| s.code());
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "SIG{signal}");
    assert!(
        took < Duration::from_secs(1),
        "SIG{signal} to exit took {took:?}"
    );
    let msgs = sub.stop();
    let offline = on(&msgs, "/status")
        .iter()
        .filter(|p| **p == "offline")
        .count();
    assert_eq!(
        offline,
        1,
        "offline once, not also as the will: {:?}",
        on(&msgs, "/status")
    );
    assert_track_order(&msgs);
    let ids = |kind: &str| -> std::collections::BTreeSet<u64> {
        on(&msgs, "/events")
            .iter()
            .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap())
            .filter(|e| e["type"] == kind)
            .map(|e| e["track_id"].as_u64().unwrap())
            .collect()
    };
    assert!(ids("new").len() >= 5, "{:?}", ids("new"));
    assert_eq!(ids("new"), ids("end"), "every track that began has ended");
    eprintln!("SIG{signal} with six tracks: exit 0 in {took:?}");
}

#[test]
fn sigkill_leaves_the_last_will_offline() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    let mut d = daemon(&cfg);
    let t0 = Instant::now();
    while retained(port, STATUS).as_deref() != Some("online") {
        assert!(t0.elapsed() < Duration::from_secs(60), "never online");
    }
    d.signal("KILL");
    let _ = d.wait_exit(Duration::from_secs(5));
    // mosquitto sends the will once it sees the socket close.
    let t0 = Instant::now();
    let mut s = retained(port, STATUS);
    while s.as_deref() != Some("offline") && t0.elapsed() < Duration::from_secs(10) {
        s = retained(port, STATUS);
    }
    assert_eq!(s.as_deref(), Some("offline"));
}

/// `run` and `check` both exit 78 (the one config-error code), both naming `key`, for the test
/// config with `extra` as a second config file layered on top of it.
fn refused_by_run_and_check(extra: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(free_port(), true, "pan1"));
    let over = dir.path().join("extra.toml");
    std::fs::write(&over, extra).unwrap();
    for (cmd, code) in [("run", 78), ("check", 78)] {
        let o = run(bin()
            .args([cmd, "--config"])
            .arg(&cfg)
            .arg("--config")
            .arg(&over));
        assert_eq!(
            o.status.code(),
            Some(code),
            "{cmd} with {extra}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains(key),
            "{cmd} with {extra} must name {key}: {}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"));
    }
}

/// A `[source]` naming an RTSP camera whose login is in a file written
/// with `mode` (through a symbolic link when `link`).
fn camera_login(dir: &tempfile::TempDir, name: &str, text: &str, mode: u32, link: bool) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.path().join(format!("{name}-login"));
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let named = if link {
        let l = dir.path().join(format!("{name}-login-link"));
        std::os::unix::fs::symlink(&file, &l).unwrap();
        l
    } else {
        file
    };
    format!(
        "[source]\nkind = \"gstreamer\"\nuri = \"rtsp://127.0.0.1:1/cam\"\ncredentials_file = \"{}\"",
        named.display()
    )
}

#[test]
fn configs_that_would_start_broken_are_refused_by_run_and_by_check() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let not_a_cert = dir.path().join("ca.pem");
    std::fs::write(&not_a_cert, "this is not a certificate\n").unwrap();
    let long = "k".repeat(200);
    let cases = [
        (
            "[mqtt]\ndevice_id = \"kiosk$1\"".to_string(),
            "mqtt.device_id",
        ),
        (
            "[mqtt]\ntopic_prefix = \"$SYS\"".into(),
            "mqtt.topic_prefix",
        ),
        (
            "[mqtt]\ntopic_prefix = \"a//b\"".into(),
            "mqtt.topic_prefix",
        ),
        (format!("[mqtt]\ndevice_id = \"{long}\""), "mqtt.device_id"),
        ("[mqtt]\nclient_id = \"a b\"".into(), "mqtt.client_id"),
        (
            "[mqtt.broker]\nlisten = \"127.0.0.1:0\"".into(),
            "mqtt.broker.listen",
        ),
        ("[mqtt]\nembedded = false\nport = 0".into(), "mqtt.port"),
        (
            "[detector]\nthresholds = [0.6, 0.7, 0.7, 0.7]".into(),
            "thresholds",
        ),
        (
            format!(
                "[mqtt]\nembedded = false\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"",
                not_a_cert.display()
            ),
            "mqtt.tls.ca_file",
        ),
        (
            "[mqtt]\nembedded = false\nusername = \"u\"\npassword_file = \"/dev/zero\"".into(),
            "character device",
        ),
        // Periods that round to a zero Duration panicked the timer after
        // `check` had said ok (issue 29, case 8).
        (
            "[mqtt]\nstats_interval_s = 1e-300".into(),
            "mqtt.stats_interval_s",
        ),
        ("[source]\nfps = 1e-300".into(), "source.fps"),
        (
            "[follow]\nexpression_rate_hz = 1e-300".into(),
            "follow.expression_rate_hz",
        ),
        // A camera's credentials file: world-readable, a symbolic link,
        // malformed (issue 29, case 11).
        (
            camera_login(&dir, "open", "robot:pw\n", 0o644, false),
            "chmod 600",
        ),
        (
            camera_login(&dir, "link", "robot:pw\n", 0o600, true),
            "symbolic link",
        ),
        (
            camera_login(&dir, "bad", "no colon here\n", 0o600, false),
            "user:password",
        ),
    ];
    for (extra, key) in &cases {
        refused_by_run_and_check(extra, key);
    }
}

/// A copy of the shipped bundle with `edit` applied to its manifest and
/// `model` (if given) as its ONNX file, sha256 updated.
fn broken_bundle(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut serde_json::Value),
    model: Option<Vec<u8>>,
) -> PathBuf {
    let src = root().join("models/fer-minixception");
    let dst = dir.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("bundle.json")).unwrap()).unwrap();
    if let Some(bytes) = model {
        let file = m["model_file"].as_str().unwrap().to_string();
        std::fs::write(dst.join(&file), &bytes).unwrap();
        use sha2::Digest as _;
        m["sha256"] = format!("{:x}", sha2::Sha256::digest(&bytes)).into();
    }
    edit(&mut m);
    std::fs::write(
        dst.join("bundle.json"),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    dst
}

#[test]
fn bundles_that_analyze_rejects_are_rejected_by_inspect_and_check_too() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let onnx = std::fs::read(root().join("models/fer-minixception/model.onnx"))
        .or_else(|_| {
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(root().join("models/fer-minixception/bundle.json"))
                    .unwrap(),
            )
            .unwrap();
            std::fs::read(
                root()
                    .join("models/fer-minixception")
                    .join(m["model_file"].as_str().unwrap()),
            )
        })
        .unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let bundles = [
        broken_bundle(d, "empty", |_| {}, Some(Vec::new())),
        broken_bundle(
            d,
            "truncated",
            |_| {},
            Some(onnx[..onnx.len() / 3].to_vec()),
        ),
        broken_bundle(d, "random", |_| {}, Some(random)),
        broken_bundle(
            d,
            "outputs",
            |m| m["outputs"]["expressions"] = "logits_x".into(),
            None,
        ),
        broken_bundle(
            d,
            "input",
            |m| m["input"]["name"] = "not_the_input".into(),
            None,
        ),
        // 1e39 does not fit an f32: it reads as infinity.
        broken_bundle(
            d,
            "mean",
            |m| m["input"]["mean"] = serde_json::json!([1e39]),
            None,
        ),
    ];
    let photo = root().join("tests/data/group_t1.jpg");
    for b in &bundles {
        let name = b.file_name().unwrap().to_string_lossy().to_string();
        let inspect = run(bin().args(["model", "inspect"]).arg(b));
        let analyze = run(bin().arg("analyze").arg(&photo).arg("--model").arg(b));
        assert_eq!(
            analyze.status.code(),
            Some(78),
            "{name}: analyze {}",
            text(&analyze)
        );
        assert_eq!(
            inspect.status.code(),
            Some(78),
            "{name}: inspect vouched: {}",
            text(&inspect)
        );
        for o in [&inspect, &analyze] {
            assert!(
                text(o).contains("error:") && !text(o).contains("panicked"),
                "{name}: {}",
                text(o)
            );
        }
    }
}

#[test]
fn inspect_prints_a_non_ascii_node_name_without_panicking() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let b = broken_bundle(
        dir.path(),
        "gcn",
        |m| m["gcn"] = serde_json::json!({"file": "gcn.json"}),
        None,
    );
    let nodes: Vec<String> = [
        "Ουδέτερο-συναίσθημα",
        "Χαρά",
        "Λύπη",
        "Έκπληξη",
        "Φόβος",
        "Αηδία",
        "Θυμός",
        "Σθένος",
        "Διέγερση",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let w: Vec<Vec<f32>> = (0..9)
        .map(|i| (0..4).map(|j| ((i * 4 + j) as f32).sin()).collect())
        .collect();
    std::fs::write(
        b.join("gcn.json"),
        serde_json::json!({"nodes": nodes, "graph": {"tau": 0.4, "p": 0.2}, "W": w}).to_string(),
    )
    .unwrap();
    let o = run(bin().args(["model", "inspect"]).arg(&b));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Ουδέτερο-σ"), "{}", text(&o));
}

#[test]
fn devices_fifos_and_oversized_files_are_refused_quickly_with_their_cause() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("frames.fifo");
    assert!(run(Command::new("mkfifo").arg(&fifo)).status.success());
    let big = dir.path().join("big.jpg");
    let mut bytes = std::fs::read(root().join("tests/data/group_t1.jpg")).unwrap();
    bytes.resize(3 << 20, 0);
    std::fs::write(&big, bytes).unwrap();
    let t0 = Instant::now();
    let o = run(bin()
        .arg("analyze")
        .arg("/dev/zero")
        .arg(&fifo)
        .arg(&big)
        .args(["--max-image-mb", "2"]));
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("/dev/zero: is a character device"), "{t}");
    assert!(t.contains("FIFO"), "{t}");
    assert!(t.contains("3145728 bytes is over the 2 MiB limit"), "{t}");
    for (what, path) in [
        ("model inspect", "/dev/zero"),
        ("model inspect", fifo.to_str().unwrap()),
    ] {
        let o = run(bin().args(what.split(' ')).arg(path));
        assert_eq!(o.status.code(), Some(78), "{what} {path}: {}", text(&o));
    }
    let o = run(bin().args(["check", "--config", "/dev/zero"]));
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).contains("character device"), "{}", text(&o));
}

#[test]
fn three_hundred_mutated_images_give_no_panic_and_no_hang() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    // Real photos at 320 px wide: the mutations matter, not the detector's time.
    let small = |name: &str, format: image::ImageFormat| {
        let img = image::open(root().join("tests/data").join(name)).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        img.resize(320, 320, image::imageops::FilterType::Triangle)
            .to_rgb8()
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    };
    let sources = [
        small("group_t1.jpg", image::ImageFormat::Jpeg),
        small("coffee.png", image::ImageFormat::Png),
    ];
    let mut seed = 20261128u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        let mut b = sources[i % 2].clone();
        match next() % 4 {
            0 => {
                // Flip bytes anywhere (headers included).
                for _ in 0..(1 + next() % 16) {
                    let at = (next() as usize) % b.len();
                    b[at] ^= (next() % 255 + 1) as u8;
                }
            }
            1 => b.truncate((next() as usize) % b.len()),
            2 => {
                // Splice garbage into the middle.
                let at = (next() as usize) % b.len();
                let junk: Vec<u8> = (0..(next() % 512)).map(|_| next() as u8).collect();
                b.splice(at..at, junk);
            }
            _ => {
                // Overwrite a run with one value (zeros or 0xFF markers).
                let at = (next() as usize) % b.len();
                let end = (at + (next() as usize) % 2048).min(b.len());
                let v = if next() % 2 == 0 { 0 } else { 0xFF };
                b[at..end].fill(v);
            }
        }
        let ext = if i % 2 == 0 { "jpg" } else { "png" };
        std::fs::write(dir.path().join(format!("m{i:03}.{ext}")), b).unwrap();
    }
    // Output to files: a full pipe would stall the child while we wait.
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = bin()
        .arg("analyze")
        .arg(dir.path())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "analyze hung on a mutated image"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(matches!(status.code(), Some(0) | Some(1)), "{err}");
    // Every image is accounted for: one JSON line or one error line.
    let ok = out.lines().count();
    let failed = err.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(ok + failed, 300, "{ok} analysed, {failed} failed");
    eprintln!("mutated images: {ok} analysed, {failed} refused with a reason");
}
