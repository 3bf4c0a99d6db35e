//! Publishing to MQTT without ever blocking the pipeline.
//!
//! In: messages from the pipeline thread (`Publisher::send_*`, which never
//! block). Out: MQTT publishes to the configured broker (or the embedded
//! one). Like rumqtt itself, there is a cheap cloneable handle and tasks
//! that do the I/O: the *event-loop task* polls the connection and sleeps
//! with exponential backoff after an error (the client reconnects only when
//! polled and has no backoff of its own: rumqtt#703, #918); the *publisher
//! task* drains our two bounded queues into the client.
//!
//! What we promise:
//! - `status` is retained; `online` at connect and **after every reconnect**
//!   (the client has no reconnect event, so a ConnAck triggers it, with the
//!   retained `faces/tracked`); `offline` on clean shutdown and as last will.
//! - `events`, `status` and `faces/tracked` are at-least-once across broker
//!   restarts: they wait in an outbox while disconnected, and a QoS 1
//!   publish that a session reset drops (clean sessions lose in-flight
//!   messages on reconnect) is detected through its notice and re-queued.
//!   The outbox is bounded; overflow is dropped and counted.
//! - Per-frame `expression` messages are QoS 0 and only sent while
//!   connected: stale expressions after an outage help no one. Drops are
//!   counted (`stats.mqtt.dropped_offline`, `dropped_queue_full`).
//!
//! - Every retained message's latest payload (track list, summary, Home
//!   Assistant configs) is published again after every reconnect: a broker
//!   that restarted without persistence has lost them.
//!
//! The parts: `config` (the `[mqtt]` sections), `secrets` (the files they
//! name), `client` (handle, tasks, shutdown), `announce` (which messages
//! each frame becomes: rate caps, on-change, summary), `output` (the
//! announcer behind the [`crate::output::Output`] seam), `payload` (what is
//! sent), `homeassistant` (discovery) and `names` (MQTT's name rules).
//! The embedded broker is a server of its own, in [`crate::broker`]; this
//! module only starts it from `[mqtt]` and connects to it.
//!
//! rumqttc 0.25.1 pins `rustls-webpki ^0.102.8`, which carries open RUSTSEC
//! advisories (rumqtt#1046, #1067), and its default aws-lc-rs provider is
//! hard to cross-compile; we use the maintained fork `rumqttc-v4-next` with
//! ring, which also reports session-reset drops per message.

use std::time::Instant;

pub mod announce;
mod client;
mod config;
pub mod homeassistant;
pub mod names;
mod output;
pub mod payload;
mod secrets;

pub use client::{diagnose, probe, start, Connection, FailureCause, Publisher};
pub use config::{BrokerConfig, MqttConfig, TlsConfig};
pub use output::{announcer, MqttOutput};
pub use payload::{MqttStats, Topics};
pub use secrets::Secrets;

/// Starts the embedded broker `[mqtt] embedded = true` asks for, from the
/// config's values and the files `secrets` read: warns when it accepts
/// anyone on the network or holds plain-text passwords.
pub fn start_embedded_broker(
    cfg: &MqttConfig,
    secrets: &Secrets,
) -> Result<crate::broker::EmbeddedBroker, PublishError> {
    let listen = cfg.broker.listen;
    if !listen.ip().is_loopback() && secrets.users.is_none() {
        tracing::warn!(
            %listen,
            "the embedded MQTT broker accepts anyone on the network (mqtt.broker.allow_anonymous = true): set mqtt.broker.users_file to require a login"
        );
    }
    if let Some(u) = &secrets.users {
        if u.plain_text() > 0 {
            tracing::warn!(
                "mqtt.broker.users_file holds {} plain-text password(s): hash them with mosquitto_passwd -U FILE",
                u.plain_text()
            );
        }
    }
    Ok(crate::broker::start(crate::broker::BrokerSettings {
        listen,
        users: secrets.users.clone(),
        allow_anonymous: cfg.broker.allow_anonymous,
        protected_prefix: cfg.topic_prefix.clone(),
        daemon_client_id: cfg.client_id(),
        tls: secrets.broker_tls.clone(),
    })?)
}

/// Errors setting the publisher up (files, the embedded broker).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{what}: {source}")]
    File {
        what: &'static str,
        source: crate::fileio::ReadError,
    },
    #[error("{what} {path}: {problem}")]
    BadFile {
        what: &'static str,
        path: String,
        problem: String,
    },
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error("invalid MQTT settings: {0}")]
    Options(String),
}

/// One message for the broker.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// For per-frame messages: when their frame was captured.
    pub captured_at: Option<Instant>,
}

impl Message {
    /// A JSON message of no frame (events, track lists, stats).
    pub fn json<T: serde::Serialize>(topic: String, payload: &T, retain: bool) -> Message {
        Message {
            topic,
            payload: serde_json::to_vec(payload).expect("payloads serialise"),
            retain,
            captured_at: None,
        }
    }

    /// A JSON message about the frame captured at `captured_at`.
    pub fn frame_json<T: serde::Serialize>(
        topic: String,
        payload: &T,
        captured_at: Instant,
    ) -> Message {
        Message {
            captured_at: Some(captured_at),
            ..Message::json(topic, payload, false)
        }
    }
}
