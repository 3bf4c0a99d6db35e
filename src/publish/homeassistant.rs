//! Home Assistant MQTT discovery: one device per fer-edge instance, with
//! an occupancy binary sensor and four sensors that read the retained
//! `summary` topic.
//!
//! In: `[homeassistant]` and `[mqtt]`. Out: retained discovery configs on
//! `{discovery_prefix}/{component}/{node_id}/{object_id}/config` (Home
//! Assistant's documented layout), sent at start and again when Home
//! Assistant announces itself (`{discovery_prefix}/status` = `online`);
//! with `enabled = false`, empty retained payloads that remove the configs
//! a previous run left (only those the broker still holds). Availability
//! is fer-edge's retained `status` (`online`/`offline`, also its last will).
//!
//! The entities: somebody present (a `binary_sensor` of class occupancy,
//! the first thing a kiosk automation wants), people present (with each
//! face as an attribute), the dominant expression (an enum sensor), and
//! the mean valence and arousal of the people present (unknown with
//! nobody present). The device's model is the emotion model it runs.

use serde::Deserialize;
use serde_json::{json, Value};

use super::config::MqttConfig;
use super::names::Topics;
use super::Message;
use crate::frame::Expression;
use crate::report::LabelSet;

/// `[homeassistant]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// Announce the device to Home Assistant. Off: remove what an earlier
    /// run announced.
    pub enabled: bool,
    /// Home Assistant's discovery prefix (its MQTT integration's setting).
    pub discovery_prefix: String,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            enabled: false,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

impl HomeAssistantConfig {
    pub fn validate(&self) -> Result<(), String> {
        super::names::topic_prefix("homeassistant.discovery_prefix", &self.discovery_prefix)
    }
}

/// The entities, as (Home Assistant component, object id).
const ENTITIES: [(&str, &str); 5] = [
    ("binary_sensor", "occupancy"),
    ("sensor", "people"),
    ("sensor", "expression"),
    ("sensor", "valence"),
    ("sensor", "arousal"),
];

/// Home Assistant births within this many seconds of an announcement are
/// answered together, by one more announcement when the window ends: a
/// flood of births (a flapping Home Assistant, or anyone who may publish
/// `homeassistant/status`) costs at most one set of configs per window.
pub const REANNOUNCE_WINDOW_S: f64 = 5.0;

/// The discovery side of one daemon.
#[derive(Debug, Clone)]
pub struct Discovery {
    cfg: HomeAssistantConfig,
    topics: Topics,
    device_id: String,
    node_id: String,
    labels: LabelSet,
    /// The emotion model the daemon runs (`name version`).
    model: String,
    summary_enabled: bool,
    /// When (seconds on the caller's monotonic clock) a birth was last
    /// answered, and whether a birth since waits for the window's end.
    announced_at: Option<f64>,
    pending: bool,
}

impl Discovery {
    pub fn new(cfg: &HomeAssistantConfig, mqtt: &MqttConfig, model: &str) -> Discovery {
        Discovery {
            cfg: cfg.clone(),
            topics: mqtt.topics(),
            device_id: mqtt.device_id.clone(),
            node_id: node_id(&mqtt.topic_prefix, &mqtt.device_id),
            labels: mqtt.labels,
            model: model.to_string(),
            summary_enabled: mqtt.summary_rate_hz > 0.0,
            announced_at: None,
            pending: false,
        }
    }

    /// Topics the client subscribes to: Home Assistant's status (to
    /// announce again when it restarts), or, disabled, this device's
    /// configs (to remove those left behind).
    pub fn subscriptions(&self) -> Vec<String> {
        if self.cfg.enabled {
            vec![self.birth_topic()]
        } else {
            ["sensor", "binary_sensor"]
                .iter()
                .map(|c| {
                    format!(
                        "{}/{c}/{}/+/config",
                        self.cfg.discovery_prefix, self.node_id
                    )
                })
                .collect()
        }
    }

    /// What to publish at start: every config (enabled), or nothing.
    pub fn start(&self) -> Vec<Message> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        if !self.summary_enabled {
            tracing::warn!(
                "homeassistant.enabled = true but mqtt.summary_rate_hz = 0: the sensors read the summary topic and will stay unknown; set summary_rate_hz (1 is the default)"
            );
        }
        ENTITIES
            .iter()
            .map(|(_, object)| Message::json(self.config_topic(object), &self.config(object), true))
            .collect()
    }

    /// What a message on a subscribed topic calls for at `now_s`: the
    /// configs again when Home Assistant comes online (at once, or at the
    /// end of the re-announce window if one was sent within it: see
    /// [`Self::due`]); the removal of a config left by an earlier run when
    /// disabled.
    pub fn on_message(&mut self, topic: &str, payload: &[u8], now_s: f64) -> Vec<Message> {
        if self.cfg.enabled {
            if topic == self.birth_topic() && payload == b"online" {
                let recent = self
                    .announced_at
                    .is_some_and(|t| now_s - t < REANNOUNCE_WINDOW_S);
                if recent {
                    self.pending = true;
                    return Vec::new();
                }
                tracing::info!("Home Assistant came online: announcing the device again");
                self.announced_at = Some(now_s);
                return self.start();
            }
            return Vec::new();
        }
        let ours = ENTITIES.iter().any(|(_, o)| self.config_topic(o) == topic);
        if ours && !payload.is_empty() {
            tracing::info!(
                "homeassistant.enabled = false: removing the discovery config {topic} an earlier run left"
            );
            return vec![Message {
                topic: topic.to_string(),
                payload: Vec::new(),
                retain: true,
                captured_at: None,
            }];
        }
        Vec::new()
    }

    /// True while births wait for the re-announce window to end.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// The one announcement owed to the births of the last window, once
    /// it has ended (call it about every second while [`Self::pending`]).
    pub fn due(&mut self, now_s: f64) -> Vec<Message> {
        let ended = self
            .announced_at
            .is_none_or(|t| now_s - t >= REANNOUNCE_WINDOW_S);
        if !(self.pending && ended) {
            return Vec::new();
        }
        self.pending = false;
        self.announced_at = Some(now_s);
        tracing::info!("Home Assistant came online again: announcing the device once for the births since the last announcement");
        self.start()
    }

    fn birth_topic(&self) -> String {
        format!("{}/status", self.cfg.discovery_prefix)
    }

    /// `<discovery_prefix>/<component>/<node_id>/<object_id>/config`.
    pub fn config_topic(&self, object: &str) -> String {
        let component = ENTITIES
            .iter()
            .find(|(_, o)| *o == object)
            .map_or("sensor", |(c, _)| c);
        format!(
            "{}/{component}/{}/{object}/config",
            self.cfg.discovery_prefix, self.node_id
        )
    }

    /// The discovery config of one sensor.
    pub fn config(&self, object: &str) -> Value {
        let summary = self.topics.summary();
        let mut c = json!({
            "unique_id": format!("{}_{object}", self.node_id),
            "state_topic": summary,
            "availability": [{
                "topic": self.topics.status(),
                "payload_available": "online",
                "payload_not_available": "offline",
            }],
            "device": {
                "identifiers": [self.node_id.clone()],
                "name": format!("fer-edge {}", self.device_id),
                "manufacturer": "fer-edge",
                "model": format!("fer-edge ({})", self.model),
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
            "origin": {
                "name": "fer-edge",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
        });
        let extra = match object {
            "occupancy" => json!({
                "name": "Somebody present",
                "device_class": "occupancy",
                "value_template": "{{ 'ON' if value_json.faces > 0 else 'OFF' }}",
            }),
            "people" => json!({
                "name": "People present",
                "icon": "mdi:account-group",
                "state_class": "measurement",
                "unit_of_measurement": "people",
                "value_template": "{{ value_json.faces }}",
                "json_attributes_topic": summary,
                "json_attributes_template": "{{ {'tracks': value_json.tracks} | tojson }}",
            }),
            "expression" => {
                let mut options: Vec<&str> = Expression::ALL
                    .iter()
                    .map(|e| self.labels.name(*e))
                    .collect();
                options.push("none");
                json!({
                    "name": "Dominant expression",
                    "icon": "mdi:emoticon-outline",
                    "device_class": "enum",
                    "options": options,
                    "value_template": "{{ value_json.dominant_expression or 'none' }}",
                })
            }
            "valence" | "arousal" => json!({
                "name": if object == "valence" { "Mean valence" } else { "Mean arousal" },
                "icon": if object == "valence" { "mdi:emoticon-happy-outline" } else { "mdi:lightning-bolt-outline" },
                "state_class": "measurement",
                "suggested_display_precision": 2,
                // null (nobody present) renders "None": Home Assistant's
                // MQTT sensor reads that as unknown.
                "value_template": format!("{{{{ value_json.mean_{object} }}}}"),
            }),
            _ => json!({}),
        };
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            c.extend(extra);
        }
        c
    }
}

/// Home Assistant's node id: `{topic_prefix}_{device_id}` when that uses
/// only `[a-zA-Z0-9_-]` (the characters Home Assistant allows) and the
/// prefix has no `_` (which would make the split ambiguous). Otherwise
/// each other character becomes `_` and 8 hex digits of the SHA-256 of
/// the exact prefix and device id follow, so that two devices whose ids
/// differ only there (`hall.1` and `hall_1`, or `hall/1` under another
/// prefix) never share their sensors.
fn node_id(prefix: &str, device_id: &str) -> String {
    use sha2::Digest as _;
    let plain = format!("{prefix}_{device_id}");
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if plain.chars().all(allowed) && !prefix.contains('_') {
        return plain;
    }
    let digest = sha2::Sha256::digest(format!("{prefix}\0{device_id}").as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mapped: String = plain
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    format!("{mapped}_{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(enabled: bool) -> Discovery {
        let mqtt = MqttConfig {
            device_id: "hall.1".into(),
            ..Default::default()
        };
        Discovery::new(
            &HomeAssistantConfig {
                enabled,
                ..Default::default()
            },
            &mqtt,
            "fernet-w24 1.0.0",
        )
    }

    #[test]
    fn configs_follow_the_topic_layout_and_name_one_device() {
        let d = discovery(true);
        let msgs = d.start();
        assert_eq!(msgs.len(), 5);
        let node = node_id("fer-edge", "hall.1");
        assert!(node.starts_with("fer-edge_hall_1_"), "{node}");
        assert_eq!(
            msgs[0].topic,
            format!("homeassistant/binary_sensor/{node}/occupancy/config")
        );
        assert_eq!(
            msgs[1].topic,
            format!("homeassistant/sensor/{node}/people/config")
        );
        let occupancy: Value = serde_json::from_slice(&msgs[0].payload).unwrap();
        assert_eq!(occupancy["device_class"], "occupancy");
        for m in &msgs {
            assert!(m.retain);
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["device"]["identifiers"][0], node.as_str());
            assert_eq!(v["availability"][0]["topic"], "fer-edge/hall.1/status");
            assert_eq!(v["state_topic"], "fer-edge/hall.1/summary");
            // The model it runs, not a hard-coded name.
            assert_eq!(v["device"]["model"], "fer-edge (fernet-w24 1.0.0)");
        }
        assert_eq!(d.subscriptions(), vec!["homeassistant/status"]);
        let mut d = d;
        assert_eq!(
            d.on_message("homeassistant/status", b"online", 0.0).len(),
            5
        );
        assert!(d
            .on_message("homeassistant/status", b"offline", 0.1)
            .is_empty());
    }

    #[test]
    fn devices_whose_ids_differ_only_in_characters_home_assistant_refuses_stay_apart() {
        let ids = [
            node_id("fer-edge", "hall_1"),
            node_id("fer-edge", "hall.1"),
            node_id("fer-edge", "hall/1"),
            node_id("fer-edge", "hall 1"),
            node_id("fer.edge", "hall_1"),
            node_id("fer-edge_hall", "1"),
        ];
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        // A plain id keeps its readable node id, as before.
        assert_eq!(node_id("fer-edge", "kiosk-1"), "fer-edge_kiosk-1");
        for id in &ids {
            assert!(id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        }
    }

    #[test]
    fn a_flood_of_births_is_answered_by_one_announcement_per_window() {
        let mut d = discovery(true);
        let mut sent = 0;
        // 5,000 births over 2 s, then the window runs out.
        for i in 0..5_000 {
            let t = i as f64 * 0.0004;
            sent += d.on_message("homeassistant/status", b"online", t).len();
            sent += d.due(t).len();
        }
        assert_eq!(sent, 5, "the first birth is answered at once");
        assert!(d.pending());
        assert!(d.due(REANNOUNCE_WINDOW_S - 0.01).is_empty());
        assert_eq!(d.due(REANNOUNCE_WINDOW_S).len(), 5, "one more for the rest");
        assert!(!d.pending() && d.due(100.0).is_empty());
        // A birth long after is answered at once again.
        assert_eq!(
            d.on_message("homeassistant/status", b"online", 100.0).len(),
            5
        );
    }

    #[test]
    fn disabled_it_removes_only_configs_that_are_still_there() {
        let mut d = discovery(false);
        assert!(d.start().is_empty());
        let topic = d.config_topic("valence");
        let out = d.on_message(&topic, b"{}", 0.0);
        assert_eq!(out.len(), 1);
        assert!(out[0].payload.is_empty() && out[0].retain);
        assert!(d.on_message(&topic, b"", 0.0).is_empty(), "already removed");
        let occupancy = d.config_topic("occupancy");
        assert!(occupancy.contains("/binary_sensor/"), "{occupancy}");
        assert_eq!(d.on_message(&occupancy, b"{}", 0.0).len(), 1);
        assert!(d
            .on_message("homeassistant/sensor/other/valence/config", b"{}", 0.0)
            .is_empty());
    }
}
