//! Wiring only: the daemon's threads, the hand-off between them, shutdown.
//!
//! In: a validated [`Config`]. Out: MQTT messages, until the replay ends or
//! SIGTERM/SIGINT/SIGHUP arrives; then every track is ended, `offline` is
//! published, and the process exits 0.
//!
//! ```text
//! capture::feed::Feed ──(newest wins)──> inference thread ──> output::Outputs, each frame to each:
//!   FrameSource on its thread            Follower::step_recorded   ├─> publish::MqttOutput ─Publisher─> MQTT tasks (tokio)
//!                                                                  │        embedded broker (optional) <─┘
//!                                                                  └─> ros2::Ros2Output (DDS thread, optional)
//!                                        Home Assistant discovery <── subscribed topics
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
use crate::frame::{unix_now, FrameStamp};
use crate::output::{Captured, Outputs};
use crate::publish::homeassistant::Discovery;
use crate::publish::payload::{SourceMsg, StatsContext, StatsMsg};
use crate::publish::MqttStats;
use crate::publish::{self, Message, MqttOutput, PublishError, Publisher};
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
    let (broker, host, port) = m.endpoint();
    tracing::info!(
        "publishing under {}/{}/ on {broker} (watch it: mosquitto_sub -h {host} -p {port} -t '{}/#' -v)",
        m.topic_prefix,
        m.device_id,
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
    let mut daemon = Daemon::start(&cfg, secrets, follower, source).await?;
    let end = daemon.supervise(&cfg).await?;
    daemon.shutdown(end).await
}

/// The daemon's running parts, started in order by [`Daemon::start`],
/// watched by [`Daemon::supervise`], stopped by [`Daemon::shutdown`].
struct Daemon {
    telemetry: Arc<Telemetry>,
    /// The embedded broker, a component of its own: started first, watched
    /// for its death, and given time to deliver at the end.
    broker: Option<crate::broker::EmbeddedBroker>,
    discovery: Discovery,
    publisher: Publisher,
    connection: publish::Connection,
    feed: Arc<Feed>,
    /// Fires when the inference thread has ended its tracks and returned.
    done: tokio::sync::oneshot::Receiver<()>,
    inference: std::thread::JoinHandle<()>,
    context: StatsContext,
    started: Instant,
}

/// How the daemon's run ended.
struct End {
    /// The source finished (a replay's end), not a signal.
    by_itself: bool,
    /// The embedded broker died: exit so that systemd restarts fer-edge.
    broker_died: Option<String>,
}

impl Daemon {
    /// Starts the components in order: broker, MQTT client and Home
    /// Assistant discovery, /metrics, the ROS 2 output, the capture feed,
    /// then the inference thread; tells systemd it is ready.
    async fn start(
        cfg: &Config,
        secrets: &publish::Secrets,
        follower: Follower,
        source: Box<dyn capture::FrameSource>,
    ) -> Result<Daemon, RunError> {
        let telemetry = Arc::new(Telemetry::default());
        let broker = if cfg.mqtt.broker.embedded {
            Some(publish::start_embedded_broker(&cfg.mqtt, secrets)?)
        } else {
            None
        };
        let running = follower.chain().emotion_model().manifest();
        let discovery = Discovery::new(
            &cfg.homeassistant,
            &cfg.mqtt,
            &format!("{} {}", running.name, running.version),
        );
        let (publisher, connection) = publish::start(
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
        let model = format!("{}@{}", manifest.name, manifest.version);
        let mut outputs = Outputs::default();
        outputs.push(MqttOutput::new(
            &cfg.mqtt,
            publisher.clone(),
            model.clone(),
            follower.chain().is_calibrated(),
        ));
        let ros2 = Ros2Output::start(&cfg.ros2, telemetry.clone())?;
        let context = StatsContext {
            source: source.describe(),
            backend: follower.chain().engine_label(),
            model,
            model_trained: manifest.trained,
            ros2: ros2.is_some(),
        };
        if let Some(r) = ros2 {
            outputs.push(r);
        }
        let feed = Arc::new(Feed::start(source, telemetry.clone())?);
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let inference =
            spawn_inference(follower, feed.clone(), telemetry.clone(), outputs, done_tx)?;
        notify_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("running"),
        ]);
        Ok(Daemon {
            telemetry,
            broker,
            discovery,
            publisher,
            connection,
            feed,
            done,
            inference,
            context,
            started: Instant::now(),
        })
    }

    fn stats(&self) -> Message {
        stats_message(
            &self.telemetry,
            &self.publisher,
            &self.context,
            self.started,
        )
    }

    /// `stats`, and the systemd status line: `systemctl status` shows why
    /// a device publishes nothing.
    fn send_stats(&self) {
        self.publisher.send_event(self.stats());
        let mut health = MqttStats::from(&self.telemetry.totals()).health();
        if let Some(o) = self.feed.outage() {
            health = format!("{health}; SOURCE UNAVAILABLE: {}", o.reason);
        }
        notify_systemd(&[sd_notify::NotifyState::Status(&health)]);
    }

    /// Feeds the systemd watchdog if frames were processed since
    /// `last_progress`, or if the camera is down and being reopened with
    /// backoff (restarting the daemon would not bring it back); returns
    /// the new progress count.
    fn feed_watchdog(&self, last_progress: u64) -> u64 {
        let now = self.telemetry.count(Counter::FramesProcessed);
        if now != last_progress || self.feed.outage().is_some() {
            notify_systemd(&[sd_notify::NotifyState::Watchdog]);
        }
        now
    }

    /// Runs until the source ends, a stop signal arrives or the embedded
    /// broker dies; meanwhile answers Home Assistant, sends `stats` and the
    /// `source` state, and feeds the systemd watchdog.
    async fn supervise(&mut self, cfg: &Config) -> Result<End, RunError> {
        let watchdog_every = watchdog_interval();
        let stats_every = if cfg.mqtt.stats_interval_s > 0.0 {
            Some(Duration::from_secs_f64(cfg.mqtt.stats_interval_s))
        } else {
            None
        };
        let hour = Duration::from_secs(3600);
        let mut stats_tick = tokio::time::interval(stats_every.unwrap_or(hour));
        stats_tick.tick().await;
        let mut watchdog_tick = tokio::time::interval(watchdog_every.unwrap_or(hour));
        // Home Assistant births coalesced into one announcement per window.
        let mut reannounce_tick = tokio::time::interval(Duration::from_secs(1));
        // The retained `source` state, looked at once a second.
        let mut source_tick = tokio::time::interval(Duration::from_secs(1));
        let mut source_state = SourceState::default();
        let mut last_progress = 0u64;
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigterm = signal(SignalKind::terminate())?;
        // SIGHUP (the terminal or SSH session that started the daemon
        // closed) ends it as SIGTERM does: every track ended, `offline`
        // sent. There is no configuration reload.
        let mut sighup = signal(SignalKind::hangup())?;
        let mut end = End {
            by_itself: false,
            broker_died: None,
        };
        loop {
            if early_stop::requested() {
                tracing::info!("stop signal: shutting down");
                break;
            }
            tokio::select! {
                _ = &mut self.done => {
                    end.by_itself = true;
                    if cfg.source.kind == capture::SourceKind::Replay {
                        tracing::info!("the replay ended: shutting down ([source] loop = true replays it until stopped)");
                    }
                    break;
                }
                why = embedded_broker_died(&mut self.broker) => {
                    tracing::error!("{why}: shutting down");
                    end.broker_died = Some(why);
                    break;
                }
                (topic, payload) = self.connection.incoming() => {
                    let now = self.started.elapsed().as_secs_f64();
                    for m in self.discovery.on_message(&topic, &payload, now) {
                        self.publisher.send_event(m);
                    }
                }
                _ = reannounce_tick.tick(), if self.discovery.pending() => {
                    for m in self.discovery.due(self.started.elapsed().as_secs_f64()) {
                        self.publisher.send_event(m);
                    }
                }
                _ = source_tick.tick() => {
                    if let Some(m) = source_state.changed(&self.feed, self.publisher.topics()) {
                        self.publisher.send_event(m);
                    }
                }
                _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = sighup.recv() => { tracing::info!("SIGHUP: shutting down as for SIGTERM"); break; }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = stats_tick.tick(), if stats_every.is_some() => self.send_stats(),
                _ = watchdog_tick.tick(), if watchdog_every.is_some() => {
                    last_progress = self.feed_watchdog(last_progress);
                }
            }
        }
        Ok(end)
    }

    /// Stops the feed, lets the inference thread end every track, sends the
    /// last `stats`, drains the MQTT client and lets the embedded broker
    /// deliver.
    async fn shutdown(mut self, end: End) -> Result<(), RunError> {
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        self.feed.close();
        if !end.by_itself {
            // The inference thread ends its tracks and returns within a frame's time.
            let _ = tokio::time::timeout(Duration::from_millis(700), &mut self.done).await;
        }
        self.publisher.send_event(self.stats());
        let deadline = if end.by_itself {
            Duration::from_secs(3)
        } else {
            Duration::from_millis(250)
        };
        self.connection.shutdown(&self.publisher, deadline).await;
        if let Some(b) = &self.broker {
            b.settle().await;
        }
        drop(self.inference);
        match end.broker_died {
            Some(why) => Err(RunError::BrokerDied(why)),
            None => Ok(()),
        }
    }
}

/// The inference thread: every frame through the follower, its readings
/// to every output; when the feed ends, every track ended and the outputs
/// finished, then `done` fires.
fn spawn_inference(
    follower: Follower,
    feed: Arc<Feed>,
    telemetry: Arc<Telemetry>,
    mut outputs: Outputs,
    done: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("inference".into())
        .spawn(move || {
            inference_loop(follower, &feed, &telemetry, &mut outputs);
            outputs.finish();
            let _ = done.send(());
        })
}

fn inference_loop(
    mut follower: Follower,
    feed: &Feed,
    telemetry: &Telemetry,
    outputs: &mut Outputs,
) {
    outputs.start();
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
        let stamp = FrameStamp {
            unix: unix_now() - frame.captured_at.elapsed().as_secs_f64(),
            // A ROS 2 image's own stamp, so that subscribers can match it.
            frame_time: frame.origin.as_ref().map_or(frame.timestamp, |o| o.stamp),
            frame_seq: frame.seq,
            width: frame.image.width(),
            height: frame.image.height(),
        };
        let captured = Captured {
            stamp,
            at: frame.captured_at,
            origin: frame.origin.clone(),
        };
        outputs.frame(out, Some(&captured));
        telemetry.set(Gauge::TracksActive, follower.tracked().len() as u64);
        telemetry.add(Counter::FramesProcessed, 1);
        if feed.is_stopped() {
            // Shutting down: this frame's events are out; end the tracks now.
            break;
        }
    }
    outputs.frame(&follower.finish(), None);
    telemetry.set(Gauge::TracksActive, 0);
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
        let counts = feed.counts();
        let outage = counts.current_outage();
        let down = outage.is_some();
        if self.down == Some(down) || (!down && counts.delivered == 0) {
            return None;
        }
        self.down = Some(down);
        let msg = SourceMsg::new(outage.map(|o| o.reason.as_str()));
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
async fn embedded_broker_died(broker: &mut Option<crate::broker::EmbeddedBroker>) -> String {
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
