//! The ROS 2 output end to end: the real daemon on a live-like replay with
//! `[ros2] enabled`, read by an independent DDS implementation (Eclipse
//! Cyclone DDS from PyPI, `tests/clients/ros2_sub.py`) with the hri_msgs
//! definitions and ROS 2's topic naming, as a ROS4HRI node would.
#![cfg(feature = "ros2")]

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// What a Cyclone DDS subscriber heard of the daemon (run on pan1,
/// looping, with `[ros2] enabled` and `ros2_keys`), and the daemon's log.
struct Heard {
    samples: Vec<Value>,
    sub_log: String,
    daemon_log: String,
    /// `/proc/net/igmp` while both ran: the multicast groups joined, per interface.
    igmp: String,
}

impl Heard {
    fn on(&self, suffix: &str) -> Vec<&Value> {
        self.samples
            .iter()
            .filter(|s| s["topic"].as_str().unwrap().ends_with(suffix))
            .map(|s| &s["data"])
            .collect()
    }
}

/// Runs the daemon and `tests/clients/ros2_sub.py` for `seconds` with its
/// Cyclone DDS in `sub_range` mode; `meanwhile(domain)` runs once both are up.
fn hear(ros2_keys: &str, sub_range: &str, seconds: u32, meanwhile: impl FnOnce(u16)) -> Heard {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A domain of its own, so that no other DDS traffic on the machine mixes in.
    let domain = 100 + (std::process::id() % 100) as u16;
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
        &format!("enabled = true\ndomain_id = {domain}\nframe_id = \"kiosk_camera\"\n{ros2_keys}"),
    );
    let log = dir.path().join("daemon.log");
    let mut d = daemon_logged(&cfg, &log, "warn");
    let sub = Command::new(clients_python())
        .arg(root().join("tests/clients/ros2_sub.py"))
        .args([domain.to_string(), seconds.to_string(), sub_range.into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let igmp = std::fs::read_to_string("/proc/net/igmp").unwrap_or_default();
    meanwhile(domain);
    let out = sub.wait_with_output().unwrap();
    d.stop_cleanly();
    let sub_log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{sub_log}");
    Heard {
        samples: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        sub_log,
        daemon_log: std::fs::read_to_string(&log).unwrap(),
        igmp,
    }
}

/// The first face id on `/humans/faces/tracked`, if any.
fn first_face(heard: &Heard) -> Option<String> {
    heard.on("/tracked").iter().find_map(|t| {
        t["ids"]
            .as_array()
            .unwrap()
            .first()
            .and_then(|v| v.as_str())
            .map(str::to_string)
    })
}

/// The first face id on `/humans/faces/tracked`; a failure shows what
/// was heard.
fn tracked_face(heard: &Heard) -> String {
    first_face(heard).unwrap_or_else(|| {
        panic!(
            "a tracked face: {:?}\n{}",
            heard.on("/tracked"),
            heard.sub_log
        )
    })
}

/// The multicast groups `/proc/net/igmp` lists on interfaces other than
/// loopback, as hex addresses (239.255.0.1, DDS's discovery group, is
/// `0100FFEF`).
fn groups_off_loopback(igmp: &str) -> Vec<String> {
    let mut groups = Vec::new();
    let mut device = String::new();
    for line in igmp.lines().skip(1) {
        if !line.starts_with(char::is_whitespace) {
            device = line.split_whitespace().nth(1).unwrap_or("").to_string();
        } else if device != "lo" {
            if let Some(g) = line.split_whitespace().next() {
                groups.push(format!("{device}:{g}"));
            }
        }
    }
    groups
}

#[test]
fn by_default_a_localhost_ros2_node_reads_the_ros4hri_topics_and_nothing_joins_the_lan() {
    let heard = hear("", "localhost", 12, |_| {});
    assert_ros4hri(&heard, &tracked_face(&heard));
    // Before: 239.255.0.1 joined on the LAN card.
    let lan = groups_off_loopback(&heard.igmp);
    assert!(
        !lan.iter().any(|g| g.ends_with("0100FFEF")),
        "DDS's discovery group joined off loopback: {lan:?}\n{}",
        heard.igmp
    );
}

#[test]
fn a_node_on_the_lan_hears_nothing_by_default_and_everything_with_discovery_range_subnet() {
    // A Cyclone DDS participant as a ROS 2 node elsewhere on the LAN
    // would be configured (its default: the LAN interface, multicast).
    let heard = hear("", "subnet", 8, |_| {});
    assert!(
        first_face(&heard).is_none(),
        "a LAN participant heard the faces of a localhost-only daemon: {:?}",
        heard.on("/tracked")
    );
    let heard = hear("discovery_range = \"subnet\"\n", "subnet", 12, |_| {});
    assert_ros4hri(&heard, &tracked_face(&heard));
}

#[test]
fn a_flood_of_malformed_dds_datagrams_logs_a_few_lines_and_the_output_goes_on() {
    let sent = std::sync::atomic::AtomicU64::new(0);
    let heard = hear("", "localhost", 14, |domain| {
        // RTPS ports of `domain` (DDS-RTPS 9.6.1.1): discovery multicast,
        // then each participant's discovery and user unicast ports.
        let base = 7400 + 250 * domain;
        let mut ports = vec![base, base + 1];
        for pid in 0..4 {
            ports.push(base + 10 + 2 * pid);
            ports.push(base + 11 + 2 * pid);
        }
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut seed = 0x9e37_79b9_u32;
        for i in 0..10_000u32 {
            // Half an RTPS header followed by garbage, half random bytes.
            let mut msg = if i % 2 == 0 {
                b"RTPS\x02\x04\x01\x0f0123456789ab".to_vec()
            } else {
                Vec::new()
            };
            for _ in 0..(8 + i % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                msg.push(seed as u8);
            }
            let port = ports[i as usize % ports.len()];
            if sock.send_to(&msg, ("127.0.0.1", port)).is_ok() {
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if i % 500 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let sent = sent.into_inner();
    assert!(sent >= 9_000, "{sent} datagrams sent");
    let dds_lines = heard
        .daemon_log
        .lines()
        .filter(|l| l.contains("rustdds"))
        .count();
    // Before: about one WARN per datagram. Now one per 10 s, and the count
    // of the others when the output stops.
    assert!(
        dds_lines <= 6,
        "{dds_lines} RustDDS lines for {sent} datagrams:\n{}",
        heard.daemon_log
    );
    assert_ros4hri(&heard, &tracked_face(&heard));
    eprintln!(
        "{sent} malformed datagrams: {dds_lines} RustDDS log lines; summary: {:?}",
        heard
            .daemon_log
            .lines()
            .find(|l| l.contains("DDS warnings were not logged"))
    );
}

/// The expressions and regions of `face` are well-formed ROS4HRI messages.
fn assert_ros4hri(heard: &Heard, face: &str) {
    let on = |suffix: &str| heard.on(suffix);
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
