//! Camera pixel formats to RGB.
//!
//! In: a raw buffer as the driver filled it (YUYV 4:2:2 with its stride, or
//! one MJPEG frame). Out: an owned RGB image, or a reason the buffer is
//! unusable (short, truncated, undecodable). YUYV goes through `yuvutils-rs`
//! (SIMD, BT.601 limited range, which is what UVC webcams send); MJPEG
//! through the `image` crate's JPEG decoder with fer-edge's truncation check.

use yuvutils_rs::{yuyv422_to_rgb, YuvPackedImage, YuvRange, YuvStandardMatrix};

use crate::frame::RgbImage;
use crate::imageio;

/// Converts one YUYV frame (`stride` bytes per row, at least `2 · width`).
pub fn yuyv_to_rgb(buf: &[u8], width: u32, height: u32, stride: u32) -> Result<RgbImage, String> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) {
        return Err(format!(
            "YUYV frame size {width}x{height} is invalid (width must be even and non-zero)"
        ));
    }
    let row = width as usize * 2;
    let stride = (stride as usize).max(row);
    let need = stride * (height as usize - 1) + row;
    if buf.len() < need {
        return Err(format!(
            "short YUYV frame: {} bytes, {width}x{height} with stride {stride} needs {need}",
            buf.len()
        ));
    }
    // yuvutils-rs 0.8.3 checks a packed 4:2:2 buffer against 2·width·height
    // bytes whatever the stride, so rows padded by the driver are packed
    // tight first (one copy; most UVC cameras send tight rows anyway).
    let tight;
    let data = if stride == row {
        &buf[..row * height as usize]
    } else {
        tight = buf
            .chunks(stride)
            .take(height as usize)
            .flat_map(|r| &r[..row])
            .copied()
            .collect::<Vec<u8>>();
        &tight[..]
    };
    let packed = YuvPackedImage {
        yuy: data,
        yuy_stride: row as u32,
        width,
        height,
    };
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    yuyv422_to_rgb(
        &packed,
        &mut rgb,
        width * 3,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
    )
    .map_err(|e| format!("YUYV conversion failed: {e:?}"))?;
    Ok(RgbImage::from_raw(width, height, rgb).expect("buffer sized to the frame"))
}

/// Decodes one MJPEG frame; refuses truncated ones (USB hiccups cut frames).
pub fn mjpeg_to_rgb(buf: &[u8]) -> Result<RgbImage, String> {
    imageio::decode_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BT.601 limited-range RGB → YUYV, written from the standard's
    /// equations (independently of yuvutils-rs), to make camera-format
    /// buffers from a real photo.
    fn rgb_to_yuyv(img: &RgbImage, stride: u32) -> Vec<u8> {
        let (w, h) = img.dimensions();
        let mut out = vec![0u8; (stride * h) as usize];
        let yuv = |p: &image::Rgb<u8>| {
            let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
            let y = 16.0 + 0.2568 * r + 0.5041 * g + 0.0979 * b;
            let u = 128.0 - 0.1482 * r - 0.2910 * g + 0.4392 * b;
            let v = 128.0 + 0.4392 * r - 0.3678 * g - 0.0714 * b;
            (y, u, v)
        };
        for yy in 0..h {
            for xx in (0..w).step_by(2) {
                let (y0, u0, v0) = yuv(img.get_pixel(xx, yy));
                let (y1, u1, v1) = yuv(img.get_pixel(xx + 1, yy));
                let o = (yy * stride + xx * 2) as usize;
                out[o] = y0.round() as u8;
                out[o + 1] = ((u0 + u1) / 2.0).round() as u8;
                out[o + 2] = y1.round() as u8;
                out[o + 3] = ((v0 + v1) / 2.0).round() as u8;
            }
        }
        out
    }

    fn photo() -> RgbImage {
        image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/frames640/one_face.png"
        ))
        .unwrap()
        .to_rgb8()
    }

    #[test]
    fn a_yuyv_buffer_of_a_real_photo_converts_back_close_to_the_photo() {
        let img = photo();
        for stride in [640 * 2, 640 * 2 + 64] {
            let buf = rgb_to_yuyv(&img, stride);
            let back = yuyv_to_rgb(&buf, 640, 480, stride).unwrap();
            let mut err = 0f64;
            for (a, b) in img.as_raw().iter().zip(back.as_raw()) {
                err += (*a as f64 - *b as f64).abs();
            }
            let mean = err / img.as_raw().len() as f64;
            // Chroma is subsampled 2:1, so a few levels of error are expected.
            assert!(mean < 4.0, "stride {stride}: mean abs error {mean}");
        }
    }

    #[test]
    fn a_short_or_odd_yuyv_buffer_is_an_error_not_a_panic() {
        assert!(yuyv_to_rgb(&[0u8; 100], 640, 480, 1280)
            .unwrap_err()
            .contains("short YUYV"));
        assert!(yuyv_to_rgb(&[0u8; 100], 5, 5, 10).is_err());
        assert!(yuyv_to_rgb(&[], 0, 0, 0).is_err());
    }

    #[test]
    fn an_mjpeg_frame_decodes_and_a_cut_one_is_refused() {
        let mut jpeg = Vec::new();
        photo()
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        assert_eq!(mjpeg_to_rgb(&jpeg).unwrap().dimensions(), (640, 480));
        assert!(mjpeg_to_rgb(&jpeg[..jpeg.len() * 2 / 3])
            .unwrap_err()
            .contains("truncated"));
    }
}
