//! A robot's camera as the source: the real daemon with `[source] kind =
//! "ros2"`, fed by an independent DDS (Eclipse Cyclone DDS from PyPI,
//! `tests/clients/ros2_camera.py`) playing the bundled frames as a ROS 2
//! camera driver would: raw `sensor_msgs/Image` best effort, or JPEG
//! `sensor_msgs/CompressedImage` reliable. The people announced over MQTT
//! are those a replay of the same frames gives, stamped with the images'
//! own `header.stamp`; the ROS 2 output carries the stamps and the image's
//! `frame_id`; a bogus 20000x20000 header is refused on its numbers, and a
//! publisher that stops and comes back is an outage, counted and resumed.
#![cfg(feature = "ros2")]

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const FPS: f64 = 6.0;
const STAMP0: f64 = 1_700_000_000.0;
/// The second play's stamps, after the publisher restarted.
const STAMP1: f64 = 1_700_000_100.0;

/// A domain of its own, so that no other DDS traffic on the machine mixes in.
fn domain() -> u16 {
    150 + (std::process::id() % 50) as u16
}

/// Plays `tests/data/sequences/pan1` on `topic` once; returns how many
/// messages went out.
fn play(domain: u16, topic: &str, stamp0: f64, extra: &[&str]) -> u64 {
    let out = Command::new(clients_python())
        .arg(root().join("tests/clients/ros2_camera.py"))
        .args([
            domain.to_string(),
            topic.to_string(),
            root()
                .join("tests/data/sequences/pan1")
                .display()
                .to_string(),
            FPS.to_string(),
            stamp0.to_string(),
            "head_front_camera".into(),
        ])
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the camera publisher failed");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["matched"], true,
        "fer-edge's reader never matched: {report}"
    );
    report["published"].as_u64().unwrap()
}

/// A daemon on the embedded broker reading `topic` on its own domain, the
/// ROS 2 output on too (without a frame_id of its own).
fn ros2_daemon(dir: &Path, port: u16, domain: u16, topic: &str) -> (Proc, std::path::PathBuf) {
    let cfg = write_config(dir, &DaemonConfig::replay(port, true, "pan1"));
    replace_source(
        &cfg,
        &format!("kind = \"ros2\"\ntopic = \"{topic}\"\nread_timeout_ms = 800\nfps = {FPS}\n"),
    );
    add_to_section(
        &cfg,
        "ros2",
        &format!("enabled = true\ndomain_id = {domain}\ndiscovery_range = \"localhost\"\n"),
    );
    let log = dir.join("daemon.log");
    let d = daemon_logged(&cfg, &log, "info");
    assert!(
        wait_for_port(port, Duration::from_secs(30)),
        "the daemon's broker"
    );
    assert!(
        wait_for_log(&log, "images from", Duration::from_secs(10)).is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (d, log)
}

/// The expression messages' frame times, each matched to the frame it
/// must be (`stamp0 + i / FPS`) within a microsecond.
fn frame_indices(exprs: &[Value], stamp0: f64) -> Vec<i64> {
    exprs
        .iter()
        .filter_map(|e| {
            let i = (e["frame_time"].as_f64().unwrap() - stamp0) * FPS;
            ((0.0..30.0).contains(&i.round()) && (i - i.round()).abs() < 1e-3)
                .then_some(i.round() as i64)
        })
        .collect()
}

/// The expression read most often in a run.
fn dominant(exprs: &[Value]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for e in exprs {
        *counts
            .entry(e["expression"].as_str().unwrap().into())
            .or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).unwrap().0
}

/// What a replay of pan1 gives, read the same way: people and expression.
fn replayed_pan1() -> (usize, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, true, "pan1"));
    let mut d = daemon(&cfg);
    assert!(wait_for_port(port, Duration::from_secs(30)));
    let sub = Subscriber::start(port);
    assert!(d
        .wait_exit(Duration::from_secs(60))
        .is_some_and(|s| s.success()));
    let msgs = sub.stop();
    let new = on(&msgs, "/events")
        .iter()
        .filter(|p| p.contains("\"type\":\"new\""))
        .count();
    (new, dominant(&expressions(&msgs)))
}

#[test]
fn a_raw_best_effort_camera_is_read_with_its_stamps_a_huge_header_refused_and_a_restart_resumed() {
    let _g = serial();
    let (people, expression) = replayed_pan1();
    let dir = tempfile::tempdir().unwrap();
    let (port, domain) = (free_port(), domain());
    let (mut d, log) = ros2_daemon(dir.path(), port, domain, "/robot/camera/image_raw");
    let sub = Subscriber::start(port);
    let hri = Command::new(clients_python())
        .arg(root().join("tests/clients/ros2_sub.py"))
        .args([domain.to_string(), "20".into(), "localhost".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sent = play(domain, "/robot/camera/image_raw", STAMP0, &["--huge"]);
    assert_eq!(sent, 31);
    // Silent for longer than read_timeout_ms: an outage; then the driver is back.
    assert!(
        wait_for_log(&log, "no image for 800 ms", Duration::from_secs(5)).is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    play(domain, "/robot/camera/image_raw", STAMP1, &[]);
    std::thread::sleep(Duration::from_secs(1));
    d.stop_cleanly();
    let msgs = sub.stop();
    let daemon_log = std::fs::read_to_string(&log).unwrap();
    check_schema(&msgs);
    assert_track_order(&msgs);

    // The 20000x20000 header: refused on its numbers, named, counted; the
    // frames after it were read.
    assert!(
        daemon_log.contains("20000x20000") && daemon_log.contains("max_pixels"),
        "{daemon_log}"
    );
    // Outages (before the first image, between the plays, after the last):
    // each logged once and counted; the one between the plays ended.
    let stats: Value = serde_json::from_str(on(&msgs, "/stats").last().unwrap()).unwrap();
    let outages = stats["source_outages"].as_u64().unwrap();
    assert!(outages >= 2, "{stats}");
    assert_eq!(
        daemon_log.matches("no image for 800 ms").count() as u64,
        outages,
        "{daemon_log}"
    );
    assert!(daemon_log.contains("the source is back"), "{daemon_log}");
    assert!(stats["frame_errors"].as_u64().unwrap() >= 1, "{stats}");
    assert!(
        stats["source"]
            .as_str()
            .unwrap()
            .contains("ros2:///robot/camera/image_raw"),
        "{stats}"
    );

    // Every reading carries its image's stamp, from both plays.
    let exprs = expressions(&msgs);
    let (first, second) = (frame_indices(&exprs, STAMP0), frame_indices(&exprs, STAMP1));
    assert_eq!(
        first.len() + second.len(),
        exprs.len(),
        "a frame_time that is no image's stamp"
    );
    assert!(
        first.len() >= 10 && second.len() >= 10,
        "{} and {} readings",
        first.len(),
        second.len()
    );
    // The same people as a replay of the same frames, reading the same.
    assert_eq!(dominant(&exprs), expression);
    let new = on(&msgs, "/events")
        .iter()
        .filter(|p| p.contains("\"type\":\"new\""))
        .count();
    // One person per play: the track may outlive the outage or end with it.
    assert!(
        (people..=2 * people).contains(&new),
        "{new} tracks, the replay has {people}"
    );

    // The ROS 2 output: the image's stamps and its frame id.
    let out = hri.wait_with_output().unwrap();
    let heard: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expressions_heard: Vec<&Value> = heard
        .iter()
        .filter(|s| s["topic"].as_str().unwrap().ends_with("/expression"))
        .map(|s| &s["data"])
        // Not the notices of a face's writer going when its track ends.
        .filter(|d| d.get("header").is_some())
        .collect();
    assert!(
        !expressions_heard.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for e in expressions_heard {
        assert_eq!(e["header"]["frame_id"], "head_front_camera", "{e}");
        let t = e["header"]["stamp"]["sec"].as_f64().unwrap()
            + e["header"]["stamp"]["nanosec"].as_f64().unwrap() * 1e-9;
        let ok = [STAMP0, STAMP1].iter().any(|s0| {
            let i = (t - s0) * FPS;
            (0.0..30.0).contains(&i.round()) && (i - i.round()).abs() < 1e-3
        });
        assert!(ok, "stamp {t} is no image's");
    }
}

#[test]
fn a_compressed_reliable_camera_gives_the_people_a_replay_gives() {
    let _g = serial();
    let (people, expression) = replayed_pan1();
    let dir = tempfile::tempdir().unwrap();
    let (port, domain) = (free_port(), domain());
    let topic = "/robot/camera/image_raw/compressed";
    let (mut d, log) = ros2_daemon(dir.path(), port, domain, topic);
    let sub = Subscriber::start(port);
    assert_eq!(play(domain, topic, STAMP0, &[]), 30);
    std::thread::sleep(Duration::from_secs(1));
    d.stop_cleanly();
    let msgs = sub.stop();
    let daemon_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        daemon_log.contains("sensor_msgs/CompressedImage"),
        "{daemon_log}"
    );
    check_schema(&msgs);
    assert_track_order(&msgs);
    let exprs = expressions(&msgs);
    let read = frame_indices(&exprs, STAMP0);
    assert_eq!(
        read.len(),
        exprs.len(),
        "a frame_time that is no image's stamp"
    );
    assert!(read.len() >= 20, "{} of 30 frames read", read.len());
    let new = on(&msgs, "/events")
        .iter()
        .filter(|p| p.contains("\"type\":\"new\""))
        .count();
    assert_eq!((new, dominant(&exprs)), (people, expression));
}
