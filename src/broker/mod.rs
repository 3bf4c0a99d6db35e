//! The embedded MQTT broker, for a single box that needs nothing else: the
//! daemon publishes to it, robots and kiosk UIs subscribe to it.
//!
//! In: [`BrokerSettings`] (the listen address, the users file, fer-edge's
//! topic prefix and client id). Out: a running [`EmbeddedBroker`]: the
//! address and login the daemon's own client uses, and a channel that
//! says if the broker died.
//!
//! Two parts:
//! - **rumqttd** (patched, see `vendor/README.md`) serves MQTT 3.1.1 and
//!   MQTT 5 on two loopback ports that only accept two logins, both made
//!   up at start and never written anywhere: the daemon's and the gate's.
//! - **The gate** owns the public `listen` address. It reads each client's
//!   CONNECT and then either refuses it with a CONNACK that says why, logged
//!   at WARN (a protocol other than 3.1.1 or 5, a bad login, fer-edge's own
//!   client id, a will under fer-edge's prefix), or passes the connection to
//!   the listener of its protocol version under the gate's login. After
//!   that it reads every PUBLISH the client sends: one under fer-edge's
//!   topic prefix closes the connection (only fer-edge publishes there;
//!   anyone may subscribe). One port serves both protocol versions.
//!
//! A broker or gate thread that ends, or that panics anywhere (rumqttd's
//! router, its listeners and their connection tasks, the gate), is reported
//! on [`EmbeddedBroker::died`]: a broker that panicked is in an unknown
//! state, so the daemon exits 70 and systemd restarts it. Panics are seen by
//! a process-wide panic hook that knows the broker's thread names
//! ([`BROKER_THREADS`]), because rumqttd spawns its router thread itself.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::publish::names;
pub use users::Users;
use wire::{Connect, Refusal};

pub mod users;
pub mod wire;

/// Largest packet a client may send through the gate (rumqttd's limit too).
pub const MAX_PACKET_BYTES: usize = 256 * 1024;
/// A client must send its CONNECT within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Client connections the gate holds at once (rumqttd takes 256); more are
/// closed at once, so a flood of idle sockets cannot exhaust descriptors.
const MAX_CLIENTS: usize = 300;
/// The same refusal from the same address is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded MQTT broker cannot listen on {addr}: {source}; another broker (mosquitto?) may hold the port: stop it, change [mqtt] listen, or set [mqtt] embedded = false to use it")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded MQTT broker: {0}")]
    Start(String),
    #[error("embedded MQTT broker on {addr} did not accept connections within {waited_ms} ms")]
    NotReady { addr: SocketAddr, waited_ms: u128 },
}

/// What the embedded broker needs to know.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub listen: SocketAddr,
    /// Logins for clients; `None`: anyone may connect.
    pub users: Option<Users>,
    /// With `users`: also accept clients that send no user name.
    pub allow_anonymous: bool,
    /// Only fer-edge publishes under this prefix.
    pub protected_prefix: String,
    /// fer-edge's own client id, which no one else may take.
    pub daemon_client_id: String,
    /// PEM certificate chain and private key: serve MQTT over TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// A running embedded broker.
pub struct EmbeddedBroker {
    /// Where the daemon's own client connects (rumqttd's 3.1.1 listener).
    pub internal: SocketAddr,
    /// The daemon's login there.
    pub daemon_login: (String, String),
    /// Receives a reason if rumqttd or the gate stops.
    pub died: mpsc::UnboundedReceiver<String>,
    /// When the gate last passed bytes from rumqttd to a client.
    pub deliveries: Deliveries,
}

impl EmbeddedBroker {
    /// Resolves with the reason when rumqttd or the gate stops.
    pub async fn died(&mut self) -> String {
        match self.died.recv().await {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }

    /// At shutdown, after the daemon's client said its last word: lets the
    /// broker hand what it holds (the last `end` events, `offline`, QoS 2
    /// handshakes) to its subscribers before the process ends with it.
    pub async fn settle(&self) {
        let waited = self
            .deliveries
            .settle(Duration::from_millis(150), Duration::from_secs(2))
            .await;
        tracing::debug!("embedded broker's deliveries settled in {waited:?}");
    }
}

/// When the gate last forwarded bytes from rumqttd to any client: the broker
/// lives in the daemon's process, so before the daemon exits it waits for
/// these to fall quiet, or the `end` events and `offline` it has just
/// published would die in rumqttd's queues.
#[derive(Clone)]
pub struct Deliveries {
    base: Instant,
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Deliveries {
    fn new() -> Deliveries {
        Deliveries {
            base: Instant::now(),
            last_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until nothing has been forwarded for `quiet` (counted from
    /// the call at the earliest, so a delivery about to start is waited
    /// for), or until `limit` has passed. Returns how long it waited.
    pub async fn settle(&self, quiet: Duration, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let last =
                Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
            let since_last = self.base.elapsed().saturating_sub(last);
            if (t0.elapsed() >= quiet && since_last >= quiet) || t0.elapsed() >= limit {
                return t0.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

const DAEMON_USER: &str = "fer-edge-daemon";
const GATE_USER: &str = "fer-edge-gate";

/// Starts rumqttd and the gate; returns once both accept MQTT connections.
pub fn start(settings: BrokerSettings) -> Result<EmbeddedBroker, BrokerError> {
    let addr = settings.listen;
    // A certificate that cannot serve fails before anything starts.
    let tls = match &settings.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key).map_err(BrokerError::Start)?),
        None => None,
    };
    let public = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    let start_err = |what: &str, e: std::io::Error| BrokerError::Start(format!("{what}: {e}"));
    let v4 = free_loopback_port().map_err(|e| start_err("no free loopback port", e))?;
    let v5 = free_loopback_port().map_err(|e| start_err("no free loopback port", e))?;
    let daemon_secret = random_secret().map_err(|e| start_err("/dev/urandom", e))?;
    let gate_secret = random_secret().map_err(|e| start_err("/dev/urandom", e))?;
    let logins: HashMap<String, String> = [
        (DAEMON_USER.to_string(), daemon_secret.clone()),
        (GATE_USER.to_string(), gate_secret.clone()),
    ]
    .into_iter()
    .collect();
    let (died_tx, died) = mpsc::unbounded_channel();
    watch_panics(died_tx.clone());
    let deliveries = Deliveries::new();

    let config = rumqttd_config(v4, v5, logins);
    let tx = died_tx.clone();
    std::thread::Builder::new()
        .name(THREAD_BROKER.into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            let why = match broker.start() {
                Ok(()) => "the embedded MQTT broker's listeners stopped".to_string(),
                Err(e) => format!("the embedded MQTT broker stopped: {e}"),
            };
            let _ = tx.send(why);
        })
        .map_err(|e| start_err("cannot start the broker thread", e))?;

    for (port, level) in [(v4, 4), (v5, 5)] {
        let a = SocketAddr::from(([127, 0, 0, 1], port));
        wait_ready(a, level, (GATE_USER, &gate_secret))?;
    }

    public
        .set_nonblocking(true)
        .map_err(|e| start_err("listen socket", e))?;
    let over_tls = tls.is_some();
    let gate = Arc::new(Gate {
        settings,
        upstream_v4: SocketAddr::from(([127, 0, 0, 1], v4)),
        upstream_v5: SocketAddr::from(([127, 0, 0, 1], v5)),
        login: (GATE_USER.to_string(), gate_secret),
        throttle: Throttle::default(),
        tls,
        retained: Mutex::new(RetainedStore::default()),
        deliveries: deliveries.clone(),
    });
    let tx = died_tx;
    std::thread::Builder::new()
        .name(THREAD_GATE.into())
        .spawn(move || {
            let why = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(gate.serve(public)),
                Err(e) => format!("the embedded MQTT broker's gate cannot start: {e}"),
            };
            let _ = tx.send(why);
        })
        .map_err(|e| start_err("cannot start the gate thread", e))?;
    tracing::info!(
        %addr,
        "embedded MQTT broker listening (MQTT 3.1.1 and 5{})",
        if over_tls { ", TLS" } else { "" }
    );
    Ok(EmbeddedBroker {
        internal: SocketAddr::from(([127, 0, 0, 1], v4)),
        daemon_login: (DAEMON_USER.to_string(), daemon_secret),
        died,
        deliveries,
    })
}

/// The client id that fires `FER_EDGE_FAULT=broker-panic` (debug builds).
#[cfg(debug_assertions)]
const FAULT_CLIENT_ID: &str = "fer-edge-fault-broker-panic";

const THREAD_BROKER: &str = "mqtt-broker";
const THREAD_GATE: &str = "mqtt-gate";
const THREAD_V4: &str = "fer-edge-v4";
const THREAD_V5: &str = "fer-edge-v5";
/// Every thread the embedded broker runs on: ours, rumqttd's router
/// (`router-{Config::id}`, id 0) and its listeners (named after their
/// `ServerSettings::name`), whose tokio runtimes also run each client's
/// connection task.
pub const BROKER_THREADS: [&str; 5] =
    [THREAD_BROKER, THREAD_GATE, "router-0", THREAD_V4, THREAD_V5];

/// Where panics on broker threads are reported: one sender per running broker.
static PANIC_WATCHERS: Mutex<Vec<mpsc::UnboundedSender<String>>> = Mutex::new(Vec::new());

/// Adds `tx` to the watchers and, once per process, chains a panic hook in
/// front of the existing one (which still prints the panic).
fn watch_panics(tx: mpsc::UnboundedSender<String>) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    {
        // A poisoned lock still holds the list: never skip a watcher.
        let mut w = PANIC_WATCHERS.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|t| !t.is_closed());
        w.push(tx);
    }
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if let Some(name) = thread.name().filter(|n| BROKER_THREADS.contains(n)) {
                let why = panic_reason(name, info);
                // Never panic inside the hook: a poisoned lock is still readable.
                let w = PANIC_WATCHERS.lock().unwrap_or_else(|p| p.into_inner());
                for t in w.iter() {
                    let _ = t.send(why.clone());
                }
            }
            previous(info);
        }));
    });
}

fn panic_reason(thread: &str, info: &std::panic::PanicHookInfo<'_>) -> String {
    let what = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".into());
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    format!("the embedded MQTT broker panicked on its {thread} thread ({what}{at})")
}

fn rumqttd_config(v4: u16, v5: u16, logins: HashMap<String, String>) -> Config {
    let server = |name: &str, port: u16| ServerSettings {
        name: name.into(),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PACKET_BYTES,
            max_inflight_count: 200,
            auth: Some(logins.clone()),
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 256,
            max_outgoing_packet_count: 200,
            // Small commit-log segments keep the daemon's memory bounded
            // (rumqttd's example config uses 100 MB segments).
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some([("1".to_string(), server(THREAD_V4, v4))].into()),
        v5: Some([("1".to_string(), server(THREAD_V5, v5))].into()),
        ..Default::default()
    }
}

fn free_loopback_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// 32 hex characters from the kernel's random source.
fn random_secret() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Waits until rumqttd answers a real MQTT login on `addr` (a bare TCP
/// probe would make it log a broken CONNECT).
fn wait_ready(addr: SocketAddr, level: u8, login: (&str, &str)) -> Result<(), BrokerError> {
    let t0 = Instant::now();
    let connect = Connect {
        protocol_name: "MQTT".into(),
        level,
        clean_start: true,
        keep_alive: 5,
        properties: Vec::new(),
        client_id: format!("fer-edge-probe-{level}"),
        will: None,
        username: Some(login.0.into()),
        password: Some(login.1.as_bytes().to_vec()),
    };
    while t0.elapsed() < Duration::from_secs(5) {
        let probe = || -> std::io::Result<bool> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(&connect.encode())?;
            let mut ack = [0u8; 4];
            s.read_exact(&mut ack)?;
            let ok = ack[0] == 0x20 && ack[3] == 0;
            // DISCONNECT (v5: with reason 0, properties omitted).
            let _ = s.write_all(if level == 5 {
                &[0xE0, 1, 0][..]
            } else {
                &[0xE0, 0]
            });
            Ok(ok)
        };
        if let Ok(true) = probe() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotReady {
        addr,
        waited_ms: t0.elapsed().as_millis(),
    })
}

/// Logs a refusal at most once per [`WARN_EVERY`] per key.
#[derive(Default)]
struct Throttle(Mutex<HashMap<String, Instant>>);

impl Throttle {
    fn allow(&self, key: String) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if seen.len() > 4096 {
            seen.retain(|_, t| now.duration_since(*t) < WARN_EVERY);
        }
        match seen.get(&key) {
            Some(t) if now.duration_since(*t) < WARN_EVERY => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

struct Gate {
    settings: BrokerSettings,
    upstream_v4: SocketAddr,
    upstream_v5: SocketAddr,
    login: (String, String),
    throttle: Throttle,
    tls: Option<tokio_rustls::TlsAcceptor>,
    retained: Mutex<RetainedStore>,
    deliveries: Deliveries,
}

/// Most retained messages clients may keep in the embedded broker, outside
/// fer-edge's prefix (fer-edge's own retained topics are a handful).
pub const MAX_RETAINED_TOPICS: usize = 1000;
/// Most bytes of retained payloads clients may keep there.
pub const MAX_RETAINED_BYTES: usize = 16 * 1024 * 1024;

/// What the gate does with a client's retained PUBLISH.
#[derive(Debug, PartialEq)]
enum Retain {
    /// Forward as sent: stored (or cleared, for an empty payload).
    Keep,
    /// The store is full: forward to today's subscribers without the retain
    /// flag, so that nothing is stored.
    Strip,
}

/// The gate's account of the retained messages that passed through it,
/// bounded by topic count and payload bytes (rumqttd's store has no bound:
/// 2,000 retained 250 KB publishes once took the daemon to 864 MB).
#[derive(Debug, Default)]
struct RetainedStore {
    sizes: HashMap<String, usize>,
    bytes: usize,
    /// Retained publishes forwarded without their retain flag.
    stripped: u64,
}

impl RetainedStore {
    fn admit(&mut self, topic: &str, payload: usize) -> Retain {
        let old = self.sizes.get(topic).copied();
        if payload == 0 {
            if let Some(old) = self.sizes.remove(topic) {
                self.bytes -= old;
            }
            return Retain::Keep;
        }
        let count_after = self.sizes.len() + usize::from(old.is_none());
        let bytes_after = self.bytes - old.unwrap_or(0) + payload;
        if count_after > MAX_RETAINED_TOPICS || bytes_after > MAX_RETAINED_BYTES {
            self.stripped += 1;
            return Retain::Strip;
        }
        self.sizes.insert(topic.to_string(), payload);
        self.bytes = bytes_after;
        Retain::Keep
    }
}

/// A TLS server config (TLS 1.2 and 1.3, ring) from PEM bytes.
fn tls_acceptor(cert: &[u8], key: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    let chain = crate::pem::chain(cert).map_err(|e| format!("mqtt.broker.tls_cert_file {e}"))?;
    let key = crate::pem::key(key).map_err(|e| format!("mqtt.broker.tls_key_file {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| {
        format!("mqtt.broker.tls_cert_file and tls_key_file do not make a usable pair: {e}")
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What the gate decided about a CONNECT.
#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    Refuse(Refusal, String),
}

impl Gate {
    async fn serve(self: Arc<Gate>, listener: TcpListener) -> String {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return format!("the embedded MQTT broker's gate cannot listen: {e}"),
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        self.warn(
                            peer,
                            "",
                            "full",
                            &format!(
                                "was turned away: {MAX_CLIENTS} clients are connected already"
                            ),
                        );
                        drop(stream);
                        continue;
                    };
                    let gate = self.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let _ = stream.set_nodelay(true);
                        match gate.tls.clone() {
                            None => gate.connection(stream, peer).await,
                            Some(acceptor) => {
                                let handshake =
                                    tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream));
                                match handshake.await {
                                    Ok(Ok(tls)) => gate.connection(tls, peer).await,
                                    Ok(Err(e)) => gate.warn(
                                        peer,
                                        "",
                                        "tls",
                                        &format!("failed the TLS handshake ({e}): does it trust the CA that signed mqtt.broker.tls_cert_file, and connect by a name on it?"),
                                    ),
                                    Err(_) => {}
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, keep serving.
                    if self.throttle.allow("accept".into()) {
                        tracing::warn!("embedded MQTT broker cannot accept a connection: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Decides about a client's CONNECT (pure: unit-tested).
    fn judge(&self, c: &Connect) -> Verdict {
        let s = &self.settings;
        if c.level != 4 && c.level != 5 {
            let version = match c.level {
                3 => "MQTT 3.1".to_string(),
                n => format!("protocol level {n}"),
            };
            return Verdict::Refuse(
                Refusal::ProtocolVersion,
                format!("speaks {version} ({:?}), which the embedded broker does not serve: use MQTT 3.1.1 or 5 (mosquitto_sub -V mqttv311 or -V mqttv5; paho MQTTv311 or MQTTv5)", c.protocol_name),
            );
        }
        if c.protocol_name != "MQTT" {
            return Verdict::Refuse(
                Refusal::ProtocolVersion,
                format!(
                    "names its protocol {:?} instead of \"MQTT\"",
                    c.protocol_name
                ),
            );
        }
        if c.client_id == s.daemon_client_id {
            return Verdict::Refuse(
                Refusal::ClientId,
                format!("asks for fer-edge's own client id {:?}, which would knock the daemon off: give the client its own id", c.client_id),
            );
        }
        if !c.client_id.is_empty() {
            if let Err(e) = names::client_id("its client id", &c.client_id) {
                return Verdict::Refuse(Refusal::ClientId, e);
            }
        }
        match (&s.users, &c.username) {
            (Some(users), Some(user)) => {
                let pw = c.password.as_deref().unwrap_or_default();
                if !users.verify(user, pw) {
                    return Verdict::Refuse(
                        Refusal::BadLogin,
                        format!("gave a wrong password or an unknown user {user:?} (see [mqtt.broker] users_file)"),
                    );
                }
            }
            (Some(_), None) if !s.allow_anonymous => {
                return Verdict::Refuse(
                    Refusal::NotAuthorized,
                    "sent no user name, and the embedded broker requires a login ([mqtt.broker] users_file)".into(),
                );
            }
            _ => {}
        }
        if let Some(w) = &c.will {
            if wire::under_prefix(&w.topic, &s.protected_prefix) {
                return Verdict::Refuse(
                    Refusal::NotAuthorized,
                    format!("sets a last will on {:?}, under fer-edge's topic prefix {:?}, where only fer-edge publishes", w.topic, s.protected_prefix),
                );
            }
        }
        Verdict::Pass
    }

    fn warn(&self, peer: SocketAddr, client_id: &str, kind: &str, message: &str) {
        if self.throttle.allow(format!("{}|{kind}", peer.ip())) {
            tracing::warn!(
                "embedded MQTT broker refused a client at {peer} (client id {client_id:?}): it {message}"
            );
        }
    }

    async fn connection<S>(self: Arc<Gate>, stream: S, peer: SocketAddr)
    where
        S: AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (read_half, mut client_w) = tokio::io::split(stream);
        let mut client_r = BufReader::new(read_half);
        let first = match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut client_r)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "MQTT client left before its CONNECT: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "MQTT client sent no CONNECT within {CONNECT_TIMEOUT:?}");
                return;
            }
        };
        if first.0 >> 4 != wire::CONNECT {
            self.warn(peer, "", "first", "did not start with a CONNECT packet");
            return;
        }
        let mut connect = match Connect::parse(&first.1) {
            Ok(c) => c,
            Err(e) => {
                self.warn(
                    peer,
                    "",
                    "malformed",
                    &format!("sent a CONNECT that cannot be read ({e})"),
                );
                return;
            }
        };
        // Fault injection, debug builds only (tests/broker_trust.rs): a panic
        // on a broker thread, as a rumqttd bug once caused, must stop the
        // daemon. Only the client that asks for it triggers it, so a stray
        // connection (a client of an earlier test retrying a reused port)
        // cannot fire it before the test is ready.
        #[cfg(debug_assertions)]
        if connect.client_id == FAULT_CLIENT_ID
            && std::env::var_os("FER_EDGE_FAULT").is_some_and(|v| v == "broker-panic")
        {
            panic!("fault injected by FER_EDGE_FAULT=broker-panic");
        }
        if let Verdict::Refuse(why, message) = self.judge(&connect) {
            self.warn(peer, &connect.client_id, &format!("{why:?}"), &message);
            let _ = client_w
                .write_all(&wire::connack_refusal(connect.level, why))
                .await;
            let _ = client_w.shutdown().await;
            return;
        }
        let level = connect.level;
        let upstream = if level == 5 {
            self.upstream_v5
        } else {
            self.upstream_v4
        };
        connect.username = Some(self.login.0.clone());
        connect.password = Some(self.login.1.as_bytes().to_vec());
        let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
            tracing::error!(
                "embedded MQTT broker: its MQTT {level} listener {upstream} refuses connections"
            );
            return;
        };
        let _ = server.set_nodelay(true);
        let (mut server_r, mut server_w) = server.into_split();
        if server_w.write_all(&connect.encode()).await.is_err() {
            return;
        }
        let client_id = connect.client_id.clone();
        let downstream = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = server_r.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                self.deliveries.touch();
                client_w.write_all(&buf[..n]).await?;
                self.deliveries.touch();
            }
        };
        let upstream = async {
            let mut aliases = HashMap::new();
            loop {
                let (mut first, body) = read_packet(&mut client_r).await?;
                if first >> 4 == wire::PUBLISH {
                    let topic = wire::publish_topic(first, &body, level, &mut aliases)
                        .map_err(std::io::Error::other)?;
                    if wire::under_prefix(&topic, &self.settings.protected_prefix) {
                        self.warn(
                            peer,
                            &client_id,
                            "publish",
                            &format!("published to {topic:?}, under fer-edge's topic prefix {:?}, where only fer-edge publishes: connection closed", self.settings.protected_prefix),
                        );
                        return Ok::<(), std::io::Error>(());
                    }
                    if first & 0x01 == 1 {
                        let payload = wire::publish_payload_len(first, &body, level)
                            .map_err(std::io::Error::other)?;
                        let (verdict, stripped) = {
                            let mut store = self.retained.lock().unwrap_or_else(|p| p.into_inner());
                            (store.admit(&topic, payload), store.stripped)
                        };
                        if verdict == Retain::Strip {
                            first &= !0x01;
                            self.warn(
                                peer,
                                &client_id,
                                "retained",
                                &format!("published a retained message to {topic:?} while the broker's retained store is full ({MAX_RETAINED_TOPICS} topics or {} MiB from clients): delivered to current subscribers but not retained ({stripped} so far); clear old ones with an empty retained publish", MAX_RETAINED_BYTES >> 20),
                            );
                        }
                    }
                }
                let mut header = vec![first];
                wire::write_varint(body.len(), &mut header);
                server_w.write_all(&header).await?;
                server_w.write_all(&body).await?;
            }
        };
        tokio::select! {
            _ = downstream => {}
            r = upstream => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "MQTT client connection ended: {e}");
                }
            }
        }
    }
}

/// Reads one MQTT packet: its first byte and its body.
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let first = r.read_u8().await?;
    let mut len_bytes = Vec::with_capacity(4);
    let len = loop {
        len_bytes.push(r.read_u8().await?);
        match wire::read_varint(&len_bytes).map_err(std::io::Error::other)? {
            Some((len, _)) => break len,
            None => continue,
        }
    };
    if len > MAX_PACKET_BYTES {
        return Err(std::io::Error::other(format!(
            "a packet of {len} bytes is over the {MAX_PACKET_BYTES}-byte limit"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok((first, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(users: Option<&str>, allow_anonymous: bool) -> Gate {
        Gate {
            settings: BrokerSettings {
                listen: "127.0.0.1:1883".parse().unwrap(),
                users: users.map(|u| Users::parse(u).unwrap()),
                allow_anonymous,
                protected_prefix: "fer-edge".into(),
                daemon_client_id: "fer-edge-kiosk-1".into(),
                tls: None,
            },
            upstream_v4: "127.0.0.1:1".parse().unwrap(),
            upstream_v5: "127.0.0.1:2".parse().unwrap(),
            login: ("g".into(), "s".into()),
            throttle: Throttle::default(),
            tls: None,
            retained: Mutex::new(RetainedStore::default()),
            deliveries: Deliveries::new(),
        }
    }

    fn connect(level: u8, id: &str, login: Option<(&str, &str)>) -> Connect {
        Connect {
            protocol_name: if level == 3 { "MQIsdp" } else { "MQTT" }.into(),
            level,
            clean_start: true,
            keep_alive: 30,
            properties: vec![],
            client_id: id.into(),
            will: None,
            username: login.map(|l| l.0.into()),
            password: login.map(|l| l.1.as_bytes().to_vec()),
        }
    }

    fn refusal(v: Verdict) -> Refusal {
        match v {
            Verdict::Refuse(r, _) => r,
            Verdict::Pass => panic!("passed"),
        }
    }

    #[test]
    fn both_protocol_versions_pass_and_mqtt_31_is_refused_by_version() {
        let g = gate(None, false);
        assert_eq!(g.judge(&connect(4, "ui", None)), Verdict::Pass);
        assert_eq!(g.judge(&connect(5, "", None)), Verdict::Pass);
        assert_eq!(
            refusal(g.judge(&connect(3, "ui", None))),
            Refusal::ProtocolVersion
        );
    }

    #[test]
    fn the_daemons_client_id_and_ids_rumqttd_rejects_are_refused() {
        let g = gate(None, false);
        assert_eq!(
            refusal(g.judge(&connect(4, "fer-edge-kiosk-1", None))),
            Refusal::ClientId
        );
        assert_eq!(
            refusal(g.judge(&connect(4, "ui$1", None))),
            Refusal::ClientId
        );
    }

    #[test]
    fn with_a_users_file_only_a_right_login_passes() {
        let g = gate(Some("robot:pw"), false);
        assert_eq!(
            g.judge(&connect(4, "r", Some(("robot", "pw")))),
            Verdict::Pass
        );
        assert_eq!(
            refusal(g.judge(&connect(4, "r", Some(("robot", "pW"))))),
            Refusal::BadLogin
        );
        assert_eq!(
            refusal(g.judge(&connect(5, "r", None))),
            Refusal::NotAuthorized
        );
        let open = gate(Some("robot:pw"), true);
        assert_eq!(open.judge(&connect(5, "r", None)), Verdict::Pass);
    }

    #[test]
    fn a_will_under_the_prefix_is_refused_elsewhere_passes() {
        let g = gate(None, false);
        let mut c = connect(4, "ui", None);
        c.will = Some(wire::Will {
            qos: 1,
            retain: true,
            properties: vec![],
            topic: "fer-edge/kiosk-1/status".into(),
            payload: b"offline".to_vec(),
        });
        assert_eq!(refusal(g.judge(&c)), Refusal::NotAuthorized);
        c.will.as_mut().unwrap().topic = "robots/r1/status".into();
        assert_eq!(g.judge(&c), Verdict::Pass);
    }

    #[test]
    fn the_retained_store_is_bounded_by_topics_and_bytes_and_clearing_frees_room() {
        let mut s = RetainedStore::default();
        for i in 0..MAX_RETAINED_TOPICS {
            assert_eq!(s.admit(&format!("t/{i}"), 10), Retain::Keep);
        }
        assert_eq!(s.admit("t/new", 10), Retain::Strip, "one topic too many");
        assert_eq!(
            s.admit("t/5", 20),
            Retain::Keep,
            "replacing needs no new slot"
        );
        assert_eq!(s.admit("t/5", 0), Retain::Keep, "an empty payload clears");
        assert_eq!(
            s.admit("t/new", 10),
            Retain::Keep,
            "room again after a clear"
        );
        assert_eq!(s.stripped, 1);
        let mut s = RetainedStore::default();
        let big = MAX_RETAINED_BYTES / 4;
        for i in 0..4 {
            assert_eq!(s.admit(&format!("b/{i}"), big), Retain::Keep);
        }
        assert_eq!(s.admit("b/4", 1), Retain::Strip, "bytes at the bound");
        assert_eq!(
            s.admit("b/0", big - 1),
            Retain::Keep,
            "a smaller replacement fits"
        );
        assert_eq!(s.admit("b/4", 1), Retain::Keep);
        assert_eq!(s.bytes, MAX_RETAINED_BYTES);
    }

    #[test]
    fn the_throttle_lets_one_warning_through_per_key() {
        let t = Throttle::default();
        assert!(t.allow("a".into()));
        assert!(!t.allow("a".into()));
        assert!(t.allow("b".into()));
    }
}
