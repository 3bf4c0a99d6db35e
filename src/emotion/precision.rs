//! Which of a bundle's twins runs: the float model or its int8 twin.
//!
//! In: `[emotion] precision` and, for `auto`, both twins prepared on the
//! emotion engine. Out: the session to keep and a [`PrecisionChoice`] that
//! says which and why (for the log, `check` and `bench`).
//!
//! int8 pays only where the machine has integer dot-product instructions
//! and the engine has kernels for them (issue 32: onnxruntime on an x86 core
//! with VNNI reads a face in half the time; on an AVX2 core without VNNI it
//! gained 1.12×, and tract's int8 path is slower than its float one on x86).
//! So `auto` does not guess from the CPU's name: it times both twins on this
//! machine, on this engine, at start (a few dozen runs each, interleaved,
//! ~30 ms on a desktop core), and keeps int8 only when its median is at
//! least [`INT8_MIN_GAIN`] times faster. A GPU engine keeps the float model
//! (TensorRT's own FP16/INT8 settings are its speed path).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::infer::{InferError, Session};

/// `[emotion] precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The int8 twin where it measures faster here, else the float model.
    #[default]
    Auto,
    /// Always the float model.
    Fp32,
    /// Always the int8 twin (an error when the bundle has none).
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Precision::Auto, Precision::Fp32, Precision::Int8]
            .into_iter()
            .find(|p| name(*p) == s)
            .ok_or_else(|| format!("{s:?} is not a precision: auto, fp32 or int8"))
    }
}

/// How much faster (median time ratio) the int8 twin must be for `auto` to
/// take it: its readings differ a little (PublicTest top-1 99% the same,
/// accuracy within 0.1 point: MODEL_CARD.md), so a gain
/// within the timing noise of a busy machine is not worth it.
pub const INT8_MIN_GAIN: f64 = 1.25;

/// Timed runs of each twin for `auto`, after two warm-up runs each.
const AUTO_RUNS: usize = 25;

/// What runs and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionChoice {
    /// The twin that runs.
    pub used: Precision,
    /// What was asked in the config.
    pub asked: Precision,
    /// Median ms per run of (float, int8) when `auto` timed them.
    pub timed_ms: Option<(f64, f64)>,
    /// One line for people: which twin and why.
    pub reason: String,
}

/// `auto`'s decision from the two twins' per-run times (ms): int8 only when
/// its median is at least [`INT8_MIN_GAIN`] times faster.
pub fn decide(fp32_ms: &[f64], int8_ms: &[f64]) -> PrecisionChoice {
    let (f, q) = (median(fp32_ms), median(int8_ms));
    let gain = f / q;
    let used = if q > 0.0 && gain >= INT8_MIN_GAIN {
        Precision::Int8
    } else {
        Precision::Fp32
    };
    let speed = if gain >= 1.0 {
        format!("{gain:.2}× faster")
    } else {
        format!("{:.2}× slower", 1.0 / gain)
    };
    let reason = format!(
        "precision auto: {} (timed here: float {f:.3} ms, int8 {q:.3} ms per face, int8 {speed}; \
         int8 needs ≥ {INT8_MIN_GAIN}× faster)",
        name(used),
    );
    PrecisionChoice {
        used,
        asked: Precision::Auto,
        timed_ms: Some((f, q)),
        reason,
    }
}

/// `fp32` or `int8`.
pub fn name(p: Precision) -> &'static str {
    match p {
        Precision::Auto => "auto",
        Precision::Fp32 => "fp32",
        Precision::Int8 => "int8",
    }
}

/// Times two prepared sessions on the same input, run for run in turn, and
/// returns each one's per-run times in ms.
pub fn time_both(
    a: &mut dyn Session,
    b: &mut dyn Session,
    input: &[f32],
) -> Result<(Vec<f64>, Vec<f64>), InferError> {
    for _ in 0..2 {
        a.run(input)?;
        b.run(input)?;
    }
    let (mut ta, mut tb) = (Vec::with_capacity(AUTO_RUNS), Vec::with_capacity(AUTO_RUNS));
    for _ in 0..AUTO_RUNS {
        let t = Instant::now();
        a.run(input)?;
        ta.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        b.run(input)?;
        tb.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((ta, tb))
}

/// A face-like input for timing: a smooth gradient in the model's
/// normalised range (the kernels' speed does not depend on the values).
pub fn timing_input(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect()
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_is_taken_only_when_clearly_faster() {
        // Measured on an x86 core with VNNI (onnxruntime): ~2× faster.
        let c = decide(&[0.29, 0.28, 0.30], &[0.14, 0.15, 0.14]);
        assert_eq!(c.used, Precision::Int8);
        assert!(c.reason.contains("int8 2.07× faster"), "{}", c.reason);
        // AVX2 without VNNI: 1.12×, within what a busy machine varies.
        let c = decide(&[1.12, 1.12, 1.2], &[1.0, 1.0, 1.1]);
        assert_eq!(c.used, Precision::Fp32);
        // tract on x86: the int8 path is slower.
        let c = decide(&[0.82, 0.8], &[1.42, 1.4]);
        assert_eq!(c.used, Precision::Fp32);
        assert!(c.reason.contains("int8 1.73× slower"), "{}", c.reason);
    }

    #[test]
    fn the_median_decides_not_one_slow_run() {
        // One int8 run hit by a context switch does not lose it the choice.
        let c = decide(&[0.3, 0.3, 0.3, 0.3, 0.3], &[0.15, 0.15, 9.0, 0.15, 0.15]);
        assert_eq!(c.used, Precision::Int8);
        assert_eq!(c.timed_ms, Some((0.3, 0.15)));
    }

    #[test]
    fn precision_reads_from_the_config_in_lower_case() {
        #[derive(Deserialize)]
        struct T {
            p: Precision,
        }
        let t: T = toml::from_str("p = \"int8\"").unwrap();
        assert_eq!(t.p, Precision::Int8);
        assert!(toml::from_str::<T>("p = \"INT4\"").is_err());
        // The command line's spelling is the config's.
        for p in [Precision::Auto, Precision::Fp32, Precision::Int8] {
            let t: T = toml::from_str(&format!("p = \"{}\"", name(p))).unwrap();
            assert_eq!(name(p).parse::<Precision>(), Ok(t.p));
        }
        assert!("INT4".parse::<Precision>().is_err());
    }
}
