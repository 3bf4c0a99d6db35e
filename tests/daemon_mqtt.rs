//! `fer-edge run` end to end: the real binary on replayed real photos,
//! publishing to a real broker (mosquitto from Debian, started here, or the
//! embedded one), read by a real subscriber (`mosquitto_sub`).
//!
//! The daemon tests share the machine's two cores, so they run one at a time.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn signal(&self, sig: &str) {
        Command::new("kill")
            .args(["-s", sig, &self.0.id().to_string()])
            .status()
            .unwrap();
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

fn mosquitto(port: u16, dir: &Path) -> Proc {
    let conf = dir.join(format!("mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed (tools/setup.sh)");
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "mosquitto did not start on {port}"
    );
    Proc(child)
}

type Messages = Arc<Mutex<Vec<(String, String)>>>;

/// `mosquitto_sub -v` on `fer-edge/#`, collecting (topic, payload) pairs.
struct Subscriber {
    proc: Proc,
    messages: Messages,
}

impl Subscriber {
    fn start(port: u16) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-v",
                "-q",
                "1",
                "-t",
                "fer-edge/#",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub is installed (tools/setup.sh)");
        let out = child.stdout.take().unwrap();
        let messages: Messages = Arc::default();
        let m = messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((t, p)) = line.split_once(' ') {
                    m.lock().unwrap().push((t.to_string(), p.to_string()));
                }
            }
        });
        // Let the subscription settle before anything is published.
        std::thread::sleep(Duration::from_millis(300));
        Subscriber {
            proc: Proc(child),
            messages,
        }
    }

    fn snapshot(&self) -> Vec<(String, String)> {
        self.messages.lock().unwrap().clone()
    }

    fn wait_for(&self, limit: Duration, pred: impl Fn(&[(String, String)]) -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if pred(&self.snapshot()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(mut self) -> Vec<(String, String)> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        std::thread::sleep(Duration::from_millis(50));
        self.snapshot()
    }
}

/// The retained message on one topic, as a fresh subscriber sees it.
fn retained(port: u16, topic: &str) -> Option<String> {
    let out = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-C",
            "1",
            "-W",
            "2",
            "-t",
            topic,
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

struct DaemonConfig<'a> {
    port: u16,
    embedded: bool,
    sequence: &'a str,
    pace: bool,
    looping: bool,
}

impl DaemonConfig<'_> {
    /// A replay processed frame by frame, ending when the sequence does.
    fn replay(port: u16, embedded: bool, sequence: &str) -> DaemonConfig<'_> {
        DaemonConfig {
            port,
            embedded,
            sequence,
            pace: false,
            looping: false,
        }
    }

    /// A never-ending live-like source (one face, 15 fps) against an external broker.
    fn live(port: u16) -> DaemonConfig<'static> {
        DaemonConfig {
            port,
            embedded: false,
            sequence: "pan1",
            pace: true,
            looping: true,
        }
    }
}

fn write_config(dir: &Path, c: &DaemonConfig) -> PathBuf {
    let path = dir.join("fer-edge.toml");
    let seq = root().join("tests/data/sequences").join(c.sequence);
    let text = format!(
        r#"
[source]
kind = "replay"
path = "{seq}"
fps = 15.0
pace = {pace}
loop = {looping}

[detector]
model_dir = "{root}/models/mtcnn"

[emotion]
model = "{root}/models/fer-minixception"

[mqtt]
embedded = {embedded}
listen = "127.0.0.1:{port}"
host = "127.0.0.1"
port = {port}
device_id = "test-kiosk"
reconnect_max_backoff_s = 0.5
stats_interval_s = 1.0
"#,
        seq = seq.display(),
        root = root().display(),
        pace = c.pace,
        looping = c.looping,
        embedded = c.embedded,
        port = c.port,
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn daemon(config: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .env("FER_EDGE_LOG", "warn")
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child)
}

fn on<'a>(msgs: &'a [(String, String)], suffix: &str) -> Vec<&'a str> {
    msgs.iter()
        .filter(|(t, _)| t.ends_with(suffix))
        .map(|(_, p)| p.as_str())
        .collect()
}

fn expressions(msgs: &[(String, String)]) -> Vec<Value> {
    msgs.iter()
        .filter(|(t, _)| t.ends_with("/expression"))
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect()
}

/// Validates every JSON payload against `schema/mqtt.schema.json`.
fn check_schema(msgs: &[(String, String)]) {
    let schema: Value =
        serde_json::from_slice(&std::fs::read(root().join("schema/mqtt.schema.json")).unwrap())
            .unwrap();
    let validator = |def: &str| {
        let mut s = schema.clone();
        s["$ref"] = Value::String(format!("#/$defs/{def}"));
        jsonschema::validator_for(&s).unwrap()
    };
    let (expr, tracked, event, stats, status) = (
        validator("expression"),
        validator("tracked"),
        validator("event"),
        validator("stats"),
        validator("status"),
    );
    for (topic, payload) in msgs {
        let (v, value) = if topic.ends_with("/status") {
            (&status, Value::String(payload.clone()))
        } else {
            let v = if topic.ends_with("/expression") {
                &expr
            } else if topic.ends_with("/faces/tracked") {
                &tracked
            } else if topic.ends_with("/events") {
                &event
            } else if topic.ends_with("/stats") {
                &stats
            } else {
                panic!("unexpected topic {topic}")
            };
            (
                v,
                serde_json::from_str(payload)
                    .unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {payload}")),
            )
        };
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{topic} payload violates the schema: {errors:?}\n{payload}"
        );
    }
}

/// Per track, in the order one subscriber received them: its `new` event,
/// then its expressions, then its `end` event, and nothing after that.
fn assert_track_order(msgs: &[(String, String)]) {
    let mut state: std::collections::BTreeMap<u64, &str> = Default::default();
    for (i, (topic, payload)) in msgs.iter().enumerate() {
        let (id, what) = if topic.ends_with("/events") {
            let e: Value = serde_json::from_str(payload).unwrap();
            let kind = if e["type"] == "new" { "new" } else { "end" };
            (e["track_id"].as_u64().unwrap(), kind)
        } else if topic.ends_with("/expression") {
            let e: Value = serde_json::from_str(payload).unwrap();
            (e["track_id"].as_u64().unwrap(), "expression")
        } else {
            continue;
        };
        let before = state.get(&id).copied();
        let ok = match what {
            "new" => before.is_none(),
            "expression" => matches!(before, Some("new") | Some("expression")),
            _ => matches!(before, Some("new") | Some("expression")),
        };
        assert!(
            ok,
            "message {i}: track {id} {what} after {before:?} (a subscriber would think the face came back); first messages: {:?}",
            &msgs[..msgs.len().min(i + 4)]
        );
        state.insert(id, what);
    }
}

/// The full story of one replay: what a subscriber must see.
fn assert_full_replay(msgs: &[(String, String)], people: usize) {
    let status = on(msgs, "/status");
    assert_eq!(status.first(), Some(&"online"), "{status:?}");
    assert_eq!(status.last(), Some(&"offline"), "{status:?}");
    let events: Vec<Value> = on(msgs, "/events")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let ids = |kind: &str| {
        let mut v: Vec<u64> = events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["track_id"].as_u64().unwrap())
            .collect();
        v.sort();
        v
    };
    let (new, end) = (ids("new"), ids("end"));
    assert_eq!(new.len(), people, "one new event per person: {new:?}");
    assert_eq!(new, end, "one end event per new track");
    let exprs = expressions(msgs);
    let mut seen: Vec<u64> = exprs
        .iter()
        .map(|e| e["track_id"].as_u64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen, new,
        "track ids stay stable across the panned sequence"
    );
    for e in &exprs {
        for k in ["valence", "arousal"] {
            let v = e[k].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&v), "{k} {v}");
            let r = e["raw"][k].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&r));
        }
    }
    // Most frames read every face (two frames per track go to confirmation).
    assert!(
        exprs.len() >= people * 25,
        "{} expression messages",
        exprs.len()
    );
    assert_track_order(msgs);
    let last_tracked: Value =
        serde_json::from_str(on(msgs, "/faces/tracked").last().unwrap()).unwrap();
    assert_eq!(last_tracked["track_ids"].as_array().unwrap().len(), 0);
    check_schema(msgs);
}

#[test]
fn a_replayed_group_sequence_reaches_a_mosquitto_subscriber_from_online_to_offline() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    let sub = Subscriber::start(port);
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, false, "pan6"));
    let mut d = daemon(&cfg);
    let status = d
        .wait_exit(Duration::from_secs(240))
        .expect("daemon finishes the replay");
    assert_eq!(status.code(), Some(0));
    let msgs = sub.stop();
    assert_full_replay(&msgs, 6);
    assert_eq!(
        retained(port, "fer-edge/test-kiosk/status").as_deref(),
        Some("offline")
    );
    // A happy face in the group is read as happy on most of its frames.
    let exprs = expressions(&msgs);
    let happy = exprs.iter().filter(|e| e["expression"] == "happy").count();
    assert!(happy > exprs.len() / 4, "{happy} of {}", exprs.len());
    let stats: Vec<Value> = on(&msgs, "/stats")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let last = stats.last().expect("a final stats message");
    assert_eq!(last["frames_processed"], 30);
    assert_eq!(last["frames_captured"], 30);
}

#[test]
fn the_embedded_broker_serves_subscribers_with_no_other_broker_running() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(port, true, "pan1"));
    let mut d = daemon(&cfg);
    assert!(
        wait_for_port(port, Duration::from_secs(60)),
        "embedded broker listens"
    );
    let sub = Subscriber::start(port);
    let status = d
        .wait_exit(Duration::from_secs(240))
        .expect("daemon finishes");
    assert_eq!(status.code(), Some(0));
    let msgs = sub.stop();
    assert_full_replay(&msgs, 1);
    let exprs = expressions(&msgs);
    assert!(
        exprs.iter().all(|e| e["expression"] == "happy"),
        "the astronaut smiles throughout"
    );
    assert!(exprs.iter().all(|e| e["valence"].as_f64().unwrap() > 0.3));
}

#[test]
fn the_daemon_survives_a_broker_restart_and_republishes_online() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = mosquitto(port, dir.path());
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    let mut d = daemon(&cfg);
    let sub = Subscriber::start(port);
    assert!(
        sub.wait_for(Duration::from_secs(120), |m| !expressions(m).is_empty()),
        "publishing before the restart"
    );
    // Broker goes away (no persistence: its retained messages die with it).
    let _ = broker.0.kill();
    let _ = broker.0.wait();
    let _ = sub.stop();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        d.alive(),
        "the daemon keeps running while the broker is down"
    );
    let _broker2 = mosquitto(port, dir.path());
    // The new broker knows nothing: a retained `online` proves the daemon republished it.
    let t0 = Instant::now();
    let mut status = None;
    while t0.elapsed() < Duration::from_secs(20) && status.is_none() {
        status = retained(port, "fer-edge/test-kiosk/status");
    }
    assert_eq!(status.as_deref(), Some("online"));
    let sub2 = Subscriber::start(port);
    assert!(
        sub2.wait_for(Duration::from_secs(30), |m| !expressions(m).is_empty()),
        "publishing resumed"
    );
    let stop = Instant::now();
    d.signal("TERM");
    let code = d
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    let took = stop.elapsed();
    assert_eq!(code.code(), Some(0));
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    let msgs = sub2.stop();
    assert_eq!(on(&msgs, "/status").last(), Some(&"offline"));
    let events: Vec<Value> = on(&msgs, "/events")
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["type"] == "end"),
        "tracks end on shutdown"
    );
    check_schema(&msgs);
}

#[test]
fn the_daemon_starts_without_a_broker_and_connects_when_one_appears() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    let mut d = daemon(&cfg);
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.alive(), "no broker is no reason to exit");
    let _broker = mosquitto(port, dir.path());
    let sub = Subscriber::start(port);
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| !expressions(m).is_empty()
            && on(m, "/status").contains(&"online")),
        "connected and publishing once the broker is up"
    );
    d.signal("INT");
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    let msgs = sub.stop();
    check_schema(&msgs);
}

fn run_expecting_config_error(toml_extra: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(free_port(), true, "pan1"));
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    if let Some(model) = toml_extra.strip_prefix("emotion.model=") {
        let shipped = format!("{}/models/fer-minixception", root().display());
        text = text.replace(&shipped, model);
    } else {
        text.push_str(toml_extra);
    }
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(key), "stderr must name {key}: {err}");
}

#[test]
fn a_bad_config_exits_78_and_names_the_key() {
    run_expecting_config_error("\n[tracker]\nmax_age = 2.0\n", "max_age");
    run_expecting_config_error("keep_alive_s = 0\n", "mqtt.keep_alive_s");
    run_expecting_config_error("\n[smoothing]\nhysteresis = 3.0\n", "smoothing.hysteresis");
    // A model path that does not exist is a config error too: restarting will not help.
    run_expecting_config_error("emotion.model=/nonexistent/bundle", "/nonexistent/bundle");
}
