//! The neutral baseline: valence/arousal offsets and class bias from a neutral face.

use super::*;
use crate::calibrate::survey::RawReadings;

pub(super) fn baseline(fig: &Figures, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
    let Some(raw) = fig
        .raw
        .as_ref()
        .filter(|r| r.readings >= MIN_BASELINE_READINGS)
    else {
        a.push(Advice {
            level: Level::Problem,
            topic: "baseline",
            text: format!(
                "no baseline: {} face reading(s), at least {MIN_BASELINE_READINGS} are needed; have one person hold a neutral face in view for the whole --duration",
                fig.raw.as_ref().map_or(0, |r| r.readings)
            ),
        });
        return;
    };
    let (other, p_other) = crate::frame::Expression::ALL
        .iter()
        .zip(raw.mean_probability)
        .skip(1)
        .fold(
            (crate::frame::Expression::Neutral, 0.0f32),
            |best, (e, p)| {
                if p > best.1 {
                    (*e, p)
                } else {
                    best
                }
            },
        );
    if p_other >= BASELINE_NOT_NEUTRAL {
        a.push(Advice {
            level: Level::Problem,
            topic: "baseline",
            text: format!(
                "no baseline written: the face read as {} (mean probability {p_other:.2}, neutral {:.2}), not neutral; a baseline from it would suppress {} here. Run it again with a relaxed, neutral face",
                other.name(),
                raw.mean_probability[0],
                other.name()
            ),
        });
        return;
    }
    if raw.most_faces_at_once > 1 {
        a.push(Advice {
            level: Level::Warning,
            topic: "baseline",
            text: format!(
                "{} faces were seen at once: the baseline mixes them; run it again with one person in view",
                raw.most_faces_at_once
            ),
        });
    }
    baseline_settings(raw, a, s);
}

/// The offsets and class bias a neutral baseline gives, each with the
/// readings behind it.
fn baseline_settings(raw: &RawReadings, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
    let bias = class_bias(&raw.mean_log_probability);
    let n = raw.readings;
    let r3 = |v: f32| toml::Value::Float(((v as f64) * 1000.0).round() / 1000.0);
    s.push(Setting {
        section: "calibration",
        key: "valence_offset",
        value: r3(raw.mean_valence),
        why: format!(
            "mean valence of {n} readings of a neutral face here: {:.3} (a neutral face should read 0)",
            raw.mean_valence
        ),
    });
    s.push(Setting {
        section: "calibration",
        key: "arousal_offset",
        value: r3(raw.mean_arousal),
        why: format!("mean arousal of the same readings: {:.3}", raw.mean_arousal),
    });
    s.push(Setting {
        section: "calibration",
        key: "class_bias",
        value: toml::Value::Array(bias.iter().map(|&b| r3(b)).collect()),
        why: format!(
            "per expression, how far its mean log-probability rose above neutral's on a neutral face (0 when below): mean probabilities were {}",
            crate::frame::Expression::ALL
                .iter()
                .zip(raw.mean_probability)
                .map(|(e, p)| format!("{} {p:.2}", e.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    a.push(Advice {
        level: Level::Ok,
        topic: "baseline",
        text: format!(
            "neutral baseline from {n} readings: valence offset {:.3}, arousal offset {:.3}, class bias [{}]",
            raw.mean_valence,
            raw.mean_arousal,
            bias.iter()
                .map(|b| format!("{b:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
}

/// The least bias that makes Neutral the top class of the average neutral
/// face: each expression's mean log-probability above Neutral's, else 0.
pub fn class_bias(mean_log_p: &[f32; 7]) -> [f32; 7] {
    let mut b = [0f32; 7];
    for i in 1..7 {
        b[i] = (mean_log_p[i] - mean_log_p[0]).clamp(0.0, 10.0);
    }
    b
}
