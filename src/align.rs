//! Face alignment from the two eye centres (thesis §3.1).
//!
//! In: an RGB frame and a face's landmarks. Out: an upright face crop of the
//! emotion model's input size, eyes level, `eye_distance x width` apart,
//! centred horizontally on the `eye_line x height` row.
//!
//! The thesis computes `angle = atan((r_y - l_y) / (r_x - l_x))` and
//! `scale = desired_distance / |r - l|`, then warps and crops. We build the
//! one similarity transform that does rotation, scale and crop at once
//! (rotation about the eyes' midpoint, which lands on the output's anchor
//! point), and sample the frame through its inverse with bilinear
//! interpolation. `atan2` equals the thesis' `atan` whenever the right eye
//! is right of the left one, and stays correct if a detector ever swaps them.
//! Where the crop reaches past the frame edge the edge pixels are repeated,
//! so faces at the border align without panics or black wedges.

use serde::Deserialize;

use crate::frame::{Landmarks, RgbImage};

/// `[align]` in the config file. Unset keys take the model bundle's values
/// (each model was trained on its own framing).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlignConfig {
    /// Distance between the eye centres as a fraction of the crop width.
    pub eye_distance: Option<f32>,
    /// Height of the eye line as a fraction of the crop height, from the top.
    pub eye_line: Option<f32>,
}

impl AlignConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(d) = self.eye_distance {
            if !(0.05..=0.95).contains(&d) {
                return Err(format!("align.eye_distance = {d} is out of range: use a fraction of the crop width in 0.05..0.95 (e.g. 0.4)"));
            }
        }
        if let Some(l) = self.eye_line {
            if !(0.05..=0.95).contains(&l) {
                return Err(format!("align.eye_line = {l} is out of range: use a fraction of the crop height in 0.05..0.95 (e.g. 0.4)"));
            }
        }
        Ok(())
    }
}

/// Where the eyes go in the output crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Framing {
    pub width: u32,
    pub height: u32,
    pub eye_distance: f32,
    pub eye_line: f32,
}

/// A similarity transform, frame pixels → crop pixels:
/// `x' = a·x + b·y + tx`, `y' = −b·x + a·y + ty` (`a = s·cos θ`, `b = s·sin θ`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// The 2×3 matrix, as OpenCV's `warpAffine` takes it.
    pub fn matrix(&self) -> [[f32; 3]; 2] {
        [[self.a, self.b, self.tx], [-self.b, self.a, self.ty]]
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] + self.b * p[1] + self.tx,
            -self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// Crop pixels → frame pixels.
    pub fn invert(&self, q: [f32; 2]) -> [f32; 2] {
        let det = self.a * self.a + self.b * self.b;
        let (x, y) = (q[0] - self.tx, q[1] - self.ty);
        [
            (self.a * x - self.b * y) / det,
            (self.b * x + self.a * y) / det,
        ]
    }
}

/// Why a face could not be aligned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlignError {
    #[error("eye centres are {0:.2} px apart; at least 1 px is needed to align a face")]
    EyesTooClose(f32),
    #[error("eye landmarks are not finite numbers")]
    NotFinite,
}

/// The transform that levels the eyes and frames the face (thesis eq. 3.1.1–3.1.2).
pub fn eye_transform(
    left: [f32; 2],
    right: [f32; 2],
    framing: &Framing,
) -> Result<Similarity, AlignError> {
    if !(left.iter().chain(right.iter()).all(|v| v.is_finite())) {
        return Err(AlignError::NotFinite);
    }
    let (dx, dy) = (right[0] - left[0], right[1] - left[1]);
    let dist = (dx * dx + dy * dy).sqrt();
    if dist < 1.0 {
        return Err(AlignError::EyesTooClose(dist));
    }
    let angle = dy.atan2(dx);
    let scale = framing.eye_distance * framing.width as f32 / dist;
    let (a, b) = (scale * angle.cos(), scale * angle.sin());
    let c = [(left[0] + right[0]) / 2.0, (left[1] + right[1]) / 2.0];
    let anchor = [
        framing.width as f32 / 2.0,
        framing.eye_line * framing.height as f32,
    ];
    Ok(Similarity {
        a,
        b,
        tx: anchor[0] - (a * c[0] + b * c[1]),
        ty: anchor[1] - (-b * c[0] + a * c[1]),
    })
}

/// Warps `img` through `m` into a `width x height` crop, bilinear, edges repeated.
pub fn warp(img: &RgbImage, m: &Similarity, width: u32, height: u32) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    if img.width() == 0 || img.height() == 0 {
        return out;
    }
    let (wmax, hmax) = ((img.width() - 1) as f32, (img.height() - 1) as f32);
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    // The inverse map is affine: step it along each row instead of
    // re-solving per pixel.
    let det = m.a * m.a + m.b * m.b;
    let (ddx, ddy) = (m.a / det, m.b / det);
    for (v, row) in out.chunks_exact_mut(width as usize * 3).enumerate() {
        let [mut sx, mut sy] = m.invert([0.0, v as f32]);
        for px in row.chunks_exact_mut(3) {
            let x = sx.clamp(0.0, wmax);
            let y = sy.clamp(0.0, hmax);
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (x0, y0) = (x0 as usize, y0 as usize);
            let x1 = (x0 + 1).min(wmax as usize);
            let y1 = (y0 + 1).min(hmax as usize);
            for c in 0..3 {
                let p = |xx: usize, yy: usize| src[yy * stride + xx * 3 + c] as f32;
                let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * fx;
                let bot = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * fx;
                px[c] = (top + (bot - top) * fy + 0.5).clamp(0.0, 255.0) as u8;
            }
            sx += ddx;
            sy += ddy;
        }
    }
    out
}

/// Aligns one face: the transform from its eyes, then the warp.
pub fn align(
    img: &RgbImage,
    landmarks: &Landmarks,
    framing: &Framing,
) -> Result<(RgbImage, Similarity), AlignError> {
    let m = eye_transform(landmarks.left_eye, landmarks.right_eye, framing)?;
    Ok((warp(img, &m, framing.width, framing.height), m))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMING: Framing = Framing {
        width: 100,
        height: 100,
        eye_distance: 0.4,
        eye_line: 0.4,
    };

    #[test]
    fn level_eyes_give_a_pure_scale_and_shift() {
        // Eyes 80 px apart, level; want 40 px apart: scale 0.5, no rotation.
        let m = eye_transform([100.0, 200.0], [180.0, 200.0], &FRAMING).unwrap();
        let [[a, b, tx], [nb, a2, ty]] = m.matrix();
        assert!(
            (a - 0.5).abs() < 1e-6 && b.abs() < 1e-6 && nb.abs() < 1e-6 && (a2 - 0.5).abs() < 1e-6
        );
        // Midpoint (140, 200) lands on (50, 40).
        assert!((tx - (50.0 - 70.0)).abs() < 1e-4, "tx {tx}");
        assert!((ty - (40.0 - 100.0)).abs() < 1e-4, "ty {ty}");
    }

    #[test]
    fn a_tilted_pair_of_eyes_comes_out_level_at_the_desired_distance() {
        // Right eye 30° below the left, 60 px apart.
        let (l, d, th) = ([50.0f32, 50.0f32], 60.0f32, 30f32.to_radians());
        let r = [l[0] + d * th.cos(), l[1] + d * th.sin()];
        let m = eye_transform(l, r, &FRAMING).unwrap();
        let (lo, ro) = (m.apply(l), m.apply(r));
        assert!((lo[1] - ro[1]).abs() < 1e-4, "not level: {lo:?} {ro:?}");
        assert!(((ro[0] - lo[0]) - 40.0).abs() < 1e-3);
        assert!((lo[0] - 30.0).abs() < 1e-3 && (lo[1] - 40.0).abs() < 1e-3);
        // The matrix carries the thesis' angle and scale.
        let [[a, b, _], _] = m.matrix();
        assert!((b.atan2(a) - th).abs() < 1e-5);
        assert!(((a * a + b * b).sqrt() - 40.0 / 60.0).abs() < 1e-5);
    }

    #[test]
    fn warping_a_tilted_synthetic_face_puts_the_eye_dots_where_asked() {
        // Two bright dots on a dark frame, the right one higher (tilted -20°).
        let th = (-20f32).to_radians();
        let l = [120.0f32, 140.0f32];
        let r = [l[0] + 70.0 * th.cos(), l[1] + 70.0 * th.sin()];
        let mut img = RgbImage::new(300, 300);
        for (cx, cy) in [(l[0], l[1]), (r[0], r[1])] {
            for y in -3..=3 {
                for x in -3..=3 {
                    img.put_pixel(
                        (cx.round() as i32 + x) as u32,
                        (cy.round() as i32 + y) as u32,
                        image::Rgb([255, 255, 255]),
                    );
                }
            }
        }
        let lm = Landmarks {
            left_eye: l,
            right_eye: r,
            ..Default::default()
        };
        let (crop, _) = align(&img, &lm, &FRAMING).unwrap();
        // Centroid of bright pixels in each half of the crop.
        let centroid = |x_from: u32, x_to: u32| {
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
            for y in 0..100 {
                for x in x_from..x_to {
                    let v = crop.get_pixel(x, y)[0] as f32;
                    if v > 60.0 {
                        sx += x as f32 * v;
                        sy += y as f32 * v;
                        n += v;
                    }
                }
            }
            [sx / n, sy / n]
        };
        let (cl, cr) = (centroid(0, 50), centroid(50, 100));
        assert!((cl[1] - cr[1]).abs() < 1.0, "eyes not level: {cl:?} {cr:?}");
        assert!(
            ((cr[0] - cl[0]) - 40.0).abs() < 1.5,
            "distance {:?}",
            cr[0] - cl[0]
        );
        assert!((cl[1] - 40.0).abs() < 1.5);
    }

    #[test]
    fn a_face_at_the_corner_aligns_without_panicking_and_repeats_the_edge() {
        let img = RgbImage::from_pixel(20, 20, image::Rgb([9, 9, 9]));
        let lm = Landmarks {
            left_eye: [-5.0, -5.0],
            right_eye: [3.0, -4.0],
            ..Default::default()
        };
        let (crop, _) = align(&img, &lm, &FRAMING).unwrap();
        assert_eq!(crop.dimensions(), (100, 100));
        assert!(crop.pixels().all(|p| p.0 == [9, 9, 9]));
    }

    #[test]
    fn coincident_eyes_are_an_error_not_a_panic() {
        assert!(matches!(
            eye_transform([5.0, 5.0], [5.2, 5.0], &FRAMING),
            Err(AlignError::EyesTooClose(_))
        ));
        assert_eq!(
            eye_transform([f32::NAN, 5.0], [50.0, 5.0], &FRAMING),
            Err(AlignError::NotFinite)
        );
    }

    #[test]
    fn invert_undoes_apply() {
        let m = eye_transform([10.0, 20.0], [50.0, 35.0], &FRAMING).unwrap();
        let p = [33.0, 44.0];
        let q = m.invert(m.apply(p));
        assert!((p[0] - q[0]).abs() < 1e-3 && (p[1] - q[1]).abs() < 1e-3);
    }
}
