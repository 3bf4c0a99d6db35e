//! The MQTT client: the pipeline's never-blocking [`Publisher`] handle, the
//! event-loop task (polls the connection, backs off after errors, tells
//! apart why a connection failed) and the publisher task (drains the
//! per-frame queue and the outbox into the client; re-queues what a
//! session reset dropped; publishes the retained state again after a
//! reconnect); and [`Connection`], which hands over what arrives on the
//! subscribed topics and shuts it all down cleanly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Broker, Event, LastWill, MqttOptions, Packet, PublishNoticeError, PublishOptions,
    QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;

use super::config::MqttConfig;
use super::names::Topics;
use super::secrets::Secrets;
use super::{Message, PublishError};
use crate::capture::backoff_delay;
use crate::telemetry::{Counter, Gauge, Stage, Telemetry};

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
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
            static FULL: crate::logging::Throttle = crate::logging::Throttle::new(10);
            if let Some(n) = FULL.hit() {
                tracing::warn!(
                    "MQTT outbox full or closed: {n} message(s) dropped since the last such line ({e}; all counted in stats mqtt.dropped_queue_full)"
                );
            }
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
    incoming: mpsc::UnboundedReceiver<Incoming>,
}

/// A message that arrived on a subscribed topic: topic and payload.
pub type Incoming = (String, Vec<u8>);

/// Builds the client and spawns its tasks on the current Tokio runtime.
/// With `embedded` (the broker the pipeline started, see
/// [`super::start_embedded_broker`]) it connects to that broker's internal
/// listener with the daemon's own login; otherwise to `[mqtt] host:port`.
/// It subscribes to `subscriptions` at every connection; what arrives
/// comes out of [`Connection::incoming`].
pub fn start(
    cfg: &MqttConfig,
    secrets: &Secrets,
    embedded: Option<&crate::broker::EmbeddedBroker>,
    telemetry: Arc<Telemetry>,
    subscriptions: Vec<String>,
) -> Result<(Publisher, Connection), PublishError> {
    let topics = cfg.topics();
    let mut opts = options(cfg, secrets, embedded, cfg.client_id());
    opts.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        qos(cfg.qos_events),
        true,
    ));
    let (client, eventloop) = AsyncClient::builder(opts)
        .capacity(64)
        .try_build()
        .map_err(|e| PublishError::Options(e.to_string()))?;

    let (frames_tx, frames_rx) = mpsc::channel(cfg.queue_capacity);
    let (outbox_tx, outbox_rx) = mpsc::channel(cfg.outbox_capacity);
    let (reconnected_tx, reconnected_rx) = mpsc::unbounded_channel();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let (incoming_tx, incoming) = mpsc::unbounded_channel();

    let ev_task = tokio::spawn(event_loop(
        eventloop,
        cfg.clone(),
        telemetry.clone(),
        reconnected_tx,
        shutting_down.clone(),
        Subscriptions {
            client: client.clone(),
            topics: subscriptions,
            incoming: incoming_tx,
        },
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
        retained: Retained::new(topics.status()),
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
        incoming,
    };
    Ok((publisher, conn))
}

impl Connection {
    /// The next message on a subscribed topic; pending forever once the
    /// client has stopped.
    pub async fn incoming(&mut self) -> Incoming {
        match self.incoming.recv().await {
            Some(m) => m,
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

/// The connection options `run` uses: the embedded broker's internal
/// listener with the daemon's own login, or `[mqtt] host:port` with the
/// configured login and TLS.
fn options(
    cfg: &MqttConfig,
    secrets: &Secrets,
    embedded: Option<&crate::broker::EmbeddedBroker>,
    client_id: String,
) -> MqttOptions {
    let (host, port, login) = if let Some(b) = embedded {
        (
            b.internal.ip().to_string(),
            b.internal.port(),
            Some(b.daemon_login.clone()),
        )
    } else {
        let (h, p) = (cfg.host.clone(), cfg.port);
        let login = cfg
            .username
            .as_ref()
            .map(|u| (u.clone(), secrets.password.clone().unwrap_or_default()));
        (h, p, login)
    };
    let mut opts = MqttOptions::new(client_id, Broker::tcp(host, port));
    opts.set_keep_alive(cfg.keep_alive_s.max(1));
    if let Some((user, password)) = login {
        opts.set_credentials(user, password.into_bytes());
    }
    if cfg.tls.enabled && !cfg.broker.embedded {
        opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: secrets.ca.clone().unwrap_or_default(),
            alpn: None,
            client_auth: secrets.client_auth.clone(),
        }));
    }
    opts
}

/// `check`'s proof that `run` will reach the external broker: one
/// connection with `run`'s address, login and TLS (under a client id of
/// its own, `<client_id>-check`, so a running daemon is not knocked off),
/// closed at once. The error names the cause and the fix, as `run`'s log
/// would.
pub async fn probe(cfg: &MqttConfig, secrets: &Secrets, timeout: Duration) -> Result<(), String> {
    let opts = options(cfg, secrets, None, format!("{}-check", cfg.client_id()));
    let (client, mut eventloop) = AsyncClient::builder(opts)
        .capacity(4)
        .try_build()
        .map_err(|e| e.to_string())?;
    let connected = tokio::time::timeout(timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(diagnose(&e, cfg).1),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "no answer from the MQTT broker at {}:{} within {} s: is it running and reachable (mqtt.host, mqtt.port)?",
            cfg.host,
            cfg.port,
            timeout.as_secs()
        ))
    });
    if connected.is_ok() {
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
    }
    connected
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

/// What the event loop subscribes to at each connection, and where it
/// hands what arrives.
struct Subscriptions {
    client: AsyncClient,
    topics: Vec<String>,
    incoming: mpsc::UnboundedSender<Incoming>,
}

async fn event_loop(
    mut eventloop: rumqttc::EventLoop,
    cfg: MqttConfig,
    telemetry: Arc<Telemetry>,
    reconnected: mpsc::UnboundedSender<()>,
    shutting_down: Arc<AtomicBool>,
    subs: Subscriptions,
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
                // Clean sessions forget subscriptions: make them again.
                // Never awaited here: this task is the one that polls.
                for t in &subs.topics {
                    if let Err(e) = subs.client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                        tracing::warn!("cannot subscribe to {t}: {e}");
                    }
                }
                let _ = reconnected.send(());
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                let _ = subs.incoming.send((topic, p.payload.to_vec()));
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
    /// The retained state, published again after a reconnect.
    retained: Retained,
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
                for (topic, payload) in s.retained.latest.clone() {
                    publish_event(&s, Message { topic, payload, retain: true, captured_at: None }, event_qos).await;
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
                if seq == 0 && s.retained.is_stale(&msg) {
                    // A retained message re-queued after a session reset
                    // whose topic has a newer payload since (re-sent by
                    // the reconnect): sending it again would put an old
                    // track list over the new one, and a subscriber would
                    // end a face that is still there.
                    tracing::debug!("not re-sending a stale retained message on {}", msg.topic);
                } else {
                    s.retained.remember(&msg);
                    publish_event(&s, msg, event_qos).await;
                }
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

/// The latest payload of every retained topic but `status` (track list,
/// summary, discovery configs); an empty one (a removal) is sent once and
/// forgotten. `status` is the publisher's own, sent at every connection.
struct Retained {
    latest: std::collections::BTreeMap<String, Vec<u8>>,
    status: String,
}

impl Retained {
    fn new(status: String) -> Retained {
        Retained {
            latest: Default::default(),
            status,
        }
    }

    /// A message this state keeps: retained, and not `status`.
    fn keeps(&self, msg: &Message) -> bool {
        msg.retain && msg.topic != self.status
    }

    /// True for a kept message whose topic's latest payload is another
    /// one: a later message replaced it, or removed it.
    fn is_stale(&self, msg: &Message) -> bool {
        self.keeps(msg)
            && match self.latest.get(&msg.topic) {
                Some(latest) => *latest != msg.payload,
                None => !msg.payload.is_empty(),
            }
    }

    /// Takes a message about to be published as its topic's latest.
    fn remember(&mut self, msg: &Message) {
        if !self.keeps(msg) {
            return;
        }
        if msg.payload.is_empty() {
            self.latest.remove(&msg.topic);
        } else {
            self.latest.insert(msg.topic.clone(), msg.payload.clone());
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

    fn retained(topic: &str, payload: &[u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.to_vec(),
            retain: true,
            captured_at: None,
        }
    }

    #[test]
    fn a_requeued_track_list_older_than_the_latest_is_stale() {
        let mut state = Retained::new("d/status".into());
        state.remember(&retained("d/faces/tracked", b"[5]"));
        assert!(state.is_stale(&retained("d/faces/tracked", b"[]")));
        assert!(!state.is_stale(&retained("d/faces/tracked", b"[5]")));
        // Removed since: only the removal itself may go again.
        state.remember(&retained("d/faces/tracked", b""));
        assert!(state.latest.is_empty());
        assert!(state.is_stale(&retained("d/faces/tracked", b"[5]")));
        assert!(!state.is_stale(&retained("d/faces/tracked", b"")));
        // Status and plain events are never stale, nor kept.
        let status = retained("d/status", b"online");
        assert!(!state.is_stale(&status));
        let event = Message {
            retain: false,
            ..retained("d/events", b"{}")
        };
        assert!(!state.is_stale(&event));
        state.remember(&status);
        state.remember(&event);
        assert!(state.latest.is_empty());
    }
}
