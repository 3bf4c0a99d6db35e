//! MTCNN's decoding, as pure functions: the image pyramid, P-Net's heat map
//! to candidate boxes, box regression, squaring, and O-Net's landmarks.
//!
//! In: raw network outputs (flat `f32` buffers) and boxes. Out: boxes in
//! pixel-inclusive corners `[x1, y1, x2, y2]`. The networks were exported
//! from Keras with **width before height**: an input is `1 x W x H x 3` and
//! P-Net's maps are `1 x W' x H' x C`, so cell `(i, j)` is column i, row j.
//! The arithmetic follows the reference implementation (ipazc/mtcnn, MIT).

/// P-Net's cell size and stride, in pixels of the scaled image.
const CELL: f32 = 12.0;
const STRIDE: f32 = 2.0;

/// A candidate face: corners, score, and the network's box regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub corners: [f32; 4],
    pub score: f32,
    pub reg: [f32; 4],
}

/// Most pixels of the pyramid's largest level: a 1080p frame at
/// `min_face_size = 12` is 2.1 MP, a 4K frame at 20 is 3 MP. Larger frames
/// start the pyramid smaller (their smallest findable face grows), so
/// P-Net's working memory stays bounded whatever frame size is accepted.
pub const MAX_LEVEL_PIXELS: f32 = 4_194_304.0;

/// Levels at which one P-Net cell covers at least this fraction of the
/// frame's shorter side get the edge border (`edge_margin`): only there can
/// a face run past the frame's edge by much, and there the levels are a few
/// hundred pixels, so the border costs next to nothing.
const BORDER_FROM: f32 = 0.5;

/// One level of the image pyramid: the frame scaled by `scale`, inside a
/// black border `margin` pixels wide (pixels of the level) on every side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PyramidLevel {
    pub scale: f32,
    pub margin: usize,
}

impl PyramidLevel {
    /// P-Net's input size (width, height) at this level, border included.
    pub fn size(&self, width: u32, height: u32) -> (usize, usize) {
        let (w, h) = scaled_size(width, height, self.scale);
        (w + 2 * self.margin, h + 2 * self.margin)
    }

    /// The frame region `[x, y, w, h]` (frame pixels) that this level's
    /// input shows: the frame and its border.
    pub fn region(&self, width: u32, height: u32) -> [f32; 4] {
        let m = self.margin as f32 / self.scale;
        [-m, -m, width as f32 + 2.0 * m, height as f32 + 2.0 * m]
    }

    /// Corners found in this level's input (frame pixels, counted from the
    /// border's corner) moved to the frame's own origin.
    pub fn to_frame(&self, c: [f32; 4]) -> [f32; 4] {
        let m = self.margin as f32 / self.scale;
        [c[0] - m, c[1] - m, c[2] - m, c[3] - m]
    }
}

/// The image pyramid: the first level maps `min_face` pixels to P-Net's
/// 12-pixel cell (or less, so that the level holds at most
/// [`MAX_LEVEL_PIXELS`]), each next one is `factor` times smaller. The
/// coarsest levels (a cell covering half the shorter side or more) get a
/// black border of `edge_margin` times their shorter side, so that a face
/// cut by the frame's edge, or larger than the frame, is still found; the
/// pyramid ends where a level, border included, is under 12 pixels.
/// `edge_margin = 0` is the reference MTCNN pyramid.
pub fn pyramid(
    width: u32,
    height: u32,
    min_face: f32,
    factor: f32,
    edge_margin: f32,
) -> Vec<PyramidLevel> {
    let area = width as f32 * height as f32;
    let m = (CELL / min_face).min((MAX_LEVEL_PIXELS / area.max(1.0)).sqrt());
    let mut min_layer = width.min(height) as f32 * m;
    let mut levels = Vec::new();
    let mut scale = m;
    loop {
        let margin = if min_layer * BORDER_FROM <= CELL {
            (edge_margin * min_layer).ceil() as usize
        } else {
            0
        };
        if min_layer + 2.0 * (margin as f32) < CELL {
            break;
        }
        levels.push(PyramidLevel { scale, margin });
        scale *= factor;
        min_layer *= factor;
    }
    levels
}

/// Size of the image scaled by `scale` (rounded up, as the reference does).
pub fn scaled_size(width: u32, height: u32, scale: f32) -> (usize, usize) {
    (
        (width as f32 * scale).ceil() as usize,
        (height as f32 * scale).ceil() as usize,
    )
}

/// Turns P-Net's maps into candidates in original-image pixels.
/// `prob` is `W' x H' x 2` (face probability in channel 1), `reg` is
/// `W' x H' x 4`.
pub fn pnet_candidates(
    prob: &[f32],
    reg: &[f32],
    map_w: usize,
    map_h: usize,
    scale: f32,
    threshold: f32,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for i in 0..map_w {
        for j in 0..map_h {
            let cell = i * map_h + j;
            let score = prob[cell * 2 + 1];
            if score < threshold {
                continue;
            }
            let (x, y) = (i as f32, j as f32);
            let corners = [
                ((STRIDE * x + 1.0) / scale).trunc(),
                ((STRIDE * y + 1.0) / scale).trunc(),
                ((STRIDE * x + CELL) / scale).trunc(),
                ((STRIDE * y + CELL) / scale).trunc(),
            ];
            let r = &reg[cell * 4..cell * 4 + 4];
            out.push(Candidate {
                corners,
                score,
                reg: [r[0], r[1], r[2], r[3]],
            });
        }
    }
    out
}

/// Applies a box regression. P-Net's stage measures the box without the
/// extra pixel (`inclusive = false`), R-Net's and O-Net's with it.
pub fn regress(corners: [f32; 4], reg: [f32; 4], inclusive: bool) -> [f32; 4] {
    let extra = if inclusive { 1.0 } else { 0.0 };
    let w = corners[2] - corners[0] + extra;
    let h = corners[3] - corners[1] + extra;
    [
        corners[0] + reg[0] * w,
        corners[1] + reg[1] * h,
        corners[2] + reg[2] * w,
        corners[3] + reg[3] * h,
    ]
}

/// Grows a box to a square around its centre (the reference's `rerec`).
pub fn square(c: [f32; 4]) -> [f32; 4] {
    let w = c[2] - c[0];
    let h = c[3] - c[1];
    let side = w.max(h);
    let x1 = c[0] + w * 0.5 - side * 0.5;
    let y1 = c[1] + h * 0.5 - side * 0.5;
    [x1, y1, x1 + side, y1 + side]
}

/// The O-Net window that follows a face between full detections: the
/// square around its (predicted) box, as the full detector hands O-Net a
/// square R-Net box.
pub fn follow_window(corners: [f32; 4]) -> [f32; 4] {
    square(corners)
}

/// Truncates corners to whole pixels, as the reference does between stages.
pub fn truncate(c: [f32; 4]) -> [f32; 4] {
    [c[0].trunc(), c[1].trunc(), c[2].trunc(), c[3].trunc()]
}

/// O-Net's landmarks (`x1..x5, y1..y5`, relative to the box) in pixels.
pub fn landmarks(corners: [f32; 4], rel: &[f32]) -> [[f32; 2]; 5] {
    let w = corners[2] - corners[0] + 1.0;
    let h = corners[3] - corners[1] + 1.0;
    let mut pts = [[0.0; 2]; 5];
    for (k, p) in pts.iter_mut().enumerate() {
        *p = [
            corners[0] + rel[k] * w - 1.0,
            corners[1] + rel[k + 5] * h - 1.0,
        ];
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference pyramid's scales (no border).
    fn scales(w: u32, h: u32, min_face: f32) -> Vec<f32> {
        pyramid(w, h, min_face, 0.709, 0.0)
            .iter()
            .map(|l| l.scale)
            .collect()
    }

    #[test]
    fn only_the_coarse_levels_get_a_border_and_it_finds_faces_larger_than_the_frame() {
        let bare = pyramid(640, 480, 20.0, 0.709, 0.0);
        let bordered = pyramid(640, 480, 20.0, 0.709, 0.25);
        assert!(bare.iter().all(|l| l.margin == 0));
        // The same levels down to the reference's last, with a border only
        // where a cell covers half the shorter side (a level of <= 24 px).
        for (a, b) in bare.iter().zip(&bordered) {
            assert_eq!(a.scale, b.scale);
            let side = 480.0 * b.scale;
            assert_eq!(b.margin > 0, side <= 24.0, "{b:?}");
            if b.margin > 0 {
                assert_eq!(b.margin, (0.25 * side).ceil() as usize);
            }
        }
        // Beyond it, levels whose frame is under 12 px but whose border
        // brings them to 12: faces larger than the frame's shorter side.
        assert!(bordered.len() > bare.len());
        let last = bordered.last().unwrap();
        assert!(12.0 / last.scale > 480.0, "{last:?}");
        let (w, h) = last.size(640, 480);
        assert!(w.min(h) >= 12);
        // A 48 px face crop: bordered levels down to faces ~1.5x the crop.
        let crop = pyramid(48, 48, 20.0, 0.709, 0.25);
        assert_eq!(crop.iter().filter(|l| l.margin > 0).count(), 3);
        assert!(crop.len() > pyramid(48, 48, 20.0, 0.709, 0.0).len());
    }

    #[test]
    fn a_bordered_level_maps_its_cells_back_to_the_frame() {
        let l = PyramidLevel {
            scale: 0.5,
            margin: 3,
        };
        // The input shows 6 frame pixels of border on each side.
        assert_eq!(l.region(40, 20), [-6.0, -6.0, 52.0, 32.0]);
        assert_eq!(l.size(40, 20), (26, 16));
        // A cell at the input's origin lies in the border, up-left of the frame.
        assert_eq!(l.to_frame([2.0, 2.0, 24.0, 24.0]), [-4.0, -4.0, 18.0, 18.0]);
    }

    #[test]
    fn pyramid_starts_at_the_min_face_scale_and_stops_above_the_cell_size() {
        let s = scales(640, 480, 20.0);
        assert!((s[0] - 0.6).abs() < 1e-6);
        // The last level keeps the shorter side at 12 px or more.
        let last = *s.last().unwrap();
        assert!(480.0 * last >= 12.0 - 1e-3);
        assert!(480.0 * last * 0.709 < 12.0);
        assert_eq!(s.len(), 10);
    }

    #[test]
    fn a_tiny_image_has_no_pyramid_level() {
        assert!(scales(10, 10, 20.0).is_empty());
    }

    #[test]
    fn the_largest_level_is_bounded_whatever_the_frame_size() {
        // A 1080p frame at the smallest face keeps its full pyramid.
        assert_eq!(scales(1920, 1080, 12.0)[0], 1.0);
        for (w, h) in [(8192, 8192), (12000, 12000), (30000, 200)] {
            let s = scales(w, h, 12.0);
            let (sw, sh) = scaled_size(w, h, s[0]);
            assert!(
                (sw * sh) as f32 <= MAX_LEVEL_PIXELS * 1.01,
                "{w}x{h}: first level {sw}x{sh}"
            );
        }
    }

    #[test]
    fn pnet_cell_maps_back_to_a_twelve_pixel_window_in_the_original() {
        // 3 x 2 map, one confident cell at column 2, row 1.
        let (w, h) = (3, 2);
        let mut prob = vec![0.0; w * h * 2];
        let mut reg = vec![0.0; w * h * 4];
        let cell = 2 * h + 1;
        prob[cell * 2 + 1] = 0.9;
        reg[cell * 4..cell * 4 + 4].copy_from_slice(&[0.1, 0.2, 0.3, 0.4]);
        let c = pnet_candidates(&prob, &reg, w, h, 0.5, 0.6);
        assert_eq!(c.len(), 1);
        // x: (2*2+1)/0.5 = 10, (2*2+12)/0.5 = 32; y: (2+1)/0.5 = 6, (2+12)/0.5 = 28
        assert_eq!(c[0].corners, [10.0, 6.0, 32.0, 28.0]);
        assert_eq!(c[0].reg, [0.1, 0.2, 0.3, 0.4]);
        assert!((c[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn regression_moves_corners_by_fractions_of_the_box() {
        let r = regress([10.0, 10.0, 29.0, 29.0], [0.1, -0.1, 0.0, 0.5], true);
        assert_eq!(r, [12.0, 8.0, 29.0, 39.0]);
        let r = regress([10.0, 10.0, 30.0, 30.0], [0.1, 0.0, 0.0, 0.0], false);
        assert_eq!(r[0], 12.0);
    }

    #[test]
    fn square_keeps_the_centre_and_takes_the_longer_side() {
        let s = square([10.0, 0.0, 20.0, 40.0]);
        assert_eq!(s, [-5.0, 0.0, 35.0, 40.0]);
    }

    #[test]
    fn landmarks_are_placed_relative_to_the_box() {
        let rel = [0.25, 0.75, 0.5, 0.3, 0.7, 0.4, 0.4, 0.6, 0.8, 0.8];
        let p = landmarks([99.0, 199.0, 198.0, 298.0], &rel);
        // w = h = 100; x = 99 + 0.25*100 - 1 = 123
        assert_eq!(p[0], [123.0, 238.0]);
        assert_eq!(p[1], [173.0, 238.0]);
    }
}
