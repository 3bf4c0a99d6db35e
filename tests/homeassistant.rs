//! Home Assistant MQTT discovery end to end: the real daemon on a live-like
//! replay, publishing to mosquitto; a `mosquitto_sub` on the discovery
//! prefix stands in for Home Assistant's MQTT integration, and every config
//! is validated against a schema written from Home Assistant's documented
//! discovery and MQTT Sensor options (`tests/data/homeassistant/`).

mod common;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const PREFIX: &str = "homeassistant/sensor/fer-edge_test-kiosk";
const OCCUPANCY: &str = "homeassistant/binary_sensor/fer-edge_test-kiosk/occupancy/config";

fn configs(msgs: &[(String, String)]) -> Vec<(String, Value)> {
    msgs.iter()
        .filter(|(t, p)| t.ends_with("/config") && !p.is_empty())
        .map(|(t, p)| (t.clone(), serde_json::from_str(p).unwrap()))
        .collect()
}

/// Waits up to `limit` for `pred` on the retained message of `topic`.
fn retained_until(
    port: u16,
    topic: &str,
    limit: Duration,
    pred: impl Fn(Option<&str>) -> bool,
) -> Option<String> {
    let t0 = Instant::now();
    loop {
        let now = retained(port, topic);
        if pred(now.as_deref()) || t0.elapsed() > limit {
            return now;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `<discovery_prefix>/<sensor|binary_sensor>/<node_id>/<object_id>/config`,
/// ids of `[a-zA-Z0-9_-]` (the schemas' `x-topic-pattern`).
fn discovery_topic(topic: &str) -> bool {
    let id = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let p: Vec<&str> = topic.split('/').collect();
    p.len() == 5
        && (p[1] == "sensor" || p[1] == "binary_sensor")
        && id(p[2])
        && id(p[3])
        && p[4] == "config"
}

#[test]
fn home_assistant_discovers_the_device_sees_it_come_and_go_and_loses_it_when_disabled() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    add_to_section(&cfg, "homeassistant", "enabled = true\n");
    let ha = Subscriber::start_on(port, "homeassistant/#");
    let mut d = daemon(&cfg);
    assert!(
        ha.wait_for(Duration::from_secs(60), |m| configs(m).len() >= 5),
        "five discovery configs: {:?}",
        ha.snapshot()
    );

    // Each config follows the documented schema and topic layout.
    let validator = |name: &str| {
        let schema: Value = serde_json::from_slice(
            &std::fs::read(root().join("tests/data/homeassistant").join(name)).unwrap(),
        )
        .unwrap();
        jsonschema::validator_for(&schema).unwrap()
    };
    let sensor = validator("mqtt-sensor-discovery.schema.json");
    let binary = validator("mqtt-binary-sensor-discovery.schema.json");
    let found = configs(&ha.snapshot());
    let mut unique = std::collections::BTreeSet::new();
    for (topic, c) in &found[..5] {
        let v = if topic == OCCUPANCY { &binary } else { &sensor };
        let errors: Vec<String> = v.iter_errors(c).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{topic}: {errors:?}\n{c}");
        assert!(
            discovery_topic(topic) && (topic.starts_with(PREFIX) || topic == OCCUPANCY),
            "{topic}"
        );
        // The device's model is the emotion model it runs.
        assert!(
            c["device"]["model"]
                .as_str()
                .is_some_and(|m| m.starts_with("fer-edge (fer-minixception")),
            "{}",
            c["device"]
        );
        assert!(unique.insert(c["unique_id"].as_str().unwrap().to_string()));
        assert_eq!(c["device"]["identifiers"][0], "fer-edge_test-kiosk");
        assert_eq!(c["availability"][0]["topic"], "fer-edge/test-kiosk/status");
    }

    // The sensors' state: the retained summary, with the keys their
    // templates read; availability: the retained status.
    let summary = retained_until(
        port,
        "fer-edge/test-kiosk/summary",
        Duration::from_secs(60),
        |s| s.is_some_and(|s| s.contains("\"faces\":1")),
    )
    .expect("a retained summary");
    let summary: Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["faces"], 1, "{summary}");
    // Somebody is there: the occupancy template renders ON.
    let occupancy = &found.iter().find(|(t, _)| t == OCCUPANCY).unwrap().1;
    assert_eq!(
        occupancy["value_template"],
        "{{ 'ON' if value_json.faces > 0 else 'OFF' }}"
    );
    for (topic, c) in &found[..5] {
        assert_eq!(c["state_topic"], "fer-edge/test-kiosk/summary");
        let template = c["value_template"].as_str().unwrap();
        for k in template.split("value_json.").skip(1) {
            let k: String = k
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                summary.get(&k).is_some(),
                "{topic} reads {k} that the summary lacks"
            );
        }
    }
    let options = found
        .iter()
        .find(|(t, _)| t.ends_with("/expression/config"))
        .unwrap()
        .1["options"]
        .clone();
    assert!(
        options
            .as_array()
            .unwrap()
            .contains(&summary["dominant_expression"]),
        "{options} lacks {}",
        summary["dominant_expression"]
    );
    assert_eq!(
        retained(port, "fer-edge/test-kiosk/status").as_deref(),
        Some("online")
    );

    // Home Assistant restarts and says so: the device is announced again.
    let before = configs(&ha.snapshot()).len();
    Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "homeassistant/status",
            "-m",
            "online",
        ])
        .status()
        .unwrap();
    assert!(
        ha.wait_for(Duration::from_secs(10), |m| configs(m).len() >= before + 5),
        "announced again after Home Assistant's birth message"
    );

    // The daemon stops: its sensors become unavailable (status offline),
    // and stay known to Home Assistant (configs retained).
    d.stop_cleanly();
    assert_eq!(
        retained(port, "fer-edge/test-kiosk/status").as_deref(),
        Some("offline")
    );
    assert!(retained(port, &format!("{PREFIX}/people/config")).is_some());
    drop(ha);

    // Disabled: the next start removes the configs it had left.
    add_to_section(&cfg, "homeassistant", "enabled = false\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("enabled = true\n", "")).unwrap();
    let mut d = daemon(&cfg);
    let topics = ["people", "expression", "valence", "arousal"]
        .map(|o| format!("{PREFIX}/{o}/config"))
        .into_iter()
        .chain([OCCUPANCY.to_string()]);
    for topic in topics {
        let left = retained_until(port, &topic, Duration::from_secs(30), |s| s.is_none());
        assert_eq!(left, None, "{topic} still retained");
    }
    d.stop_cleanly();
}
