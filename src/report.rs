//! JSON views shared by every output (`analyze` lines, MQTT payloads):
//! rounding for display, the two label sets (fer-edge's, ROS4HRI's) and
//! the seven probabilities by name.
//!
//! In: raw `f32` values. Out: serialisable values. A bottom layer.

use serde::Serialize;

use crate::frame::Expression;

/// Which names the seven expressions go by in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
pub enum LabelSet {
    /// fer-edge's own: `neutral`, `happy`, `sad`, `surprise`, `fear`,
    /// `disgust`, `anger`.
    #[default]
    #[serde(rename = "fer-edge")]
    FerEdge,
    /// ROS4HRI's `hri_msgs/Expression` constants: `neutral`, `happy`,
    /// `sad`, `surprised`, `scared`, `disgusted`, `angry`.
    #[serde(rename = "ros4hri")]
    Ros4hri,
}

impl LabelSet {
    /// The name of `e` in this set.
    pub fn name(self, e: Expression) -> &'static str {
        match self {
            LabelSet::FerEdge => e.name(),
            LabelSet::Ros4hri => match e {
                Expression::Neutral => "neutral",
                Expression::Happy => "happy",
                Expression::Sad => "sad",
                Expression::Surprise => "surprised",
                Expression::Fear => "scared",
                Expression::Disgust => "disgusted",
                Expression::Anger => "angry",
            },
        }
    }
}

/// The seven probabilities, in canonical order and named by a [`LabelSet`].
#[derive(Debug, Clone, PartialEq)]
pub struct Probabilities {
    values: [f32; 7],
    labels: LabelSet,
}

impl Probabilities {
    /// Named with fer-edge's labels.
    pub fn from_array(p: &[f32; 7]) -> Probabilities {
        Probabilities::labelled(p, LabelSet::FerEdge)
    }

    /// Named with `labels`, rounded for the wire.
    pub fn labelled(p: &[f32; 7], labels: LabelSet) -> Probabilities {
        Probabilities {
            values: p.map(|v| round(v, 4)),
            labels,
        }
    }
}

impl Serialize for Probabilities {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(7))?;
        for (e, v) in Expression::ALL.iter().zip(self.values) {
            m.serialize_entry(self.labels.name(*e), &v)?;
        }
        m.end()
    }
}

/// Rounds for display: JSON consumers gain nothing from 9 digits.
pub fn round(v: f32, digits: i32) -> f32 {
    let k = 10f32.powi(digits);
    (v * k).round() / k
}
