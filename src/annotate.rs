//! Draws what fer-edge saw onto a copy of the image, for people who would
//! rather look than read: a box per face, the eye points, and a label with
//! the expression, its confidence and valence/arousal.
//!
//! In: an RGB image and its readings. Out: the annotated RGB image. Text is
//! drawn with the public-domain 8×8 bitmap font of the `font8x8` crate, so
//! no font file has to ship. Only written to disk when the user asks
//! (`--annotate DIR`): face images never leave the device by default.

use font8x8::UnicodeFonts;

use crate::frame::{Expression, FaceReading, RgbImage};

/// One colour per expression, canonical order.
const COLORS: [[u8; 3]; 7] = [
    [200, 200, 200], // neutral
    [40, 200, 60],   // happy
    [60, 110, 230],  // sad
    [240, 200, 30],  // surprise
    [170, 70, 220],  // fear
    [120, 160, 40],  // disgust
    [230, 50, 40],   // anger
];

pub fn color_of(e: Expression) -> [u8; 3] {
    COLORS[e.index()]
}

/// Returns a copy of `img` with every reading drawn on it.
pub fn annotate(img: &RgbImage, faces: &[FaceReading]) -> RgbImage {
    let mut out = img.clone();
    let thick = ((img.width().max(img.height()) as f32 / 400.0).ceil() as i32).max(2);
    let text_scale = ((img.width().max(img.height()) as f32 / 640.0).round() as i32).clamp(1, 4);
    for f in faces {
        let c = color_of(f.emotion.expression);
        let b = f.detection.bbox;
        let (x0, y0, x1, y1) = (
            b.x as i32,
            b.y as i32,
            (b.x + b.w) as i32,
            (b.y + b.h) as i32,
        );
        rect(&mut out, x0, y0, x1, y1, thick, c);
        for p in [
            f.detection.landmarks.left_eye,
            f.detection.landmarks.right_eye,
        ] {
            fill(
                &mut out,
                p[0] as i32 - thick,
                p[1] as i32 - thick,
                p[0] as i32 + thick,
                p[1] as i32 + thick,
                [255, 255, 0],
            );
        }
        let label = format!(
            "{} {:.2} V{:+.2} A{:+.2}",
            f.emotion.expression, f.emotion.confidence, f.emotion.valence, f.emotion.arousal
        );
        let th = 8 * text_scale + 4;
        let ty = if y0 - th >= 0 { y0 - th } else { y1 };
        let tw = label.chars().count() as i32 * 8 * text_scale + 4;
        fill(&mut out, x0, ty, x0 + tw, ty + th, c);
        text(&mut out, x0 + 2, ty + 2, &label, text_scale, [0, 0, 0]);
    }
    out
}

fn put(img: &mut RgbImage, x: i32, y: i32, c: [u8; 3]) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, image::Rgb(c));
    }
}

fn fill(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, c: [u8; 3]) {
    for y in y0..y1 {
        for x in x0..x1 {
            put(img, x, y, c);
        }
    }
}

fn rect(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, t: i32, c: [u8; 3]) {
    fill(img, x0, y0, x1, y0 + t, c);
    fill(img, x0, y1 - t, x1, y1, c);
    fill(img, x0, y0, x0 + t, y1, c);
    fill(img, x1 - t, y0, x1, y1, c);
}

fn text(img: &mut RgbImage, x: i32, y: i32, s: &str, scale: i32, c: [u8; 3]) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let gx = x + (i as i32 * 8 + col) * scale;
                    let gy = y + row as i32 * scale;
                    fill(img, gx, gy, gx + scale, gy + scale, c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{BBox, Detection, Emotion, Landmarks, VaSource};

    #[test]
    fn annotation_draws_the_box_in_the_expression_colour_and_leaves_the_input_alone() {
        let img = RgbImage::new(200, 200);
        let mut probs = [0.0; 7];
        probs[Expression::Happy.index()] = 1.0;
        let face = FaceReading {
            detection: Detection {
                bbox: BBox {
                    x: 50.0,
                    y: 60.0,
                    w: 80.0,
                    h: 80.0,
                },
                score: 0.99,
                landmarks: Landmarks {
                    left_eye: [70.0, 90.0],
                    right_eye: [110.0, 90.0],
                    ..Default::default()
                },
            },
            emotion: Emotion::from_parts(probs, 0.7, 0.3, VaSource::Derived),
            held_from: None,
        };
        let out = annotate(&img, &[face]);
        assert_eq!(out.get_pixel(50, 100).0, color_of(Expression::Happy));
        assert_eq!(out.get_pixel(70, 90).0, [255, 255, 0]);
        assert!(img.pixels().all(|p| p.0 == [0, 0, 0]));
    }
}
