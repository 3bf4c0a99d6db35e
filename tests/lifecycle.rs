//! A daemon's life across starts and stops, on real processes: ids never
//! reused by a restarted daemon (issue 30), a stop signal while the models
//! load (issue 29, case 15), with mosquitto from Debian as the broker.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

/// Every track id and run id a daemon announced on one replay of pan1,
/// through a broker of its own (so no retained message of another run is
/// read back).
fn one_run() -> (BTreeSet<u64>, BTreeSet<String>) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, false, "pan1"));
    let sub = Subscriber::start(port);
    let mut d = daemon(&cfg);
    assert_eq!(
        d.wait_exit(Duration::from_secs(120)).and_then(|s| s.code()),
        Some(0),
        "the replay runs to its end"
    );
    assert!(sub.wait_for(Duration::from_secs(10), |m| on(m, "/events")
        .iter()
        .any(|e| e.contains("\"end\""))));
    let msgs = sub.stop();
    check_schema(&msgs);
    assert_track_order(&msgs);
    let mut ids = BTreeSet::new();
    let mut runs = BTreeSet::new();
    for (topic, payload) in &msgs {
        if topic.ends_with("/status") || payload.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(payload).unwrap();
        runs.insert(
            v["run"]
                .as_str()
                .expect("every payload names its run")
                .to_string(),
        );
        if let Some(id) = v["track_id"].as_u64() {
            ids.insert(id);
        }
    }
    assert!(!ids.is_empty(), "the replay announced its face");
    (ids, runs)
}

#[test]
fn two_runs_of_the_daemon_on_the_same_replay_announce_disjoint_track_ids_and_their_own_run() {
    let _g = serial();
    let (a_ids, a_runs) = one_run();
    let (b_ids, b_runs) = one_run();
    assert_eq!(a_runs.len(), 1, "{a_runs:?}");
    assert_eq!(b_runs.len(), 1, "{b_runs:?}");
    assert_ne!(a_runs, b_runs, "a new run id at every start");
    assert!(
        a_ids.is_disjoint(&b_ids),
        "a restarted daemon reused track ids: {a_ids:?} then {b_ids:?}"
    );
    assert!(
        a_ids.iter().max() < b_ids.iter().min(),
        "the later run numbers above the earlier one: {a_ids:?} then {b_ids:?}"
    );
}

#[test]
fn a_stop_signal_while_the_models_load_ends_the_daemon_with_exit_0() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    // Early (the config is being read or the models load) and later (the
    // daemon runs): each must end with 0, never by the signal.
    for (signal, after_ms) in [("TERM", 30), ("TERM", 150), ("HUP", 150), ("INT", 400)] {
        let mut d = daemon(&cfg);
        std::thread::sleep(Duration::from_millis(after_ms));
        d.signal(signal);
        let status = d
            .wait_exit(Duration::from_secs(30))
            .expect("the daemon stops");
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{signal} {after_ms} ms after start: {status:?}"
        );
    }
}

/// The per-camera template unit is the service unit but for the lines that
/// name its instance: a hardening or limit changed in one cannot be
/// forgotten in the other.
#[test]
fn the_camera_template_unit_is_the_service_unit_but_for_its_instance_lines() {
    let read = |name: &str| std::fs::read_to_string(root().join("systemd").join(name)).unwrap();
    let body = |unit: &str| -> Vec<String> {
        unit.lines()
            .skip_while(|l| l.starts_with('#'))
            .filter(|l| !l.starts_with("Description=") && !l.starts_with("StateDirectory="))
            .map(|l| match l.strip_prefix("ExecStart=") {
                Some(cmd) => format!(
                    "ExecStart={}",
                    cmd.replace(" --config /etc/fer-edge/%i.toml", "")
                ),
                None => l.to_string(),
            })
            .collect()
    };
    let (service, template) = (read("fer-edge.service"), read("fer-edge@.service"));
    assert_eq!(body(&service), body(&template));
    assert!(template.contains("--config /etc/fer-edge/%i.toml"));
    assert!(template.contains("StateDirectory=fer-edge-%i"));
}
