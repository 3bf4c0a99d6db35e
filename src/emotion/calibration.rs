//! `[calibration]`: a site's neutral baseline, applied to every reading.
//!
//! In: one [`Emotion`] as the model read it. Out: the same reading with the
//! site's offsets removed. Lighting and camera angle shift a model's output
//! at a given installation; `fer-edge calibrate --baseline` measures the
//! shift while a person holds a neutral face and writes this section. Pure.
//!
//! The formula (exactly what [`CalibrationConfig::apply`] computes):
//! - valence' = clamp(valence − valence_offset, −1, 1), and the same for
//!   arousal with `arousal_offset`;
//! - p'_i = p_i · exp(−class_bias_i) / Σ_j p_j · exp(−class_bias_j), in the
//!   canonical order (neutral, happy, sad, surprise, fear, disgust, anger);
//!   the expression and its confidence are then taken from p'.
//!
//! All zeros (the default) leaves readings untouched, and messages say
//! `"calibrated": false`.

use serde::Deserialize;

use crate::frame::Emotion;

/// `[calibration]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Subtracted from every valence reading.
    pub valence_offset: f32,
    /// Subtracted from every arousal reading.
    pub arousal_offset: f32,
    /// Log-probability bias per expression, canonical order; p_i is
    /// multiplied by exp(−bias_i) and the probabilities renormalised.
    #[serde(deserialize_with = "crate::fixed::floats")]
    pub class_bias: [f32; 7],
}

impl CalibrationConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("valence_offset", self.valence_offset),
            ("arousal_offset", self.arousal_offset),
        ] {
            if !(-1.0..=1.0).contains(&v) {
                return Err(format!(
                    "calibration.{k} = {v} must lie in [-1, 1] (valence and arousal do)"
                ));
            }
        }
        if let Some(b) = self
            .class_bias
            .iter()
            .find(|b| !(-10.0..=10.0).contains(*b))
        {
            return Err(format!(
                "calibration.class_bias holds {b}: each bias is a log-probability shift in [-10, 10]"
            ));
        }
        Ok(())
    }

    /// True when the section changes readings.
    pub fn is_applied(&self) -> bool {
        self.valence_offset != 0.0
            || self.arousal_offset != 0.0
            || self.class_bias.iter().any(|b| *b != 0.0)
    }

    /// The reading with this site's offsets removed (see the module doc).
    pub fn apply(&self, e: &Emotion) -> Emotion {
        let mut p = e.probabilities;
        if self.class_bias.iter().any(|b| *b != 0.0) {
            for (pi, b) in p.iter_mut().zip(&self.class_bias) {
                *pi *= (-b).exp();
            }
            let sum: f32 = p.iter().sum();
            if sum > 0.0 && sum.is_finite() {
                for pi in &mut p {
                    *pi /= sum;
                }
            } else {
                p = e.probabilities;
            }
        }
        Emotion::from_parts(
            p,
            e.valence - self.valence_offset,
            e.arousal - self.arousal_offset,
            e.va_source,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Expression, VaSource};

    fn reading() -> Emotion {
        Emotion::from_parts(
            [0.40, 0.05, 0.35, 0.05, 0.05, 0.05, 0.05],
            0.2,
            -0.9,
            VaSource::Model,
        )
    }

    #[test]
    fn zero_calibration_changes_nothing() {
        let c = CalibrationConfig::default();
        assert!(!c.is_applied());
        assert_eq!(c.apply(&reading()), reading());
    }

    #[test]
    fn offsets_are_subtracted_and_results_stay_in_range() {
        let c = CalibrationConfig {
            valence_offset: 0.3,
            arousal_offset: 0.5,
            ..Default::default()
        };
        let e = c.apply(&reading());
        assert!((e.valence - -0.1).abs() < 1e-6);
        assert_eq!(e.arousal, -1.0, "−0.9 − 0.5 is clamped to −1");
    }

    #[test]
    fn a_class_bias_reweights_and_renormalises_the_probabilities() {
        // This site reads neutral faces as a little sad: bias sad down.
        let mut c = CalibrationConfig::default();
        c.class_bias[Expression::Neutral.index()] = -0.2;
        c.class_bias[Expression::Sad.index()] = 0.5;
        let e = c.apply(&reading());
        let sum: f32 = e.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        let p = reading().probabilities;
        let w: Vec<f32> = p
            .iter()
            .zip(&c.class_bias)
            .map(|(p, b)| p * (-b).exp())
            .collect();
        let z: f32 = w.iter().sum();
        let sad = Expression::Sad.index();
        assert!((e.probabilities[sad] - w[sad] / z).abs() < 1e-6);
        assert_eq!(e.expression, Expression::Neutral);
        assert!(e.probabilities[sad] < p[sad]);
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let c = CalibrationConfig {
            valence_offset: 1.5,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .contains("calibration.valence_offset"));
        let mut c = CalibrationConfig::default();
        c.class_bias[3] = f32::NAN;
        assert!(c.validate().unwrap_err().contains("calibration.class_bias"));
    }
}
