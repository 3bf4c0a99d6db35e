//! The ROS 2 output end to end: the real daemon on a live-like replay with
//! `[ros2] enabled`, read by an independent DDS implementation (Eclipse
//! Cyclone DDS from PyPI, `tests/clients/ros2_sub.py`) with the hri_msgs
//! definitions and ROS 2's topic naming, as a ROS4HRI node would.
#![cfg(feature = "ros2")]

mod common;
use common::*;

use std::process::Command;

use serde_json::Value;

#[test]
fn a_cyclone_dds_subscriber_reads_the_ros4hri_topics() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A domain of its own, so that no other DDS traffic on the machine mixes in.
    let domain = 100 + (std::process::id() % 100);
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, true, "pan1"));
    add_to_section(&cfg, "source", "pace = true\nloop = true\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("pace = false\n", "")
            .replace("loop = false\n", ""),
    )
    .unwrap();
    add_to_section(
        &cfg,
        "ros2",
        &format!("enabled = true\ndomain_id = {domain}\nframe_id = \"kiosk_camera\"\n"),
    );
    let mut d = daemon(&cfg);
    let out = Command::new(clients_python())
        .arg(root().join("tests/clients/ros2_sub.py"))
        .args([domain.to_string(), "12".into()])
        .output()
        .unwrap();
    d.stop_cleanly();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let samples: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let on = |suffix: &str| -> Vec<&Value> {
        samples
            .iter()
            .filter(|s| s["topic"].as_str().unwrap().ends_with(suffix))
            .map(|s| &s["data"])
            .collect()
    };
    let tracked = on("/tracked");
    let face = tracked
        .iter()
        .find_map(|t| {
            t["ids"]
                .as_array()
                .unwrap()
                .first()
                .and_then(|v| v.as_str())
        })
        .unwrap_or_else(|| panic!("a tracked face: {tracked:?}\n{err}"))
        .to_string();
    assert!(face.starts_with('f'), "a ROS name level: {face}");
    let exprs = on(&format!("/{face}/expression"));
    assert!(exprs.len() >= 10, "{} expressions of {face}", exprs.len());
    const ROS4HRI: [&str; 7] = [
        "neutral",
        "happy",
        "sad",
        "surprised",
        "scared",
        "disgusted",
        "angry",
    ];
    for e in &exprs {
        assert!(ROS4HRI.contains(&e["expression"].as_str().unwrap()), "{e}");
        for k in ["valence", "arousal"] {
            assert!((-1.0..=1.0).contains(&e[k].as_f64().unwrap()), "{e}");
        }
        assert!((0.0..=1.0).contains(&e["confidence"].as_f64().unwrap()));
        assert_eq!(e["header"]["frame_id"], "kiosk_camera");
        assert!(e["header"]["stamp"]["sec"].as_i64().unwrap() > 1_600_000_000);
    }
    let happy = exprs.iter().filter(|e| e["expression"] == "happy").count();
    assert!(
        happy * 2 > exprs.len(),
        "the astronaut smiles: {happy} of {}",
        exprs.len()
    );
    let rois = on(&format!("/{face}/roi"));
    assert!(!rois.is_empty());
    for r in &rois {
        let v = |k: &str| r[k].as_f64().unwrap();
        assert!(
            0.0 <= v("xmin") && v("xmin") < v("xmax") && v("xmax") <= 1.0,
            "{r}"
        );
        assert!(
            0.0 <= v("ymin") && v("ymin") < v("ymax") && v("ymax") <= 1.0,
            "{r}"
        );
        assert!(v("c") > 0.5, "{r}");
    }
}
