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
//! rumqttc 0.25.1 pins `rustls-webpki ^0.102.8`, which carries open RUSTSEC
//! advisories (rumqtt#1046, #1067), and its default aws-lc-rs provider is
//! hard to cross-compile; we use the maintained fork `rumqttc-v4-next` with
//! ring, which also reports session-reset drops per message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Broker, Event, LastWill, MqttOptions, Packet, PublishNoticeError, PublishOptions,
    QoS, TlsConfiguration, Transport,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::capture::backoff_delay;
use crate::telemetry::Percentiles;

pub mod broker;
pub mod payload;

pub use payload::{MqttStats, Topics};

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

/// `[mqtt]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Start an in-process broker on `listen` and publish to it. Set false
    /// to publish to the broker at `host:port` instead.
    pub embedded: bool,
    /// Address of the embedded broker.
    pub listen: String,
    /// External broker (when `embedded = false`).
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
    /// Seconds between `stats` messages (0 = never).
    pub stats_interval_s: f64,
    /// Per-frame messages waiting to be sent; more are dropped and counted.
    pub queue_capacity: usize,
    /// Events, status and track lists waiting (e.g. while the broker is down).
    pub outbox_capacity: usize,
    /// Longest wait between reconnection attempts.
    pub reconnect_max_backoff_s: f64,
    pub tls: TlsConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            embedded: true,
            listen: "127.0.0.1:1883".into(),
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
            stats_interval_s: 10.0,
            queue_capacity: 256,
            outbox_capacity: 1000,
            reconnect_max_backoff_s: 10.0,
            tls: TlsConfig::default(),
        }
    }
}

fn topic_level_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains(['+', '#', '\0']) && !s.starts_with('/') && !s.ends_with('/')
}

impl MqttConfig {
    /// Checks values (no file access).
    pub fn validate(&self) -> Result<(), String> {
        if self.embedded {
            self.listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "mqtt.listen = {:?} is not an address like 127.0.0.1:1883 ({e})",
                    self.listen
                )
            })?;
        } else if self.host.trim().is_empty() {
            return Err("mqtt.host is empty: name the broker, or set mqtt.embedded = true".into());
        }
        if !topic_level_ok(&self.device_id) || self.device_id.contains('/') {
            return Err(format!(
                "mqtt.device_id = {:?} must be non-empty without '/', '+' or '#'",
                self.device_id
            ));
        }
        if !topic_level_ok(&self.topic_prefix) {
            return Err(format!("mqtt.topic_prefix = {:?} must be non-empty, without '+' or '#' or a leading/trailing '/'", self.topic_prefix));
        }
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
        if !(self.stats_interval_s >= 0.0 && self.stats_interval_s <= 86_400.0) {
            return Err(format!(
                "mqtt.stats_interval_s = {} must be 0..86400",
                self.stats_interval_s
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
        if self.tls.enabled && self.tls.ca_file.is_none() {
            return Err("mqtt.tls.enabled = true needs mqtt.tls.ca_file".into());
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

    /// Where the client connects.
    pub fn broker_addr(&self) -> (String, u16) {
        if self.embedded {
            let a: SocketAddr = self
                .listen
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 1883)));
            let host = if a.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                a.ip().to_string()
            };
            (host, a.port())
        } else {
            (self.host.clone(), self.port)
        }
    }
}

/// Errors setting the publisher up (files, the embedded broker).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("invalid MQTT settings: {0}")]
    Options(String),
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
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

#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    connections: AtomicU64,
    published: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_offline: AtomicU64,
    requeued: AtomicU64,
    latencies: Mutex<Vec<f64>>,
}

/// A message and its place in the order the pipeline sent them. Messages
/// re-queued by the publisher itself carry 0.
type Sequenced = (u64, Message);

/// The pipeline's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Publisher {
    frames: mpsc::Sender<Sequenced>,
    outbox: mpsc::Sender<Sequenced>,
    /// Order of every message the pipeline sends, across both queues.
    seq: Arc<AtomicU64>,
    counters: Arc<Counters>,
    topics: Topics,
}

impl Publisher {
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Queues a per-frame message; dropped (and counted) when offline or full.
    pub fn send_frame(&self, msg: Message) {
        if !self.counters.connected.load(Ordering::Relaxed) {
            self.counters
                .dropped_offline
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if self.frames.try_send((seq, msg)).is_err() {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an event/status/track-list message in the outbox.
    pub fn send_event(&self, msg: Message) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.outbox.try_send((seq, msg)) {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("MQTT outbox full or closed, message dropped: {e}");
        }
    }

    pub fn is_connected(&self) -> bool {
        self.counters.connected.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> MqttStats {
        let c = &self.counters;
        MqttStats {
            connected: c.connected.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_offline: c.dropped_offline.load(Ordering::Relaxed),
            requeued_after_reset: c.requeued.load(Ordering::Relaxed),
        }
    }

    /// Capture→publish latency of recent per-frame messages.
    pub fn latency(&self) -> Percentiles {
        Percentiles::of(
            &self
                .counters
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

/// Control of the running client, kept by the pipeline's async side.
pub struct Connection {
    client: AsyncClient,
    cfg: MqttConfig,
    topics: Topics,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutting_down: Arc<AtomicBool>,
}

/// Builds the client and spawns its tasks on the current Tokio runtime.
/// Starts the embedded broker first when configured.
pub fn start(cfg: &MqttConfig) -> Result<(Publisher, Connection), PublishError> {
    if cfg.embedded {
        let addr: SocketAddr = cfg
            .listen
            .parse()
            .map_err(|e| PublishError::Options(format!("mqtt.listen: {e}")))?;
        broker::start(addr)?;
    }
    let topics = cfg.topics();
    let (host, port) = cfg.broker_addr();
    let mut opts = MqttOptions::new(cfg.client_id(), Broker::tcp(host, port));
    opts.set_keep_alive(cfg.keep_alive_s.max(1));
    opts.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        qos(cfg.qos_events),
        true,
    ));
    if let Some(user) = &cfg.username {
        let password = match &cfg.password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|source| PublishError::File {
                    what: "mqtt.password_file",
                    path: p.clone(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            None => String::new(),
        };
        opts.set_credentials(user.clone(), password.into_bytes());
    }
    if cfg.tls.enabled {
        let read = |what: &'static str, p: &PathBuf| {
            std::fs::read(p).map_err(|source| PublishError::File {
                what,
                path: p.clone(),
                source,
            })
        };
        let ca = read(
            "mqtt.tls.ca_file",
            cfg.tls.ca_file.as_ref().expect("validated"),
        )?;
        let client_auth = match (&cfg.tls.client_cert_file, &cfg.tls.client_key_file) {
            (Some(c), Some(k)) => Some((
                read("mqtt.tls.client_cert_file", c)?,
                read("mqtt.tls.client_key_file", k)?,
            )),
            _ => None,
        };
        opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        }));
    }
    let (client, eventloop) = AsyncClient::builder(opts)
        .capacity(64)
        .try_build()
        .map_err(|e| PublishError::Options(e.to_string()))?;

    let counters = Arc::new(Counters::default());
    let (frames_tx, frames_rx) = mpsc::channel(cfg.queue_capacity);
    let (outbox_tx, outbox_rx) = mpsc::channel(cfg.outbox_capacity);
    let (reconnected_tx, reconnected_rx) = mpsc::unbounded_channel();
    let shutting_down = Arc::new(AtomicBool::new(false));

    let ev_task = tokio::spawn(event_loop(
        eventloop,
        counters.clone(),
        reconnected_tx,
        cfg.reconnect_max_backoff_s,
        shutting_down.clone(),
    ));
    let pub_task = tokio::spawn(publish_loop(PublishLoop {
        client: client.clone(),
        cfg: cfg.clone(),
        topics: topics.clone(),
        frames: frames_rx,
        held: None,
        outbox: outbox_rx,
        outbox_tx: outbox_tx.clone(),
        reconnected: reconnected_rx,
        counters: counters.clone(),
        last_tracked: None,
    }));
    let publisher = Publisher {
        frames: frames_tx,
        outbox: outbox_tx,
        seq: Arc::new(AtomicU64::new(1)),
        counters,
        topics: topics.clone(),
    };
    let conn = Connection {
        client,
        cfg: cfg.clone(),
        topics,
        tasks: vec![ev_task, pub_task],
        shutting_down,
    };
    Ok((publisher, conn))
}

impl Connection {
    /// Clean shutdown: waits (up to `deadline`) for queued events to go out,
    /// publishes retained `offline`, and disconnects.
    pub async fn shutdown(self, publisher: &Publisher, deadline: Duration) {
        let t0 = Instant::now();
        // Let the outbox (end events, the last track list) drain first, so
        // `offline` is the last word; leave a fifth of the time for it.
        while publisher.outbox.capacity() < publisher.outbox.max_capacity()
            && t0.elapsed() < deadline * 4 / 5
            && publisher.is_connected()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let opts = PublishOptions::new(qos(self.cfg.qos_events)).retained();
        if publisher.is_connected() {
            if let Ok(notice) = self
                .client
                .publish_tracked(self.topics.status(), "offline", opts)
                .await
            {
                let left = deadline.saturating_sub(t0.elapsed());
                let _ = tokio::time::timeout(left, notice.wait_async()).await;
            }
        }
        self.shutting_down.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_millis(200), self.client.disconnect()).await;
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn event_loop(
    mut eventloop: rumqttc::EventLoop,
    counters: Arc<Counters>,
    reconnected: mpsc::UnboundedSender<()>,
    max_backoff_s: f64,
    shutting_down: Arc<AtomicBool>,
) {
    let mut attempt = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                counters.connected.store(true, Ordering::SeqCst);
                counters.connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!("connected to the MQTT broker");
                let _ = reconnected.send(());
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
                if shutting_down.load(Ordering::SeqCst) =>
            {
                return
            }
            Ok(_) => {}
            Err(e) => {
                if shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                let was = counters.connected.swap(false, Ordering::SeqCst);
                let wait = backoff_delay(attempt, max_backoff_s);
                if was || attempt == 0 {
                    tracing::warn!("MQTT connection lost or refused ({e}); retrying with backoff, the pipeline keeps running");
                } else {
                    tracing::debug!(
                        "MQTT reconnect attempt {attempt} failed: {e}; next in {wait:?}"
                    );
                }
                attempt += 1;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

struct PublishLoop {
    client: AsyncClient,
    cfg: MqttConfig,
    topics: Topics,
    frames: mpsc::Receiver<Sequenced>,
    /// A per-frame message taken from `frames` that must wait for an
    /// event sent before it.
    held: Option<Sequenced>,
    outbox: mpsc::Receiver<Sequenced>,
    outbox_tx: mpsc::Sender<Sequenced>,
    reconnected: mpsc::UnboundedReceiver<()>,
    counters: Arc<Counters>,
    /// The latest `faces/tracked` payload, republished after a reconnect.
    last_tracked: Option<Vec<u8>>,
}

async fn publish_loop(mut s: PublishLoop) {
    let event_qos = qos(s.cfg.qos_events);
    let frame_qos = qos(s.cfg.qos_expression);
    loop {
        tokio::select! {
            biased;
            Some(()) = s.reconnected.recv() => {
                // No reconnect event exists (rumqtt#250): every ConnAck republishes the retained state.
                let online = Message { topic: s.topics.status(), payload: b"online".to_vec(), retain: true, captured_at: None };
                publish_event(&s, online, event_qos).await;
                let tracked = s.last_tracked.clone();
                if let Some(p) = tracked {
                    publish_event(&s, Message { topic: s.topics.tracked(), payload: p, retain: true, captured_at: None }, event_qos).await;
                }
            }
            Some((seq, msg)) = s.outbox.recv(), if s.counters.connected.load(Ordering::SeqCst) => {
                // Per-frame messages sent before this event go out first:
                // a subscriber must never see a track's expression after
                // its `end` event, nor before its `new` event.
                while let Some((fseq, frame)) = s.held.take().or_else(|| s.frames.try_recv().ok()) {
                    if fseq > seq {
                        s.held = Some((fseq, frame));
                        break;
                    }
                    publish_frame(&s, frame, frame_qos);
                }
                if msg.topic == s.topics.tracked() {
                    s.last_tracked = Some(msg.payload.clone());
                }
                publish_event(&s, msg, event_qos).await;
            }
            // No event waits: the held message may go.
            () = std::future::ready(()), if s.held.is_some() => {
                if let Some((_, msg)) = s.held.take() {
                    publish_frame(&s, msg, frame_qos);
                }
            }
            Some((_, msg)) = s.frames.recv() => publish_frame(&s, msg, frame_qos),
            // Every channel closed: the client is shutting down.
            else => return,
        }
    }
}

/// Publishes one per-frame message without waiting (QoS 0 by default);
/// a full client queue drops it (counted).
fn publish_frame(s: &PublishLoop, msg: Message, q: QoS) {
    let opts = PublishOptions::new(q).retained_if(msg.retain);
    match s.client.try_publish(msg.topic, msg.payload, opts) {
        Ok(()) => {
            s.counters.published.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = msg.captured_at {
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let mut l = s
                    .counters
                    .latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if l.len() >= 4096 {
                    l.remove(0);
                }
                l.push(ms);
            }
        }
        Err(_) => {
            s.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Publishes one outbox message at QoS ≥ 1 and re-queues it if a session
/// reset drops it before its acknowledgement.
async fn publish_event(s: &PublishLoop, msg: Message, q: QoS) {
    let opts = PublishOptions::new(q).retained_if(msg.retain);
    match s
        .client
        .publish_tracked(msg.topic.clone(), msg.payload.clone(), opts)
        .await
    {
        Ok(notice) => {
            s.counters.published.fetch_add(1, Ordering::Relaxed);
            if q == QoS::AtMostOnce {
                return;
            }
            let requeue = s.outbox_tx.clone();
            let counters = s.counters.clone();
            tokio::spawn(async move {
                if let Err(PublishNoticeError::SessionReset) = notice.wait_async().await {
                    counters.requeued.fetch_add(1, Ordering::Relaxed);
                    if requeue.try_send((0, msg)).is_err() {
                        counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!("MQTT publish to {} failed: {e}", msg.topic);
            let _ = s.outbox_tx.try_send((0, msg));
        }
    }
}

trait RetainedIf {
    fn retained_if(self, retain: bool) -> Self;
}

impl RetainedIf for PublishOptions {
    fn retained_if(self, retain: bool) -> Self {
        if retain {
            self.retained()
        } else {
            self
        }
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
            listen: "nowhere".into(),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("mqtt.listen"));
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
    fn the_client_connects_to_the_embedded_broker_address_when_embedded() {
        let c = MqttConfig {
            listen: "0.0.0.0:2883".into(),
            ..Default::default()
        };
        assert_eq!(c.broker_addr(), ("127.0.0.1".to_string(), 2883));
        let c = MqttConfig {
            embedded: false,
            host: "broker.lan".into(),
            port: 8883,
            ..Default::default()
        };
        assert_eq!(c.broker_addr(), ("broker.lan".to_string(), 8883));
        assert_eq!(c.client_id(), "fer-edge-kiosk-1");
    }
}
