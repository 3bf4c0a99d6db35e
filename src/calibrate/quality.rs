//! Image quality where it matters: on the faces.
//!
//! In: a frame, a face's box in it, and the face's aligned crop (what the
//! emotion model sees). Out: [`FaceQuality`]: the face's brightness and
//! contrast, the scene's brightness, backlight in photographic stops, and
//! sharpness as the variance of the Laplacian on the aligned crop. Pure
//! functions on pixels; the thresholds that judge them live in
//! `advice.rs`.

use serde::Serialize;

use crate::frame::{BBox, RgbImage};

/// Quality figures of one face on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceQuality {
    /// Mean luma (0–255) inside the face box.
    pub brightness: f32,
    /// Standard deviation of luma inside the face box (RMS contrast, 0–127).
    pub contrast: f32,
    /// Mean luma of the whole frame.
    pub scene_brightness: f32,
    /// log2(scene / face): how many stops darker the face is than the
    /// frame (positive: backlit; negative: the face is the bright part).
    pub backlight_stops: f32,
    /// Variance of the 4-neighbour Laplacian of the aligned crop's luma,
    /// divided by the crop's own luma variance, ×1000: edges relative to contrast,
    /// so that a dark face is not mistaken for a blurred one (higher is
    /// sharper; the crop size is the model's).
    pub sharpness: f32,
}

/// ITU-R BT.601 luma of one pixel, 0–255.
pub fn luma(p: &image::Rgb<u8>) -> f32 {
    0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
}

/// Mean luma of a frame, every `step`-th pixel in each direction.
pub fn mean_luma(img: &RgbImage, step: u32) -> f32 {
    let step = step.max(1);
    let (mut sum, mut n) = (0f64, 0u64);
    for y in (0..img.height()).step_by(step as usize) {
        for x in (0..img.width()).step_by(step as usize) {
            sum += luma(img.get_pixel(x, y)) as f64;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64) as f32
    }
}

/// Mean and standard deviation of luma inside `b` (clipped to the frame);
/// None when the box lies outside the frame.
pub fn region_stats(img: &RgbImage, b: &BBox) -> Option<(f32, f32)> {
    let [x1, y1, x2, y2] = b.corners();
    let clip = |v: f32, hi: u32| (v.max(0.0) as u32).min(hi);
    let (x1, x2) = (clip(x1, img.width()), clip(x2.ceil(), img.width()));
    let (y1, y2) = (clip(y1, img.height()), clip(y2.ceil(), img.height()));
    if x2 <= x1 || y2 <= y1 {
        return None;
    }
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for y in y1..y2 {
        for x in x1..x2 {
            let l = luma(img.get_pixel(x, y)) as f64;
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    Some((mean as f32, (sq / n - mean * mean).max(0.0).sqrt() as f32))
}

/// 1000 × [`laplacian_variance`] over the image's luma variance (0 for a
/// flat image): the same for a darker or brighter copy.
pub fn relative_sharpness(img: &RgbImage) -> f32 {
    let full = BBox::from_corners(0.0, 0.0, img.width() as f32, img.height() as f32);
    match region_stats(img, &full) {
        Some((_, sd)) if sd >= 1.0 => 1000.0 * laplacian_variance(img) / (sd * sd),
        _ => 0.0,
    }
}

/// Variance of the Laplacian (4-neighbour kernel) of an image's luma.
/// 0 for images under 3×3.
pub fn laplacian_variance(img: &RgbImage) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let l: Vec<f32> = img.pixels().map(luma).collect();
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let c = y * w + x;
            let v = (l[c - 1] + l[c + 1] + l[c - w] + l[c + w] - 4.0 * l[c]) as f64;
            sum += v;
            sq += v * v;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sq / n - mean * mean).max(0.0) as f32
}

/// Stops between two luma levels (+1 so that black is finite).
pub fn stops(brighter: f32, darker: f32) -> f32 {
    ((brighter + 1.0) / (darker + 1.0)).log2()
}

/// Measures one face; `scene` is the frame's [`mean_luma`].
pub fn measure(img: &RgbImage, bbox: &BBox, crop: &RgbImage, scene: f32) -> Option<FaceQuality> {
    let (brightness, contrast) = region_stats(img, bbox)?;
    Some(FaceQuality {
        brightness,
        contrast,
        scene_brightness: scene,
        backlight_stops: stops(scene, brightness),
        sharpness: relative_sharpness(crop),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, image::Rgb([v, v, v]))
    }

    #[test]
    fn a_flat_region_has_its_level_and_no_contrast() {
        let img = flat(40, 30, 100);
        let b = BBox::from_corners(5.0, 5.0, 15.0, 15.0);
        let (m, s) = region_stats(&img, &b).unwrap();
        assert!((m - 100.0).abs() < 0.01 && s < 0.01, "{m} {s}");
        assert!(region_stats(&img, &BBox::from_corners(50.0, 50.0, 60.0, 60.0)).is_none());
    }

    #[test]
    fn a_face_twice_as_dark_as_the_scene_is_one_stop_backlit() {
        let mut img = flat(100, 100, 200);
        for y in 40..60 {
            for x in 40..60 {
                img.put_pixel(x, y, image::Rgb([99, 99, 99]));
            }
        }
        let b = BBox::from_corners(40.0, 40.0, 60.0, 60.0);
        let q = measure(&img, &b, &flat(8, 8, 0), 200.0).unwrap();
        assert!((q.backlight_stops - 1.0).abs() < 0.01, "{q:?}");
        assert_eq!(q.sharpness, 0.0);
    }

    #[test]
    fn blurring_lowers_the_laplacian_variance() {
        let mut img = flat(32, 32, 0);
        for y in 0..32 {
            for x in 0..32 {
                if (x / 4 + y / 4) % 2 == 0 {
                    img.put_pixel(x, y, image::Rgb([255, 255, 255]));
                }
            }
        }
        let sharp = laplacian_variance(&img);
        let blurred = laplacian_variance(&image::imageops::blur(&img, 2.0));
        assert!(sharp > 4.0 * blurred && blurred > 0.0, "{sharp} {blurred}");
        assert_eq!(laplacian_variance(&flat(2, 2, 9)), 0.0);
        // Relative sharpness ignores exposure: a darker copy is as sharp.
        let dark = image::ImageBuffer::from_fn(32, 32, |x, y| {
            let p = img.get_pixel(x, y);
            image::Rgb([p[0] / 4, p[1] / 4, p[2] / 4])
        });
        let (r, rd) = (relative_sharpness(&img), relative_sharpness(&dark));
        assert!((r - rd).abs() < 0.05 * r, "{r} {rd}");
        assert!(relative_sharpness(&image::imageops::blur(&img, 2.0)) < r / 4.0);
        assert_eq!(relative_sharpness(&flat(8, 8, 50)), 0.0);
    }

    #[test]
    fn mean_luma_weights_green_most() {
        let g = RgbImage::from_pixel(4, 4, image::Rgb([0, 255, 0]));
        assert!((mean_luma(&g, 2) - 149.7).abs() < 0.1);
    }
}
