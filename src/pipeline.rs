//! Wiring only: the daemon's threads, the hand-off between them, shutdown.
//!
//! In: a validated [`Config`]. Out: MQTT messages, until the replay ends or
//! SIGTERM/SIGINT/SIGHUP arrives; then every track is ended, `offline` is
//! published, and the process exits 0.
//!
//! ```text
//! capture::feed::Feed ──(newest wins)──> inference thread ──Publisher──> MQTT tasks (tokio)
//!   FrameSource on its thread            Follower::step_recorded → Announcer  │
//!                                                            embedded broker (optional) <─┘
//!                                        Home Assistant discovery <── subscribed topics
//!                                        └──> ros2::Ros2Output (DDS thread, optional)
//! ```
//!
//! The capture feed (its mailbox, drop policy and outages) and the
//! [`Follower`] (chain and track core) are the ones `fer-edge calibrate`
//! and `fer-edge bench` run too; this module only connects them to the
//! publisher and the signals. Per-frame errors are logged, counted and
//! skipped; only setup errors end the process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::feed::Feed;
use crate::capture::{self, CaptureError};
use crate::config::Config;
use crate::faces::SetupError;
use crate::follow::Follower;
use crate::publish::announce::{Announcer, Outgoing, Shaping};
use crate::publish::homeassistant::Discovery;
use crate::publish::payload::{self, FrameStamp, SourceMsg, StatsContext, StatsMsg, Wording};
use crate::publish::MqttStats;
use crate::publish::{self, Message, PublishError, Publisher};
use crate::ros2::Ros2Output;
use crate::telemetry::{Counter, Gauge, Telemetry};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("source: {0}")]
    Source(#[from] CaptureError),
    #[error("mqtt: {0}")]
    Publish(#[from] PublishError),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("cannot serve /metrics on {0}: {1}; change [metrics] listen or remove it")]
    Metrics(std::net::SocketAddr, std::io::Error),
    #[error("ros2: {0}")]
    Ros2(#[from] crate::ros2::Ros2Error),
    #[error("{0}; exiting so that the service manager restarts fer-edge")]
    BrokerDied(String),
}

/// Stop signals that arrive before the daemon's own handling starts: while
/// the source opens and the models load (seconds on a small board), the
/// default action would end the process by the signal, which systemd
/// reports as a failure. They are remembered instead, and the daemon stops
/// cleanly (exit 0) as soon as it can.
pub mod early_stop {
    use std::sync::atomic::{AtomicBool, Ordering};

    static STOPPED: AtomicBool = AtomicBool::new(false);

    extern "C" fn remember(_signal: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        STOPPED.store(true, Ordering::SeqCst);
    }

    /// Takes SIGTERM, SIGHUP and SIGINT from here on (tokio's handlers,
    /// installed later, take over and chain to this one).
    pub fn install() {
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
            // SAFETY: `remember` only stores into an atomic, which is
            // async-signal-safe; the handler lives for the whole process.
            unsafe {
                libc::signal(sig, remember as *const () as libc::sighandler_t);
            }
        }
    }

    /// True once a stop signal arrived.
    pub fn requested() -> bool {
        STOPPED.load(Ordering::SeqCst)
    }
}

/// Runs the daemon until the replay ends or a signal arrives.
pub fn run(cfg: Config) -> Result<(), RunError> {
    cfg.source.validate_for_run().map_err(RunError::Config)?;
    // Files (password, certificates, users) are read and checked before
    // anything starts, as `fer-edge check` does.
    let secrets = publish::Secrets::load(&cfg.mqtt)?;
    let source = capture::open_for_run(&cfg.source)?;
    tracing::info!(source = %source.describe(), "source opened");
    let mut follower = Follower::for_source(&cfg, source.is_live())?;
    log_placements(&mut follower, (cfg.source.width, cfg.source.height));
    if early_stop::requested() {
        tracing::info!("stop signal during start-up: exiting before publishing anything");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("fer-edge-io")
        .build()?;
    runtime.block_on(run_async(cfg, &secrets, follower, source))
}

/// Says at start where subscribers find the messages, with a command to
/// watch them.
fn log_where_it_publishes(m: &publish::MqttConfig) {
    // `listen` was validated as an address; one on every interface is
    // reached locally on loopback.
    let (broker, addr) = match m.listen.parse::<std::net::SocketAddr>() {
        Ok(mut a) if m.embedded => {
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            (
                format!("the embedded broker at {}", m.listen),
                (a.ip().to_string(), a.port()),
            )
        }
        _ => (
            format!("the broker at {}:{}", m.host, m.port),
            (m.host.clone(), m.port),
        ),
    };
    tracing::info!(
        "publishing under {}/{}/ on {broker} (watch it: mosquitto_sub -h {} -p {} -t '{}/#' -v)",
        m.topic_prefix,
        m.device_id,
        addr.0,
        addr.1,
        m.topic_prefix
    );
}

/// Says at start which engine and device runs each model.
fn log_placements(follower: &mut Follower, frame: (u32, u32)) {
    match follower.chain_mut().placements(frame) {
        Ok(list) => {
            for p in list {
                tracing::info!(model = %p.model, engine = p.engine, "{}", p.placement);
            }
        }
        Err(e) => tracing::warn!(
            "cannot prepare the detector for {}x{}: {e}",
            frame.0,
            frame.1
        ),
    }
}

async fn run_async(
    cfg: Config,
    secrets: &publish::Secrets,
    follower: Follower,
    source: Box<dyn capture::FrameSource>,
) -> Result<(), RunError> {
    let telemetry = Arc::new(Telemetry::default());
    // The embedded broker is a component of its own: started first, watched
    // for its death, and given time to deliver at the end.
    let mut broker = if cfg.mqtt.embedded {
        Some(publish::start_embedded_broker(&cfg.mqtt, secrets)?)
    } else {
        None
    };
    let running = follower.chain().emotion_model().manifest();
    let mut discovery = Discovery::new(
        &cfg.homeassistant,
        &cfg.mqtt,
        &format!("{} {}", running.name, running.version),
    );
    let (publisher, mut connection) = publish::start(
        &cfg.mqtt,
        secrets,
        broker.as_ref(),
        telemetry.clone(),
        discovery.subscriptions(),
    )?;
    log_where_it_publishes(&cfg.mqtt);
    for m in discovery.start() {
        publisher.send_event(m);
    }
    if let Some(addr) = cfg.metrics.listen {
        let p = publisher.clone();
        crate::metrics::serve(
            addr,
            telemetry.clone(),
            Arc::new(move || p.record_queue_depths()),
        )
        .await
        .map_err(|e| RunError::Metrics(addr, e))?;
    }
    let manifest = follower.chain().emotion_model().manifest();
    // What the messages say about the model, worked out once.
    let wording = Wording::from_config(
        &cfg.mqtt,
        format!("{}@{}", manifest.name, manifest.version),
        follower.chain().is_calibrated(),
    );
    let context = StatsContext {
        source: source.describe(),
        backend: follower.chain().engine_label(),
        model: wording.model.clone(),
        model_trained: manifest.trained,
    };
    let announcer = Announcer::new(cfg.mqtt.topics(), wording, Shaping::from_config(&cfg.mqtt));
    let ros2 = Ros2Output::start(&cfg.ros2)?;
    let feed = Arc::new(Feed::start(source, telemetry.clone())?);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let inference = {
        let (feed, telemetry, publisher) = (feed.clone(), telemetry.clone(), publisher.clone());
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                inference_loop(
                    follower,
                    &feed,
                    &telemetry,
                    &publisher,
                    announcer,
                    ros2.as_ref(),
                );
                if let Some(r) = ros2 {
                    r.finish();
                }
                let _ = done_tx.send(());
            })?
    };

    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);
    let watchdog_every = watchdog_interval();
    let stats_every = if cfg.mqtt.stats_interval_s > 0.0 {
        Some(Duration::from_secs_f64(cfg.mqtt.stats_interval_s))
    } else {
        None
    };
    let mut stats_tick = tokio::time::interval(stats_every.unwrap_or(Duration::from_secs(3600)));
    stats_tick.tick().await;
    let mut watchdog_tick =
        tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    // Home Assistant births coalesced into one announcement per window.
    let mut reannounce_tick = tokio::time::interval(Duration::from_secs(1));
    // The retained `source` state, looked at once a second.
    let mut source_tick = tokio::time::interval(Duration::from_secs(1));
    let mut source_state = SourceState::default();
    let mut last_progress = 0u64;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // SIGHUP (the terminal or SSH session that started the daemon closed)
    // ends it as SIGTERM does: every track ended, `offline` sent. There is
    // no configuration reload.
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let started = Instant::now();
    let stats = |telemetry: &Telemetry, publisher: &Publisher| {
        stats_message(telemetry, publisher, &context, started)
    };

    let mut finished_by_itself = false;
    let mut broker_died = None;
    loop {
        if early_stop::requested() {
            tracing::info!("stop signal: shutting down");
            break;
        }
        tokio::select! {
            _ = &mut done_rx => {
                finished_by_itself = true;
                if cfg.source.kind == capture::SourceKind::Replay {
                    tracing::info!("the replay ended: shutting down ([source] loop = true replays it until stopped)");
                }
                break;
            }
            why = embedded_broker_died(&mut broker) => {
                tracing::error!("{why}: shutting down");
                broker_died = Some(why);
                break;
            }
            (topic, payload) = connection.incoming() => {
                let now = started.elapsed().as_secs_f64();
                for m in discovery.on_message(&topic, &payload, now) {
                    publisher.send_event(m);
                }
            }
            _ = reannounce_tick.tick(), if discovery.pending() => {
                for m in discovery.due(started.elapsed().as_secs_f64()) {
                    publisher.send_event(m);
                }
            }
            _ = source_tick.tick() => {
                if let Some(m) = source_state.changed(&feed, publisher.topics()) {
                    publisher.send_event(m);
                }
            }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sighup.recv() => { tracing::info!("SIGHUP: shutting down as for SIGTERM"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = stats_tick.tick(), if stats_every.is_some() => {
                publisher.send_event(stats(&telemetry, &publisher));
                // `systemctl status` shows why a device publishes nothing.
                let mut health = MqttStats::from(&telemetry.totals()).health();
                if let Some(o) = feed.outage() {
                    health = format!("{health}; SOURCE UNAVAILABLE: {}", o.reason);
                }
                notify_systemd(&[sd_notify::NotifyState::Status(&health)]);
            }
            _ = watchdog_tick.tick(), if watchdog_every.is_some() => {
                // Only a pipeline that makes progress feeds the watchdog,
                // or one whose camera is down and being reopened with
                // backoff: restarting the daemon would not bring it back.
                let now = telemetry.count(Counter::FramesProcessed);
                if now != last_progress || feed.outage().is_some() {
                    notify_systemd(&[sd_notify::NotifyState::Watchdog]);
                    last_progress = now;
                }
            }
        }
    }
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    feed.close();
    if !finished_by_itself {
        // The inference thread ends its tracks and returns within a frame's time.
        let _ = tokio::time::timeout(Duration::from_millis(700), &mut done_rx).await;
    }
    publisher.send_event(stats(&telemetry, &publisher));
    let deadline = if finished_by_itself {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(250)
    };
    connection.shutdown(&publisher, deadline).await;
    if let Some(b) = &broker {
        b.settle().await;
    }
    drop(inference);
    drop(feed);
    match broker_died {
        Some(why) => Err(RunError::BrokerDied(why)),
        None => Ok(()),
    }
}

fn inference_loop(
    mut follower: Follower,
    feed: &Feed,
    telemetry: &Telemetry,
    publisher: &Publisher,
    mut announcer: Announcer,
    ros2: Option<&Ros2Output>,
) {
    send(publisher, announcer.start(payload::unix_now()));
    while let Some(frame) = feed.take() {
        let step = match follower.step_recorded(frame.timestamp, &frame.image, telemetry) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(seq = frame.seq, "frame skipped: {e}");
                continue;
            }
        };
        let out = &step.output;
        tracing::debug!(seq = frame.seq, t = frame.timestamp, faces = step.faces, detected = out.detected, started = ?out.started, ended = out.ended.len(), "frame");
        let unix = payload::unix_now() - frame.captured_at.elapsed().as_secs_f64();
        let stamp = FrameStamp {
            unix,
            frame_time: frame.timestamp,
            frame_seq: frame.seq,
            width: frame.image.width(),
            height: frame.image.height(),
        };
        send(
            publisher,
            announcer.frame(out, Some((stamp, frame.captured_at)), unix),
        );
        if let Some(r) = ros2 {
            r.send(out, Some(&stamp));
        }
        telemetry.set(Gauge::TracksActive, follower.tracked().len() as u64);
        telemetry.add(Counter::FramesProcessed, 1);
        if feed.is_stopped() {
            // Shutting down: this frame's events are out; end the tracks now.
            break;
        }
    }
    let out = follower.finish();
    send(publisher, announcer.frame(&out, None, payload::unix_now()));
    if let Some(r) = ros2 {
        r.send(&out, None);
    }
    telemetry.set(Gauge::TracksActive, 0);
}

/// Hands one frame's messages to their queues, in order.
fn send(publisher: &Publisher, msgs: Vec<Outgoing>) {
    for m in msgs {
        match m {
            Outgoing::Event(m) => publisher.send_event(m),
            Outgoing::Frame(m) => publisher.send_frame(m),
        }
    }
}

/// The source state last published on `source`: None before the first
/// (sent once the first frame arrives or the first outage starts).
#[derive(Default)]
struct SourceState {
    down: Option<bool>,
}

impl SourceState {
    /// The `source` message to send when the feed's state differs from
    /// what was last published.
    fn changed(&mut self, feed: &Feed, topics: &publish::Topics) -> Option<Message> {
        let outage = feed.outage();
        let down = outage.is_some();
        if self.down == Some(down) || (!down && feed.counts().delivered == 0) {
            return None;
        }
        self.down = Some(down);
        let msg = SourceMsg::new(outage.as_ref().map(|o| o.reason.as_str()));
        Some(Message::json(topics.source(), &msg, true))
    }
}

fn stats_message(
    telemetry: &Telemetry,
    publisher: &Publisher,
    context: &StatsContext,
    started: Instant,
) -> Message {
    publisher.record_queue_depths();
    let msg = StatsMsg::new(
        context,
        telemetry.snapshot(),
        &telemetry.totals(),
        started.elapsed().as_secs_f64(),
    );
    Message::json(publisher.topics().stats(), &msg, false)
}

/// Resolves with the reason if the embedded broker stops; never without one
/// (an external broker's outages are retried, not fatal).
async fn embedded_broker_died(broker: &mut Option<publish::broker::EmbeddedBroker>) -> String {
    match broker {
        Some(b) => b.died().await,
        None => std::future::pending().await,
    }
}

fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }
}

/// Half the systemd watchdog period, when one is configured.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2))
}
