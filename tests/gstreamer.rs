//! The GStreamer source on real streams: `videotestsrc`, and a local RTSP
//! camera (GStreamer's RTSP server library from Debian, serving the
//! bundled pan1 frames behind a login, `tests/clients/rtsp_server.py`)
//! read by `check` and by the daemon, which must live through the server
//! being stopped and started again.
#![cfg(feature = "gstreamer")]

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The local RTSP camera on `port` (login `robot:s3cret`), ready to serve.
fn rtsp_camera(port: u16) -> Proc {
    let mut child = Command::new("/usr/bin/python3")
        .arg(root().join("tests/clients/rtsp_server.py"))
        .arg(port.to_string())
        .arg(root().join("tests/data/sequences/pan1"))
        .args(["15", "robot:s3cret"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3-gi and gir1.2-gst-rtsp-server-1.0 are installed (tools/setup.sh)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the RTSP server did not start");
    Proc(child)
}

fn gst_config(dir: &Path, port: u16, source: &str) -> std::path::PathBuf {
    let cfg = write_config(dir, &DaemonConfig::replay(port, true, "pan1"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let start = text.find("[source]").unwrap();
    let end = text.find("[detector]").unwrap();
    let text = format!(
        "{}[source]\nkind = \"gstreamer\"\n{source}\nreopen_max_backoff_s = 0.5\n\n{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn check(cfg: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .args(["check", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_reads_a_videotestsrc_pipeline_and_refuses_an_unreachable_camera_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = gst_config(
        dir.path(),
        free_port(),
        "pipeline = \"videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1\"",
    );
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("320x240"), "{text}");
    let cfg = gst_config(
        dir.path(),
        free_port(),
        "uri = \"rtsp://127.0.0.1:9/nothing\"\nopen_timeout_ms = 3000",
    );
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(69), "{text}");
    assert!(
        text.contains("rtsp://127.0.0.1:9/nothing") && text.contains("gst-launch-1.0"),
        "{text}"
    );
}

#[test]
fn a_wrong_login_is_refused_naming_the_credentials_file_and_never_shown() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cam = free_port();
    let _camera = rtsp_camera(cam);
    let creds = dir.path().join("camera-login");
    std::fs::write(&creds, "robot:wrong-password\n").unwrap();
    let cfg = gst_config(
        dir.path(),
        free_port(),
        &format!(
            "uri = \"rtsp://127.0.0.1:{cam}/cam\"\ncredentials_file = \"{}\"",
            creds.display()
        ),
    );
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(69), "{text}");
    assert!(text.contains("credentials_file"), "{text}");
    assert!(
        !text.contains("wrong-password"),
        "the password was shown: {text}"
    );
}

#[test]
fn the_daemon_reads_an_rtsp_camera_and_lives_through_its_restart() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cam = free_port();
    let mut camera = rtsp_camera(cam);
    let creds = dir.path().join("camera-login");
    std::fs::write(&creds, "robot:s3cret\n").unwrap();
    let port = free_port();
    let cfg = gst_config(
        dir.path(),
        port,
        &format!(
            "uri = \"rtsp://127.0.0.1:{cam}/cam\"\ncredentials_file = \"{}\"",
            creds.display()
        ),
    );
    let (code, text) = check(&cfg);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("640x480"),
        "check says what it negotiated: {text}"
    );
    let mut d = daemon(&cfg);
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "embedded broker listens"
    );
    let sub = Subscriber::start(port);
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| expressions(m).len() >= 10),
        "expressions from the RTSP camera"
    );
    // The camera goes away, then comes back.
    let _ = camera.0.kill();
    let _ = camera.0.wait();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        d.alive(),
        "the daemon keeps running while the camera is gone"
    );
    let before = expressions(&sub.snapshot()).len();
    let _camera2 = rtsp_camera(cam);
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| expressions(m).len()
            >= before + 10),
        "expressions again after the camera came back"
    );
    d.stop_cleanly();
    let msgs = sub.stop();
    check_schema(&msgs);
    assert_track_order(&msgs);
    let exprs = expressions(&msgs);
    let happy = exprs.iter().filter(|e| e["expression"] == "happy").count();
    assert!(
        happy * 2 > exprs.len(),
        "the astronaut smiles: {happy} of {}",
        exprs.len()
    );
    let events: Vec<Value> = on(&msgs, "/events")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let news = events.iter().filter(|e| e["type"] == "new").count();
    assert!(news >= 1, "{events:?}");
    assert!(
        events.iter().any(|e| e["type"] == "end"),
        "tracks end: {events:?}"
    );
}
