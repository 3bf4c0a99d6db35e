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
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

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
    let bytes = crate::fileio::read_bounded(path, limit, "one image", " (analyze --max-image-mb)")
        .map_err(|e| match e {
            crate::fileio::ReadError::Io { source, .. } => format!("cannot read file: {source}"),
            other => other.to_string(),
        })?;
    decode_bytes(&bytes)
}

/// Decodes PNG or JPEG bytes into RGB, refusing truncated JPEGs.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    let format = image::guess_format(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a cut-off scan with grey instead of failing;
        // a half-grey frame would then be analysed as if it were real.
        return Err(
            "cannot decode image: truncated JPEG (no end-of-image marker after the last scan)"
                .into(),
        );
    }
    let img = image::load_from_memory_with_format(bytes, format)
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
