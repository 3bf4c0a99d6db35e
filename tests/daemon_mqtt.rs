//! `fer-edge run` end to end: the real binary on replayed real photos,
//! publishing to a real broker (mosquitto from Debian, started here, or the
//! embedded one), read by a real subscriber (`mosquitto_sub`).
//!
//! The daemon tests share the machine's two cores, so they run one at a time.

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn a_replayed_group_sequence_reaches_a_mosquitto_subscriber_from_online_to_offline() {
    let _g = serial();
    let (msgs, port, _broker) = mosquitto_pan6_replay("");
    assert_full_replay(&msgs, 6);
    assert_eq!(
        retained(port, "fer-edge/test-kiosk/status").as_deref(),
        Some("offline")
    );
    // A happy face in the group is read as happy on most of its frames.
    let exprs = expressions(&msgs);
    let happy = exprs.iter().filter(|e| e["expression"] == "happy").count();
    assert!(happy > exprs.len() / 4, "{happy} of {}", exprs.len());
    // Every expression says which frame size its box is in, and the
    // normalised box is the pixel box over that size.
    for e in &exprs {
        assert_eq!(
            (e["frame_width"].as_u64(), e["frame_height"].as_u64()),
            (Some(640), Some(480)),
            "{e}"
        );
        let (b, n) = (&e["bbox"], &e["bbox_normalized"]);
        for (i, size) in [640.0, 480.0, 640.0, 480.0].into_iter().enumerate() {
            let want = b[i].as_f64().unwrap() / size;
            assert!((n[i].as_f64().unwrap() - want).abs() < 1e-3, "{e}");
        }
        assert!(e["raw"].is_object(), "raw by default: {e}");
    }
    let stats: Vec<Value> = on(&msgs, "/stats")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let last = stats.last().expect("a final stats message");
    assert_eq!(last["frames_processed"], 30);
    assert_eq!(last["frames_captured"], 30);
}

/// mosquitto and a subscriber, and the daemon replaying pan6 to the end
/// with `mqtt_extra` lines added to `[mqtt]`: every message received, the
/// broker's port, and the broker (still running, for its retained messages).
fn mosquitto_pan6_replay(mqtt_extra: &str) -> (Vec<(String, String)>, u16, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = mosquitto(port, dir.path());
    let sub = Subscriber::start(port);
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, false, "pan6"));
    add_to_section(&cfg, "mqtt", mqtt_extra);
    let mut d = daemon(&cfg);
    let status = d
        .wait_exit(Duration::from_secs(240))
        .expect("daemon finishes the replay");
    assert_eq!(status.code(), Some(0));
    (sub.stop(), port, broker)
}

/// The embedded broker replaying pan1 to the end, with `mqtt_extra` lines
/// added to `[mqtt]`: every message one subscriber received.
fn embedded_pan1_replay(mqtt_extra: &str) -> Vec<(String, String)> {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, true, "pan1"));
    add_to_section(&cfg, "mqtt", mqtt_extra);
    let mut d = daemon(&cfg);
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "embedded broker listens"
    );
    let sub = Subscriber::start(port);
    let status = d
        .wait_exit(Duration::from_secs(240))
        .expect("daemon finishes");
    assert_eq!(status.code(), Some(0));
    sub.stop()
}

#[test]
fn the_embedded_broker_serves_subscribers_with_no_other_broker_running() {
    let msgs = embedded_pan1_replay("");
    assert_full_replay(&msgs, 1);
    let exprs = expressions(&msgs);
    assert!(
        exprs.iter().all(|e| e["expression"] == "happy"),
        "the astronaut smiles throughout"
    );
    assert!(exprs.iter().all(|e| e["valence"].as_f64().unwrap() > 0.3));
}

#[test]
fn the_daemon_survives_a_broker_restart_and_republishes_online() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = mosquitto(port, dir.path());
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    let mut d = daemon(&cfg);
    let sub = Subscriber::start(port);
    assert!(
        sub.wait_for(Duration::from_secs(120), |m| !expressions(m).is_empty()),
        "publishing before the restart"
    );
    // Broker goes away (no persistence: its retained messages die with it).
    let _ = broker.0.kill();
    let _ = broker.0.wait();
    let _ = sub.stop();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        d.alive(),
        "the daemon keeps running while the broker is down"
    );
    let _broker2 = mosquitto(port, dir.path());
    // The new broker knows nothing: a retained `online` proves the daemon republished it.
    let t0 = Instant::now();
    let mut status = None;
    while t0.elapsed() < Duration::from_secs(20) && status.is_none() {
        status = retained(port, "fer-edge/test-kiosk/status");
    }
    assert_eq!(status.as_deref(), Some("online"));
    let sub2 = Subscriber::start(port);
    assert!(
        sub2.wait_for(Duration::from_secs(30), |m| !expressions(m).is_empty()),
        "publishing resumed"
    );
    let stop = Instant::now();
    d.signal("TERM");
    let code = d
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    let took = stop.elapsed();
    assert_eq!(code.code(), Some(0));
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    let msgs = sub2.stop();
    assert_eq!(on(&msgs, "/status").last(), Some(&"offline"));
    let events: Vec<Value> = on(&msgs, "/events")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["type"] == "end"),
        "tracks end on shutdown"
    );
    check_schema(&msgs);
}

#[test]
fn the_daemon_starts_without_a_broker_and_connects_when_one_appears() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    let mut d = daemon(&cfg);
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.alive(), "no broker is no reason to exit");
    let _broker = mosquitto(port, dir.path());
    let sub = Subscriber::start(port);
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| !expressions(m).is_empty()
            && on(m, "/status").contains(&"online")),
        "connected and publishing once the broker is up"
    );
    d.signal("INT");
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    let msgs = sub.stop();
    check_schema(&msgs);
}

#[test]
fn a_calibration_section_shifts_every_reading_and_says_so() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, true, "pan1"));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\n[calibration]\nvalence_offset = 0.5\nclass_bias = [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]\n",
    );
    std::fs::write(&cfg, text).unwrap();
    // The same frames, uncalibrated, through `analyze` with the daemon's model.
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .arg("analyze")
        .args(["--model", "models/fer-minixception"])
        .arg(root().join("tests/data/sequences/pan1"))
        .output()
        .unwrap();
    let plain: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r["faces"].get(0).cloned())
        .collect();
    assert_eq!(plain.len(), 30);
    let mut d = daemon(&cfg);
    assert!(wait_for_port(port, Duration::from_secs(60)));
    let sub = Subscriber::start(port);
    assert_eq!(
        d.wait_exit(Duration::from_secs(240)).and_then(|s| s.code()),
        Some(0)
    );
    let msgs = sub.stop();
    check_schema(&msgs);
    let exprs = expressions(&msgs);
    assert!(!exprs.is_empty());
    assert!(exprs.iter().all(|e| e["calibrated"] == true));
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let all: Vec<f64> = v.collect();
        all.iter().sum::<f64>() / all.len() as f64
    };
    let raw_v = mean(&mut exprs.iter().map(|e| e["raw"]["valence"].as_f64().unwrap()));
    let plain_v = mean(&mut plain.iter().map(|f| f["valence"].as_f64().unwrap()));
    assert!(
        (plain_v - 0.5 - raw_v).abs() < 0.05,
        "valence {plain_v} → {raw_v}, offset 0.5"
    );
    // The same face both ways, so the formula can be checked frame by
    // frame: p' = p·e⁻² / (p·e⁻² + 1 − p).
    let first = &exprs[0];
    let seq = first["frame_seq"].as_u64().unwrap() as usize;
    let p = plain[seq]["probabilities"]["happy"].as_f64().unwrap();
    let want = p * (-2f64).exp() / (p * (-2f64).exp() + 1.0 - p);
    let got = first["raw"]["probabilities"]["happy"].as_f64().unwrap();
    // At p ≈ 0.998 a 0.001 change of p moves p' by 0.01: allow for the
    // daemon's and analyze's readings differing in the fourth decimal.
    assert!(
        got < p - 0.005 && (got - want).abs() < 0.03,
        "happy {p} → {got}, formula says {want}"
    );
}

fn run_expecting_config_error(toml_extra: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(free_port(), true, "pan1"));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    if let Some(model) = toml_extra.strip_prefix("emotion.model=") {
        let shipped = format!("{}/models/fer-minixception", root().display());
        text = text.replace(&shipped, model);
    } else {
        text.push_str(toml_extra);
    }
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(key), "stderr must name {key}: {err}");
}

#[test]
fn a_bad_config_exits_78_and_names_the_key() {
    run_expecting_config_error("\n[tracker]\nmax_age = 2.0\n", "max_age");
    run_expecting_config_error("keep_alive_s = 0\n", "mqtt.keep_alive_s");
    run_expecting_config_error("\n[smoothing]\nhysteresis = 3.0\n", "smoothing.hysteresis");
    // A model path that does not exist is a config error too: restarting will not help.
    run_expecting_config_error("emotion.model=/nonexistent/bundle", "/nonexistent/bundle");
}

#[test]
fn run_source_overrides_the_configs_source() {
    // The shipped config replays pan1; `--source` names a recording that is
    // not there: `run` must try that one (exit 69 naming it), not the config's.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("fer-edge-no-such-recording");
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .args(["run", "--config", "config/fer-edge.toml", "--source"])
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("fer-edge-no-such-recording"), "{err}");
}

#[test]
fn the_schema_root_refuses_garbage_and_names_the_definition_of_every_topic() {
    let schema = mqtt_schema();
    let root = jsonschema::validator_for(&schema).unwrap();
    for garbage in [
        serde_json::json!({"garbage": 1}),
        serde_json::json!({"schema_version": "1.3"}),
        serde_json::json!(42),
        serde_json::json!("maybe"),
    ] {
        assert!(!root.is_valid(&garbage), "the root accepted {garbage}");
    }
    assert!(root.is_valid(&serde_json::json!("online")));
    for (topic, def) in [
        ("fer-edge/kiosk-1/status", Some("status")),
        ("fer-edge/kiosk-1/faces/tracked", Some("tracked")),
        ("fer-edge/kiosk-1/faces/17/expression", Some("expression")),
        ("fer-edge/kiosk-1/events", Some("event")),
        ("fer-edge/kiosk-1/stats", Some("stats")),
        ("fer-edge/kiosk-1/summary", Some("summary")),
        ("fer-edge/kiosk-1/other", None),
        ("kiosk-1/faces/17/expression", None),
    ] {
        assert_eq!(schema_definition(&schema, topic).as_deref(), def, "{topic}");
    }
}

#[test]
fn raw_false_leaves_the_unsmoothed_reading_out_and_the_messages_still_match_the_schema() {
    let msgs = embedded_pan1_replay("raw = false\n");
    let exprs = expressions(&msgs);
    assert!(!exprs.is_empty());
    assert!(
        exprs.iter().all(|e| e.get("raw").is_none()),
        "{:?}",
        exprs[0]
    );
    check_schema(&msgs);
}

/// The summary messages of a run, in order.
fn summaries(msgs: &[(String, String)]) -> Vec<Value> {
    on(msgs, "/summary")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

#[test]
fn a_rate_cap_ros4hri_labels_landmarks_and_the_summary_on_the_embedded_broker() {
    let msgs = embedded_pan1_replay(
        "max_rate_hz = 5.0\nlandmarks = true\nlabels = \"ros4hri\"\nsummary_rate_hz = 2.0\n",
    );
    check_schema(&msgs);
    assert_track_order(&msgs);
    let exprs = expressions(&msgs);
    // pan1 is 30 frames at 15 frames/s: 2 s, so at most 11 messages at 5/s
    // (the default sends one per frame: 28 or more).
    assert!((5..=11).contains(&exprs.len()), "{} messages", exprs.len());
    for pair in exprs.windows(2) {
        let dt = pair[1]["frame_time"].as_f64().unwrap() - pair[0]["frame_time"].as_f64().unwrap();
        assert!(dt >= 0.199, "two messages {dt} s apart");
    }
    for e in &exprs {
        assert_eq!(e["expression"], "happy");
        assert!(
            e["probabilities"].get("surprised").is_some()
                && e["probabilities"].get("surprise").is_none(),
            "{e}"
        );
        let b: Vec<f64> = (0..4).map(|i| e["bbox"][i].as_f64().unwrap()).collect();
        for point in ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"] {
            let (x, y) = (
                e["landmarks"][point][0].as_f64().unwrap(),
                e["landmarks"][point][1].as_f64().unwrap(),
            );
            assert!(
                x > b[0] && x < b[0] + b[2] && y > b[1] && y < b[1] + b[3],
                "{point} ({x}, {y}) outside the box {b:?}"
            );
        }
    }
    let s = summaries(&msgs);
    assert_eq!(s.first().unwrap()["faces"], 0, "nobody at start");
    assert_eq!(s.last().unwrap()["faces"], 0, "nobody after the end");
    let present: Vec<&Value> = s.iter().filter(|m| m["faces"] == 1).collect();
    assert!(!present.is_empty(), "{s:?}");
    assert_eq!(present[0]["tracks"][0]["expression"], "happy");
    assert_eq!(present[0]["dominant_expression"], "happy");
    assert!(present[0]["mean_valence"].as_f64().unwrap() > 0.3);
    assert!(s.len() <= 2 * 2 + 3, "{} summaries in 2 s at 2/s", s.len());
}

#[test]
fn on_change_and_expression_changed_events_through_mosquitto_with_a_retained_summary() {
    let _g = serial();
    let (msgs, port, _broker) =
        mosquitto_pan6_replay("on_change = true\nchange_threshold = 0.15\n");
    check_schema(&msgs);
    assert_track_order(&msgs);
    let exprs = expressions(&msgs);
    // Every message after a track's first says something new.
    let mut last: std::collections::BTreeMap<u64, &Value> = Default::default();
    for e in &exprs {
        let id = e["track_id"].as_u64().unwrap();
        if let Some(p) = last.get(&id) {
            let moved = |k: &str| (e[k].as_f64().unwrap() - p[k].as_f64().unwrap()).abs() > 0.15;
            assert!(
                e["expression"] != p["expression"] || moved("valence") || moved("arousal"),
                "{p}\n{e}"
            );
        }
        last.insert(id, e);
    }
    assert_eq!(last.len(), 6, "every face was sent at least once");
    assert!(
        exprs.len() < 6 * 25,
        "{} messages: on-change sent nearly every frame",
        exprs.len()
    );
    let events: Vec<Value> = on(&msgs, "/events")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    for e in events.iter().filter(|e| e["type"] == "expression_changed") {
        assert_ne!(e["expression"], e["previous_expression"], "{e}");
    }
    let s = summaries(&msgs);
    let most = s
        .iter()
        .map(|m| m["faces"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(most >= 5, "the summary saw {most} of the 6 faces");
    let kept: Value = serde_json::from_str(
        &retained(port, "fer-edge/test-kiosk/summary").expect("a retained summary"),
    )
    .unwrap();
    assert_eq!(
        kept["faces"], 0,
        "the retained summary says nobody is left: {kept}"
    );
}

#[test]
fn a_url_given_as_source_stays_a_url() {
    // `--source rtsp://…` must reach the GStreamer source as that URL (not
    // a path under the working folder), with or without the feature built.
    // (`check`: `run` waits for a camera that is down at start.)
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .args([
            "check",
            "--config",
            "config/fer-edge.toml",
            "--source",
            "rtsp://127.0.0.1:9/cam",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("rtsp://127.0.0.1:9/cam"), "{err}");
    assert!(
        !err.contains("rtsp:/127"),
        "the URL was taken for a path: {err}"
    );
}

/// `check` as the go-live gate (issue 30.3): it fails where `run` would
/// publish nothing or stop.
#[test]
fn check_fails_for_an_unreachable_broker_and_a_config_without_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("site.toml");
    let pan1 = root().join("tests/data/sequences/pan1");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nkind = \"replay\"\npath = \"{}\"\n[mqtt]\nembedded = false\nhost = \"127.0.0.1\"\nport = {port}\n",
            pan1.display()
        ),
    )
    .unwrap();
    let check = |cfgs: &[&std::path::Path]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
        c.current_dir(root()).arg("check");
        for f in cfgs {
            c.arg("--config").arg(f);
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    };
    // Nothing listens: before, `ok`.
    let (code, text) = check(&[&cfg]);
    assert_eq!(code, Some(69), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) || text.contains("refused"),
        "{text}"
    );
    // The broker is there: connected, and the source read.
    let _broker = mosquitto(port, dir.path());
    let (code, text) = check(&[&cfg]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("connected") && text.contains("first frame"),
        "{text}"
    );
    // A config without a source: `run` would exit 78, so does `check`.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[mqtt]\ndevice_id = \"lobby\"\n").unwrap();
    let (code, text) = check(&[&bare]);
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("source.path"), "{text}");
    // With neither a config nor a source it checks engines and models only.
    let (code, text) = check(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not a deployment"), "{text}");
}

/// Issue 30.4 with a V4L2 camera: an absent device at start is an outage
/// the daemon waits through (reopening with backoff), said on the retained
/// `source` topic, not an exit that systemd would restart every 2 s.
#[test]
#[cfg(feature = "v4l2")]
fn run_waits_for_a_v4l2_camera_that_is_not_there_yet_and_says_so() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, true, "pan1"));
    let missing = dir.path().join("video-not-yet");
    replace_source(
        &cfg,
        &format!(
            "kind = \"v4l2\"\ndevice = \"{}\"\nreopen_max_backoff_s = 0.5",
            missing.display()
        ),
    );
    let mut d = daemon(&cfg);
    assert!(wait_for_port(port, Duration::from_secs(60)));
    let t0 = Instant::now();
    let mut state = None;
    while t0.elapsed() < Duration::from_secs(15) {
        state = retained(port, "fer-edge/test-kiosk/source");
        if state.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let state: Value = serde_json::from_str(&state.expect("a retained source state")).unwrap();
    assert_eq!(state["state"], "unavailable", "{state}");
    assert!(
        state["reason"].as_str().unwrap().contains("video-not-yet"),
        "{state}"
    );
    assert!(d.alive(), "the daemon waits for its camera");
    d.stop_cleanly();
}
