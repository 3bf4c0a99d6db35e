//! The MQTT output: the announcer's messages into the publisher's queues.
//!
//! In: every frame's [`FrameOutput`] through the [`Output`] seam. Out: the
//! [`Announcer`]'s messages, handed in their promised order to the
//! [`Publisher`] (events to the outbox, per-frame messages to the frame
//! queue; neither blocks, drops are counted there). The connection drains
//! at shutdown in [`super::Connection::shutdown`], not here.

use crate::frame::unix_now;
use crate::output::{Captured, Output};
use crate::track::core::FrameOutput;

use super::announce::{Announcer, Outgoing, Shaping};
use super::payload::Wording;
use super::{MqttConfig, Publisher};

pub struct MqttOutput {
    publisher: Publisher,
    announcer: Announcer,
}

impl MqttOutput {
    /// Shaped and worded by `[mqtt]`; `model` is `name@version` of the
    /// emotion bundle.
    pub fn new(cfg: &MqttConfig, publisher: Publisher, model: String, calibrated: bool) -> Self {
        MqttOutput {
            publisher,
            announcer: announcer(cfg, model, calibrated),
        }
    }

    fn send(&self, msgs: Vec<Outgoing>) {
        for m in msgs {
            match m {
                Outgoing::Event(m) => self.publisher.send_event(m),
                Outgoing::Frame(m) => self.publisher.send_frame(m),
            }
        }
    }
}

/// The announcer the daemon runs for `[mqtt]` (bench times the same one).
pub fn announcer(cfg: &MqttConfig, model: String, calibrated: bool) -> Announcer {
    Announcer::new(
        cfg.topics(),
        Wording::from_config(cfg, model, calibrated),
        Shaping::from_config(cfg),
    )
}

impl Output for MqttOutput {
    fn start(&mut self) {
        let msgs = self.announcer.start(unix_now());
        self.send(msgs);
    }

    fn frame(&mut self, out: &FrameOutput, captured: Option<&Captured>) {
        let msgs = match captured {
            Some(c) => self
                .announcer
                .frame(out, Some((c.stamp, c.at)), c.stamp.unix),
            None => self.announcer.frame(out, None, unix_now()),
        };
        self.send(msgs);
    }

    fn finish(self: Box<Self>) {}
}
