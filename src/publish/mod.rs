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
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Broker, Event, LastWill, MqttOptions, Packet, PublishNoticeError, PublishOptions,
    QoS, TlsConfiguration, Transport,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::capture::backoff_delay;
use crate::telemetry::{Counter, Gauge, Stage, Telemetry};

pub mod broker;
pub mod names;
pub mod payload;
pub mod users;
pub mod wire;

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

/// `[mqtt.broker]`: who may use the embedded broker.
///
/// On a loopback `listen` (the default) any local client may connect. On
/// any other address a client must log in with a user from `users_file`,
/// unless `allow_anonymous = true` (logged as a warning at every start).
/// Whoever connects may subscribe to everything, but only fer-edge itself
/// may publish under its topic prefix.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `user:password` lines, or `mosquitto_passwd` hashes (`user:$7$...`).
    pub users_file: Option<PathBuf>,
    /// Accept clients without a user name on a non-loopback `listen`.
    pub allow_anonymous: bool,
    /// PEM certificate (chain) and private key: clients must use TLS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
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
    pub broker: BrokerConfig,
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
            broker: BrokerConfig::default(),
        }
    }
}

impl MqttConfig {
    /// Checks values (no file access): every string that ends up in a
    /// topic or a client id follows MQTT's rules ([`names`]).
    pub fn validate(&self) -> Result<(), String> {
        if self.embedded {
            let addr = self.listen.parse::<SocketAddr>().map_err(|e| {
                format!(
                    "mqtt.listen = {:?} is not an address like 127.0.0.1:1883 ({e})",
                    self.listen
                )
            })?;
            if addr.port() == 0 {
                return Err("mqtt.listen has port 0: name the port subscribers connect to, e.g. 127.0.0.1:1883".into());
            }
            if !addr.ip().is_loopback()
                && self.broker.users_file.is_none()
                && !self.broker.allow_anonymous
            {
                return Err(format!(
                    "mqtt.listen = {:?} opens the embedded broker to the network without authentication: set mqtt.broker.users_file (user:password lines, or mosquitto_passwd hashes), or mqtt.broker.allow_anonymous = true to accept anyone, or listen on 127.0.0.1",
                    self.listen
                ));
            }
        } else {
            if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
                return Err(format!(
                    "mqtt.host = {:?} is not a host name: name the broker, or set mqtt.embedded = true",
                    self.host
                ));
            }
            if self.port == 0 {
                return Err("mqtt.port = 0: use the broker's port (1883, or 8883 with TLS)".into());
            }
        }
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
    Broker(#[from] broker::BrokerError),
    #[error("invalid MQTT settings: {0}")]
    Options(String),
}

/// PEM parsing, one place for the client's and the embedded broker's files.
pub mod pem {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    /// The certificates in a PEM file; at least one.
    pub fn chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("is not PEM ({e})"))?;
        if chain.is_empty() {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
        Ok(chain)
    }

    /// The private key in a PEM file.
    pub fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("holds no PEM private key ({e})"))
    }
}

/// Everything the client and the embedded broker read from files, read
/// and checked once: `fer-edge check` and `run` both call [`Secrets::load`],
/// so a CA file that holds no certificate fails before any connection.
#[derive(Default)]
pub struct Secrets {
    pub password: Option<String>,
    pub ca: Option<Vec<u8>>,
    /// The client's certificate chain and key (PEM).
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
    pub users: Option<broker::Users>,
    /// The embedded broker's certificate chain and key (PEM).
    pub broker_tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// Reads one file the MQTT section names (bounded, regular files only) and
/// parses it; errors name the config key, the file and the problem.
fn load_file<T>(
    what: &'static str,
    path: &std::path::Path,
    parse: impl Fn(&[u8]) -> Result<T, String>,
) -> Result<(Vec<u8>, T), PublishError> {
    let bytes = crate::fileio::read_bounded(
        path,
        crate::fileio::SECRET_LIMIT,
        "a secret or certificate",
        "",
    )
    .map_err(|source| PublishError::File { what, source })?;
    let parsed = parse(&bytes).map_err(|problem| PublishError::BadFile {
        what,
        path: crate::fileio::shown(path),
        problem,
    })?;
    Ok((bytes, parsed))
}

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|_| "is not UTF-8 text".to_string())
}

impl Secrets {
    pub fn load(cfg: &MqttConfig) -> Result<Secrets, PublishError> {
        // A certificate file and its key, both checked.
        let pair = |(wc, c): (&'static str, &PathBuf), (wk, k): (&'static str, &PathBuf)| {
            Ok::<_, PublishError>((
                load_file(wc, c, pem::chain)?.0,
                load_file(wk, k, pem::key)?.0,
            ))
        };
        let mut s = Secrets::default();
        if let Some(p) = &cfg.password_file {
            let (_, pw) = load_file("mqtt.password_file", p, |b| {
                utf8(b).map(|t| t.trim_end_matches(['\n', '\r']).to_string())
            })?;
            s.password = Some(pw);
        }
        if cfg.tls.enabled {
            if let Some(p) = &cfg.tls.ca_file {
                s.ca = Some(load_file("mqtt.tls.ca_file", p, pem::chain)?.0);
            }
            if let (Some(c), Some(k)) = (&cfg.tls.client_cert_file, &cfg.tls.client_key_file) {
                s.client_auth = Some(pair(
                    ("mqtt.tls.client_cert_file", c),
                    ("mqtt.tls.client_key_file", k),
                )?);
            }
        }
        if cfg.embedded {
            if let (Some(c), Some(k)) = (&cfg.broker.tls_cert_file, &cfg.broker.tls_key_file) {
                s.broker_tls = Some(pair(
                    ("mqtt.broker.tls_cert_file", c),
                    ("mqtt.broker.tls_key_file", k),
                )?);
            }
            if let Some(p) = &cfg.broker.users_file {
                let (_, users) = load_file("mqtt.broker.users_file", p, |b| {
                    broker::Users::parse(utf8(b)?)
                })?;
                s.users = Some(users);
            }
        }
        Ok(s)
    }
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
    /// The daemon's one counter store: this handle and the tasks count there.
    telemetry: Arc<Telemetry>,
    topics: Topics,
}

impl Publisher {
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Queues a per-frame message; dropped (and counted) when offline or full.
    pub fn send_frame(&self, msg: Message) {
        if !self.is_connected() {
            self.telemetry.add(Counter::MqttDroppedOffline, 1);
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if self.frames.try_send((seq, msg)).is_err() {
            self.telemetry.add(Counter::MqttDroppedQueueFull, 1);
        }
    }

    /// Queues an event/status/track-list message in the outbox.
    pub fn send_event(&self, msg: Message) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.outbox.try_send((seq, msg)) {
            self.telemetry.add(Counter::MqttDroppedQueueFull, 1);
            tracing::warn!("MQTT outbox full or closed, message dropped: {e}");
        }
    }

    pub fn is_connected(&self) -> bool {
        self.telemetry.gauge(Gauge::MqttConnected) == 1
    }

    /// Records how many messages wait in each queue (for `stats` and `/metrics`).
    pub fn record_queue_depths(&self) {
        let depth = |q: &mpsc::Sender<Sequenced>| (q.max_capacity() - q.capacity()) as u64;
        self.telemetry
            .set(Gauge::MqttQueueFrames, depth(&self.frames));
        self.telemetry
            .set(Gauge::MqttQueueEvents, depth(&self.outbox));
    }
}

/// Control of the running client, kept by the pipeline's async side.
pub struct Connection {
    client: AsyncClient,
    cfg: MqttConfig,
    topics: Topics,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutting_down: Arc<AtomicBool>,
    /// The embedded broker's death notices (`None`: an external broker).
    broker_died: Option<mpsc::UnboundedReceiver<String>>,
    /// The embedded broker's deliveries to its clients, waited for at shutdown.
    broker_deliveries: Option<broker::Deliveries>,
}

/// Builds the client and spawns its tasks on the current Tokio runtime.
/// Starts the embedded broker first when configured.
pub fn start(
    cfg: &MqttConfig,
    secrets: &Secrets,
    telemetry: Arc<Telemetry>,
) -> Result<(Publisher, Connection), PublishError> {
    let mut broker_died = None;
    let mut broker_deliveries = None;
    let (host, port, login) = if cfg.embedded {
        let listen: SocketAddr = cfg
            .listen
            .parse()
            .map_err(|e| PublishError::Options(format!("mqtt.listen: {e}")))?;
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
        let b = broker::start(broker::BrokerSettings {
            listen,
            users: secrets.users.clone(),
            allow_anonymous: cfg.broker.allow_anonymous,
            protected_prefix: cfg.topic_prefix.clone(),
            daemon_client_id: cfg.client_id(),
            tls: secrets.broker_tls.clone(),
        })?;
        broker_died = Some(b.died);
        broker_deliveries = Some(b.deliveries);
        (
            b.internal.ip().to_string(),
            b.internal.port(),
            Some(b.daemon_login),
        )
    } else {
        let (h, p) = (cfg.host.clone(), cfg.port);
        let login = cfg
            .username
            .as_ref()
            .map(|u| (u.clone(), secrets.password.clone().unwrap_or_default()));
        (h, p, login)
    };
    let topics = cfg.topics();
    let mut opts = MqttOptions::new(cfg.client_id(), Broker::tcp(host, port));
    opts.set_keep_alive(cfg.keep_alive_s.max(1));
    opts.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        qos(cfg.qos_events),
        true,
    ));
    if let Some((user, password)) = login {
        opts.set_credentials(user, password.into_bytes());
    }
    if cfg.tls.enabled && !cfg.embedded {
        opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: secrets.ca.clone().unwrap_or_default(),
            alpn: None,
            client_auth: secrets.client_auth.clone(),
        }));
    }
    let (client, eventloop) = AsyncClient::builder(opts)
        .capacity(64)
        .try_build()
        .map_err(|e| PublishError::Options(e.to_string()))?;

    let (frames_tx, frames_rx) = mpsc::channel(cfg.queue_capacity);
    let (outbox_tx, outbox_rx) = mpsc::channel(cfg.outbox_capacity);
    let (reconnected_tx, reconnected_rx) = mpsc::unbounded_channel();
    let shutting_down = Arc::new(AtomicBool::new(false));

    let ev_task = tokio::spawn(event_loop(
        eventloop,
        cfg.clone(),
        telemetry.clone(),
        reconnected_tx,
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
        telemetry: telemetry.clone(),
        last_tracked: None,
    }));
    let publisher = Publisher {
        frames: frames_tx,
        outbox: outbox_tx,
        seq: Arc::new(AtomicU64::new(1)),
        telemetry,
        topics: topics.clone(),
    };
    let conn = Connection {
        client,
        cfg: cfg.clone(),
        topics,
        tasks: vec![ev_task, pub_task],
        shutting_down,
        broker_died,
        broker_deliveries,
    };
    Ok((publisher, conn))
}

impl Connection {
    /// Resolves with the reason if the embedded broker stops; never for an
    /// external broker (its outages are retried, not fatal).
    pub async fn broker_died(&mut self) -> String {
        match &mut self.broker_died {
            Some(rx) => match rx.recv().await {
                Some(why) => why,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

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
        // The event loop ends once its DISCONNECT is on the wire; aborting
        // it earlier closed the socket first, and the broker then sent the
        // last will: `offline` twice.
        let mut tasks = self.tasks.into_iter();
        if let Some(ev) = tasks.next() {
            let abort = ev.abort_handle();
            if tokio::time::timeout(Duration::from_millis(600), ev)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in tasks {
            t.abort();
        }
        // The embedded broker ends with this process: let it hand what it
        // holds (the last `end` events, `offline`, QoS 2 handshakes) to its
        // subscribers first.
        if let Some(d) = &self.broker_deliveries {
            let waited = d
                .settle(Duration::from_millis(150), Duration::from_secs(2))
                .await;
            tracing::debug!("embedded broker's deliveries settled in {waited:?}");
        }
    }
}

/// What kind of failure a connection attempt met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// The broker answered and said no (login, client id, authorisation).
    Refused,
    /// Certificates or the TLS handshake.
    Tls,
    /// Unreachable, reset, timed out: usually passes by itself.
    Network,
}

/// Names the cause of a failed connection attempt and its fix.
pub fn diagnose(e: &rumqttc::ConnectionError, cfg: &MqttConfig) -> (FailureCause, String) {
    use rumqttc::ConnectReturnCode as C;
    use rumqttc::ConnectionError as E;
    let refused = |text: String| (FailureCause::Refused, text);
    match e {
        E::ConnectionRefused(code) => match code {
            C::BadUserNamePassword => refused(format!(
                "the broker refused the login of user {:?} (bad user name or password): check mqtt.username and mqtt.password_file",
                cfg.username.as_deref().unwrap_or("")
            )),
            C::NotAuthorized => refused(format!(
                "the broker says this client is not authorised (mosquitto answers so to a wrong password too): check mqtt.username ({:?}) and mqtt.password_file, or allow the client in the broker's ACL",
                cfg.username.as_deref().unwrap_or("")
            )),
            C::BadClientId => refused(format!(
                "the broker refused the client id {:?}: set mqtt.client_id to one it accepts",
                cfg.client_id()
            )),
            C::RefusedProtocolVersion => refused(
                "the broker does not accept MQTT 3.1.1: enable 3.1.1 on the broker".into(),
            ),
            C::ServiceUnavailable | C::Success => refused(format!(
                "the broker refused the connection ({code:?})"
            )),
        },
        E::Tls(t) => (
            FailureCause::Tls,
            format!(
                "TLS with the broker failed ({t}): check that mqtt.tls.ca_file holds the CA that signed the broker's certificate and that mqtt.host ({}) is a name on that certificate",
                cfg.host
            ),
        ),
        other => {
            let text = other.to_string();
            let lower = text.to_lowercase();
            if cfg.tls.enabled
                && (lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake"))
            {
                (
                    FailureCause::Tls,
                    format!("TLS with the broker failed ({text}): check mqtt.tls.ca_file and that mqtt.host ({}) is a name on the broker's certificate", cfg.host),
                )
            } else {
                (
                    FailureCause::Network,
                    format!("MQTT connection lost or refused ({text})"),
                )
            }
        }
    }
}

/// Failures worth telling again: the 1st, 2nd, 4th, 8th... of a streak.
fn worth_logging(streak: u32) -> bool {
    streak.is_power_of_two()
}

async fn event_loop(
    mut eventloop: rumqttc::EventLoop,
    cfg: MqttConfig,
    telemetry: Arc<Telemetry>,
    reconnected: mpsc::UnboundedSender<()>,
    shutting_down: Arc<AtomicBool>,
) {
    let mut attempt = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if attempt > 0 {
                    tracing::info!(
                        "connected to the MQTT broker after {attempt} failed attempt(s)"
                    );
                } else {
                    tracing::info!("connected to the MQTT broker");
                }
                attempt = 0;
                telemetry.set(Gauge::MqttConnected, 1);
                telemetry.add(Counter::MqttConnections, 1);
                telemetry.set_mqtt_last_error(None);
                let _ = reconnected.send(());
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
                if shutting_down.load(Ordering::SeqCst) =>
            {
                // Keep polling until the broker closes the connection, so
                // the DISCONNECT is flushed before the socket is dropped.
                let drain = async { while eventloop.poll().await.is_ok() {} };
                let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                let was = telemetry.gauge(Gauge::MqttConnected) == 1;
                telemetry.set(Gauge::MqttConnected, 0);
                let wait = backoff_delay(attempt, cfg.reconnect_max_backoff_s);
                attempt += 1;
                let (cause, text) = diagnose(&e, &cfg);
                telemetry.add(
                    match cause {
                        FailureCause::Refused => Counter::MqttRefused,
                        FailureCause::Tls => Counter::MqttTlsFailures,
                        FailureCause::Network => Counter::MqttNetworkFailures,
                    },
                    1,
                );
                telemetry.set_mqtt_last_error(Some(text.clone()));
                match cause {
                    // A broker that says no will say no again: a fix is
                    // needed, so this is an error, repeated ever more rarely.
                    FailureCause::Refused | FailureCause::Tls if worth_logging(attempt) => {
                        tracing::error!("{text}; attempt {attempt}, retrying in {wait:?}; the pipeline keeps running");
                    }
                    FailureCause::Network if was || attempt == 1 => {
                        tracing::warn!("{text}; retrying with backoff, the pipeline keeps running");
                    }
                    FailureCause::Network if worth_logging(attempt) && attempt >= 16 => {
                        tracing::warn!("{text}; still unreachable after {attempt} attempts, retrying every {wait:?}");
                    }
                    _ => tracing::debug!(
                        "MQTT connect attempt {attempt} failed: {text}; next in {wait:?}"
                    ),
                }
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
    telemetry: Arc<Telemetry>,
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
            Some((seq, msg)) = s.outbox.recv(), if s.telemetry.gauge(Gauge::MqttConnected) == 1 => {
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
            s.telemetry.add(Counter::MqttPublished, 1);
            if let Some(t) = msg.captured_at {
                // Capture→publish: the `publish` stage's latency.
                s.telemetry
                    .frame_out(Stage::Publish, t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Err(_) => s.telemetry.add(Counter::MqttDroppedQueueFull, 1),
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
            s.telemetry.add(Counter::MqttPublished, 1);
            if q == QoS::AtMostOnce {
                return;
            }
            let requeue = s.outbox_tx.clone();
            let telemetry = s.telemetry.clone();
            tokio::spawn(async move {
                if let Err(PublishNoticeError::SessionReset) = notice.wait_async().await {
                    telemetry.add(Counter::MqttRequeuedAfterReset, 1);
                    if requeue.try_send((0, msg)).is_err() {
                        telemetry.add(Counter::MqttDroppedQueueFull, 1);
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
    fn the_client_id_defaults_to_one_derived_from_the_device_id() {
        assert_eq!(MqttConfig::default().client_id(), "fer-edge-kiosk-1");
        let c = MqttConfig {
            client_id: "robot-ui".into(),
            ..Default::default()
        };
        assert_eq!(c.client_id(), "robot-ui");
    }
}
