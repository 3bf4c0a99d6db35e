//! JSON views shared by every output (`analyze` lines, MQTT payloads):
//! rounding for display and the seven probabilities by name.
//!
//! In: raw `f32` values. Out: serialisable values. A bottom layer.

use serde::Serialize;

/// The seven probabilities, in canonical order and named.
#[derive(Debug, Serialize)]
pub struct Probabilities {
    neutral: f32,
    happy: f32,
    sad: f32,
    surprise: f32,
    fear: f32,
    disgust: f32,
    anger: f32,
}

impl Probabilities {
    pub fn from_array(p: &[f32; 7]) -> Probabilities {
        let r = |v: f32| round(v, 4);
        Probabilities {
            neutral: r(p[0]),
            happy: r(p[1]),
            sad: r(p[2]),
            surprise: r(p[3]),
            fear: r(p[4]),
            disgust: r(p[5]),
            anger: r(p[6]),
        }
    }
}

/// Rounds for display: JSON consumers gain nothing from 9 digits.
pub fn round(v: f32, digits: i32) -> f32 {
    let k = 10f32.powi(digits);
    (v * k).round() / k
}
