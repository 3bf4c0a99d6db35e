//! Helpers of the fault-matrix tests (`tests/trust.rs`,
//! `tests/broker_trust.rs`): the fer-edge binary and its output, mosquitto's
//! and paho's clients, an embedded-broker daemon, certificates made with
//! openssl, and a process's peak memory and open descriptors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::*;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    c.current_dir(root());
    c
}

/// A live-like daemon on the embedded broker, plus `extra` TOML.
pub fn embedded_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let mut c = DaemonConfig::live(port);
    c.embedded = true;
    let p = write_config(dir, &c);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(extra);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `mosquitto_sub` with extra arguments: the first `count` messages of
/// `topic` within 5 s, or the refusal on stderr.
pub fn mosquitto_sub(port: u16, args: &[&str], topic: &str, count: usize) -> Output {
    let p = port.to_string();
    let c = count.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &p, "-C", &c, "-W", "5", "-v"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-t", topic]);
    run(Command::new("mosquitto_sub").args(&all))
}

pub fn mosquitto_pub(port: u16, args: &[&str]) -> Output {
    let p = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &p, "-q", "1"];
    all.extend_from_slice(args);
    run(Command::new("mosquitto_pub").args(&all))
}

pub fn paho_sub(
    port: u16,
    version: &str,
    topic: &str,
    count: usize,
    login: Option<(&str, &str)>,
) -> Output {
    let mut c = Command::new(clients_python());
    c.arg(root().join("tests/clients/paho_sub.py")).args([
        "127.0.0.1",
        &port.to_string(),
        version,
        topic,
        &count.to_string(),
        "8",
    ]);
    if let Some((u, p)) = login {
        c.args([u, p]);
    }
    run(&mut c)
}

pub fn start_embedded(dir: &Path, port: u16, extra: &str) -> (Proc, PathBuf) {
    start_embedded_env(dir, port, extra, &[])
}

/// [`start_embedded`] with extra environment variables for the daemon.
pub fn start_embedded_env(
    dir: &Path,
    port: u16,
    extra: &str,
    env: &[(&str, &str)],
) -> (Proc, PathBuf) {
    let cfg = embedded_config(dir, port, extra);
    let log = dir.join("daemon.log");
    let mut d = daemon_logged_env(&cfg, &log, "info", env);
    let started = wait_for_log(
        &log,
        "embedded MQTT broker listening",
        Duration::from_secs(60),
    );
    assert!(
        started.is_some(),
        "the embedded broker starts (daemon alive: {}): {}",
        d.alive(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (d, log)
}

pub const STATUS: &str = "fer-edge/test-kiosk/status";

/// The broker still answers a new subscriber with the retained `online`,
/// and the daemon still runs.
pub fn assert_still_serves(port: u16, d: &mut Proc) {
    let o = mosquitto_sub(port, &[], STATUS, 1);
    assert_eq!(
        text(&o).trim(),
        format!("{STATUS} online"),
        "the broker still serves"
    );
    assert!(d.alive(), "the daemon still runs");
}

pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A `mosquitto_sub` left running in the background: `-F FORMAT`, `count`
/// messages within `secs`.
pub fn mosquitto_sub_bg(
    port: u16,
    args: &[&str],
    topic: &str,
    count: usize,
    secs: u32,
) -> std::process::Child {
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-C", &count.to_string(), "-W", &secs.to_string()])
        .args(args)
        .args(["-t", topic])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Subscribed before anything is published.
    std::thread::sleep(Duration::from_millis(700));
    child
}

/// What a background `mosquitto_sub` printed once it ended (`-W` bounds it).
pub fn finish(child: std::process::Child) -> String {
    text(&child.wait_with_output().unwrap())
}

pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A CA, and a server certificate it signs for 127.0.0.1 and localhost.
pub fn make_certs(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join(format!("{name}-ca.key"));
    let ca = dir.join(format!("{name}-ca.pem"));
    let key = dir.join(format!("{name}-server.key"));
    let csr = dir.join(format!("{name}-server.csr"));
    let cert = dir.join(format!("{name}-server.pem"));
    let ext = dir.join(format!("{name}-ext.cnf"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let ok = |c: &mut Command| {
        let o = run(c);
        assert!(o.status.success(), "openssl: {}", text(&o));
    };
    ok(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={name} test CA"))
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    ok(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    ok(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (ca, cert, key)
}

pub fn external_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let p = write_config(dir, &DaemonConfig::live(port));
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str(extra);
    std::fs::write(&p, t).unwrap();
    p
}
