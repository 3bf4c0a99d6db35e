//! ROS 2 camera images as DDS delivers them, to RGB frames.
//!
//! In: one `sensor_msgs/Image` or `sensor_msgs/CompressedImage` sample
//! (CDR, field for field in their `.msg` order) and `[source] max_pixels`.
//! Out: an RGB image with the message's `header` (stamp, frame id), or a
//! reason the sample is unusable that names the field at fault. The size a
//! message declares is checked before any pixel is touched: raw images
//! from `width`·`height`, compressed ones from the JPEG/PNG header
//! ([`crate::imageio::decode_bytes_within`]).
//!
//! Which message a topic carries follows image_transport's convention: a
//! topic ending in `/compressed` is `CompressedImage`, any other `Image`.
//! Pure, and built with or without the `ros2` feature.

use serde::Deserialize;

use super::msgs::Header;
use crate::frame::RgbImage;

/// `sensor_msgs/Image`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageMsg {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: u8,
    /// Bytes per row.
    pub step: u32,
    pub data: Vec<u8>,
}

/// `sensor_msgs/CompressedImage`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CompressedImageMsg {
    pub header: Header,
    /// `jpeg`, `png`, or image_transport's `rgb8; jpeg compressed bgr8`.
    pub format: String,
    pub data: Vec<u8>,
}

/// DDS names of the two message types.
pub const IMAGE_TYPE: &str = "sensor_msgs::msg::dds_::Image_";
pub const COMPRESSED_IMAGE_TYPE: &str = "sensor_msgs::msg::dds_::CompressedImage_";

/// Which message a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Raw,
    Compressed,
}

impl Transport {
    /// image_transport's convention: `…/compressed` is compressed.
    pub fn of_topic(topic: &str) -> Transport {
        if topic.trim_end_matches('/').ends_with("/compressed") {
            Transport::Compressed
        } else {
            Transport::Raw
        }
    }

    /// The ROS 2 message, as logs and `describe` name it.
    pub fn message(self) -> &'static str {
        match self {
            Transport::Raw => "sensor_msgs/Image",
            Transport::Compressed => "sensor_msgs/CompressedImage",
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Transport::Raw => IMAGE_TYPE,
            Transport::Compressed => COMPRESSED_IMAGE_TYPE,
        }
    }
}

/// Checks a ROS 2 topic name for `[source] topic`: absolute, ROS name
/// characters only.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    let ok_chars = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/');
    if !topic.starts_with('/') || topic.len() < 2 || !ok_chars || topic.contains("//") {
        return Err(format!(
            "source.topic = {topic:?} is not an absolute ROS 2 topic name like \"/camera/image_raw\" (letters, digits, _ and /)"
        ));
    }
    Ok(())
}

/// Pixel layouts of `sensor_msgs/Image` fer-edge reads (8 bits per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Rgb,
    Bgr,
    Rgba,
    Bgra,
    Mono,
    /// 4:2:2, U Y0 V Y1 (ROS's `yuv422` and `uyvy`).
    Uyvy,
    /// 4:2:2, Y0 U Y1 V (ROS's `yuv422_yuy2` and `yuyv`).
    Yuyv,
}

impl Layout {
    fn of(encoding: &str) -> Option<Layout> {
        Some(match encoding {
            "rgb8" => Layout::Rgb,
            "bgr8" => Layout::Bgr,
            "rgba8" => Layout::Rgba,
            "bgra8" => Layout::Bgra,
            "mono8" | "8UC1" => Layout::Mono,
            "yuv422" | "uyvy" => Layout::Uyvy,
            "yuv422_yuy2" | "yuyv" => Layout::Yuyv,
            _ => return None,
        })
    }

    /// Bytes per pixel (4:2:2: two per pixel on average).
    fn bytes_per_pixel(self) -> u64 {
        match self {
            Layout::Rgb | Layout::Bgr => 3,
            Layout::Rgba | Layout::Bgra => 4,
            Layout::Mono => 1,
            Layout::Uyvy | Layout::Yuyv => 2,
        }
    }
}

/// The RGB image of a raw `Image`: the encoding, the declared size (against
/// `max_pixels`), `step` and the data's length are checked before any
/// pixel is read.
pub fn raw_to_rgb(m: &ImageMsg, max_pixels: u64) -> Result<RgbImage, String> {
    let layout = Layout::of(&m.encoding).ok_or_else(|| {
        format!(
            "encoding {:?} is not one fer-edge reads: publish rgb8, bgr8, rgba8, bgra8, mono8, yuv422 (uyvy) or yuv422_yuy2 (yuyv), or the image's /compressed topic",
            m.encoding
        )
    })?;
    let (w, h) = (m.width as u64, m.height as u64);
    let pixels = w * h;
    if pixels == 0 || pixels > max_pixels {
        return Err(format!(
            "image declares {w}x{h} pixels, outside 1..{max_pixels} (source.max_pixels): refused before reading it"
        ));
    }
    let row = w * layout.bytes_per_pixel();
    let step = m.step as u64;
    if step < row {
        return Err(format!(
            "step {step} is less than a {w}-pixel row of {} needs ({row} bytes)",
            m.encoding
        ));
    }
    let need = step * (h - 1) + row;
    if (m.data.len() as u64) < need {
        return Err(format!(
            "data holds {} bytes, a {w}x{h} {} image with step {step} needs {need}",
            m.data.len(),
            m.encoding
        ));
    }
    // Every layout read here is 8 bits per sample: byte order
    // (`is_bigendian`) does not change them.
    let (w32, h32) = (m.width, m.height);
    let step = step as usize;
    // Each row of the packed layouts appended as RGB.
    let row_to_rgb: fn(&[u8], &mut Vec<u8>) = match layout {
        Layout::Yuyv => {
            return crate::capture::convert::yuyv_to_rgb(&m.data, w32, h32, step as u32)
        }
        Layout::Uyvy => {
            // Y and chroma swap places pairwise: U Y0 V Y1 → Y0 U Y1 V.
            let mut yuyv = Vec::with_capacity(row as usize * h as usize);
            for r in m.data.chunks(step).take(h as usize) {
                for q in r[..row as usize].chunks_exact(2) {
                    yuyv.extend_from_slice(&[q[1], q[0]]);
                }
            }
            return crate::capture::convert::yuyv_to_rgb(&yuyv, w32, h32, row as u32);
        }
        Layout::Rgb => |r, o| o.extend_from_slice(r),
        Layout::Bgr => |r, o| r.chunks_exact(3).for_each(|p| o.extend([p[2], p[1], p[0]])),
        Layout::Rgba => |r, o| r.chunks_exact(4).for_each(|p| o.extend(&p[..3])),
        Layout::Bgra => |r, o| r.chunks_exact(4).for_each(|p| o.extend([p[2], p[1], p[0]])),
        Layout::Mono => |r, o| r.iter().for_each(|&v| o.extend([v, v, v])),
    };
    let mut rgb = Vec::with_capacity(pixels as usize * 3);
    for r in m.data.chunks(step).take(h as usize) {
        row_to_rgb(&r[..row as usize], &mut rgb);
    }
    RgbImage::from_raw(w32, h32, rgb).ok_or_else(|| "image buffer size mismatch".into())
}

/// The RGB image of a `CompressedImage` (JPEG or PNG): the size its header
/// declares is checked against `max_pixels` before decoding.
pub fn compressed_to_rgb(m: &CompressedImageMsg, max_pixels: u64) -> Result<RgbImage, String> {
    let f = m.format.to_ascii_lowercase();
    // `jpeg`, `png`, or image_transport's "<encoding>; <codec> compressed <type>".
    let codec_ok = f.contains("jpeg") || f.contains("jpg") || f.contains("png") || f.is_empty();
    if !codec_ok {
        return Err(format!(
            "format {:?} is not JPEG or PNG: publish the compressed topic with image_transport's jpeg or png format",
            m.format
        ));
    }
    crate::imageio::decode_bytes_within(&m.data, max_pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ros2::msgs::Time;

    fn header() -> Header {
        Header {
            stamp: Time {
                sec: 1_700_000_000,
                nanosec: 500_000_000,
            },
            frame_id: "head_front_camera_optical_frame".into(),
        }
    }

    fn image(encoding: &str, w: u32, h: u32, step: u32, data: Vec<u8>) -> ImageMsg {
        ImageMsg {
            header: header(),
            height: h,
            width: w,
            encoding: encoding.into(),
            is_bigendian: 0,
            step,
            data,
        }
    }

    #[test]
    fn every_encoding_reads_the_same_pixel_and_step_padding_is_skipped() {
        // 2x2, one red pixel top left, the rest grey; rows padded by 3 bytes.
        let (r, g) = ([200u8, 30, 10], [90u8, 90, 90]);
        let rows = |bpp: usize, px: &dyn Fn([u8; 3]) -> Vec<u8>| {
            let mut d = Vec::new();
            for y in 0..2 {
                for x in 0..2 {
                    d.extend(px(if (x, y) == (0, 0) { r } else { g }));
                }
                d.extend([7, 7, 7]);
            }
            (d, (2 * bpp + 3) as u32)
        };
        for (enc, bpp, px) in [
            (
                "rgb8",
                3,
                &(|p: [u8; 3]| p.to_vec()) as &dyn Fn([u8; 3]) -> Vec<u8>,
            ),
            ("bgr8", 3, &|p: [u8; 3]| vec![p[2], p[1], p[0]]),
            ("rgba8", 4, &|p: [u8; 3]| vec![p[0], p[1], p[2], 255]),
            ("bgra8", 4, &|p: [u8; 3]| vec![p[2], p[1], p[0], 255]),
        ] {
            let (data, step) = rows(bpp, px);
            let img = raw_to_rgb(&image(enc, 2, 2, step, data), 1 << 20).unwrap();
            assert_eq!(img.get_pixel(0, 0).0, r, "{enc}");
            assert_eq!(img.get_pixel(1, 1).0, g, "{enc}");
        }
        let mono = raw_to_rgb(&image("mono8", 2, 1, 2, vec![10, 250]), 1 << 20).unwrap();
        assert_eq!(mono.get_pixel(1, 0).0, [250, 250, 250]);
    }

    #[test]
    fn yuv422_in_both_byte_orders_gives_the_same_picture() {
        // Grey (Y 126, U V 128) left, brighter right; 4x1.
        let yuyv = vec![126, 128, 126, 128, 200, 128, 200, 128];
        let uyvy = vec![128, 126, 128, 126, 128, 200, 128, 200];
        let a = raw_to_rgb(&image("yuyv", 4, 1, 8, yuyv), 1 << 20).unwrap();
        let b = raw_to_rgb(&image("yuv422", 4, 1, 8, uyvy), 1 << 20).unwrap();
        assert_eq!(a, b);
        assert!(a.get_pixel(3, 0).0[0] > a.get_pixel(0, 0).0[0] + 50);
    }

    #[test]
    fn bad_samples_are_refused_with_the_field_at_fault_before_reading() {
        let e = raw_to_rgb(&image("bayer_rggb8", 2, 2, 2, vec![0; 4]), 1 << 20).unwrap_err();
        assert!(e.contains("bayer_rggb8") && e.contains("compressed"), "{e}");
        // A 20000x20000 header with no data: refused on the numbers alone.
        let e =
            raw_to_rgb(&image("rgb8", 20_000, 20_000, 60_000, vec![]), 8192 * 8192).unwrap_err();
        assert!(e.contains("20000x20000") && e.contains("max_pixels"), "{e}");
        let e = raw_to_rgb(&image("rgb8", 4, 2, 11, vec![0; 24]), 1 << 20).unwrap_err();
        assert!(e.contains("step 11"), "{e}");
        let e = raw_to_rgb(&image("rgb8", 4, 2, 12, vec![0; 23]), 1 << 20).unwrap_err();
        assert!(e.contains("23 bytes"), "{e}");
        let c = CompressedImageMsg {
            header: header(),
            format: "theora".into(),
            data: vec![],
        };
        assert!(compressed_to_rgb(&c, 1 << 20)
            .unwrap_err()
            .contains("theora"));
    }

    #[test]
    fn a_compressed_frame_decodes_and_a_huge_declared_one_is_refused_before_decoding() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(root.join("tests/data/sequences/pan1/0000.jpg")).unwrap();
        let m = CompressedImageMsg {
            header: header(),
            format: "rgb8; jpeg compressed bgr8".into(),
            data,
        };
        let img = compressed_to_rgb(&m, 8192 * 8192).unwrap();
        assert!(img.width() >= 64);
        let e = compressed_to_rgb(&m, 32 * 32).unwrap_err();
        assert!(e.contains("refused before decoding"), "{e}");
    }

    #[test]
    fn the_topic_picks_the_message_and_bad_names_are_refused() {
        assert_eq!(Transport::of_topic("/camera/image_raw"), Transport::Raw);
        assert_eq!(
            Transport::of_topic("/camera/image_raw/compressed"),
            Transport::Compressed
        );
        assert!(validate_topic("/camera/image_raw").is_ok());
        for bad in ["camera", "/", "/a b", "/a//b", "/cam-1"] {
            assert!(
                validate_topic(bad).unwrap_err().contains("source.topic"),
                "{bad}"
            );
        }
        assert!((header().stamp.seconds() - 1_700_000_000.5).abs() < 1e-6);
    }
}
