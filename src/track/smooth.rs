//! Per-track temporal smoothing of valence/arousal and of the expression.
//!
//! In: a track's raw [`Emotion`] readings with their frame timestamps
//! (seconds). Out: smoothed valence, arousal and probabilities, and an
//! expression label that does not flicker.
//!
//! Each value follows a first-order low-pass filter discretised exactly:
//! `y += (1 − e^(−dt/τ)) · (x − y)`. Because the gain depends on the real
//! time step, a step input reaches 63.2% after τ seconds whether frames come
//! at 5 fps or 30 fps, and dropped frames need no special case. The label
//! switches only when another expression's smoothed probability beats the
//! current label's by `hysteresis`. Pure: time comes in as a value.

use serde::Deserialize;

use crate::frame::{Emotion, Expression};

/// `[smoothing]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmoothingConfig {
    /// Time constant of valence/arousal smoothing, seconds (0 = off).
    pub va_tau_s: f64,
    /// Time constant of probability smoothing, seconds (0 = off).
    pub probabilities_tau_s: f64,
    /// How much more probable (smoothed) another expression must be before
    /// the reported label changes.
    pub hysteresis: f32,
}

impl Default for SmoothingConfig {
    fn default() -> Self {
        SmoothingConfig {
            va_tau_s: 0.5,
            probabilities_tau_s: 0.4,
            hysteresis: 0.1,
        }
    }
}

impl SmoothingConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("va_tau_s", self.va_tau_s),
            ("probabilities_tau_s", self.probabilities_tau_s),
        ] {
            if !(0.0..=60.0).contains(&v) {
                return Err(format!("smoothing.{k} = {v} must be in [0, 60] seconds"));
            }
        }
        if !(0.0..1.0).contains(&self.hysteresis) {
            return Err(format!(
                "smoothing.hysteresis = {} must be in [0, 1)",
                self.hysteresis
            ));
        }
        Ok(())
    }
}

/// A first-order low-pass filter with a time constant in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowPass {
    tau: f64,
    state: Option<(f64, f32)>,
}

impl LowPass {
    pub fn new(tau: f64) -> LowPass {
        LowPass { tau, state: None }
    }

    /// Sets the filtered value `y` at time `t`.
    pub fn reset(&mut self, t: f64, y: f32) {
        self.state = Some((t, y));
    }

    /// Feeds `x` observed at time `t`; returns the filtered value. The
    /// first sample passes through unchanged.
    pub fn update(&mut self, t: f64, x: f32) -> f32 {
        let y = match self.state {
            None => x,
            Some((t0, y0)) => {
                let dt = (t - t0).max(0.0);
                let gain = if self.tau <= 0.0 {
                    1.0
                } else {
                    1.0 - (-dt / self.tau).exp()
                };
                y0 + gain as f32 * (x - y0)
            }
        };
        self.state = Some((t, y));
        y
    }
}

/// A smoothed reading of one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Smoothed {
    pub expression: Expression,
    /// Smoothed probability of `expression`.
    pub confidence: f32,
    pub probabilities: [f32; 7],
    pub valence: f32,
    pub arousal: f32,
}

/// Smoothing state of one track.
#[derive(Debug, Clone)]
pub struct EmotionSmoother {
    va: [LowPass; 2],
    probs: [LowPass; 7],
    label: Option<Expression>,
    hysteresis: f32,
    warm_up_s: f64,
    /// During the warm-up: time of the first reading, count, sums.
    warm: Option<(f64, u32, [f64; 7])>,
}

impl EmotionSmoother {
    pub fn new(cfg: &SmoothingConfig) -> EmotionSmoother {
        EmotionSmoother {
            va: [LowPass::new(cfg.va_tau_s); 2],
            probs: [LowPass::new(cfg.probabilities_tau_s); 7],
            label: None,
            hysteresis: cfg.hysteresis,
            warm_up_s: cfg.probabilities_tau_s,
            warm: None,
        }
    }

    /// Feeds one raw reading at time `t`.
    pub fn update(&mut self, t: f64, raw: &Emotion) -> Smoothed {
        let valence = self.va[0].update(t, raw.valence).clamp(-1.0, 1.0);
        let arousal = self.va[1].update(t, raw.arousal).clamp(-1.0, 1.0);
        let mut probabilities = [0.0f32; 7];
        for (i, p) in probabilities.iter_mut().enumerate() {
            *p = self.probs[i].update(t, raw.probabilities[i]);
        }
        let (t0, n, sums) = self.warm.get_or_insert((t, 0, [0.0; 7]));
        let warming = t - *t0 < self.warm_up_s;
        if warming {
            // The mean of the readings so far, and the filters restart there.
            *n += 1;
            for (i, p) in probabilities.iter_mut().enumerate() {
                sums[i] += f64::from(raw.probabilities[i]);
                *p = (sums[i] / f64::from(*n)) as f32;
                self.probs[i].reset(t, *p);
            }
        }
        let best = Expression::ALL[argmax(&probabilities)];
        let label = match self.label {
            Some(cur)
                if !warming
                    && probabilities[best.index()]
                        <= probabilities[cur.index()] + self.hysteresis =>
            {
                cur
            }
            _ => best,
        };
        self.label = Some(label);
        Smoothed {
            expression: label,
            confidence: probabilities[label.index()],
            probabilities,
            valence,
            arousal,
        }
    }
}

fn argmax(p: &[f32; 7]) -> usize {
    p.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > p[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VaSource;

    #[test]
    fn a_step_reaches_63_percent_after_one_time_constant_at_5_and_30_fps() {
        for fps in [5.0, 30.0] {
            let tau = 0.4;
            let mut f = LowPass::new(tau);
            f.update(0.0, 0.0);
            let n = (tau * fps).round() as usize;
            let mut y = 0.0;
            for k in 1..=n {
                y = f.update(k as f64 / fps, 1.0);
            }
            // n/fps == τ exactly for both rates (0.4 s = 2 frames at 5 fps, 12 at 30 fps).
            assert!((y - 0.632).abs() < 0.01, "fps {fps}: {y}");
        }
    }

    #[test]
    fn the_response_does_not_depend_on_dropped_frames() {
        let mut dense = LowPass::new(1.0);
        let mut sparse = LowPass::new(1.0);
        dense.update(0.0, 0.0);
        sparse.update(0.0, 0.0);
        let mut yd = 0.0;
        for k in 1..=30 {
            yd = dense.update(k as f64 / 30.0, 1.0);
        }
        let ys = sparse.update(1.0, 1.0);
        assert!((yd - ys).abs() < 1e-5, "{yd} vs {ys}");
    }

    fn reading(happy: f32) -> Emotion {
        let mut p = [0.0; 7];
        p[Expression::Happy.index()] = happy;
        p[Expression::Neutral.index()] = 1.0 - happy;
        Emotion::from_parts(p, happy * 0.7, 0.2, VaSource::Derived)
    }

    #[test]
    fn a_flickering_label_settles() {
        let mut s = EmotionSmoother::new(&SmoothingConfig::default());
        let mut labels = Vec::new();
        for k in 0..60 {
            let raw = reading(if k % 2 == 0 { 0.58 } else { 0.42 });
            labels.push(s.update(k as f64 / 15.0, &raw).expression);
        }
        // After the warm-up (0.4 s = 6 frames), at most one change.
        let changes = labels[6..].windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes <= 1, "{labels:?}");
    }

    #[test]
    fn a_lasting_change_of_expression_does_switch_the_label() {
        let mut s = EmotionSmoother::new(&SmoothingConfig::default());
        let mut last = None;
        for k in 0..15 {
            last = Some(s.update(k as f64 / 15.0, &reading(0.1)).expression);
        }
        assert_eq!(last, Some(Expression::Neutral));
        for k in 15..45 {
            last = Some(s.update(k as f64 / 15.0, &reading(0.9)).expression);
        }
        assert_eq!(last, Some(Expression::Happy));
    }

    #[test]
    fn an_ambiguous_first_reading_does_not_decide_the_label() {
        // Sad and fear nearly tie; the first frame happens to favour fear,
        // the next ones sad. The label must follow the mean, not frame 1.
        let frame = |sad: f32, fear: f32| {
            let mut p = [0.1; 7];
            p[Expression::Sad.index()] = sad;
            p[Expression::Fear.index()] = fear;
            Emotion::from_parts(p, 0.0, 0.0, VaSource::Derived)
        };
        let mut s = EmotionSmoother::new(&SmoothingConfig::default());
        let mut last = None;
        let readings = [
            (0.30, 0.40),
            (0.36, 0.25),
            (0.35, 0.30),
            (0.38, 0.28),
            (0.34, 0.30),
        ];
        for k in 0..30 {
            let (sad, fear) = readings[k % readings.len()];
            last = Some(s.update(k as f64 / 15.0, &frame(sad, fear)).expression);
        }
        assert_eq!(last, Some(Expression::Sad));
    }

    #[test]
    fn smoothed_va_stays_in_range() {
        let mut s = EmotionSmoother::new(&SmoothingConfig::default());
        for k in 0..20 {
            let r = s.update(k as f64 * 0.1, &reading(1.0));
            assert!((-1.0..=1.0).contains(&r.valence) && (-1.0..=1.0).contains(&r.arousal));
        }
    }
}
