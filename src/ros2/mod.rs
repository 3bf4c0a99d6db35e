//! ROS 2 output, ROS4HRI-native: the daemon publishes REP-155's face
//! topics itself over DDS, so a robot needs no bridge and the Jetson no
//! ROS installation.
//!
//! In: every frame's [`FrameOutput`] and [`FrameStamp`] from the inference
//! thread ([`Ros2Output::send`] never blocks: a bounded queue, drops
//! counted and logged). Out, on DDS domain `[ros2] domain_id`, with ROS 2's
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

pub mod msgs;

#[cfg(feature = "ros2")]
mod dds;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use serde::Deserialize;

use crate::publish::payload::FrameStamp;
use crate::track::core::{FaceOutput, FrameOutput};

/// `[ros2]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ros2Config {
    /// Publish the ROS4HRI topics.
    pub enabled: bool,
    /// The robot's ROS_DOMAIN_ID.
    pub domain_id: u16,
    /// `header.frame_id` of every message: the camera's TF frame.
    pub frame_id: String,
    /// Frames waiting for the DDS thread; more are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for Ros2Config {
    fn default() -> Self {
        Ros2Config {
            enabled: false,
            domain_id: 0,
            frame_id: "camera".into(),
            queue_capacity: 8,
        }
    }
}

impl Ros2Config {
    pub fn validate(&self) -> Result<(), String> {
        // RTPS port numbers overflow past 232 (ROS 2's documented limit).
        if self.domain_id > 232 {
            return Err(format!(
                "ros2.domain_id = {} is out of range: use the robot's ROS_DOMAIN_ID, 0..232",
                self.domain_id
            ));
        }
        if self.queue_capacity == 0 {
            return Err("ros2.queue_capacity must be at least 1".into());
        }
        if self.enabled && !cfg!(feature = "ros2") {
            return Err(Ros2Error::NotBuilt.to_string());
        }
        Ok(())
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
}

/// What the DDS thread needs of one frame.
#[derive(Debug, Clone)]
pub struct Update {
    /// Unix seconds of the capture.
    pub unix: f64,
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
    dropped: Arc<AtomicU64>,
}

impl Ros2Output {
    /// Joins the domain and starts the DDS thread; None when disabled.
    pub fn start(cfg: &Ros2Config) -> Result<Option<Ros2Output>, Ros2Error> {
        if !cfg.enabled {
            return Ok(None);
        }
        #[cfg(feature = "ros2")]
        {
            let mut node = dds::Node::join(cfg)?;
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
                domain_id = cfg.domain_id,
                "publishing ROS4HRI topics on ROS 2 (DDS domain {}): /humans/faces/tracked, /humans/faces/<id>/expression and /roi",
                cfg.domain_id
            );
            Ok(Some(Ros2Output {
                tx: Some(tx),
                thread: Some(thread),
                dropped: Arc::default(),
            }))
        }
        #[cfg(not(feature = "ros2"))]
        {
            Err(Ros2Error::NotBuilt)
        }
    }

    /// Queues one frame's output (None: the shutdown output, no faces).
    pub fn send(&self, out: &FrameOutput, stamp: Option<&FrameStamp>) {
        let (unix, width, height) = match stamp {
            Some(s) => (s.unix, s.width, s.height),
            None => (crate::publish::payload::unix_now(), 0, 0),
        };
        if out.faces.is_empty() && out.tracked.is_none() && out.ended.is_empty() {
            return;
        }
        let u = Update {
            unix,
            width,
            height,
            faces: out.faces.clone(),
            tracked: out.tracked.clone(),
            ended: out.ended.iter().map(|s| s.track_id).collect(),
        };
        let Some(tx) = &self.tx else { return };
        match tx.try_send(u) {
            Ok(()) => {}
            Err(TrySendError::Full(u)) => {
                // A changed track list must not be lost: wait for room.
                if u.tracked.is_some() || !u.ended.is_empty() {
                    let _ = tx.send(u);
                } else if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("ROS 2 output falls behind: frames dropped (counted; the total is logged at exit)");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Sends what is queued and leaves the domain.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!("ROS 2 output dropped {dropped} frames' readings (queue full)");
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
            domain_id: 233,
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
}
