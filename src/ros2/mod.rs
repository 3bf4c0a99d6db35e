//! ROS 2 output, ROS4HRI-native: the daemon publishes REP-155's face
//! topics itself over DDS, so a robot needs no bridge and the Jetson no
//! ROS installation.
//!
//! In: every frame's [`FrameOutput`] and its stamp through the
//! [`Output`] seam. Per-frame readings never wait: a bounded queue, drops
//! counted in [`Telemetry`] (`stats.ros2`, `/metrics`) and logged; a
//! changed track list waits for room (one DDS write at most). Out, on DDS domain `[ros2] domain_id` (or
//! `ROS_DOMAIN_ID`), on loopback only unless `discovery_range` (or ROS 2's
//! `ROS_AUTOMATIC_DISCOVERY_RANGE`) says `subnet`, with ROS 2's
//! topic and type naming (`rt/...`, `pkg::msg::dds_::Name_`):
//! - `/humans/faces/tracked` (`hri_msgs/IdsList`): the face ids tracked
//!   now, sent when they change; reliable, transient local, depth 1 (a
//!   late subscriber gets the current list, as with a latched topic);
//! - `/humans/faces/<id>/expression` (`hri_msgs/Expression`): the smoothed
//!   expression in ROS4HRI's constants, valence, arousal, confidence;
//! - `/humans/faces/<id>/roi` (`hri_msgs/NormalizedRegionOfInterest2D`).
//!
//! Per-face topics are reliable, transient local, depth 1: they match
//! subscribers with ROS 2's default QoS (reliable, volatile, depth 10),
//! with `SensorDataQoS` (best effort) and latched ones. Face ids are `f`
//! and fer-edge's track id (`f12`). The DDS stack is RustDDS (pure Rust,
//! RTPS 2.x), which interoperates with the DDS implementations ROS 2 uses
//! (tested against Eclipse Cyclone DDS, `tests/ros2.rs`).
//!
//! Built with the `ros2` cargo feature; without it `[ros2] enabled = true`
//! is refused at start with the way to get it.

pub mod image;
pub mod msgs;

#[cfg(feature = "ros2")]
pub(crate) mod dds;

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use serde::Deserialize;

use crate::output::{Captured, Output};
use crate::telemetry::{Counter, Telemetry};
use crate::track::core::{FaceOutput, FrameOutput};

/// `[ros2]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ros2Config {
    /// Publish the ROS4HRI topics.
    pub enabled: bool,
    /// The robot's ROS_DOMAIN_ID. Unset: `ROS_DOMAIN_ID` from the
    /// environment, as every ROS 2 node reads it, else 0.
    pub domain_id: Option<u16>,
    /// Who can discover fer-edge and receive its messages: `localhost`
    /// (this machine only: discovery and data on loopback, no multicast on
    /// the LAN) or `subnet` (the robot's other machines too). Unset: ROS
    /// 2's environment (`ROS_AUTOMATIC_DISCOVERY_RANGE`, or the older
    /// `ROS_LOCALHOST_ONLY=1`), else `localhost`: fer-edge's messages
    /// describe people's faces and emotions, so they stay on the machine
    /// unless the integrator says otherwise (ROS 2 itself defaults to
    /// the subnet).
    pub discovery_range: Option<DiscoveryRange>,
    /// `header.frame_id` of every message: the camera's TF frame. Unset:
    /// the image's own `header.frame_id` with a ROS 2 source, else `camera`.
    pub frame_id: Option<String>,
    /// Frames waiting for the DDS thread; more are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for Ros2Config {
    fn default() -> Self {
        Ros2Config {
            enabled: false,
            domain_id: None,
            discovery_range: None,
            frame_id: None,
            queue_capacity: 8,
        }
    }
}

/// How far DDS discovery and data reach (ROS 2's automatic discovery
/// range, less `OFF`, which would leave nobody to publish to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscoveryRange {
    Localhost,
    Subnet,
}

/// The domain and range the ROS 2 side runs on, and where each came from
/// (said in the start-up log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub domain_id: u16,
    pub range: DiscoveryRange,
    pub domain_from: &'static str,
    pub range_from: &'static str,
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let range = match self.range {
            DiscoveryRange::Localhost => "localhost only",
            DiscoveryRange::Subnet => "the subnet",
        };
        write!(
            f,
            "DDS domain {} (from {}), discovery {range} (from {})",
            self.domain_id, self.domain_from, self.range_from
        )
    }
}

/// RTPS port numbers overflow past 232 (ROS 2's documented limit).
const MAX_DOMAIN_ID: u16 = 232;

impl Ros2Config {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(d) = self.domain_id.filter(|d| *d > MAX_DOMAIN_ID) {
            return Err(format!(
                "ros2.domain_id = {d} is out of range: use the robot's ROS_DOMAIN_ID, 0..{MAX_DOMAIN_ID}"
            ));
        }
        if self.queue_capacity == 0 {
            return Err("ros2.queue_capacity must be at least 1".into());
        }
        if self.enabled && !cfg!(feature = "ros2") {
            return Err(Ros2Error::NotBuilt.to_string());
        }
        if self.enabled {
            self.network(|k| std::env::var(k).ok())?;
        }
        Ok(())
    }

    /// The domain and discovery range: the config's keys, else ROS 2's
    /// environment variables (read through `env`), else domain 0 and
    /// localhost.
    pub fn network(&self, env: impl Fn(&str) -> Option<String>) -> Result<Network, String> {
        let (domain_id, domain_from) = match (self.domain_id, env("ROS_DOMAIN_ID")) {
            (Some(d), _) => (d, "ros2.domain_id"),
            (None, Some(v)) if !v.trim().is_empty() => {
                let d = v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|d| *d <= MAX_DOMAIN_ID)
                    .ok_or_else(|| {
                        format!(
                            "ROS_DOMAIN_ID={v:?} in the environment is not a domain id 0..{MAX_DOMAIN_ID}: fix it, or set ros2.domain_id"
                        )
                    })?;
                (d, "ROS_DOMAIN_ID")
            }
            _ => (0, "the default"),
        };
        let range_env = env("ROS_AUTOMATIC_DISCOVERY_RANGE").filter(|v| !v.trim().is_empty());
        let (range, range_from) = match (self.discovery_range, range_env) {
            (Some(r), _) => (r, "ros2.discovery_range"),
            (None, Some(v)) => match v.trim().to_ascii_uppercase().as_str() {
                "LOCALHOST" => (DiscoveryRange::Localhost, "ROS_AUTOMATIC_DISCOVERY_RANGE"),
                "SUBNET" | "SYSTEM_DEFAULT" => {
                    (DiscoveryRange::Subnet, "ROS_AUTOMATIC_DISCOVERY_RANGE")
                }
                "OFF" => {
                    return Err("ROS_AUTOMATIC_DISCOVERY_RANGE=OFF leaves no other process to publish to: set it to LOCALHOST or SUBNET, set ros2.discovery_range, or set ros2.enabled = false".into())
                }
                _ => {
                    return Err(format!(
                        "ROS_AUTOMATIC_DISCOVERY_RANGE={v:?} is not one of LOCALHOST, SUBNET, SYSTEM_DEFAULT, OFF"
                    ))
                }
            },
            (None, None) => match env("ROS_LOCALHOST_ONLY").as_deref().map(str::trim) {
                Some("1") => (DiscoveryRange::Localhost, "ROS_LOCALHOST_ONLY"),
                Some("0") => (DiscoveryRange::Subnet, "ROS_LOCALHOST_ONLY"),
                _ => (DiscoveryRange::Localhost, "fer-edge's privacy default"),
            },
        };
        Ok(Network {
            domain_id,
            range,
            domain_from,
            range_from,
        })
    }
}

/// Why the ROS 2 output could not start.
#[derive(Debug, thiserror::Error)]
pub enum Ros2Error {
    #[error("ros2.enabled = true, but this fer-edge was built without ROS 2 output: build with `cargo build --release --features ros2` (a default feature), or set ros2.enabled = false")]
    NotBuilt,
    #[error("cannot join DDS domain {domain}: {why}; check that the machine has a network interface with multicast (loopback is enough on one machine) and that ros2.domain_id is the robot's ROS_DOMAIN_ID")]
    Participant { domain: u16, why: String },
    #[error("cannot create the DDS {what}: {why}")]
    Entity { what: String, why: String },
    #[error("{0}")]
    Environment(String),
}

/// What the DDS thread needs of one frame.
#[derive(Debug, Clone)]
pub struct Update {
    /// Seconds of the capture: the image's own stamp with a ROS 2 source,
    /// else Unix time.
    pub unix: f64,
    /// The image's own frame id (a ROS 2 source).
    pub frame_id: Option<String>,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceOutput>,
    /// The tracked ids, when they changed.
    pub tracked: Option<Vec<u64>>,
    /// Tracks that ended (their writers go).
    pub ended: Vec<u64>,
}

/// The running output: a queue into the DDS thread.
pub struct Ros2Output {
    tx: Option<SyncSender<Update>>,
    thread: Option<std::thread::JoinHandle<()>>,
    telemetry: Arc<Telemetry>,
}

impl Ros2Output {
    /// Joins the domain and starts the DDS thread; None when disabled.
    /// Frames sent and dropped are counted in `telemetry`.
    pub fn start(
        cfg: &Ros2Config,
        telemetry: Arc<Telemetry>,
    ) -> Result<Option<Ros2Output>, Ros2Error> {
        if !cfg.enabled {
            return Ok(None);
        }
        #[cfg(feature = "ros2")]
        {
            let net = cfg
                .network(|k| std::env::var(k).ok())
                .map_err(Ros2Error::Environment)?;
            let mut node = dds::Node::join(cfg, &net)?;
            let (tx, rx) = std::sync::mpsc::sync_channel::<Update>(cfg.queue_capacity);
            let thread = std::thread::Builder::new()
                .name("ros2".into())
                .spawn(move || {
                    while let Ok(u) = rx.recv() {
                        node.publish(&u);
                    }
                    node.finish();
                })
                .map_err(|e| Ros2Error::Entity {
                    what: "output thread".into(),
                    why: e.to_string(),
                })?;
            tracing::info!(
                domain_id = net.domain_id,
                "publishing ROS4HRI topics on ROS 2 ({net}): /humans/faces/tracked, /humans/faces/<id>/expression and /roi"
            );
            Ok(Some(Ros2Output {
                tx: Some(tx),
                thread: Some(thread),
                telemetry,
            }))
        }
        #[cfg(not(feature = "ros2"))]
        {
            let _ = telemetry;
            Err(Ros2Error::NotBuilt)
        }
    }
}

impl Output for Ros2Output {
    /// Queues one frame's output (None: the shutdown output, no faces).
    /// Per-frame readings never wait: when the queue is full they are
    /// dropped and counted. A change of the tracked list (or an ended
    /// track) does wait for room, because a lost one would leave a face
    /// listed forever; the DDS thread drains the queue, so the wait is one
    /// write at most.
    fn frame(&mut self, out: &FrameOutput, captured: Option<&Captured>) {
        let (unix, width, height) = match captured {
            Some(c) => (
                c.origin.as_ref().map_or(c.stamp.unix, |o| o.stamp),
                c.stamp.width,
                c.stamp.height,
            ),
            None => (crate::frame::unix_now(), 0, 0),
        };
        let frame_id = captured.and_then(|c| c.origin.as_ref().map(|o| o.frame_id.clone()));
        if out.faces.is_empty() && out.tracked.is_none() && out.ended.is_empty() {
            return;
        }
        let u = Update {
            unix,
            frame_id,
            width,
            height,
            faces: out.faces.clone(),
            tracked: out.tracked.clone(),
            ended: out.ended.iter().map(|s| s.track_id).collect(),
        };
        let Some(tx) = &self.tx else { return };
        let sent = match tx.try_send(u) {
            Ok(()) => true,
            // A changed track list must not be lost: wait for room.
            Err(TrySendError::Full(u)) if u.tracked.is_some() || !u.ended.is_empty() => {
                tx.send(u).is_ok()
            }
            Err(TrySendError::Full(_)) => {
                let t = &self.telemetry;
                if t.count(Counter::Ros2DroppedQueueFull) == 0 {
                    tracing::warn!("ROS 2 output falls behind: frames dropped (counted in stats ros2.dropped_queue_full)");
                }
                t.add(Counter::Ros2DroppedQueueFull, 1);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if sent {
            self.telemetry.add(Counter::Ros2Sent, 1);
        }
    }

    /// Sends what is queued and leaves the domain.
    fn finish(mut self: Box<Self>) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let dropped = self.telemetry.count(Counter::Ros2DroppedQueueFull);
        if dropped > 0 {
            tracing::warn!("ROS 2 output dropped {dropped} frames' readings (queue full)");
        }
        let quiet = crate::logging::dds_lines_suppressed();
        if quiet > 0 {
            tracing::warn!(
                "{quiet} DDS warnings were not logged (at most one per {} s)",
                crate::logging::DDS_LOG_PERIOD_S
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key_and_a_build_without_ros2_refuses_enabled() {
        assert!(Ros2Config::default().validate().is_ok());
        let e = Ros2Config {
            domain_id: Some(233),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("ros2.domain_id"), "{e}");
        let e = Ros2Config {
            queue_capacity: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("ros2.queue_capacity"), "{e}");
        let on = Ros2Config {
            enabled: true,
            ..Default::default()
        }
        .validate();
        if cfg!(feature = "ros2") {
            assert!(on.is_ok());
        } else {
            assert!(on.unwrap_err().contains("--features ros2"));
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_domain_and_range_follow_ros_2s_environment_unless_the_config_sets_them() {
        let plain = Ros2Config::default();
        let n = plain.network(env(&[])).unwrap();
        assert_eq!((n.domain_id, n.range), (0, DiscoveryRange::Localhost));
        assert_eq!(n.range_from, "fer-edge's privacy default");
        let n = plain
            .network(env(&[
                ("ROS_DOMAIN_ID", "42"),
                ("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET"),
            ]))
            .unwrap();
        assert_eq!((n.domain_id, n.range), (42, DiscoveryRange::Subnet));
        assert_eq!(
            (n.domain_from, n.range_from),
            ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")
        );
        assert!(
            n.to_string().contains("domain 42 (from ROS_DOMAIN_ID)"),
            "{n}"
        );
        let n = plain.network(env(&[("ROS_LOCALHOST_ONLY", "0")])).unwrap();
        assert_eq!(n.range, DiscoveryRange::Subnet);
        // The newer variable wins over the older one, as in ROS 2 Iron on.
        let n = plain
            .network(env(&[
                ("ROS_LOCALHOST_ONLY", "0"),
                ("ROS_AUTOMATIC_DISCOVERY_RANGE", "localhost"),
            ]))
            .unwrap();
        assert_eq!(n.range, DiscoveryRange::Localhost);
        // The config wins over the environment.
        let set = Ros2Config {
            domain_id: Some(7),
            discovery_range: Some(DiscoveryRange::Subnet),
            ..Default::default()
        };
        let n = set
            .network(env(&[
                ("ROS_DOMAIN_ID", "42"),
                ("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
            ]))
            .unwrap();
        assert_eq!((n.domain_id, n.range), (7, DiscoveryRange::Subnet));
        // Bad values name the variable.
        for (k, v) in [
            ("ROS_DOMAIN_ID", "300"),
            ("ROS_DOMAIN_ID", "x"),
            ("ROS_AUTOMATIC_DISCOVERY_RANGE", "OFF"),
            ("ROS_AUTOMATIC_DISCOVERY_RANGE", "LAN"),
        ] {
            let e = plain.network(env(&[(k, v)])).unwrap_err();
            assert!(e.contains(k), "{k}={v}: {e}");
        }
    }
}
