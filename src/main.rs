//! The `fer-edge` binary: parse the command line, dispatch, print the error
//! chain once, and set the exit code: `analyze` 0 ok, 1 some inputs failed,
//! 2 usage, config or model error, 74 its results could not be written; `run` 0 clean end, 78 config or model
//! error (EX_CONFIG: do not restart), 69 unavailable device or port, 70
//! the embedded broker died (a restart helps); `calibrate` 0 report
//! written, 1 written with problems, 69 no source, 73 output folder not
//! writable, 78 config or model error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use fer_edge::analyze::{self, AnalyzeOptions};
use fer_edge::calibrate::CalibrateOptions;
use fer_edge::config::Config;
use fer_edge::faces::FaceChain;
use fer_edge::pipeline::{self, RunError};

mod cli;

use cli::{Cli, Command, ModelCommand};

/// Exit codes.
const EXIT_INPUT_FAILED: u8 = 1;
const EXIT_SETUP: u8 = 2;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_CANTCREAT: u8 = 73;
const EX_IOERR: u8 = 74;
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    fer_edge::logging::init(&fer_edge::logging::LogEnv::from_process());
    match run(cli) {
        Ok(code) => code,
        Err((code, err)) => {
            eprintln!("error: {err}");
            // Each cause once: a wrapper that already quotes its source's
            // text (`face detector: <source>`) does not repeat it.
            let mut shown = err.to_string();
            let mut source = err.source();
            while let Some(s) = source {
                let text = s.to_string();
                if !shown.contains(&text) {
                    eprintln!("  caused by: {text}");
                    shown = text;
                }
                source = s.source();
            }
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, Box<dyn std::error::Error>);

fn setup<E: std::error::Error + 'static>(e: E) -> Failure {
    (EXIT_SETUP, Box::new(e))
}

/// Loads the config files (later ones override earlier ones; none: the
/// defaults), applies `--model`, and points the model paths at the files
/// they name.
fn load_config(paths: &[PathBuf], model: Option<PathBuf>) -> Result<Config, Failure> {
    let (mut cfg, origins) = Config::load_layered(paths).map_err(setup)?;
    if let Some(m) = model {
        // A path typed on the command line is relative to where it is typed.
        cfg.emotion.model = std::path::absolute(&m).unwrap_or(m);
    }
    cfg.locate_models(&origins).map_err(setup)?;
    Ok(cfg)
}

/// `--backend NAME`: one engine for every stage, as the flag says.
fn set_engine(cfg: &mut Config, name: String) -> Result<(), Failure> {
    cfg.inference.backend = name;
    cfg.detector.backend = None;
    cfg.emotion.backend = None;
    cfg.validate().map_err(|e| setup(std::io::Error::other(e)))
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Analyze {
            paths,
            config,
            model,
            backend,
            annotate,
            max_image_mb,
        } => {
            let mut cfg = load_config(&config, model)?;
            if let Some(b) = backend {
                set_engine(&mut cfg, b)?;
            }
            let mut chain = FaceChain::from_config(&cfg).map_err(setup)?;
            let opts = AnalyzeOptions {
                paths,
                annotate_dir: annotate,
                max_image_bytes: max_image_mb << 20,
            };
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            let summary = analyze::run(&mut chain, &opts, &mut stdout.lock(), &mut stderr.lock())
                .map_err(|e| match e {
                analyze::AnalyzeError::Output { .. } => (EX_IOERR, Box::new(e) as _),
                e => setup(e),
            })?;
            if summary.failed > 0 {
                eprintln!(
                    "{} of {} input(s) failed",
                    summary.failed,
                    summary.failed + summary.analysed
                );
                Ok(ExitCode::from(EXIT_INPUT_FAILED))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Run { config } => {
            let cfg = load_config(&config, None).map_err(|(_, e)| (EX_CONFIG, e))?;
            match pipeline::run(cfg) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    let code = match e {
                        RunError::Source(_) | RunError::Runtime(_) => EX_UNAVAILABLE,
                        RunError::BrokerDied(_) => EX_SOFTWARE,
                        RunError::Metrics(..) => EX_UNAVAILABLE,
                        RunError::Publish(fer_edge::publish::PublishError::Broker(_)) => {
                            EX_UNAVAILABLE
                        }
                        _ => EX_CONFIG,
                    };
                    Err((code, Box::new(e)))
                }
            }
        }
        Command::Model(cmd) => model_command(cmd),
        Command::Eval {
            dataset,
            config,
            model,
            backend,
            whole_image,
            usage,
            images,
            limit,
            report,
            max_image_mb,
        } => {
            let opts = fer_edge::eval::EvalOptions {
                dataset,
                usage,
                images,
                whole_image,
                limit,
                max_image_bytes: max_image_mb << 20,
            };
            eval(&config, model, backend, &opts, report.as_deref())
        }
        Command::Bench {
            peak: true, json, ..
        } => {
            let g = fer_edge::bench::peak_gflops();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "peak_gflops_1_thread": (g * 10.0).round() / 10.0 })
                );
            } else {
                println!("peak FP32, one thread: {g:.1} GFLOP/s");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            config,
            model,
            backend,
            frames,
            runs,
            model_only,
            json,
            interval,
            background,
            ..
        } => {
            let mut cfg = load_config(&config, model)?;
            if let Some(n) = interval {
                cfg.follow.interval = n;
                cfg.validate()
                    .map_err(|m| setup(std::io::Error::other(format!("--interval: {m}"))))?;
            }
            // One config per engine and detector mode named; none named:
            // the config's own.
            let engines = match backend {
                None => vec![cfg],
                Some(list) => list
                    .split(',')
                    .map(|b| {
                        let mut c = cfg.clone();
                        set_engine(&mut c, b.trim().to_string()).map(|_| c)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let cfgs: Vec<_> = if background.is_empty() {
                engines
            } else {
                engines
                    .iter()
                    .flat_map(|c| {
                        background.iter().map(|&b| {
                            let mut c = c.clone();
                            c.follow.background = b;
                            c
                        })
                    })
                    .collect()
            };
            let opts = fer_edge::bench::BenchOptions {
                frames,
                runs: runs.max(1),
                model_only,
            };
            let reports = fer_edge::bench::run(&cfgs, &opts).map_err(setup)?;
            for report in &reports {
                if json {
                    // One JSON line per engine.
                    println!("{}", serde_json::to_string(report).map_err(setup)?);
                } else {
                    print!("{}", fer_edge::bench::text(report));
                }
            }
            // A frame rate that read fewer faces is no frame rate.
            if let Err(why) = fer_edge::bench::comparable(&reports) {
                eprintln!("error: {why}");
                return Ok(ExitCode::from(EXIT_INPUT_FAILED));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, backend } => check(&config, backend),
        Command::Calibrate {
            list: true, json, ..
        } => list_cameras(json),
        Command::Calibrate {
            config,
            source,
            duration,
            out,
            baseline,
            save_frames,
            target_fps,
            speed_runs,
            json,
            ..
        } => {
            // On an installed device a bare `fer-edge calibrate` measures
            // the device's own config.
            let installed = PathBuf::from(INSTALLED_CONFIG);
            let config = if config.is_empty() && installed.is_file() {
                eprintln!("calibrate: using {INSTALLED_CONFIG} (give --config to use another)");
                vec![installed]
            } else {
                config
            };
            let mut cfg = load_config(&config, None).map_err(|(_, e)| (EX_CONFIG, e))?;
            if let Some(s) = source {
                set_source(&mut cfg, s);
            }
            let opts = CalibrateOptions {
                duration,
                out,
                baseline,
                save_frames,
                target_fps,
                speed_runs: speed_runs as usize,
                config_files: config,
            };
            calibrate(&cfg, &opts, json)
        }
    }
}

/// `--source`: a device under /dev is a camera, anything else a replay.
fn set_source(cfg: &mut Config, s: PathBuf) {
    use fer_edge::capture::SourceKind;
    if s.starts_with("/dev") {
        cfg.source.kind = SourceKind::V4l2;
        cfg.source.device = s;
    } else {
        cfg.source.kind = SourceKind::Replay;
        cfg.source.path = Some(std::path::absolute(&s).unwrap_or(s));
    }
}

/// `fer-edge calibrate --list`.
fn list_cameras(json: bool) -> Result<ExitCode, Failure> {
    let cams = fer_edge::capture::list_cameras();
    if json {
        println!("{}", serde_json::to_string_pretty(&cams).map_err(setup)?);
    }
    if cams.is_empty() {
        return Err((EX_UNAVAILABLE, NO_CAMERA.into()));
    }
    if !json {
        for c in &cams {
            println!(
                "{}  {}  ({}, {})",
                c.path.display(),
                c.card,
                c.driver,
                c.bus
            );
            for id in &c.by_id {
                println!("    stable name: {}", id.display());
            }
            if let Some(e) = &c.error {
                println!("    {e}");
            }
            if !c.captures_video && c.error.is_none() {
                println!("    not a video capture node (metadata)");
            }
            for f in &c.formats {
                let note = if f.supported {
                    ""
                } else {
                    "  (fer-edge cannot convert this one)"
                };
                println!("    {} {}{note}", f.fourcc, f.description);
                for s in &f.sizes {
                    println!("        {s}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The package's config file.
const INSTALLED_CONFIG: &str = "/etc/fer-edge/fer-edge.toml";

const NO_CAMERA: &str = "no V4L2 camera found (no /dev/video* device): plug the camera in, check `dmesg` for the driver, and, when running as a service, that the fer-edge user is in group `video`";

/// `fer-edge calibrate`: runs, prints the advice, checks the file it wrote
/// layers onto the config it was given.
fn calibrate(cfg: &Config, opts: &CalibrateOptions, json: bool) -> Result<ExitCode, Failure> {
    use fer_edge::calibrate::{self, CalibrateError};
    let outcome = calibrate::run(cfg, opts).map_err(|e| {
        let code = match &e {
            CalibrateError::Output { .. } => EX_CANTCREAT,
            CalibrateError::Source(_) => {
                if cfg.source.kind == fer_edge::capture::SourceKind::V4l2 {
                    let present: Vec<String> = fer_edge::capture::list_cameras()
                        .iter()
                        .filter(|c| c.captures_video)
                        .map(|c| c.path.display().to_string())
                        .collect();
                    eprintln!(
                        "hint: cameras present: {} (`fer-edge calibrate --list` shows what each offers)",
                        if present.is_empty() {
                            "none".into()
                        } else {
                            present.join(", ")
                        }
                    );
                    if e.to_string().contains("busy") {
                        eprintln!("hint: another process holds the camera, most likely the fer-edge service: `sudo systemctl stop fer-edge`, calibrate, then `sudo systemctl start fer-edge`");
                    }
                }
                EX_UNAVAILABLE
            }
            CalibrateError::Thread(_) => EX_SOFTWARE,
            _ => EX_CONFIG,
        };
        (code, Box::new(e) as Box<dyn std::error::Error>)
    })?;
    let report = &outcome.report;
    if json || outcome.write_error.is_some() {
        // Nothing measured is lost when the folder fails at the end.
        println!("{}", serde_json::to_string_pretty(report).map_err(setup)?);
    } else {
        print!("{}", report.advice_text());
        println!();
        print!("{}", report.calibration_toml);
    }
    if let Some(e) = outcome.write_error {
        return Err((EX_CANTCREAT, Box::new(e)));
    }
    for p in &outcome.written {
        eprintln!("wrote {}", fer_edge::fileio::shown(p));
    }
    // The file must layer onto the config it was measured with.
    let mut layers = opts.config_files.clone();
    layers.push(opts.out.join("calibration.toml"));
    load_config(&layers, None).map_err(|(_, e)| {
        (
            EX_SOFTWARE,
            format!("the calibration.toml just written is not accepted on top of the config: {e}")
                .into(),
        )
    })?;
    Ok(if report.has_problems() {
        ExitCode::from(EXIT_INPUT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `fer-edge check`: loads the config and every model, and prints what
/// runs where (engine, and the device each model's nodes really run on).
fn check(config: &[PathBuf], backend: Option<String>) -> Result<ExitCode, Failure> {
    let mut cfg = load_config(config, None)?;
    if let Some(b) = backend {
        set_engine(&mut cfg, b)?;
    }
    // The same file checks `run` makes before it connects.
    let secrets = fer_edge::publish::Secrets::load(&cfg.mqtt).map_err(setup)?;
    let mut chain = FaceChain::from_config(&cfg).map_err(setup)?;
    for (stage, backend) in ["detector", "emotion"].iter().zip(chain.backends()) {
        println!(
            "engine:   {stage}: {} — {}",
            backend.name(),
            backend.check().map_err(setup)?
        );
    }
    println!("detector: MTCNN from {}", cfg.detector.model_dir.display());
    let m = chain.emotion_model().manifest();
    let f = chain.framing();
    println!(
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
    println!(
        "align:    eye distance {:.2} of width, eye line at {:.2} of height",
        f.eye_distance, f.eye_line
    );
    let frame = (cfg.source.width, cfg.source.height);
    for p in chain.placements(frame).map_err(setup)? {
        println!("model:    {:<16} {:<12} {}", p.model, p.engine, p.placement);
    }
    println!("mqtt:     {}", mqtt_summary(&cfg.mqtt, &secrets));
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

/// One line on where `run` would publish and who may connect.
fn mqtt_summary(m: &fer_edge::publish::MqttConfig, s: &fer_edge::publish::Secrets) -> String {
    let who = match (&s.users, m.broker.allow_anonymous) {
        (Some(u), false) => format!("{} user(s) may log in", u.len()),
        (Some(u), true) => format!("{} user(s), and anonymous clients", u.len()),
        (None, _) => "anyone who can reach it may connect".to_string(),
    };
    if m.embedded {
        format!(
            "embedded broker on {}{} (MQTT 3.1.1 and 5; {who}; only fer-edge publishes under {}/), client id {}",
            m.listen,
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

/// `eval`: every model on every engine over one set, a JSON line each.
fn eval(
    config: &[PathBuf],
    models: Vec<PathBuf>,
    engines: Vec<String>,
    opts: &fer_edge::eval::EvalOptions,
    report: Option<&std::path::Path>,
) -> Result<ExitCode, Failure> {
    use fer_edge::eval;
    use std::io::Write as _;
    let set = eval::open(opts).map_err(setup)?;
    for s in &set.skipped {
        eprintln!("skipped: {s}");
    }
    let models: Vec<Option<PathBuf>> = match models.len() {
        0 => vec![None],
        _ => models.into_iter().map(Some).collect(),
    };
    let engines: Vec<Option<String>> = match engines.len() {
        0 => vec![None],
        _ => engines.into_iter().map(Some).collect(),
    };
    let mut runs = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for m in &models {
        for e in &engines {
            let mut cfg = load_config(config, m.clone())?;
            if let Some(e) = e {
                set_engine(&mut cfg, e.clone())?;
            }
            let bar = eval::progress_bar(set.samples.len(), &cfg);
            let run = eval::run(&cfg, &set, opts, &mut || bar.inc(1)).map_err(setup)?;
            bar.finish_and_clear();
            for f in &run.unreadable_files {
                eprintln!("error: {f}");
            }
            let line = serde_json::to_string(&run).map_err(setup)?;
            writeln!(stdout, "{line}")
                .and_then(|_| stdout.flush())
                .map_err(|e| {
                    (
                        EXIT_SETUP,
                        format!("cannot write the results to stdout: {e}").into(),
                    )
                })?;
            runs.push(run);
        }
    }
    if let Some(dir) = report {
        eval::write_report(dir, &runs).map_err(|e| (EX_CANTCREAT, e.into()))?;
        eprintln!(
            "eval: report written to {}",
            dir.join("report.html").display()
        );
    }
    let unreadable: usize = runs.iter().map(|r| r.unreadable).max().unwrap_or(0);
    if unreadable > 0 {
        eprintln!("{unreadable} image(s) could not be read and were left out");
        return Ok(ExitCode::from(EXIT_INPUT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn model_command(cmd: ModelCommand) -> Result<ExitCode, Failure> {
    match cmd {
        ModelCommand::Inspect { bundle } => {
            print!("{}", fer_edge::inspect::inspect(&bundle).map_err(setup)?);
        }
        ModelCommand::Run {
            bundle,
            aligned,
            backend,
        } => {
            let backend = fer_edge::infer::backend(&backend, &Default::default()).map_err(setup)?;
            let v = fer_edge::inspect::run_aligned(&bundle, &aligned, backend.as_ref())
                .map_err(setup)?;
            println!("{v}");
        }
        ModelCommand::Compare {
            engines,
            image,
            bundle,
            config,
            runs,
            json,
        } => {
            let cfg = load_config(&config, None)?;
            let opts = fer_edge::compare::CompareOptions {
                engines: engines.split(',').map(|e| e.trim().to_string()).collect(),
                image,
                bundles: if bundle.is_empty() {
                    vec![cfg.emotion.model.clone()]
                } else {
                    bundle
                },
                runs: runs.max(1),
                inference: cfg.inference.clone(),
                detector: cfg.detector.clone(),
            };
            let report = fer_edge::compare::run(&opts).map_err(setup)?;
            if json {
                println!("{}", serde_json::to_string(&report).map_err(setup)?);
            } else {
                print!("{}", fer_edge::compare::text(&report));
            }
        }
        ModelCommand::Align {
            image,
            left,
            right,
            size,
            eye_distance,
            eye_line,
            out,
        } => {
            let img = fer_edge::imageio::decode(&image).map_err(|reason| {
                setup(std::io::Error::other(format!(
                    "{}: {reason}",
                    image.display()
                )))
            })?;
            let framing = fer_edge::align::Framing {
                width: size,
                height: size,
                eye_distance,
                eye_line,
            };
            let eyes = fer_edge::frame::Landmarks {
                left_eye: left,
                right_eye: right,
                ..Default::default()
            };
            let (crop, _) = fer_edge::align::align(&img, &eyes, &framing).map_err(setup)?;
            crop.save(&out)
                .map_err(|e| setup(std::io::Error::other(format!("{}: {e}", out.display()))))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
