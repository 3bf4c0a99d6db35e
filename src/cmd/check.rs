//! `fer-edge check`: the config, the secrets and every model loaded, and
//! what would run where.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit::{self, Failure};
use super::ChainArgs;
use super::{set_source, source_hints};
use fer_edge::faces::FaceChain;

/// `fer-edge check`'s arguments (its help is the variant's in `cli.rs`).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// A source overriding `[source]`: a camera device, an IP camera URL
    /// (`rtsp://...`), a ROS 2 image topic (`ros2:///camera/image_raw`) or a replay.
    #[arg(long)]
    pub source: Option<PathBuf>,
}

/// `println!` that stops with exit 74 instead of panicking when stdout is
/// gone (`fer-edge check | head -1`, a closed pipe).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(exit::io)?
    }};
}

impl Args {
    /// Runs it.
    pub fn run(self) -> Result<ExitCode, Failure> {
        command(&self.chain, self.source)
    }
}

/// `fer-edge check`: loads the config and every model, prints what runs
/// where (engine, and the device each model's nodes really run on), then
/// proves the broker and the source as `run` would meet them.
fn command(chain: &ChainArgs, source: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let engines_only = chain.config.files.is_empty() && source.is_none();
    let mut cfg = chain.load()?;
    if let Some(s) = source {
        set_source(&mut cfg, s);
    }
    // The same file checks `run` makes before it connects.
    let secrets = fer_edge::publish::Secrets::load(&cfg.mqtt).map_err(exit::config)?;
    models(&cfg)?;
    say!("mqtt:     {}", mqtt_summary(&cfg.mqtt, &secrets));
    if !cfg.mqtt.broker.embedded {
        broker(&cfg, &secrets)?;
    }
    // The source, opened as `run` opens it: the first frame proves it.
    if let Err(why) = cfg.source.validate_for_run() {
        if engines_only {
            // `fer-edge check` with neither a config nor a source checks
            // this machine's engines and the models, nothing more.
            say!("source:   none (no --config or --source given: engines and models checked, not a deployment)");
            say!("ok");
            return Ok(ExitCode::SUCCESS);
        }
        // A config without a source, or with a wrong one (a world-readable
        // credentials file, a missing uri), is the config error `run`
        // would stop at.
        return Err(exit::config_msg(format!(
            "source: {why} (`fer-edge run` would stop here too)"
        )));
    }
    match fer_edge::capture::probe(&cfg.source, std::time::Duration::from_secs(5)) {
        Ok(p) => say!(
            "source:   {}; first frame {}x{}",
            p.describe,
            p.width,
            p.height
        ),
        Err(e) => {
            source_hints(&cfg, &e.to_string());
            return Err((
                exit::EX_UNAVAILABLE,
                format!("source: {e} (`fer-edge run` would stop here too)").into(),
            ));
        }
    }
    say!("ok");
    Ok(ExitCode::SUCCESS)
}

/// Loads every model on its engine and says what runs where.
fn models(cfg: &fer_edge::config::Config) -> Result<(), Failure> {
    let mut chain = FaceChain::from_config(cfg).map_err(exit::config)?;
    for ((stage, asked), backend) in cfg.stage_backends().iter().zip(chain.backends()) {
        say!(
            "engine:   {stage}: {}{} — {}",
            backend.name(),
            if *asked == "auto" { " (auto)" } else { "" },
            backend.check().map_err(exit::config)?
        );
    }
    say!("detector: MTCNN from {}", cfg.detector.model_dir.display());
    let m = chain.emotion_model().manifest();
    let f = chain.framing();
    say!(
        "emotion:  {} {} ({}, {}{}), input {}x{} {:?}, V/A {:?}",
        m.name,
        m.version,
        m.architecture,
        if m.trained { "trained" } else { "UNTRAINED" },
        m.source
            .package
            .as_deref()
            .map(|p| format!(", from {p}"))
            .unwrap_or_default(),
        m.input.width,
        m.input.height,
        m.input.color,
        m.va_source
    );
    say!("emotion:  {}", chain.emotion_model().precision().reason);
    say!(
        "align:    eye distance {:.2} of width, eye line at {:.2} of height",
        f.eye_distance,
        f.eye_line
    );
    let frame = (cfg.source.width, cfg.source.height);
    for p in chain.placements(frame).map_err(exit::config)? {
        say!("model:    {:<16} {:<12} {}", p.model, p.engine, p.placement);
    }
    Ok(())
}

/// The go-live gate: the external broker `run` would publish to answers,
/// with `run`'s login and TLS.
fn broker(
    cfg: &fer_edge::config::Config,
    secrets: &fer_edge::publish::Secrets,
) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(exit::io)?;
    let wait = std::time::Duration::from_secs(5);
    match rt.block_on(fer_edge::publish::probe(&cfg.mqtt, secrets, wait)) {
        Ok(()) => say!("mqtt:     connected and logged in; disconnected"),
        Err(why) => {
            return Err((
                exit::EX_UNAVAILABLE,
                format!("mqtt: {why} (`fer-edge run` would keep retrying and publish nothing)")
                    .into(),
            ))
        }
    }
    Ok(())
}

/// One line on where `run` would publish and who may connect.
fn mqtt_summary(m: &fer_edge::publish::MqttConfig, s: &fer_edge::publish::Secrets) -> String {
    let who = match (&s.users, m.broker.allow_anonymous) {
        (Some(u), false) => format!("{} user(s) may log in", u.len()),
        (Some(u), true) => format!("{} user(s), and anonymous clients", u.len()),
        (None, _) => "anyone who can reach it may connect".to_string(),
    };
    if m.broker.embedded {
        format!(
            "embedded broker on {}{} (MQTT 3.1.1 and 5; {who}; only fer-edge publishes under {}/), client id {}",
            m.broker.listen,
            if s.broker_tls.is_some() { " over TLS" } else { "" },
            m.topic_prefix,
            m.client_id()
        )
    } else {
        format!(
            "broker {}:{}{}{}, client id {}",
            m.host,
            m.port,
            if m.tls.enabled { " over TLS" } else { "" },
            m.username
                .as_deref()
                .map(|u| format!(" as {u}"))
                .unwrap_or_default(),
            m.client_id()
        )
    }
}
