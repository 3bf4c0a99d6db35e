//! What flows between the pipeline stages.
//!
//! In: nothing (these are plain data types). Out: the image type the stages
//! share, the detector's [`Detection`], the emotion stage's [`Emotion`] and
//! the seven [`Expression`]s in the order the thesis (and every fer-edge
//! output) uses: Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger.
//!
//! Coordinates are pixels in the frame the detector saw, origin top left.
//! "Left eye" means the eye on the left of the *image* (the subject's right
//! eye), which is how MTCNN labels it and how the thesis' alignment formula
//! (§3.1, `angle = atan((r_y - l_y) / (r_x - l_x))`) reads.

use serde::Serialize;

/// An owned 8-bit RGB frame.
pub type RgbImage = image::RgbImage;

/// The seven expressions, in fer-edge's canonical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expression {
    Neutral,
    Happy,
    Sad,
    Surprise,
    Fear,
    Disgust,
    Anger,
}

impl Expression {
    /// All seven, in canonical order (the index is the position in every
    /// probability vector fer-edge produces).
    pub const ALL: [Expression; 7] = [
        Expression::Neutral,
        Expression::Happy,
        Expression::Sad,
        Expression::Surprise,
        Expression::Fear,
        Expression::Disgust,
        Expression::Anger,
    ];

    /// The lowercase name used in JSON and MQTT payloads.
    pub fn name(self) -> &'static str {
        match self {
            Expression::Neutral => "neutral",
            Expression::Happy => "happy",
            Expression::Sad => "sad",
            Expression::Surprise => "surprise",
            Expression::Fear => "fear",
            Expression::Disgust => "disgust",
            Expression::Anger => "anger",
        }
    }

    /// Position in canonical order.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses a class name as model authors write it: our names, plus the
    /// usual synonyms ("angry", "happiness", "fearful", ...).
    pub fn parse_label(label: &str) -> Option<Expression> {
        let l = label.trim().to_ascii_lowercase();
        Some(match l.as_str() {
            "neutral" | "neutrality" | "calm" => Expression::Neutral,
            "happy" | "happiness" | "joy" => Expression::Happy,
            "sad" | "sadness" => Expression::Sad,
            "surprise" | "surprised" => Expression::Surprise,
            "fear" | "fearful" | "afraid" => Expression::Fear,
            "disgust" | "disgusted" => Expression::Disgust,
            "anger" | "angry" => Expression::Anger,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An axis-aligned box in pixels: top-left corner, width and height.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    pub fn from_corners(x1: f32, y1: f32, x2: f32, y2: f32) -> BBox {
        BBox {
            x: x1,
            y: y1,
            w: x2 - x1,
            h: y2 - y1,
        }
    }

    /// Corners `[x1, y1, x2, y2]`.
    pub fn corners(&self) -> [f32; 4] {
        [self.x, self.y, self.x + self.w, self.y + self.h]
    }

    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 when either box is empty.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        let inter = ix.max(0.0) * iy.max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    pub fn center(&self) -> [f32; 2] {
        [self.x + self.w / 2.0, self.y + self.h / 2.0]
    }
}

/// The five facial points MTCNN gives, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Landmarks {
    pub left_eye: [f32; 2],
    pub right_eye: [f32; 2],
    pub nose: [f32; 2],
    pub mouth_left: [f32; 2],
    pub mouth_right: [f32; 2],
}

/// One face found by the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: BBox,
    /// Detector confidence in [0, 1].
    pub score: f32,
    pub landmarks: Landmarks,
}

/// Where the valence/arousal numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaSource {
    /// Regressed by the model itself (Emotion-GCN's two VA rows).
    Model,
    /// Computed from the class posterior and per-class anchor points.
    Derived,
}

/// The emotion stage's reading of one face.
#[derive(Debug, Clone, PartialEq)]
pub struct Emotion {
    /// Softmax probabilities in canonical order ([`Expression::ALL`]).
    pub probabilities: [f32; 7],
    pub expression: Expression,
    /// Probability of `expression`.
    pub confidence: f32,
    /// In [-1, 1].
    pub valence: f32,
    /// In [-1, 1].
    pub arousal: f32,
    pub va_source: VaSource,
}

impl Emotion {
    /// Builds an emotion from canonical-order probabilities and V/A, picking
    /// the most probable expression and clamping V/A into [-1, 1].
    pub fn from_parts(
        probabilities: [f32; 7],
        valence: f32,
        arousal: f32,
        va_source: VaSource,
    ) -> Emotion {
        let (best, conf) = probabilities
            .iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
            );
        Emotion {
            probabilities,
            expression: Expression::ALL[best],
            confidence: conf,
            valence: valence.clamp(-1.0, 1.0),
            arousal: arousal.clamp(-1.0, 1.0),
            va_source,
        }
    }
}

/// A detected face together with its emotion reading.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceReading {
    pub detection: Detection,
    pub emotion: Emotion,
    /// `Some(track)`: the face was followed on this frame and `emotion` is
    /// that track's last reading, held (`[follow] expression_rate_hz`);
    /// `None`: read on this frame.
    pub held_from: Option<u64>,
}

/// Where and when a frame was captured, as the expression message reports it.
#[derive(Debug, Clone, Copy)]
pub struct FrameStamp {
    /// Unix time of the capture, seconds.
    pub unix: f64,
    /// Seconds since the source started.
    pub frame_time: f64,
    pub frame_seq: u64,
    /// The frame's size, pixels.
    pub width: u32,
    pub height: u32,
}

/// A frame's own stamp and coordinate frame, as its publisher set them (a
/// ROS 2 image's `header`).
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// `header.stamp`, seconds (the robot's clock: wall or simulated).
    pub stamp: f64,
    /// `header.frame_id`: the camera's TF frame.
    pub frame_id: String,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_in_the_thesis_order() {
        let names: Vec<_> = Expression::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
        );
        for (i, e) in Expression::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }

    #[test]
    fn labels_from_other_datasets_map_onto_our_seven() {
        assert_eq!(Expression::parse_label("angry"), Some(Expression::Anger));
        assert_eq!(
            Expression::parse_label("Happiness"),
            Some(Expression::Happy)
        );
        assert_eq!(Expression::parse_label("contempt"), None);
    }

    #[test]
    fn iou_of_identical_boxes_is_one_and_of_disjoint_boxes_is_zero() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        let b = BBox {
            x: 20.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        let c = BBox {
            x: 5.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&b), 0.0);
        assert!((a.iou(&c) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn emotion_picks_the_most_probable_expression_and_clamps_va() {
        let e = Emotion::from_parts(
            [0.1, 0.6, 0.1, 0.05, 0.05, 0.05, 0.05],
            1.4,
            -2.0,
            VaSource::Derived,
        );
        assert_eq!(e.expression, Expression::Happy);
        assert!((e.confidence - 0.6).abs() < 1e-6);
        assert_eq!(e.valence, 1.0);
        assert_eq!(e.arousal, -1.0);
    }
}
