//! The output seam: where each followed frame's readings go.
//!
//! In: the follower's [`FrameOutput`] for every frame, with the frame's
//! [`Captured`] stamp, then once at the end the shutdown output (every
//! track ended; no stamp). Out: whatever the output speaks: MQTT messages
//! ([`crate::publish::MqttOutput`]) or ROS4HRI topics
//! ([`crate::ros2::Ros2Output`]).
//!
//! The daemon's inference thread holds a list of outputs and hands every
//! frame to each in turn. An output never waits on the network: it
//! queues, drops what it must when its consumer falls behind, and counts
//! every drop in [`crate::telemetry::Telemetry`] (so `stats` and
//! `/metrics` show it).

use std::time::Instant;

use crate::frame::{FrameStamp, Origin};
use crate::track::core::FrameOutput;

/// Where and when a frame was captured.
#[derive(Debug, Clone)]
pub struct Captured {
    pub stamp: FrameStamp,
    /// The moment the frame was read off the source (capture → publish latency).
    pub at: Instant,
    /// The stamp and frame id the image itself carries (a ROS 2 camera).
    pub origin: Option<Origin>,
}

/// One destination of the readings.
pub trait Output: Send {
    /// What a starting daemon says before the first frame (nobody tracked).
    fn start(&mut self) {}
    /// One frame's readings; `captured` is None for the shutdown output.
    fn frame(&mut self, out: &FrameOutput, captured: Option<&Captured>);
    /// The last frame was handed over: send what is queued and stop.
    fn finish(self: Box<Self>);
}

/// Hands every frame to each output in turn, in the order given.
#[derive(Default)]
pub struct Outputs(Vec<Box<dyn Output>>);

impl Outputs {
    pub fn push(&mut self, o: impl Output + 'static) {
        self.0.push(Box::new(o));
    }

    pub fn start(&mut self) {
        self.0.iter_mut().for_each(|o| o.start());
    }

    pub fn frame(&mut self, out: &FrameOutput, captured: Option<&Captured>) {
        for o in &mut self.0 {
            o.frame(out, captured);
        }
    }

    pub fn finish(self) {
        self.0.into_iter().for_each(|o| o.finish());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what it was handed, to check the order and the hand-over.
    struct Log(Arc<Mutex<Vec<String>>>, &'static str);

    impl Output for Log {
        fn start(&mut self) {
            self.0.lock().unwrap().push(format!("{} start", self.1));
        }
        fn frame(&mut self, out: &FrameOutput, captured: Option<&Captured>) {
            let what = captured.map_or("end".to_string(), |c| c.stamp.frame_seq.to_string());
            let ended = out.ended.len();
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {what} ended={ended}", self.1));
        }
        fn finish(self: Box<Self>) {
            self.0.lock().unwrap().push(format!("{} finish", self.1));
        }
    }

    #[test]
    fn every_output_gets_every_frame_in_order_then_finishes() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut outs = Outputs::default();
        outs.push(Log(log.clone(), "a"));
        outs.push(Log(log.clone(), "b"));
        outs.start();
        let stamp = FrameStamp {
            unix: 1.0,
            frame_time: 0.0,
            frame_seq: 7,
            width: 4,
            height: 4,
        };
        let c = Captured {
            stamp,
            at: Instant::now(),
            origin: None,
        };
        outs.frame(&FrameOutput::default(), Some(&c));
        outs.frame(&FrameOutput::default(), None);
        outs.finish();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "a start",
                "b start",
                "a 7 ended=0",
                "b 7 ended=0",
                "a end ended=0",
                "b end ended=0",
                "a finish",
                "b finish"
            ]
        );
    }
}
