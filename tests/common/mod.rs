//! Helpers shared by the end-to-end tests: real processes (the fer-edge
//! binary, mosquitto, mosquitto_sub), free ports, daemon configs, and the
//! checks every replay must pass.

#![allow(dead_code)]

pub mod hostile;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, limit: Duration) -> bool {
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
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args(["-s", sig, &self.0.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGTERM, then expect a clean exit (code 0) within 5 s.
    pub fn stop_cleanly(&mut self) {
        self.signal("TERM");
        assert_eq!(
            self.wait_exit(Duration::from_secs(5))
                .and_then(|s| s.code()),
            Some(0),
            "a clean exit after SIGTERM"
        );
    }

    pub fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

pub fn mosquitto(port: u16, dir: &Path) -> Proc {
    mosquitto_with(port, dir, "allow_anonymous true\n")
}

/// mosquitto on 127.0.0.1:`port` with extra config lines (passwords, TLS).
pub fn mosquitto_with(port: u16, dir: &Path, conf: &str) -> Proc {
    let path = dir.join(format!("mosquitto-{port}.conf"));
    // `user root`: started as root, mosquitto would drop to its own user,
    // which cannot read the test's private folder (no effect otherwise).
    std::fs::write(
        &path,
        format!("listener {port} 127.0.0.1\npersistence false\nuser root\n{conf}"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&path)
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

pub type Messages = Arc<Mutex<Vec<(String, String)>>>;

/// `mosquitto_sub -v` on `fer-edge/#`, collecting (topic, payload) pairs.
pub struct Subscriber {
    pub proc: Proc,
    pub messages: Messages,
}

impl Subscriber {
    pub fn start(port: u16) -> Subscriber {
        Subscriber::start_on(port, "fer-edge/#")
    }

    /// `mosquitto_sub -v` on `filter`.
    pub fn start_on(port: u16, filter: &str) -> Subscriber {
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
                filter,
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

    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.messages.lock().unwrap().clone()
    }

    pub fn wait_for(&self, limit: Duration, pred: impl Fn(&[(String, String)]) -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if pred(&self.snapshot()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn stop(mut self) -> Vec<(String, String)> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        std::thread::sleep(Duration::from_millis(50));
        self.snapshot()
    }
}

/// The retained message on one topic, as a fresh subscriber sees it.
pub fn retained(port: u16, topic: &str) -> Option<String> {
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

pub struct DaemonConfig<'a> {
    pub port: u16,
    pub embedded: bool,
    pub sequence: &'a str,
    pub pace: bool,
    pub looping: bool,
}

impl DaemonConfig<'_> {
    /// A replay processed frame by frame, ending when the sequence does.
    pub fn replay(port: u16, embedded: bool, sequence: &str) -> DaemonConfig<'_> {
        DaemonConfig {
            port,
            embedded,
            sequence,
            pace: false,
            looping: false,
        }
    }

    /// A never-ending live-like source (one face, 15 fps) against an external broker.
    pub fn live(port: u16) -> DaemonConfig<'static> {
        DaemonConfig {
            port,
            embedded: false,
            sequence: "pan1",
            pace: true,
            looping: true,
        }
    }
}

pub fn write_config(dir: &Path, c: &DaemonConfig) -> PathBuf {
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

/// Replaces the whole `[source]` section of the config at `path` with
/// `lines` (another kind of source than the test config's replay).
pub fn replace_source(path: &Path, lines: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("[source]").unwrap();
    let end = text.find("[detector]").unwrap();
    let text = format!("{}[source]\n{lines}\n\n{}", &text[..start], &text[end..]);
    std::fs::write(path, text).unwrap();
}

/// Adds `lines` at the top of `section` (`[mqtt]`, ...) of the config at
/// `path`, or appends the section when the file has none.
pub fn add_to_section(path: &Path, section: &str, lines: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let header = format!("[{section}]\n");
    let text = if text.contains(&header) {
        text.replacen(&header, &format!("{header}{lines}"), 1)
    } else {
        format!("{text}\n{header}{lines}")
    };
    std::fs::write(path, text).unwrap();
}

pub fn daemon(config: &Path) -> Proc {
    daemon_layered(&[config])
}

/// The daemon with several `--config` files, later ones overriding earlier ones.
pub fn daemon_layered(configs: &[&Path]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    cmd.current_dir(root())
        .env("FER_EDGE_LOG", "warn")
        .arg("run");
    for c in configs {
        cmd.arg("--config").arg(c);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child)
}

/// The daemon with its log (at `level`) written to `log`.
pub fn daemon_logged(config: &Path, log: &Path, level: &str) -> Proc {
    daemon_logged_env(config, log, level, &[])
}

/// [`daemon_logged`] with extra environment variables (a fault to inject).
pub fn daemon_logged_env(config: &Path, log: &Path, level: &str, env: &[(&str, &str)]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(root())
        .env("FER_EDGE_LOG", level)
        .envs(env.iter().copied())
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

/// Waits until `log` holds a line containing `needle`; returns that line.
pub fn wait_for_log(log: &Path, needle: &str, limit: Duration) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return Some(l.to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

pub fn on<'a>(msgs: &'a [(String, String)], suffix: &str) -> Vec<&'a str> {
    msgs.iter()
        .filter(|(t, _)| t.ends_with(suffix))
        .map(|(_, p)| p.as_str())
        .collect()
}

pub fn expressions(msgs: &[(String, String)]) -> Vec<Value> {
    msgs.iter()
        .filter(|(t, _)| t.ends_with("/expression"))
        .map(|(_, p)| serde_json::from_str(p).unwrap())
        .collect()
}

/// The schema's definition for `topic`, from its `x-topics` map (`+`
/// matches one level: the track id); None for a topic it does not list.
pub fn schema_definition(schema: &Value, topic: &str) -> Option<String> {
    let levels: Vec<&str> = topic.split('/').collect();
    schema["x-topics"]
        .as_object()?
        .iter()
        .find_map(|(pattern, def)| {
            let p: Vec<&str> = pattern.split('/').collect();
            // The pattern is the topic's tail after {topic_prefix}/{device_id}/.
            let tail = levels.get(levels.len().checked_sub(p.len())?..)?;
            let hit =
                levels.len() == p.len() + 2 && p.iter().zip(tail).all(|(a, b)| *a == "+" || a == b);
            hit.then(|| def.as_str().unwrap().to_string())
        })
}

/// The shipped schema.
pub fn mqtt_schema() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("schema/mqtt.schema.json")).unwrap()).unwrap()
}

/// Validates every payload against `schema/mqtt.schema.json`: against the
/// definition its topic names in `x-topics`, and against the root (which
/// accepts exactly one kind of payload).
pub fn check_schema(msgs: &[(String, String)]) {
    let schema = mqtt_schema();
    let root_validator = jsonschema::validator_for(&schema).unwrap();
    let mut validators = std::collections::BTreeMap::new();
    for (topic, payload) in msgs {
        let def = schema_definition(&schema, topic)
            .unwrap_or_else(|| panic!("unexpected topic {topic}: not in the schema's x-topics"));
        let v = validators.entry(def.clone()).or_insert_with(|| {
            let mut s = schema.clone();
            s.as_object_mut().unwrap().remove("oneOf");
            s["$ref"] = Value::String(format!("#/$defs/{def}"));
            jsonschema::validator_for(&s).unwrap()
        });
        let value = if def == "status" {
            Value::String(payload.clone())
        } else {
            serde_json::from_str(payload)
                .unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {payload}"))
        };
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{topic} payload violates the schema ({def}): {errors:?}\n{payload}"
        );
        assert!(
            root_validator.is_valid(&value),
            "{topic}: the root schema refuses a payload its {def} definition accepts\n{payload}"
        );
    }
}

/// Per track, in the order one subscriber received them: its `new` event,
/// then its expressions, then its `end` event, and nothing after that.
pub fn assert_track_order(msgs: &[(String, String)]) {
    let mut state: std::collections::BTreeMap<u64, &str> = Default::default();
    for (i, (topic, payload)) in msgs.iter().enumerate() {
        let (id, what) = if topic.ends_with("/events") {
            let e: Value = serde_json::from_str(payload).unwrap();
            // `expression_changed` is about a live track, as `expression` is.
            let kind = match e["type"].as_str() {
                Some("new") => "new",
                Some("end") => "end",
                _ => "expression",
            };
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
pub fn assert_full_replay(msgs: &[(String, String)], people: usize) {
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

/// `jpeg` with the frame size in its SOF header replaced: a decompression
/// bomb is a small file whose header declares a huge image.
pub fn declaring(mut jpeg: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|m| m[0] == 0xFF && (0xC0..=0xC2).contains(&m[1]))
        .expect("a SOF marker");
    jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpeg
}

/// The clients' Python (paho-mqtt, Cyclone DDS, the client package), from
/// the venv tools/setup.sh makes.
pub fn clients_python() -> PathBuf {
    let cache = std::env::var_os("FER_EDGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/fer-edge"));
    let py = cache.join("mqtt-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run tools/setup.sh (it installs paho-mqtt and cyclonedds there)",
        py.display()
    );
    py
}
