//! The ROS 2 messages fer-edge publishes, as DDS sees them: `hri_msgs`
//! (ROS4HRI, REP-155) and the `std_msgs`/`builtin_interfaces` they embed,
//! field for field in their `.msg` order, serialised as CDR by serde.
//!
//! In: one frame's [`FrameOutput`] and its stamp. Out: the messages of
//! `/humans/faces/tracked` and of each face's `expression` and `roi`.
//! Pure, and built with or without the `ros2` feature.

use serde::{Deserialize, Serialize};

use crate::report::LabelSet;
use crate::track::core::FaceOutput;

/// `builtin_interfaces/Time`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

impl Time {
    /// From Unix seconds.
    pub fn from_unix(t: f64) -> Time {
        let t = t.max(0.0);
        let sec = t.floor();
        Time {
            sec: sec.min(i32::MAX as f64) as i32,
            nanosec: (((t - sec) * 1e9) as u32).min(999_999_999),
        }
    }

    /// Seconds (Unix time on a robot's wall clock, or its simulated time).
    pub fn seconds(self) -> f64 {
        self.sec as f64 + self.nanosec.min(999_999_999) as f64 * 1e-9
    }
}

/// `std_msgs/Header` (written by the output, read from camera images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `hri_msgs/IdsList`: the faces tracked now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdsList {
    pub header: Header,
    pub ids: Vec<String>,
}

/// `hri_msgs/Expression`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpressionMsg {
    pub header: Header,
    /// One of the message's constants (`neutral`, `happy`, `sad`,
    /// `surprised`, `scared`, `disgusted`, `angry`, ...).
    pub expression: String,
    pub valence: f32,
    pub arousal: f32,
    pub confidence: f32,
}

/// `hri_msgs/NormalizedRegionOfInterest2D`: the face's box as fractions
/// of the image, with the detector's confidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NormalizedRoi {
    pub header: Header,
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
    pub c: f32,
}

/// DDS names of a ROS 2 message type: `pkg::msg::dds_::Name_`.
pub const IDS_LIST_TYPE: &str = "hri_msgs::msg::dds_::IdsList_";
pub const EXPRESSION_TYPE: &str = "hri_msgs::msg::dds_::Expression_";
pub const ROI_TYPE: &str = "hri_msgs::msg::dds_::NormalizedRegionOfInterest2D_";

/// A face's ROS4HRI id: `f` and the track id (a ROS name level may not
/// start with a digit).
pub fn face_id(track_id: u64) -> String {
    format!("f{track_id}")
}

/// The DDS topic of a ROS 2 topic: ROS 2 prefixes topics with `rt`.
pub fn dds_topic(ros_topic: &str) -> String {
    format!("rt{ros_topic}")
}

pub const TRACKED_TOPIC: &str = "/humans/faces/tracked";

pub fn expression_topic(track_id: u64) -> String {
    format!("/humans/faces/{}/expression", face_id(track_id))
}

pub fn roi_topic(track_id: u64) -> String {
    format!("/humans/faces/{}/roi", face_id(track_id))
}

pub fn tracked(header: Header, ids: &[u64]) -> IdsList {
    IdsList {
        header,
        ids: ids.iter().map(|id| face_id(*id)).collect(),
    }
}

/// The smoothed reading of one face, in ROS4HRI's labels.
pub fn expression(header: Header, f: &FaceOutput) -> ExpressionMsg {
    let s = &f.smoothed;
    ExpressionMsg {
        header,
        expression: LabelSet::Ros4hri.name(s.expression).to_string(),
        valence: s.valence,
        arousal: s.arousal,
        confidence: s.confidence,
    }
}

/// The face's box over a `width` × `height` frame, clamped to [0, 1].
pub fn roi(header: Header, f: &FaceOutput, width: u32, height: u32) -> NormalizedRoi {
    let b = f.reading.detection.bbox;
    let (w, h) = (width.max(1) as f32, height.max(1) as f32);
    let c = |v: f32| v.clamp(0.0, 1.0);
    NormalizedRoi {
        header,
        xmin: c(b.x / w),
        ymin: c(b.y / h),
        xmax: c((b.x + b.w) / w),
        ymax: c((b.y + b.h) / h),
        c: f.reading.detection.score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Expression;

    #[test]
    fn names_follow_ros2_and_ros4hri() {
        assert_eq!(dds_topic(TRACKED_TOPIC), "rt/humans/faces/tracked");
        assert_eq!(expression_topic(12), "/humans/faces/f12/expression");
        assert_eq!(roi_topic(3), "/humans/faces/f3/roi");
        assert_eq!(LabelSet::Ros4hri.name(Expression::Anger), "angry");
        assert_eq!(LabelSet::Ros4hri.name(Expression::Fear), "scared");
        let t = Time::from_unix(1700000000.25);
        assert_eq!((t.sec, t.nanosec), (1700000000, 250_000_000));
    }
}
