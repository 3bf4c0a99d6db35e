//! The scores of an evaluation: pure arithmetic on (truth, reading) pairs.
//!
//! In: one [`Outcome`] per labelled image (its true expression, and the
//! reading: the seven probabilities, or none when no face was found), and
//! optionally valence/arousal pairs. Out: [`Scores`]: accuracy, macro-F1,
//! per-class precision/recall/F1, the confusion matrix, the face-found rate,
//! the expected calibration error of the top probability, and CCC/RMSE of
//! valence and arousal. Nothing here reads files or runs models.

use serde::Serialize;

use crate::frame::Expression;

/// Bins of the expected calibration error (the usual 15, equal width).
pub const ECE_BINS: usize = 15;

/// What the model said about one labelled image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub truth: Expression,
    /// The seven probabilities in canonical order; `None`: no face found
    /// (counted as wrong).
    pub probabilities: Option<[f32; 7]>,
}

impl Outcome {
    /// The predicted class: the most probable one (the first on a tie).
    pub fn predicted(&self) -> Option<Expression> {
        let p = self.probabilities?;
        let mut best = 0;
        for i in 1..7 {
            if p[i] > p[best] {
                best = i;
            }
        }
        Some(Expression::ALL[best])
    }
}

/// One class's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassScores {
    pub class: &'static str,
    /// Images of this class.
    pub support: usize,
    /// Of the images read as this class, the share that are.
    pub precision: f64,
    /// Of the images of this class, the share read as it (no face: missed).
    pub recall: f64,
    pub f1: f64,
}

/// Valence or arousal against the labels.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dimension {
    /// Lin's concordance correlation coefficient.
    pub ccc: f64,
    pub rmse: f64,
    /// Pearson correlation.
    pub pcc: f64,
    pub samples: usize,
}

/// Everything `fer-edge eval` reports for one model on one engine.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scores {
    /// Labelled images scored (read or not found; unreadable files excluded).
    pub images: usize,
    /// Correct / images: an image where no face was found counts as wrong.
    pub accuracy: f64,
    /// Correct / images with a face found.
    pub accuracy_when_found: f64,
    pub macro_f1: f64,
    pub face_found_rate: f64,
    pub faces_not_found: usize,
    /// Expected calibration error of the top probability (15 equal bins,
    /// over the images with a face).
    pub ece: f64,
    pub per_class: Vec<ClassScores>,
    /// Rows: true class; columns: predicted class, canonical order, then a
    /// last column for "no face found".
    pub confusion_matrix: Vec<Vec<usize>>,
    pub classes: Vec<&'static str>,
}

/// Scores from outcomes; `None` when there are none.
pub fn score(outcomes: &[Outcome]) -> Option<Scores> {
    if outcomes.is_empty() {
        return None;
    }
    let mut cm = vec![vec![0usize; 8]; 7];
    let mut correct = 0usize;
    let mut found = 0usize;
    // ECE: per bin, count, summed confidence, summed correctness.
    let mut bins = [(0usize, 0f64, 0f64); ECE_BINS];
    for o in outcomes {
        let t = o.truth.index();
        match (o.predicted(), o.probabilities) {
            (Some(p), Some(probs)) => {
                found += 1;
                cm[t][p.index()] += 1;
                let hit = p == o.truth;
                correct += hit as usize;
                let conf = probs[p.index()].clamp(0.0, 1.0) as f64;
                let b = ((conf * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
                bins[b].0 += 1;
                bins[b].1 += conf;
                bins[b].2 += hit as u8 as f64;
            }
            _ => cm[t][7] += 1,
        }
    }
    let n = outcomes.len();
    let per_class: Vec<ClassScores> = Expression::ALL
        .iter()
        .map(|&c| {
            let i = c.index();
            let tp = cm[i][i] as f64;
            let support: usize = cm[i].iter().sum();
            let predicted: usize = (0..7).map(|r| cm[r][i]).sum();
            let precision = ratio(tp, predicted as f64);
            let recall = ratio(tp, support as f64);
            ClassScores {
                class: c.name(),
                support,
                precision,
                recall,
                f1: ratio(2.0 * precision * recall, precision + recall),
            }
        })
        .collect();
    // Macro-F1 over the classes present in the set (a class with no image
    // has no recall to average).
    let present: Vec<&ClassScores> = per_class.iter().filter(|c| c.support > 0).collect();
    let macro_f1 = present.iter().map(|c| c.f1).sum::<f64>() / present.len() as f64;
    let ece = if found == 0 {
        0.0
    } else {
        bins.iter()
            .filter(|b| b.0 > 0)
            .map(|&(k, conf, acc)| (k as f64 / found as f64) * ((acc - conf) / k as f64).abs())
            .sum()
    };
    Some(Scores {
        images: n,
        accuracy: correct as f64 / n as f64,
        accuracy_when_found: ratio(correct as f64, found as f64),
        macro_f1,
        face_found_rate: found as f64 / n as f64,
        faces_not_found: n - found,
        ece,
        per_class,
        confusion_matrix: cm,
        classes: Expression::ALL.iter().map(|e| e.name()).collect(),
    })
}

/// Valence or arousal predictions against labels; `None` below two pairs.
pub fn dimension(pairs: &[(f32, f32)]) -> Option<Dimension> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let (mut sp, mut sl) = (0.0, 0.0);
    for &(p, l) in pairs {
        sp += p as f64;
        sl += l as f64;
    }
    let (mp, ml) = (sp / nf, sl / nf);
    let (mut vp, mut vl, mut cov, mut se) = (0.0, 0.0, 0.0, 0.0);
    for &(p, l) in pairs {
        let (dp, dl) = (p as f64 - mp, l as f64 - ml);
        vp += dp * dp;
        vl += dl * dl;
        cov += dp * dl;
        se += (p as f64 - l as f64).powi(2);
    }
    let (vp, vl, cov) = (vp / nf, vl / nf, cov / nf);
    Some(Dimension {
        ccc: ratio(2.0 * cov, vp + vl + (mp - ml).powi(2)),
        rmse: (se / nf).sqrt(),
        pcc: ratio(cov, (vp * vl).sqrt()),
        samples: n,
    })
}

/// a / b, 0 when b is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Expression::*;

    fn sure(truth: Expression, said: Expression, conf: f32) -> Outcome {
        let mut p = [(1.0 - conf) / 6.0; 7];
        p[said.index()] = conf;
        Outcome {
            truth,
            probabilities: Some(p),
        }
    }

    #[test]
    fn hand_counted_confusion_gives_the_textbook_figures() {
        // 3 happy (2 read happy, 1 read sad), 2 sad (1 sad, 1 no face),
        // 1 anger read happy.
        let o = [
            sure(Happy, Happy, 0.9),
            sure(Happy, Happy, 0.9),
            sure(Happy, Sad, 0.9),
            sure(Sad, Sad, 0.9),
            Outcome {
                truth: Sad,
                probabilities: None,
            },
            sure(Anger, Happy, 0.9),
        ];
        let s = score(&o).unwrap();
        assert_eq!(s.images, 6);
        assert!((s.accuracy - 3.0 / 6.0).abs() < 1e-12);
        assert!((s.accuracy_when_found - 3.0 / 5.0).abs() < 1e-12);
        assert!((s.face_found_rate - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.faces_not_found, 1);
        assert_eq!(s.confusion_matrix[Happy.index()][Happy.index()], 2);
        assert_eq!(s.confusion_matrix[Happy.index()][Sad.index()], 1);
        assert_eq!(s.confusion_matrix[Sad.index()][7], 1);
        let c = |e: Expression| &s.per_class[e.index()];
        // happy: precision 2/3 (anger read happy), recall 2/3.
        assert!((c(Happy).precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((c(Happy).recall - 2.0 / 3.0).abs() < 1e-12);
        // sad: precision 1/2, recall 1/2 (the missed face counts).
        assert!((c(Sad).precision - 0.5).abs() < 1e-12);
        assert!((c(Sad).recall - 0.5).abs() < 1e-12);
        assert_eq!(c(Anger).f1, 0.0);
        assert_eq!(c(Neutral).support, 0);
        // Macro-F1 over the three classes present: (2/3 + 1/2 + 0) / 3.
        assert!((s.macro_f1 - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        // Every answer at 0.9 confidence, 3 of 5 right: ECE = |0.6 - 0.9|.
        assert!((s.ece - 0.3).abs() < 1e-6, "{}", s.ece);
    }

    #[test]
    fn a_calibrated_model_has_no_calibration_error() {
        // Confidence 0.5, right half the time.
        let o = [sure(Happy, Happy, 0.5), sure(Happy, Sad, 0.5)];
        assert!(score(&o).unwrap().ece < 1e-6);
        assert!(score(&[]).is_none());
    }

    #[test]
    fn ties_go_to_the_first_class_in_canonical_order() {
        let o = Outcome {
            truth: Sad,
            probabilities: Some([0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]),
        };
        assert_eq!(o.predicted(), Some(Happy));
    }

    #[test]
    fn ccc_is_one_only_for_agreement_and_penalises_a_bias() {
        let same: Vec<(f32, f32)> = (0..10)
            .map(|i| (i as f32 / 10.0, i as f32 / 10.0))
            .collect();
        let d = dimension(&same).unwrap();
        assert!((d.ccc - 1.0).abs() < 1e-9 && d.rmse < 1e-9 && (d.pcc - 1.0).abs() < 1e-9);
        // Perfectly correlated but shifted by 0.5: PCC 1, CCC well below.
        let shifted: Vec<(f32, f32)> = same.iter().map(|&(p, l)| (p + 0.5, l)).collect();
        let d = dimension(&shifted).unwrap();
        assert!((d.pcc - 1.0).abs() < 1e-6);
        assert!(d.ccc < 0.5, "{}", d.ccc);
        assert!((d.rmse - 0.5).abs() < 1e-6);
        // Hand-computed: p = [0, 1], l = [1, 0]: cov -0.25, var 0.25 each.
        let d = dimension(&[(0.0, 1.0), (1.0, 0.0)]).unwrap();
        assert!((d.ccc + 1.0).abs() < 1e-9);
        assert!(dimension(&[(0.0, 0.0)]).is_none());
    }
}
