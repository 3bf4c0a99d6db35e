//! Home Assistant MQTT discovery: one device per fer-edge instance, with
//! four sensors that read the retained `summary` topic.
//!
//! In: `[homeassistant]` and `[mqtt]`. Out: retained discovery configs on
//! `{discovery_prefix}/sensor/{node_id}/{object_id}/config` (Home
//! Assistant's documented layout), sent at start and again when Home
//! Assistant announces itself (`{discovery_prefix}/status` = `online`);
//! with `enabled = false`, empty retained payloads that remove the configs
//! a previous run left (only those the broker still holds). Availability
//! is fer-edge's retained `status` (`online`/`offline`, also its last will).
//!
//! The sensors: people present (with each face as an attribute), the
//! dominant expression (an enum sensor), and the mean valence and arousal
//! of the people present (unknown with nobody present).

use serde::Deserialize;
use serde_json::{json, Value};

use super::config::MqttConfig;
use super::payload::Topics;
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

/// The sensors, by object id.
const SENSORS: [&str; 4] = ["people", "expression", "valence", "arousal"];

/// The discovery side of one daemon.
#[derive(Debug, Clone)]
pub struct Discovery {
    cfg: HomeAssistantConfig,
    topics: Topics,
    device_id: String,
    node_id: String,
    labels: LabelSet,
    summary_enabled: bool,
}

impl Discovery {
    pub fn new(cfg: &HomeAssistantConfig, mqtt: &MqttConfig) -> Discovery {
        Discovery {
            cfg: cfg.clone(),
            topics: mqtt.topics(),
            device_id: mqtt.device_id.clone(),
            node_id: node_id(&mqtt.topic_prefix, &mqtt.device_id),
            labels: mqtt.labels,
            summary_enabled: mqtt.summary_rate_hz > 0.0,
        }
    }

    /// Topics the client subscribes to: Home Assistant's status (to
    /// announce again when it restarts), or, disabled, this device's
    /// configs (to remove those left behind).
    pub fn subscriptions(&self) -> Vec<String> {
        if self.cfg.enabled {
            vec![self.birth_topic()]
        } else {
            vec![format!(
                "{}/sensor/{}/+/config",
                self.cfg.discovery_prefix, self.node_id
            )]
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
        SENSORS
            .iter()
            .map(|object| Message::json(self.config_topic(object), &self.config(object), true))
            .collect()
    }

    /// What a message on a subscribed topic calls for: the configs again
    /// when Home Assistant comes online; the removal of a config left by
    /// an earlier run when disabled.
    pub fn on_message(&self, topic: &str, payload: &[u8]) -> Vec<Message> {
        if self.cfg.enabled {
            if topic == self.birth_topic() && payload == b"online" {
                tracing::info!("Home Assistant came online: announcing the device again");
                return self.start();
            }
            return Vec::new();
        }
        let ours = SENSORS.iter().any(|o| self.config_topic(o) == topic);
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

    fn birth_topic(&self) -> String {
        format!("{}/status", self.cfg.discovery_prefix)
    }

    /// `<discovery_prefix>/sensor/<node_id>/<object_id>/config`.
    pub fn config_topic(&self, object: &str) -> String {
        format!(
            "{}/sensor/{}/{object}/config",
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
                "model": "fer-edge (Emotion-GCN)",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
            "origin": {
                "name": "fer-edge",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
        });
        let extra = match object {
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

/// Home Assistant's node id: `{topic_prefix}_{device_id}` with anything
/// but `[a-zA-Z0-9_-]` replaced by `_`.
fn node_id(prefix: &str, device_id: &str) -> String {
    format!("{prefix}_{device_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
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
        )
    }

    #[test]
    fn configs_follow_the_topic_layout_and_name_one_device() {
        let d = discovery(true);
        let msgs = d.start();
        assert_eq!(msgs.len(), 4);
        assert_eq!(
            msgs[0].topic,
            "homeassistant/sensor/fer-edge_hall_1/people/config"
        );
        for m in &msgs {
            assert!(m.retain);
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["device"]["identifiers"][0], "fer-edge_hall_1");
            assert_eq!(v["availability"][0]["topic"], "fer-edge/hall.1/status");
            assert_eq!(v["state_topic"], "fer-edge/hall.1/summary");
        }
        assert_eq!(d.subscriptions(), vec!["homeassistant/status"]);
        assert_eq!(d.on_message("homeassistant/status", b"online").len(), 4);
        assert!(d.on_message("homeassistant/status", b"offline").is_empty());
    }

    #[test]
    fn disabled_it_removes_only_configs_that_are_still_there() {
        let d = discovery(false);
        assert!(d.start().is_empty());
        let topic = d.config_topic("valence");
        let out = d.on_message(&topic, b"{}");
        assert_eq!(out.len(), 1);
        assert!(out[0].payload.is_empty() && out[0].retain);
        assert!(d.on_message(&topic, b"").is_empty(), "already removed");
        assert!(d
            .on_message("homeassistant/sensor/other/valence/config", b"{}")
            .is_empty());
    }
}
