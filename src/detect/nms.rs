//! Non-maximum suppression over pixel-inclusive corner boxes.
//!
//! In: boxes as `[x1, y1, x2, y2]` with scores. Out: the indices that
//! survive, best score first. Pure: no I/O, no allocation beyond the result.
//! MTCNN counts both corner pixels, so a box's area is
//! `(x2 - x1 + 1) * (y2 - y1 + 1)`; that convention is kept here.

/// How overlap is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union.
    Union,
    /// Intersection over the smaller box: suppresses a box nested in another.
    Min,
}

/// Area of a pixel-inclusive box.
pub fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0] + 1.0).max(0.0) * (b[3] - b[1] + 1.0).max(0.0)
}

/// Overlap of two pixel-inclusive boxes.
pub fn overlap(a: &[f32; 4], b: &[f32; 4], how: Overlap) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = w * h;
    let denom = match how {
        Overlap::Union => area(a) + area(b) - inter,
        Overlap::Min => area(a).min(area(b)),
    };
    if denom <= 0.0 {
        0.0
    } else {
        inter / denom
    }
}

/// Greedy NMS: keeps the best-scoring box, drops every box that overlaps it
/// by more than `threshold`, repeats. Returns kept indices, best first.
/// Ties keep the earlier box, so the result does not depend on sort stability.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], threshold: f32, how: Overlap) -> Vec<usize> {
    debug_assert_eq!(boxes.len(), scores.len());
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[pos + 1..] {
            if !suppressed[j] && overlap(&boxes[i], &boxes[j], how) > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_two_overlapping_boxes_and_a_distant_one() {
        let boxes = [
            [0.0, 0.0, 9.0, 9.0],
            [1.0, 1.0, 10.0, 10.0],
            [50.0, 50.0, 59.0, 59.0],
        ];
        let scores = [0.8, 0.9, 0.7];
        assert_eq!(nms(&boxes, &scores, 0.5, Overlap::Union), vec![1, 2]);
    }

    #[test]
    fn nms_keeps_boxes_that_overlap_less_than_the_threshold() {
        let boxes = [[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]];
        // IoU = 50 / 150 = 0.33
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.5, Overlap::Union), vec![0, 1]);
        assert_eq!(nms(&boxes, &[0.9, 0.8], 0.3, Overlap::Union), vec![0]);
    }

    #[test]
    fn min_overlap_suppresses_a_box_nested_inside_a_better_one() {
        let boxes = [[0.0, 0.0, 99.0, 99.0], [10.0, 10.0, 29.0, 29.0]];
        let scores = [0.95, 0.9];
        // IoU is small (400/10000) but the small box lies wholly inside.
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Union), vec![0, 1]);
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Min), vec![0]);
    }

    #[test]
    fn overlap_uses_pixel_inclusive_areas() {
        let a = [0.0, 0.0, 0.0, 0.0];
        assert_eq!(area(&a), 1.0);
        assert_eq!(overlap(&a, &a, Overlap::Union), 1.0);
    }

    #[test]
    fn nms_of_nothing_is_nothing() {
        assert!(nms(&[], &[], 0.5, Overlap::Union).is_empty());
    }
}
