//! The fault matrix of docs/RELIABILITY.md, on real processes: the
//! fer-edge binary, its embedded broker, mosquitto with passwords and TLS
//! certificates made here with openssl, and two real clients (mosquitto's
//! and paho-mqtt, MQTT 3.1.1 and 5).

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fer-edge"));
    c.current_dir(root());
    c
}

/// A live-like daemon on the embedded broker, plus `extra` TOML.
fn embedded_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let mut c = DaemonConfig::live(port);
    c.embedded = true;
    let p = write_config(dir, &c);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(extra);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `mosquitto_sub` with extra arguments: the first `count` messages of
/// `topic` within 5 s, or the refusal on stderr.
fn mosquitto_sub(port: u16, args: &[&str], topic: &str, count: usize) -> Output {
    let p = port.to_string();
    let c = count.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &p, "-C", &c, "-W", "5", "-v"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-t", topic]);
    run(Command::new("mosquitto_sub").args(&all))
}

fn mosquitto_pub(port: u16, args: &[&str]) -> Output {
    let p = port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &p, "-q", "1"];
    all.extend_from_slice(args);
    run(Command::new("mosquitto_pub").args(&all))
}

fn paho_sub(
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

fn start_embedded(dir: &Path, port: u16, extra: &str) -> (Proc, PathBuf) {
    let cfg = embedded_config(dir, port, extra);
    let log = dir.join("daemon.log");
    let d = daemon_logged(&cfg, &log, "info");
    assert!(
        wait_for_log(
            &log,
            "embedded MQTT broker listening",
            Duration::from_secs(60)
        )
        .is_some(),
        "the embedded broker starts: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (d, log)
}

const STATUS: &str = "fer-edge/test-kiosk/status";

/// The broker still answers a new subscriber with the retained `online`,
/// and the daemon still runs.
fn assert_still_serves(port: u16, d: &mut Proc) {
    let o = mosquitto_sub(port, &[], STATUS, 1);
    assert_eq!(
        text(&o).trim(),
        format!("{STATUS} online"),
        "the broker still serves"
    );
    assert!(d.alive(), "the daemon still runs");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn mqtt_311_and_5_clients_get_the_retained_status_and_the_events_and_31_is_refused_with_a_warning()
{
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics = free_port();
    let (mut d, log) = start_embedded(
        dir.path(),
        port,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"),
    );
    for version in ["mqttv311", "mqttv5"] {
        let o = mosquitto_sub(port, &["-V", version], STATUS, 1);
        assert_eq!(text(&o).trim(), format!("{STATUS} online"), "{version}");
        let o = mosquitto_sub(
            port,
            &["-V", version],
            "fer-edge/test-kiosk/faces/+/expression",
            1,
        );
        assert!(text(&o).contains("\"valence\""), "{version}: {}", text(&o));
    }
    for version in ["311", "5"] {
        let o = paho_sub(port, version, "fer-edge/#", 3, None);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(0), "paho MQTT {version}: {t}");
        assert!(
            t.contains(&format!("{STATUS} online")),
            "paho {version}: {t}"
        );
        assert!(t.contains("/expression "), "paho {version}: {t}");
    }
    let o = mosquitto_sub(port, &["-V", "mqttv31"], STATUS, 1);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("unacceptable protocol version"),
        "{}",
        text(&o)
    );
    let warn = wait_for_log(&log, "speaks MQTT 3.1", Duration::from_secs(5)).expect("a WARN");
    assert!(warn.contains("WARN") && warn.contains("mqttv311"), "{warn}");
    // The same counters on the Prometheus page.
    let page = http_get(metrics, "/metrics");
    for want in [
        "HTTP/1.1 200 OK",
        "fer_edge_mqtt_connected 1",
        "fer_edge_tracks_active 1",
        "fer_edge_stage_latency_seconds{stage=\"publish\",quantile=\"0.99\"}",
        "fer_edge_mqtt_queue_depth{queue=\"frames\"}",
    ] {
        assert!(page.contains(want), "{want} missing:\n{page}");
    }
    let processed: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("fer_edge_frames_processed_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(processed > 0);
    assert!(http_get(metrics, "/other").starts_with("HTTP/1.1 404"));
    assert!(d.alive());
    d.stop_cleanly();
}

#[test]
fn only_fer_edge_publishes_under_its_prefix_or_uses_its_client_id_and_bad_ids_do_not_kill_the_broker(
) {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut d, log) = start_embedded(dir.path(), port, "");
    let watch = Subscriber::start(port);
    // A forged event: the connection is closed, nothing is delivered.
    let o = mosquitto_pub(
        port,
        &[
            "-t",
            "fer-edge/test-kiosk/events",
            "-m",
            "{\"type\":\"forged\"}",
        ],
    );
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let o = mosquitto_pub(port, &["-V", "mqttv5", "-t", STATUS, "-r", "-m", "hacked"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(wait_for_log(
        &log,
        "where only fer-edge publishes",
        Duration::from_secs(5)
    )
    .is_some());
    // Elsewhere anyone may publish.
    let o = mosquitto_pub(port, &["-t", "robots/r1/hello", "-m", "hi"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The daemon's client id is not for the taking; a will under the prefix neither.
    let o = mosquitto_pub(
        port,
        &["-i", "fer-edge-test-kiosk", "-t", "robots/x", "-m", "x"],
    );
    assert!(text(&o).contains("identifier rejected"), "{}", text(&o));
    let o = mosquitto_pub(
        port,
        &[
            "--will-topic",
            STATUS,
            "--will-payload",
            "offline",
            "-t",
            "robots/x",
            "-m",
            "x",
        ],
    );
    assert!(text(&o).contains("not authorised"), "{}", text(&o));
    // A `$` in a client id once killed rumqttd for every later client
    // (rumqtt#1062): refused twice, and the broker still serves.
    for _ in 0..2 {
        let o = mosquitto_pub(port, &["-i", "kiosk$1", "-t", "robots/x", "-m", "x"]);
        assert!(text(&o).contains("identifier rejected"), "{}", text(&o));
    }
    let o = mosquitto_sub(port, &[], STATUS, 1);
    assert_eq!(text(&o).trim(), format!("{STATUS} online"));
    assert!(
        watch.wait_for(Duration::from_secs(20), |m| !expressions(m).is_empty()),
        "the daemon keeps publishing"
    );
    let msgs = watch.stop();
    assert!(
        !msgs
            .iter()
            .any(|(_, p)| p.contains("forged") || p == "hacked"),
        "no forged message reached a subscriber"
    );
    assert_track_order(&msgs);
    d.stop_cleanly();
}

/// A `mosquitto_sub` left running in the background: `-F FORMAT`, `count`
/// messages within `secs`.
fn mosquitto_sub_bg(
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
fn finish(child: std::process::Child) -> String {
    text(&child.wait_with_output().unwrap())
}

#[test]
fn a_multibyte_topic_or_an_mqtt5_property_kills_neither_the_broker_nor_a_311_subscriber() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut d, log) = start_embedded(dir.path(), port, "");
    let sub311 = mosquitto_sub_bg(port, &["-V", "mqttv311", "-v"], "robots/#", 2, 15);
    // rumqttd's router thread panicked on a topic starting with a
    // multi-byte character ('ü', or a byte-order mark before fer-edge's
    // prefix), and served no one after it.
    for topic in ["ü/x", "\u{feff}fer-edge/test-kiosk/events"] {
        let o = mosquitto_pub(port, &["-t", topic, "-m", "1"]);
        assert_eq!(o.status.code(), Some(0), "{topic}: {}", text(&o));
    }
    // An MQTT 5 publish with a property, forwarded to a 3.1.1 subscriber,
    // hit rumqttd's "not possible in v4" and disconnected the subscriber.
    let o = mosquitto_pub(
        port,
        &[
            "-V",
            "mqttv5",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-t",
            "robots/a",
            "-m",
            "one",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = mosquitto_pub(port, &["-t", "robots/b", "-m", "two"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got = finish(sub311);
    assert_eq!(
        got.trim(),
        "robots/a one\nrobots/b two",
        "the 3.1.1 subscriber got both"
    );
    assert_still_serves(port, &mut d);
    d.stop_cleanly();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("panicked"), "{logged}");
}

#[test]
fn the_embedded_broker_delivers_at_the_lower_of_publish_and_subscription_qos() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut d, _log) = start_embedded(dir.path(), port, "");
    // Publishes at QoS 0, 1, 2; what a subscriber at QoS 2, then 1, gets.
    let cases = [
        ("2", "0 robots/q/0\n1 robots/q/1\n2 robots/q/2"),
        ("1", "0 robots/q/0\n1 robots/q/1\n1 robots/q/2"),
    ];
    for version in ["mqttv311", "mqttv5"] {
        for (sub_qos, want) in cases {
            let args = ["-V", version, "-q", sub_qos, "-F", "%q %t"];
            let sub = mosquitto_sub_bg(port, &args, "robots/q/#", 3, 15);
            for q in ["0", "1", "2"] {
                let o = mosquitto_pub(port, &["-q", q, "-t", &format!("robots/q/{q}"), "-m", "x"]);
                assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            }
            assert_eq!(
                finish(sub).trim(),
                want,
                "{version}, subscribed at QoS {sub_qos}"
            );
        }
    }
    // A keep-alive of 0 (valid MQTT: no keep-alive) was closed with no
    // CONNACK (mosquitto_sub refuses -k 0, so paho-mqtt asks for it).
    for version in ["311", "5"] {
        let o = run(Command::new(clients_python())
            .env("PAHO_KEEPALIVE", "0")
            .arg(root().join("tests/clients/paho_sub.py"))
            .args(["127.0.0.1", &port.to_string(), version, STATUS, "1", "8"]));
        assert_eq!(
            o.status.code(),
            Some(0),
            "MQTT {version}, keep-alive 0: {}",
            text(&o)
        );
        assert_eq!(text(&o).trim(), format!("{STATUS} online"));
    }
    assert!(d.alive());
    d.stop_cleanly();
}

#[test]
fn a_panic_on_a_broker_thread_stops_the_daemon_with_exit_70() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = embedded_config(dir.path(), port, "");
    let log = dir.path().join("daemon.log");
    // Debug builds only: the gate panics on the next connection, as
    // rumqttd's router did on a multi-byte topic.
    let mut d = Proc(
        bin()
            .env("FER_EDGE_LOG", "info")
            .env("FER_EDGE_FAULT", "broker-panic")
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_log(
        &log,
        "embedded MQTT broker listening",
        Duration::from_secs(60)
    )
    .is_some());
    let _ = mosquitto_pub(port, &["-t", "robots/x", "-m", "x"]);
    let status = d.wait_exit(Duration::from_secs(15));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(70), "{logged}");
    assert!(
        logged.contains("the embedded MQTT broker panicked on its mqtt-gate thread"),
        "{logged}"
    );
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[test]
fn a_decompression_bomb_as_frame_0_of_a_looping_replay_is_skipped_and_the_rest_published() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let pan1 = root().join("tests/data/sequences/pan1");
    for e in std::fs::read_dir(&pan1).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, frames.join(p.file_name().unwrap())).unwrap();
    }
    // Frame 0 declares 12000x12000 (once 8.6 GB of daemon memory).
    let bomb = declaring(std::fs::read(pan1.join("0000.jpg")).unwrap(), 12000, 12000);
    std::fs::write(frames.join("0000.jpg"), &bomb).unwrap();
    let port = free_port();
    let mut c = DaemonConfig::live(port);
    c.embedded = true;
    let seq = frames.display().to_string();
    c.sequence = &seq;
    let cfg = write_config(dir.path(), &c);
    let log = dir.path().join("daemon.log");
    let mut d = daemon_logged(&cfg, &log, "info");
    assert!(wait_for_log(
        &log,
        "embedded MQTT broker listening",
        Duration::from_secs(60)
    )
    .is_some());
    let watch = Subscriber::start(port);
    assert!(
        watch.wait_for(Duration::from_secs(30), |m| expressions(m).len() >= 20),
        "the other frames are published: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let line = wait_for_log(&log, "refused before decoding", Duration::from_secs(5));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("0000.jpg") && l.contains("12000x12000")),
        "{line:?}"
    );
    let peak = peak_rss_mb(d.0.id());
    assert!(peak < 1024.0, "peak memory {peak:.0} MB");
    eprintln!("peak memory with a 12000x12000 bomb looping as frame 0: {peak:.0} MB");
    watch.stop();
    d.stop_cleanly();
}

#[test]
fn clients_retained_messages_are_bounded_and_past_the_bound_delivered_but_not_kept() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut d, log) = start_embedded(dir.path(), port, "");
    // 250 KB payloads: the 16 MiB bound is reached after 67 of them.
    let payload = dir.path().join("payload.bin");
    std::fs::write(&payload, "x".repeat(250_000)).unwrap();
    let before = peak_rss_mb(d.0.id());
    let live = mosquitto_sub_bg(port, &["-F", "%t %r"], "big/79", 1, 60);
    for i in 0..80 {
        let o = mosquitto_pub(
            port,
            &[
                "-r",
                "-t",
                &format!("big/{i}"),
                "-f",
                payload.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{i}: {}", text(&o));
    }
    // A subscriber that was there gets the last one, without the retain flag.
    assert_eq!(finish(live).trim(), "big/79 0");
    assert!(retained(port, "big/0").is_some(), "the first ones are kept");
    assert!(
        retained(port, "big/79").is_none(),
        "past the bound nothing is kept"
    );
    let line =
        wait_for_log(&log, "retained store is full", Duration::from_secs(5)).expect("a WARN");
    assert!(line.contains("big/67"), "{line}");
    // Clearing one makes room for another.
    let o = mosquitto_pub(port, &["-r", "-t", "big/0", "-n"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = mosquitto_pub(
        port,
        &["-r", "-t", "big/79", "-f", payload.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(retained(port, "big/79").is_some());
    let after = peak_rss_mb(d.0.id());
    eprintln!("daemon peak memory: {before:.0} MB before, {after:.0} MB after 81 retained 250 KB publishes");
    assert!(after - before < 200.0, "{before:.0} -> {after:.0} MB");
    d.stop_cleanly();
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn held_metrics_connections_are_capped_and_cost_the_daemon_no_descriptors_beyond_the_cap() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics = free_port();
    let (mut d, log) = start_embedded(
        dir.path(),
        port,
        &format!("\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"),
    );
    let before = open_fds(d.0.id());
    let held: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", metrics)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = open_fds(d.0.id());
    assert!(
        during <= before + 40,
        "{before} descriptors before, {during} while 300 are held"
    );
    assert!(wait_for_log(&log, "connections are open already", Duration::from_secs(5)).is_some());
    // The daemon and its broker go on meanwhile.
    assert_still_serves(port, &mut d);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let page = http_get(metrics, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let refused: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("fer_edge_metrics_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .expect("the refusal counter");
    assert!(refused >= 250, "{refused} refused");
    d.stop_cleanly();
}

#[test]
fn a_flood_of_idle_connections_is_capped_and_the_broker_serves_again_after_it() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut d, log) = start_embedded(dir.path(), port, "");
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // One more is closed at once, with a warning.
    let mut extra = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    use std::io::Read;
    assert_eq!(extra.read(&mut buf).unwrap_or(0), 0, "closed, not served");
    assert!(wait_for_log(
        &log,
        "clients are connected already",
        Duration::from_secs(5)
    )
    .is_some());
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    assert_still_serves(port, &mut d);
    d.stop_cleanly();
}

#[test]
fn a_network_listen_needs_a_login_and_the_users_file_takes_mosquitto_passwd_hashes() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // 0.0.0.0 without a users file: refused at start, naming the fix.
    let cfg = embedded_config(dir.path(), port, "");
    let t = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:", "0.0.0.0:");
    std::fs::write(&cfg, &t).unwrap();
    let o = run(bin().args(["run", "--config"]).arg(&cfg));
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(text(&o).contains("mqtt.broker.users_file"), "{}", text(&o));
    let o = run(bin().args(["check", "--config"]).arg(&cfg));
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));

    let users = dir.path().join("users");
    let made = run(Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&users)
        .args(["robot", "s3cret"]));
    assert!(made.status.success(), "{}", text(&made));
    std::fs::write(
        &cfg,
        format!("{t}\n[mqtt.broker]\nusers_file = \"{}\"\n", users.display()),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let mut d = daemon_logged(&cfg, &log, "info");
    assert!(wait_for_log(
        &log,
        "embedded MQTT broker listening",
        Duration::from_secs(60)
    )
    .is_some());
    let o = mosquitto_sub(port, &[], STATUS, 1);
    assert!(
        text(&o).contains("not authorised"),
        "anonymous: {}",
        text(&o)
    );
    let o = mosquitto_sub(port, &["-u", "robot", "-P", "wrong"], STATUS, 1);
    assert!(
        text(&o).contains("bad user name or password"),
        "{}",
        text(&o)
    );
    let o = mosquitto_sub(port, &["-u", "robot", "-P", "s3cret"], STATUS, 1);
    assert_eq!(text(&o).trim(), format!("{STATUS} online"));
    let o = paho_sub(port, "5", STATUS, 1, Some(("robot", "s3cret")));
    assert!(text(&o).contains("online"), "{}", text(&o));
    let o = paho_sub(port, "5", STATUS, 1, Some(("robot", "nope")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    d.stop_cleanly();

    // allow_anonymous = true: accepted, with a warning at start.
    std::fs::write(
        &cfg,
        format!("{t}\n[mqtt.broker]\nallow_anonymous = true\n"),
    )
    .unwrap();
    let mut d = daemon_logged(&cfg, &log, "warn");
    let w = wait_for_log(
        &log,
        "accepts anyone on the network",
        Duration::from_secs(60),
    );
    assert!(w.is_some_and(|l| l.contains("WARN")));
    d.signal("TERM");
    let _ = d.wait_exit(Duration::from_secs(5));
}

/// A CA, and a server certificate it signs for 127.0.0.1 and localhost.
fn make_certs(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
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

fn external_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let p = write_config(dir, &DaemonConfig::live(port));
    let mut t = std::fs::read_to_string(&p).unwrap();
    t.push_str(extra);
    std::fs::write(&p, t).unwrap();
    p
}

#[test]
fn tls_to_mosquitto_works_with_its_ca_and_a_wrong_ca_or_password_is_an_error_naming_the_fix() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = make_certs(d, "site");
    let (other_ca, _, _) = make_certs(d, "other");
    let port = free_port();
    let pw = d.join("mosquitto.passwd");
    assert!(run(Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&pw)
        .args(["kiosk", "right"]))
    .status
    .success());
    let _broker = mosquitto_with(
        port,
        d,
        &format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n",
            ca.display(),
            cert.display(),
            key.display(),
            pw.display()
        ),
    );
    let tls = |ca: &Path, password_file: &Path| {
        format!(
            "username = \"kiosk\"\npassword_file = \"{}\"\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"\n",
            password_file.display(),
            ca.display()
        )
    };
    let right = d.join("right.txt");
    std::fs::write(&right, "right\n").unwrap();
    let wrong = d.join("wrong.txt");
    std::fs::write(&wrong, "wrong\n").unwrap();
    let sub_args = [
        "--cafile",
        ca.to_str().unwrap(),
        "-u",
        "kiosk",
        "-P",
        "right",
    ];

    // The right CA and password: connected over TLS.
    let cfg = external_config(d, port, &tls(&ca, &right));
    let log = d.join("ok.log");
    let mut daemon = daemon_logged(&cfg, &log, "info");
    assert!(wait_for_log(
        &log,
        "connected to the MQTT broker",
        Duration::from_secs(60)
    )
    .is_some());
    let o = mosquitto_sub(port, &sub_args, STATUS, 1);
    assert_eq!(text(&o).trim(), format!("{STATUS} online"));
    daemon.stop_cleanly();

    // A CA that did not sign the broker's certificate: ERROR naming ca_file, still running.
    let cfg = external_config(d, port, &tls(&other_ca, &right));
    let log = d.join("ca.log");
    let mut daemon = daemon_logged(&cfg, &log, "warn");
    let line = wait_for_log(&log, "mqtt.tls.ca_file", Duration::from_secs(60)).expect("an error");
    assert!(line.contains("ERROR"), "{line}");
    assert!(daemon.alive());
    daemon.signal("TERM");
    let _ = daemon.wait_exit(Duration::from_secs(5));

    // A wrong password: ERROR naming password_file, repeated ever more rarely.
    let cfg = external_config(d, port, &tls(&ca, &wrong));
    let log = d.join("pw.log");
    let mut daemon = daemon_logged(&cfg, &log, "warn");
    let line = wait_for_log(&log, "mqtt.password_file", Duration::from_secs(60)).expect("an error");
    assert!(
        line.contains("ERROR")
            && (line.contains("not authorised") || line.contains("bad user name or password")),
        "{line}"
    );
    std::thread::sleep(Duration::from_secs(6));
    assert!(daemon.alive());
    let errors = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("mqtt.password_file"))
        .count();
    // Backoff 0.5 s: ~12+ attempts in 6 s, logged on attempts 1, 2, 4, 8 (16).
    assert!((2..=5).contains(&errors), "{errors} error lines");
    daemon.stop_cleanly();
}

#[test]
fn the_embedded_broker_serves_tls_with_its_own_certificate_and_a_login() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = make_certs(d, "kiosk");
    let users = d.join("users");
    std::fs::write(&users, "robot:s3cret\n").unwrap();
    let port = free_port();
    let extra = format!(
        "\n[mqtt.broker]\nusers_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        users.display(),
        cert.display(),
        key.display()
    );
    let cfg = embedded_config(d, port, &extra);
    let t = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:", "0.0.0.0:");
    std::fs::write(&cfg, t).unwrap();
    let log = d.join("daemon.log");
    let mut daemon = daemon_logged(&cfg, &log, "info");
    let up = wait_for_log(
        &log,
        "embedded MQTT broker listening",
        Duration::from_secs(60),
    );
    assert!(up.is_some_and(|l| l.contains("TLS")));
    let ca = ca.to_str().unwrap();
    for v in ["mqttv311", "mqttv5"] {
        let o = mosquitto_sub(
            port,
            &["-V", v, "--cafile", ca, "-u", "robot", "-P", "s3cret"],
            STATUS,
            1,
        );
        assert_eq!(text(&o).trim(), format!("{STATUS} online"), "{v}");
    }
    // Plain TCP is not MQTT here, and a client that does not trust the CA fails its handshake.
    let o = mosquitto_sub(port, &["-u", "robot", "-P", "s3cret"], STATUS, 1);
    assert_ne!(o.status.code(), Some(0));
    let (other_ca, _, _) = make_certs(d, "other");
    let o = mosquitto_sub(
        port,
        &[
            "--cafile",
            other_ca.to_str().unwrap(),
            "-u",
            "robot",
            "-P",
            "s3cret",
        ],
        STATUS,
        1,
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(wait_for_log(&log, "failed the TLS handshake", Duration::from_secs(5)).is_some());
    assert!(daemon.alive());
    daemon.stop_cleanly();
}

#[test]
fn sigterm_under_load_sends_every_end_and_offline_exactly_once() {
    shutdown_under_load_sends_every_end_and_offline_exactly_once("TERM");
}

/// SIGHUP (a closed terminal or SSH session) ends the daemon as SIGTERM
/// does (issue 19, case 8: it used to kill it with no `end`, no `offline`).
#[test]
fn sighup_under_load_shuts_down_like_sigterm() {
    shutdown_under_load_sends_every_end_and_offline_exactly_once("HUP");
}

fn shutdown_under_load_sends_every_end_and_offline_exactly_once(signal: &str) {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    let mut c = DaemonConfig::live(port);
    c.sequence = "pan6";
    let cfg = write_config(dir.path(), &c);
    let sub = Subscriber::start(port);
    let mut d = daemon(&cfg);
    assert!(
        sub.wait_for(Duration::from_secs(90), |m| on(m, "/events")
            .iter()
            .filter(|p| p.contains("\"type\":\"new\""))
            .count()
            >= 5),
        "at least five faces tracked"
    );
    let t0 = Instant::now();
    d.signal(signal);
    let code = d.wait_exit(Duration::from_secs(5)).and_then(|s| s.code());
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "SIG{signal}");
    assert!(
        took < Duration::from_secs(1),
        "SIG{signal} to exit took {took:?}"
    );
    let msgs = sub.stop();
    let offline = on(&msgs, "/status")
        .iter()
        .filter(|p| **p == "offline")
        .count();
    assert_eq!(
        offline,
        1,
        "offline once, not also as the will: {:?}",
        on(&msgs, "/status")
    );
    assert_track_order(&msgs);
    let ids = |kind: &str| -> std::collections::BTreeSet<u64> {
        on(&msgs, "/events")
            .iter()
            .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap())
            .filter(|e| e["type"] == kind)
            .map(|e| e["track_id"].as_u64().unwrap())
            .collect()
    };
    assert!(ids("new").len() >= 5, "{:?}", ids("new"));
    assert_eq!(ids("new"), ids("end"), "every track that began has ended");
    eprintln!("SIG{signal} with six tracks: exit 0 in {took:?}");
}

/// One shutdown of a daemon on its embedded broker, watched by a paho
/// subscriber of `fer-edge/#` at `qos` over MQTT `version`: what it got.
fn embedded_shutdown_seen_by(version: &str, qos: u8) -> Vec<(String, String)> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = DaemonConfig::live(port);
    c.embedded = true;
    c.sequence = "pan6";
    let cfg = write_config(dir.path(), &c);
    let log = dir.path().join("daemon.log");
    let mut d = daemon_logged(&cfg, &log, "info");
    assert!(wait_for_log(
        &log,
        "embedded MQTT broker listening",
        Duration::from_secs(60)
    )
    .is_some());
    let mut w = Command::new(clients_python())
        .arg(root().join("tests/clients/paho_watch.py"))
        .args([
            "127.0.0.1",
            &port.to_string(),
            version,
            &qos.to_string(),
            "fer-edge/#",
            "60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = w.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let news = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("\"type\":\"new\""))
            .count()
    };
    let t0 = Instant::now();
    while news(&lines.lock().unwrap()) < 3 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    d.signal("TERM");
    let code = d.wait_exit(Duration::from_secs(5)).and_then(|s| s.code());
    assert_eq!(code, Some(0), "{}", std::fs::read_to_string(&log).unwrap());
    let status = w.wait().unwrap();
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("/status ") || l.contains("/events "))
        .collect();
    assert!(
        status.success(),
        "MQTT {version} QoS {qos}: no offline after online: {said:?}"
    );
    lines
        .iter()
        .filter(|l| *l != "subscribed")
        .map(|l| {
            let (t, p) = l.split_once(' ').unwrap_or((l, ""));
            (t.to_string(), p.to_string())
        })
        .collect()
}

#[test]
fn at_shutdown_the_embedded_broker_delivers_every_end_and_offline_at_every_qos_and_version() {
    let _g = serial();
    // FER_EDGE_SHUTDOWN_ROUNDS=20 for the closing note's figures; CI runs 2.
    let rounds: usize = std::env::var("FER_EDGE_SHUTDOWN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for version in ["311", "5"] {
        for qos in [0u8, 1, 2] {
            for round in 0..rounds {
                let msgs = embedded_shutdown_seen_by(version, qos);
                let ids = |kind: &str| -> std::collections::BTreeSet<u64> {
                    on(&msgs, "/events")
                        .iter()
                        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                        .filter(|e| e["type"] == kind)
                        .map(|e| e["track_id"].as_u64().unwrap())
                        .collect()
                };
                let offline = on(&msgs, "/status")
                    .iter()
                    .filter(|p| **p == "offline")
                    .count();
                assert_eq!(offline, 1, "MQTT {version} QoS {qos} round {round}");
                assert!(
                    ids("new").len() >= 3,
                    "MQTT {version} QoS {qos} round {round}"
                );
                assert_eq!(
                    ids("new"),
                    ids("end"),
                    "MQTT {version} QoS {qos} round {round}: every track that began has ended"
                );
                assert_track_order(&msgs);
            }
            eprintln!("MQTT {version}, QoS {qos}: {rounds} of {rounds} shutdowns delivered every end event and offline");
        }
    }
}

#[test]
fn sigkill_leaves_the_last_will_offline() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = mosquitto(port, dir.path());
    let cfg = write_config(dir.path(), &DaemonConfig::live(port));
    let mut d = daemon(&cfg);
    let t0 = Instant::now();
    while retained(port, STATUS).as_deref() != Some("online") {
        assert!(t0.elapsed() < Duration::from_secs(60), "never online");
    }
    d.signal("KILL");
    let _ = d.wait_exit(Duration::from_secs(5));
    // mosquitto sends the will once it sees the socket close.
    let t0 = Instant::now();
    let mut s = retained(port, STATUS);
    while s.as_deref() != Some("offline") && t0.elapsed() < Duration::from_secs(10) {
        s = retained(port, STATUS);
    }
    assert_eq!(s.as_deref(), Some("offline"));
}

/// `run` and `check` both exit 78 (the one config-error code), both naming `key`, for the test
/// config with `extra` as a second config file layered on top of it.
fn refused_by_run_and_check(extra: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonConfig::replay(free_port(), true, "pan1"));
    let over = dir.path().join("extra.toml");
    std::fs::write(&over, extra).unwrap();
    for (cmd, code) in [("run", 78), ("check", 78)] {
        let o = run(bin()
            .args([cmd, "--config"])
            .arg(&cfg)
            .arg("--config")
            .arg(&over));
        assert_eq!(
            o.status.code(),
            Some(code),
            "{cmd} with {extra}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains(key),
            "{cmd} with {extra} must name {key}: {}",
            text(&o)
        );
        assert!(!text(&o).contains("panicked"));
    }
}

/// A `[source]` naming an RTSP camera whose login is in a file written
/// with `mode` (through a symbolic link when `link`).
fn camera_login(dir: &tempfile::TempDir, name: &str, text: &str, mode: u32, link: bool) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.path().join(format!("{name}-login"));
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let named = if link {
        let l = dir.path().join(format!("{name}-login-link"));
        std::os::unix::fs::symlink(&file, &l).unwrap();
        l
    } else {
        file
    };
    format!(
        "[source]\nkind = \"gstreamer\"\nuri = \"rtsp://127.0.0.1:1/cam\"\ncredentials_file = \"{}\"",
        named.display()
    )
}

#[test]
fn configs_that_would_start_broken_are_refused_by_run_and_by_check() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let not_a_cert = dir.path().join("ca.pem");
    std::fs::write(&not_a_cert, "this is not a certificate\n").unwrap();
    let long = "k".repeat(200);
    let cases = [
        (
            "[mqtt]\ndevice_id = \"kiosk$1\"".to_string(),
            "mqtt.device_id",
        ),
        (
            "[mqtt]\ntopic_prefix = \"$SYS\"".into(),
            "mqtt.topic_prefix",
        ),
        (
            "[mqtt]\ntopic_prefix = \"a//b\"".into(),
            "mqtt.topic_prefix",
        ),
        (format!("[mqtt]\ndevice_id = \"{long}\""), "mqtt.device_id"),
        ("[mqtt]\nclient_id = \"a b\"".into(), "mqtt.client_id"),
        ("[mqtt]\nlisten = \"127.0.0.1:0\"".into(), "mqtt.listen"),
        ("[mqtt]\nembedded = false\nport = 0".into(), "mqtt.port"),
        (
            "[detector]\nthresholds = [0.6, 0.7, 0.7, 0.7]".into(),
            "thresholds",
        ),
        (
            format!(
                "[mqtt]\nembedded = false\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"",
                not_a_cert.display()
            ),
            "mqtt.tls.ca_file",
        ),
        (
            "[mqtt]\nembedded = false\nusername = \"u\"\npassword_file = \"/dev/zero\"".into(),
            "character device",
        ),
        // Periods that round to a zero Duration panicked the timer after
        // `check` had said ok (issue 29, case 8).
        (
            "[mqtt]\nstats_interval_s = 1e-300".into(),
            "mqtt.stats_interval_s",
        ),
        ("[source]\nfps = 1e-300".into(), "source.fps"),
        (
            "[follow]\nexpression_rate_hz = 1e-300".into(),
            "follow.expression_rate_hz",
        ),
        // A camera's credentials file: world-readable, a symbolic link,
        // malformed (issue 29, case 11).
        (
            camera_login(&dir, "open", "robot:pw\n", 0o644, false),
            "chmod 600",
        ),
        (
            camera_login(&dir, "link", "robot:pw\n", 0o600, true),
            "symbolic link",
        ),
        (
            camera_login(&dir, "bad", "no colon here\n", 0o600, false),
            "user:password",
        ),
    ];
    for (extra, key) in &cases {
        refused_by_run_and_check(extra, key);
    }
}

/// A copy of the shipped bundle with `edit` applied to its manifest and
/// `model` (if given) as its ONNX file, sha256 updated.
fn broken_bundle(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut serde_json::Value),
    model: Option<Vec<u8>>,
) -> PathBuf {
    let src = root().join("models/fer-minixception");
    let dst = dir.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("bundle.json")).unwrap()).unwrap();
    if let Some(bytes) = model {
        let file = m["model_file"].as_str().unwrap().to_string();
        std::fs::write(dst.join(&file), &bytes).unwrap();
        use sha2::Digest as _;
        m["sha256"] = format!("{:x}", sha2::Sha256::digest(&bytes)).into();
    }
    edit(&mut m);
    std::fs::write(
        dst.join("bundle.json"),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    dst
}

#[test]
fn bundles_that_analyze_rejects_are_rejected_by_inspect_and_check_too() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let onnx = std::fs::read(root().join("models/fer-minixception/model.onnx"))
        .or_else(|_| {
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(root().join("models/fer-minixception/bundle.json"))
                    .unwrap(),
            )
            .unwrap();
            std::fs::read(
                root()
                    .join("models/fer-minixception")
                    .join(m["model_file"].as_str().unwrap()),
            )
        })
        .unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let bundles = [
        broken_bundle(d, "empty", |_| {}, Some(Vec::new())),
        broken_bundle(
            d,
            "truncated",
            |_| {},
            Some(onnx[..onnx.len() / 3].to_vec()),
        ),
        broken_bundle(d, "random", |_| {}, Some(random)),
        broken_bundle(
            d,
            "outputs",
            |m| m["outputs"]["expressions"] = "logits_x".into(),
            None,
        ),
        broken_bundle(
            d,
            "input",
            |m| m["input"]["name"] = "not_the_input".into(),
            None,
        ),
        // 1e39 does not fit an f32: it reads as infinity.
        broken_bundle(
            d,
            "mean",
            |m| m["input"]["mean"] = serde_json::json!([1e39]),
            None,
        ),
    ];
    let photo = root().join("tests/data/group_t1.jpg");
    for b in &bundles {
        let name = b.file_name().unwrap().to_string_lossy().to_string();
        let inspect = run(bin().args(["model", "inspect"]).arg(b));
        let analyze = run(bin().arg("analyze").arg(&photo).arg("--model").arg(b));
        assert_eq!(
            analyze.status.code(),
            Some(78),
            "{name}: analyze {}",
            text(&analyze)
        );
        assert_eq!(
            inspect.status.code(),
            Some(78),
            "{name}: inspect vouched: {}",
            text(&inspect)
        );
        for o in [&inspect, &analyze] {
            assert!(
                text(o).contains("error:") && !text(o).contains("panicked"),
                "{name}: {}",
                text(o)
            );
        }
    }
}

#[test]
fn inspect_prints_a_non_ascii_node_name_without_panicking() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let b = broken_bundle(
        dir.path(),
        "gcn",
        |m| m["gcn"] = serde_json::json!({"file": "gcn.json"}),
        None,
    );
    let nodes: Vec<String> = [
        "Ουδέτερο-συναίσθημα",
        "Χαρά",
        "Λύπη",
        "Έκπληξη",
        "Φόβος",
        "Αηδία",
        "Θυμός",
        "Σθένος",
        "Διέγερση",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let w: Vec<Vec<f32>> = (0..9)
        .map(|i| (0..4).map(|j| ((i * 4 + j) as f32).sin()).collect())
        .collect();
    std::fs::write(
        b.join("gcn.json"),
        serde_json::json!({"nodes": nodes, "graph": {"tau": 0.4, "p": 0.2}, "W": w}).to_string(),
    )
    .unwrap();
    let o = run(bin().args(["model", "inspect"]).arg(&b));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Ουδέτερο-σ"), "{}", text(&o));
}

#[test]
fn devices_fifos_and_oversized_files_are_refused_quickly_with_their_cause() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("frames.fifo");
    assert!(run(Command::new("mkfifo").arg(&fifo)).status.success());
    let big = dir.path().join("big.jpg");
    let mut bytes = std::fs::read(root().join("tests/data/group_t1.jpg")).unwrap();
    bytes.resize(3 << 20, 0);
    std::fs::write(&big, bytes).unwrap();
    let t0 = Instant::now();
    let o = run(bin()
        .arg("analyze")
        .arg("/dev/zero")
        .arg(&fifo)
        .arg(&big)
        .args(["--max-image-mb", "2"]));
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("/dev/zero: is a character device"), "{t}");
    assert!(t.contains("FIFO"), "{t}");
    assert!(t.contains("3145728 bytes is over the 2 MiB limit"), "{t}");
    for (what, path) in [
        ("model inspect", "/dev/zero"),
        ("model inspect", fifo.to_str().unwrap()),
    ] {
        let o = run(bin().args(what.split(' ')).arg(path));
        assert_eq!(o.status.code(), Some(78), "{what} {path}: {}", text(&o));
    }
    let o = run(bin().args(["check", "--config", "/dev/zero"]));
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).contains("character device"), "{}", text(&o));
}

#[test]
fn three_hundred_mutated_images_give_no_panic_and_no_hang() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    // Real photos at 320 px wide: the mutations matter, not the detector's time.
    let small = |name: &str, format: image::ImageFormat| {
        let img = image::open(root().join("tests/data").join(name)).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        img.resize(320, 320, image::imageops::FilterType::Triangle)
            .to_rgb8()
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    };
    let sources = [
        small("group_t1.jpg", image::ImageFormat::Jpeg),
        small("coffee.png", image::ImageFormat::Png),
    ];
    let mut seed = 20261128u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        let mut b = sources[i % 2].clone();
        match next() % 4 {
            0 => {
                // Flip bytes anywhere (headers included).
                for _ in 0..(1 + next() % 16) {
                    let at = (next() as usize) % b.len();
                    b[at] ^= (next() % 255 + 1) as u8;
                }
            }
            1 => b.truncate((next() as usize) % b.len()),
            2 => {
                // Splice garbage into the middle.
                let at = (next() as usize) % b.len();
                let junk: Vec<u8> = (0..(next() % 512)).map(|_| next() as u8).collect();
                b.splice(at..at, junk);
            }
            _ => {
                // Overwrite a run with one value (zeros or 0xFF markers).
                let at = (next() as usize) % b.len();
                let end = (at + (next() as usize) % 2048).min(b.len());
                let v = if next() % 2 == 0 { 0 } else { 0xFF };
                b[at..end].fill(v);
            }
        }
        let ext = if i % 2 == 0 { "jpg" } else { "png" };
        std::fs::write(dir.path().join(format!("m{i:03}.{ext}")), b).unwrap();
    }
    // Output to files: a full pipe would stall the child while we wait.
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = bin()
        .arg("analyze")
        .arg(dir.path())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "analyze hung on a mutated image"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(matches!(status.code(), Some(0) | Some(1)), "{err}");
    // Every image is accounted for: one JSON line or one error line.
    let ok = out.lines().count();
    let failed = err.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(ok + failed, 300, "{ok} analysed, {failed} failed");
    eprintln!("mutated images: {ok} analysed, {failed} refused with a reason");
}
