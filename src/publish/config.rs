//! `[mqtt]`, `[mqtt.tls]` and `[mqtt.broker]`: where to publish, how, and
//! who may use the embedded broker. Values only; the files they name are
//! read by `secrets`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::names;
use super::names::Topics;
use crate::report::LabelSet;

/// `[mqtt.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM CA certificate(s) that sign the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require them.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// `[mqtt.broker]`: who may use the embedded broker.
///
/// On a loopback `listen` (the default) any local client may connect. On
/// any other address a client must log in with a user from `users_file`,
/// unless `allow_anonymous = true` (logged as a warning at every start).
/// Whoever connects may subscribe to everything, but only fer-edge itself
/// may publish under its topic prefix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Start an in-process broker on `listen` and publish to it. Set false
    /// to publish to the broker at `[mqtt] host:port` instead.
    pub embedded: bool,
    /// Address of the embedded broker, parsed once when the file is read.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// `user:password` lines, or `mosquitto_passwd` hashes (`user:$7$...`).
    pub users_file: Option<PathBuf>,
    /// Accept clients without a user name on a non-loopback `listen`.
    pub allow_anonymous: bool,
    /// PEM certificate (chain) and private key: clients must use TLS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            embedded: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            users_file: None,
            allow_anonymous: false,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// An address like `127.0.0.1:1883`, or an error that shows one.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map_err(serde::de::Error::custom)
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| {
        format!("mqtt.broker.listen = {s:?} is not an address like 127.0.0.1:1883 ({e})")
    })
}

/// `[mqtt]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// External broker (when `[mqtt.broker] embedded = false`).
    pub host: String,
    pub port: u16,
    /// Identifies this device in topics and in the client id.
    pub device_id: String,
    pub topic_prefix: String,
    /// MQTT client id; empty means `fer-edge-{device_id}`.
    pub client_id: String,
    pub username: Option<String>,
    /// File holding the password (keeps secrets out of the config file).
    pub password_file: Option<PathBuf>,
    /// Seconds; at least 1 (rumqttc panics below 1 s).
    pub keep_alive_s: u16,
    /// QoS of `status`, `events`, `faces/tracked`.
    pub qos_events: u8,
    /// QoS of per-frame `expression` messages.
    pub qos_expression: u8,
    /// Include the unsmoothed reading (`raw`) in each `expression` message;
    /// false makes each message about 40% smaller.
    pub raw: bool,
    /// Include the five facial points (pixels) in each `expression` message.
    pub landmarks: bool,
    /// Expression names: `"fer-edge"` (`surprise`, `fear`, `disgust`,
    /// `anger`, ...) or `"ros4hri"` (`surprised`, `scared`, `disgusted`,
    /// `angry`, ...: `hri_msgs/Expression`'s constants).
    pub labels: LabelSet,
    /// Most `expression` messages per track and second (0: one per
    /// processed frame).
    pub max_rate_hz: f64,
    /// Send a track's `expression` only when its smoothed label changed or
    /// its valence or arousal moved more than `change_threshold`.
    pub on_change: bool,
    /// V/A change (on the [-1, 1] scale) that counts as a change, for
    /// `on_change` and for the summary.
    pub change_threshold: f32,
    /// Most `summary` messages per second, each sent only on change
    /// (0: no summary topic).
    pub summary_rate_hz: f64,
    /// Seconds between `stats` messages (0 = never).
    pub stats_interval_s: f64,
    /// Per-frame messages waiting to be sent; more are dropped and counted.
    pub queue_capacity: usize,
    /// Events, status and track lists waiting (e.g. while the broker is down).
    pub outbox_capacity: usize,
    /// Longest wait between reconnection attempts.
    pub reconnect_max_backoff_s: f64,
    pub tls: TlsConfig,
    pub broker: BrokerConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            device_id: "kiosk-1".into(),
            topic_prefix: "fer-edge".into(),
            client_id: String::new(),
            username: None,
            password_file: None,
            keep_alive_s: 30,
            qos_events: 1,
            qos_expression: 0,
            raw: true,
            landmarks: false,
            labels: LabelSet::FerEdge,
            max_rate_hz: 0.0,
            on_change: false,
            change_threshold: 0.1,
            summary_rate_hz: 1.0,
            stats_interval_s: 10.0,
            queue_capacity: 256,
            outbox_capacity: 1000,
            reconnect_max_backoff_s: 10.0,
            tls: TlsConfig::default(),
            broker: BrokerConfig::default(),
        }
    }
}

impl MqttConfig {
    /// Where a subscriber on this machine finds the messages: the embedded
    /// broker's address (loopback for one on every interface), or the
    /// external broker's host and port; with a phrase naming it.
    pub fn endpoint(&self) -> (String, String, u16) {
        if self.broker.embedded {
            let mut a = self.broker.listen;
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let what = format!("the embedded broker at {}", self.broker.listen);
            (what, a.ip().to_string(), a.port())
        } else {
            let what = format!("the broker at {}:{}", self.host, self.port);
            (what, self.host.clone(), self.port)
        }
    }

    /// Checks values (no file access): every string that ends up in a
    /// topic or a client id follows MQTT's rules ([`names`]).
    pub fn validate(&self) -> Result<(), String> {
        self.validate_address()?;
        self.validate_names()?;
        self.validate_numbers()?;
        self.validate_tls()
    }

    /// The embedded broker's `listen`, or the external broker's host and port.
    fn validate_address(&self) -> Result<(), String> {
        if self.broker.embedded {
            let addr = self.broker.listen;
            if addr.port() == 0 {
                return Err("mqtt.broker.listen has port 0: name the port subscribers connect to, e.g. 127.0.0.1:1883".into());
            }
            if !addr.ip().is_loopback()
                && self.broker.users_file.is_none()
                && !self.broker.allow_anonymous
            {
                return Err(format!(
                    "mqtt.broker.listen = \"{addr}\" opens the embedded broker to the network without authentication: set mqtt.broker.users_file (user:password lines, or mosquitto_passwd hashes), or mqtt.broker.allow_anonymous = true to accept anyone, or listen on 127.0.0.1",
                ));
            }
        } else {
            if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
                return Err(format!(
                    "mqtt.host = {:?} is not a host name: name the broker, or set mqtt.broker.embedded = true",
                    self.host
                ));
            }
            if self.port == 0 {
                return Err("mqtt.port = 0: use the broker's port (1883, or 8883 with TLS)".into());
            }
        }
        Ok(())
    }

    /// Device id, prefix, client id and user name, by MQTT's name rules.
    fn validate_names(&self) -> Result<(), String> {
        names::topic_level("mqtt.device_id", &self.device_id)?;
        names::topic_prefix("mqtt.topic_prefix", &self.topic_prefix)?;
        if self.client_id.is_empty() {
            names::client_id("mqtt.client_id", &self.client_id()).map_err(|e| {
                format!(
                    "mqtt.device_id = {:?} gives the client id {:?}, which cannot be used ({e}): change mqtt.device_id or set mqtt.client_id",
                    self.device_id,
                    self.client_id()
                )
            })?;
        } else {
            names::client_id("mqtt.client_id", &self.client_id)?;
        }
        if let Some(user) = &self.username {
            names::mqtt_string("mqtt.username", user)?;
        }
        Ok(())
    }

    /// Keep-alive, QoS, rates, thresholds, queue sizes and backoff.
    fn validate_numbers(&self) -> Result<(), String> {
        if self.keep_alive_s == 0 {
            return Err("mqtt.keep_alive_s = 0: use at least 1 second".into());
        }
        for (k, q) in [
            ("qos_events", self.qos_events),
            ("qos_expression", self.qos_expression),
        ] {
            if q > 2 {
                return Err(format!("mqtt.{k} = {q}: QoS is 0, 1 or 2"));
            }
        }
        // A period rounds to a Duration: 1e-300 s is zero, and a zero
        // period panics the timer (`period must be non-zero`).
        if !(self.stats_interval_s == 0.0 || (0.1..=86_400.0).contains(&self.stats_interval_s)) {
            return Err(format!(
                "mqtt.stats_interval_s = {} must be 0 (no stats) or 0.1..86400 seconds",
                self.stats_interval_s
            ));
        }
        for (k, v) in [
            ("max_rate_hz", self.max_rate_hz),
            ("summary_rate_hz", self.summary_rate_hz),
        ] {
            if !(v == 0.0 || (0.01..=1000.0).contains(&v)) {
                return Err(format!(
                    "mqtt.{k} = {v} must be 0 or 0.01..1000 messages per second (0: {})",
                    if k == "max_rate_hz" {
                        "every processed frame"
                    } else {
                        "no summary topic"
                    }
                ));
            }
        }
        if !(self.change_threshold > 0.0 && self.change_threshold <= 2.0) {
            return Err(format!(
                "mqtt.change_threshold = {} must be above 0 and at most 2 (valence and arousal span [-1, 1]); 0.1 is the default",
                self.change_threshold
            ));
        }
        if self.queue_capacity == 0 || self.outbox_capacity == 0 {
            return Err("mqtt.queue_capacity and mqtt.outbox_capacity must be at least 1".into());
        }
        if !(self.reconnect_max_backoff_s >= 0.1 && self.reconnect_max_backoff_s <= 3600.0) {
            return Err(format!(
                "mqtt.reconnect_max_backoff_s = {} must be 0.1..3600",
                self.reconnect_max_backoff_s
            ));
        }
        Ok(())
    }

    /// TLS files that only make sense together.
    fn validate_tls(&self) -> Result<(), String> {
        if self.tls.enabled && self.tls.ca_file.is_none() {
            return Err("mqtt.tls.enabled = true needs mqtt.tls.ca_file".into());
        }
        if self.broker.tls_cert_file.is_some() != self.broker.tls_key_file.is_some() {
            return Err(
                "mqtt.broker.tls_cert_file and tls_key_file go together: set both or neither"
                    .into(),
            );
        }
        if self.tls.client_cert_file.is_some() != self.tls.client_key_file.is_some() {
            return Err(
                "mqtt.tls.client_cert_file and client_key_file go together: set both or neither"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn client_id(&self) -> String {
        if self.client_id.is_empty() {
            format!("fer-edge-{}", self.device_id)
        } else {
            self.client_id.clone()
        }
    }

    pub fn topics(&self) -> Topics {
        Topics::new(&self.topic_prefix, &self.device_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mqtt_config_is_valid_and_bad_values_name_their_key() {
        assert!(MqttConfig::default().validate().is_ok());
        let e = MqttConfig {
            keep_alive_s: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("mqtt.keep_alive_s"));
        let e = MqttConfig {
            device_id: "a/b".into(),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("mqtt.device_id"));
        let e = MqttConfig {
            broker: BrokerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("mqtt.broker.listen has port 0"), "{e}");
        for (bad, key) in [
            (
                MqttConfig {
                    max_rate_hz: -1.0,
                    ..Default::default()
                },
                "mqtt.max_rate_hz",
            ),
            (
                MqttConfig {
                    summary_rate_hz: f64::NAN,
                    ..Default::default()
                },
                "mqtt.summary_rate_hz",
            ),
            (
                MqttConfig {
                    change_threshold: 0.0,
                    ..Default::default()
                },
                "mqtt.change_threshold",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        let e = MqttConfig {
            qos_events: 3,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("mqtt.qos_events"));
        let tls = TlsConfig {
            enabled: true,
            ..Default::default()
        };
        let e = MqttConfig {
            tls,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("ca_file"));
    }

    #[test]
    fn the_client_id_defaults_to_one_derived_from_the_device_id() {
        assert_eq!(MqttConfig::default().client_id(), "fer-edge-kiosk-1");
        let c = MqttConfig {
            client_id: "robot-ui".into(),
            ..Default::default()
        };
        assert_eq!(c.client_id(), "robot-ui");
    }
}
