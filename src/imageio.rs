//! Image files in: which files a folder contributes, and decoding PNG/JPEG
//! bytes into RGB frames (refusing truncated JPEGs).
//!
//! In: paths or encoded bytes. Out: [`RgbImage`]s, or a message naming the
//! cause. A bottom layer: `capture`, `analyze`, `bench` and `compare` read
//! images through it and it imports nothing of ours but `frame` and
//! `fileio` (only regular files, of bounded size).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::frame::RgbImage;

/// File extensions read from folders (files named explicitly are always tried).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "pgm", "ppm", "pnm", "pbm",
];

/// Expands files and folders into the list of images to read. A folder
/// contributes its files with an image extension, sorted by name; a path
/// that does not exist is reported as a failure.
pub fn expand_inputs(paths: &[PathBuf], err: &mut dyn Write) -> (Vec<PathBuf>, usize) {
    let mut files = Vec::new();
    let mut failed = 0;
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.is_file() && has_image_extension(f))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => {
                    let _ = writeln!(err, "error: {}: cannot list folder: {e}", p.display());
                    failed += 1;
                }
            }
        } else if p.exists() || std::fs::symlink_metadata(p).is_ok() {
            // Named explicitly: tried, so a device or FIFO gets its own error.
            files.push(p.clone());
        } else {
            let _ = writeln!(err, "error: {}: no such file or folder", p.display());
            failed += 1;
        }
    }
    (files, failed)
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Reads and decodes one image file into RGB (at most
/// [`IMAGE_LIMIT_DEFAULT`](crate::fileio::IMAGE_LIMIT_DEFAULT) bytes).
pub fn decode(path: &Path) -> Result<RgbImage, String> {
    decode_limited(path, crate::fileio::IMAGE_LIMIT_DEFAULT)
}

/// Reads and decodes one regular image file of at most `limit` bytes.
pub fn decode_limited(path: &Path, limit: u64) -> Result<RgbImage, String> {
    decode_file_within(path, limit, PIXEL_LIMIT_DEFAULT)
}

/// Reads and decodes one regular image file of at most `limit` bytes and
/// `max_pixels` pixels (checked from its header before decoding).
pub fn decode_file_within(path: &Path, limit: u64, max_pixels: u64) -> Result<RgbImage, String> {
    let bytes = crate::fileio::read_bounded(path, limit, "one image", " (analyze --max-image-mb)")
        .map_err(|e| match e {
            crate::fileio::ReadError::Io { source, .. } => format!("cannot read file: {source}"),
            other => other.to_string(),
        })?;
    decode_bytes_within(&bytes, max_pixels)
}

/// Most pixels an image may declare before it is decoded (8192×8192,
/// the largest frame `[source]` accepts from a camera): a 629-byte JPEG
/// can declare 12000×12000 and cost gigabytes once decoded and searched.
pub const PIXEL_LIMIT_DEFAULT: u64 = 8192 * 8192;

/// Decodes image bytes (PNG, JPEG, BMP, TIFF, WebP, PNM) into RGB,
/// refusing truncated JPEGs and
/// images over [`PIXEL_LIMIT_DEFAULT`].
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    decode_bytes_within(bytes, PIXEL_LIMIT_DEFAULT)
}

/// Decodes image bytes (PNG, JPEG, BMP, TIFF, WebP, PNM) into RGB. The
/// size the header declares is
/// checked against `max_pixels` before anything is decoded, and the
/// decoder may allocate no more than that frame needs.
pub fn decode_bytes_within(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, String> {
    let format = image::guess_format(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    let header = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (w, h) = header
        .into_dimensions()
        .map_err(|e| format!("cannot decode image: {e}"))?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(format!(
            "image declares {w}x{h} pixels ({:.1} megapixels), over the limit of {:.1} megapixels \
             (source.max_pixels for a replay): refused before decoding",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        ));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing;
        // a half-grey frame would then be analysed as if it were real.
        return Err(
            "cannot decode image: truncated JPEG (no end-of-image marker after the last scan)"
                .into(),
        );
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // The decoded image at up to 16 bits and 4 channels, plus the RGB copy.
    limits.max_alloc = Some(pixels * 8 + pixels * 3 + (1 << 20));
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| format!("cannot decode image: {e}"))?;
    Ok(img.into_rgb8())
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan
/// (FF DA). Inside entropy-coded data FF is always stuffed (FF 00) or a
/// restart marker, so FF D9 there is the real end.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(pos) => bytes[pos..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_jpeg() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/group_t1.jpg"
        ))
        .unwrap()
    }

    #[test]
    fn a_whole_jpeg_decodes_and_a_truncated_one_is_refused() {
        let whole = real_jpeg();
        assert!(jpeg_is_complete(&whole));
        assert_eq!(decode_bytes(&whole).unwrap().dimensions(), (1280, 886));
        for cut in [3000, whole.len() / 2, whole.len() - 2] {
            let err = decode_bytes(&whole[..cut]).unwrap_err();
            assert!(err.contains("truncated JPEG"), "cut at {cut}: {err}");
        }
    }

    /// `jpeg` with the frame size in its SOF header replaced: a
    /// decompression bomb is a small file whose header declares a huge image.
    pub(crate) fn declaring(mut jpeg: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
        let sof = jpeg
            .windows(2)
            .position(|m| m[0] == 0xFF && (0xC0..=0xC2).contains(&m[1]))
            .expect("a SOF marker");
        jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
        jpeg
    }

    #[test]
    fn an_image_over_the_pixel_limit_is_refused_from_its_header() {
        let bomb = declaring(real_jpeg(), 12000, 12000);
        let err = decode_bytes(&bomb).unwrap_err();
        assert!(err.contains("12000x12000"), "{err}");
        assert!(err.contains("refused before decoding"), "{err}");
        // The limit is the caller's: the real 1280x886 photo is refused at 1 MP.
        let err = decode_bytes_within(&real_jpeg(), 1_000_000).unwrap_err();
        assert!(err.contains("1280x886"), "{err}");
        assert!(decode_bytes_within(&real_jpeg(), 1280 * 886).is_ok());
    }

    #[test]
    fn a_truncated_png_is_refused() {
        let png = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/coffee.png"
        ))
        .unwrap();
        assert!(decode_bytes(&png).is_ok());
        let err = decode_bytes(&png[..png.len() / 2]).unwrap_err();
        assert!(err.contains("cannot decode"), "{err}");
    }

    #[test]
    fn bytes_that_are_no_image_are_refused() {
        assert!(decode_bytes(b"hello, world")
            .unwrap_err()
            .contains("cannot decode"));
        assert!(decode_bytes(b"").is_err());
    }
}
