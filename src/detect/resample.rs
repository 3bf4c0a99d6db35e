//! Area-average resampling of an image region (OpenCV's `INTER_AREA` idea),
//! which MTCNN's three networks were fed during training.
//!
//! In: an RGB image and a region in pixels (may reach outside the image).
//! Out: `out_w x out_h` RGB values as `f32` in 0..=255, row-major HWC.
//! Pixels outside the image count as black, as MTCNN's zero-padded crops do.

use crate::frame::RgbImage;

/// For each output index along one axis, the source indices it covers and
/// their weights (summing to 1 over the region, including outside pixels).
fn axis_weights(start: f32, len: f32, out: usize, limit: u32) -> Vec<Vec<(u32, f32)>> {
    let step = len / out as f32;
    (0..out)
        .map(|i| {
            let a = start + i as f32 * step;
            let b = a + step;
            let mut taps = Vec::with_capacity(step.ceil() as usize + 1);
            let mut s = a.floor();
            while s < b {
                let w = b.min(s + 1.0) - a.max(s);
                if w > 0.0 && s >= 0.0 && (s as u32) < limit {
                    taps.push((s as u32, w / step));
                }
                s += 1.0;
            }
            taps
        })
        .collect()
}

/// Resamples region `(x, y, w, h)` of `img` to `out_w x out_h` by area averaging.
pub fn resize_area(img: &RgbImage, region: [f32; 4], out_w: usize, out_h: usize) -> Vec<f32> {
    let [x, y, w, h] = region;
    let wx = axis_weights(x, w, out_w, img.width());
    let wy = axis_weights(y, h, out_h, img.height());
    let row_lo = wy.iter().flatten().map(|t| t.0).min();
    let row_hi = wy.iter().flatten().map(|t| t.0).max();
    let mut out = vec![0.0f32; out_w * out_h * 3];
    let (Some(row_lo), Some(row_hi)) = (row_lo, row_hi) else {
        return out; // region wholly outside the image: all black
    };
    // Horizontal pass over the source rows the region touches.
    let rows = (row_hi - row_lo + 1) as usize;
    let mut tmp = vec![0.0f32; rows * out_w * 3];
    let stride = img.width() as usize * 3;
    let raw = img.as_raw();
    for r in 0..rows {
        let src = &raw[(row_lo as usize + r) * stride..][..stride];
        let dst = &mut tmp[r * out_w * 3..][..out_w * 3];
        for (ox, taps) in wx.iter().enumerate() {
            let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
            for &(s, wgt) in taps {
                let p = &src[s as usize * 3..s as usize * 3 + 3];
                a += p[0] as f32 * wgt;
                b += p[1] as f32 * wgt;
                c += p[2] as f32 * wgt;
            }
            dst[ox * 3] = a;
            dst[ox * 3 + 1] = b;
            dst[ox * 3 + 2] = c;
        }
    }
    // Vertical pass.
    for (oy, taps) in wy.iter().enumerate() {
        let dst = &mut out[oy * out_w * 3..][..out_w * 3];
        for &(s, wgt) in taps {
            let src = &tmp[(s - row_lo) as usize * out_w * 3..][..out_w * 3];
            for (d, v) in dst.iter_mut().zip(src) {
                *d += v * wgt;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_two_by_two_blocks() {
        let img = RgbImage::from_fn(4, 2, |x, _| image::Rgb([(x * 10) as u8, 0, 255]));
        let out = resize_area(&img, [0.0, 0.0, 4.0, 2.0], 2, 1);
        assert_eq!(out.len(), 6);
        assert!((out[0] - 5.0).abs() < 1e-4, "{out:?}");
        assert!((out[3] - 25.0).abs() < 1e-4, "{out:?}");
        assert!((out[2] - 255.0).abs() < 1e-3);
    }

    #[test]
    fn region_outside_the_image_reads_as_black_padding() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([200, 200, 200]));
        // Left half of the region is outside the image.
        let out = resize_area(&img, [-4.0, 0.0, 8.0, 4.0], 2, 1);
        assert!(out[0].abs() < 1e-4);
        assert!((out[3] - 200.0).abs() < 1e-3);
        let none = resize_area(&img, [100.0, 100.0, 8.0, 8.0], 3, 3);
        assert!(none.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn identity_size_keeps_pixels() {
        let img = RgbImage::from_fn(3, 3, |x, y| image::Rgb([(x + 3 * y) as u8, 1, 2]));
        let out = resize_area(&img, [0.0, 0.0, 3.0, 3.0], 3, 3);
        for i in 0..9 {
            assert!((out[i * 3] - i as f32).abs() < 1e-4);
        }
    }
}
