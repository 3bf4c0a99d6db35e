//! Bounded reads of the files a user names: images, bundles, graphs,
//! configs, secrets and certificates.
//!
//! In: a path, a size cap and what the file is for. Out: its bytes, or an
//! error naming the path, the cause and the fix. Only regular files are
//! read: a device such as `/dev/zero` would grow without end and a FIFO
//! would block forever, so both are refused before anything is read. A
//! bottom layer: it imports nothing of ours.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

const MIB: u64 = 1 << 20;

/// Config files.
pub const CONFIG_LIMIT: u64 = MIB;
/// Bundle manifests and GCN parameter files (`gcn.json`: 9×1024 floats as text).
pub const MANIFEST_LIMIT: u64 = 16 * MIB;
/// ONNX models: protobuf itself cannot hold more than 2 GiB.
pub const MODEL_LIMIT: u64 = 2048 * MIB;
/// Passwords, password files, certificates and keys.
pub const SECRET_LIMIT: u64 = MIB;
/// Default cap on one image file (`analyze --max-image-mb`, replayed frames).
pub const IMAGE_LIMIT_DEFAULT: u64 = 64 * MIB;

/// A file that was not read, and why.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: is {kind}, not a regular file: name a file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: {size} bytes is over the {limit_mb} MiB limit for {what}{hint}")]
    TooLarge {
        path: String,
        size: u64,
        limit_mb: u64,
        what: &'static str,
        hint: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ReadError {
    /// The I/O error kind behind this failure (`NotFound` for a missing file).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ReadError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// A path as a user should see it: as is when it is UTF-8, otherwise
/// quoted with the bytes that are not escaped (never silently replaced, so
/// two different files never print the same).
pub fn shown(path: &Path) -> String {
    match path.to_str() {
        Some(s) => s.to_string(),
        None => format!("{path:?}"),
    }
}

fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// Checks that `path` is a regular file (following links) and returns its
/// metadata.
pub fn regular_file(path: &Path) -> Result<Metadata, ReadError> {
    let meta = std::fs::metadata(path).map_err(|source| ReadError::Io {
        path: shown(path),
        source,
    })?;
    match kind_of(&meta) {
        None => Ok(meta),
        Some(kind) => Err(ReadError::NotRegular {
            path: shown(path),
            kind,
        }),
    }
}

/// Opens a regular file for reading. The open itself cannot block: a path
/// swapped for a FIFO after the check is opened non-blocking and refused.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    regular_file(path)?;
    let io = |source| ReadError::Io {
        path: shown(path),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    if let Some(kind) = kind_of(&file.metadata().map_err(io)?) {
        return Err(ReadError::NotRegular {
            path: shown(path),
            kind,
        });
    }
    Ok(file)
}

/// Reads a whole regular file of at most `limit` bytes. `hint` follows the
/// size message (e.g. which option raises the cap).
pub fn read_bounded(
    path: &Path,
    limit: u64,
    what: &'static str,
    hint: &'static str,
) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let too_large = |size| ReadError::TooLarge {
        path: shown(path),
        size,
        limit_mb: limit.div_ceil(MIB),
        what,
        hint,
    };
    let declared = file
        .metadata()
        .map_err(|source| ReadError::Io {
            path: shown(path),
            source,
        })?
        .len();
    if declared > limit {
        return Err(too_large(declared));
    }
    // The file may grow while it is read: never take more than the cap.
    let mut bytes = Vec::with_capacity(declared as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            path: shown(path),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A secret file (a camera's `user:password`): [`read_text_bounded`], but
/// only from a regular file that is not a symbolic link (a link could be
/// swapped to point elsewhere) and that other users cannot read or write
/// (mode 600 or 640: the README's instructions).
pub fn read_private_text(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).map_err(|source| ReadError::Io {
        path: shown(path),
        source,
    })?;
    let refuse = |problem: String| ReadError::Io {
        path: shown(path),
        source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, problem),
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(format!(
            "is a symbolic link; name the file itself ({what} is read only from a regular file)"
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(refuse(format!(
            "mode {mode:03o} lets every user of this machine read or change {what}: run `chmod 600 {}`",
            shown(path)
        )));
    }
    read_text_bounded(path, limit, what)
}

/// [`read_bounded`] for UTF-8 text.
pub fn read_text_bounded(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    let bytes = read_bounded(path, limit, what, "")?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        path: shown(path),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ),
    })
}

/// Writes `bytes` as the file `path`, whole or not at all: into a new
/// temporary file beside it (created exclusively, mode 0644), flushed to
/// disk, then renamed over `path`. A symlink at `path` is replaced, never
/// followed (so a link planted in an output folder cannot redirect the
/// write to another file), and a full disk leaves the old file, or none,
/// instead of a truncated one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: not a file name", shown(path)),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", shown(path)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_small_regular_file_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_bounded(&p, 5, "a test", "").unwrap(), b"hello");
        assert_eq!(read_text_bounded(&p, 10, "a test").unwrap(), "hello");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_its_size_and_the_hint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.bin");
        std::fs::write(&p, vec![0u8; 2 * MIB as usize + 1]).unwrap();
        let e = read_bounded(&p, 2 * MIB, "an image", ": raise --max-image-mb")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2097153 bytes") && e.contains("2 MiB") && e.contains("--max-image-mb"),
            "{e}"
        );
    }

    #[test]
    fn devices_fifos_and_folders_are_refused_without_reading() {
        let e = read_bounded(Path::new("/dev/zero"), MIB, "an image", "").unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_bounded(&fifo, MIB, "an image", "").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read_bounded(dir.path(), MIB, "an image", "").unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");
    }

    #[test]
    fn a_missing_file_keeps_its_io_kind() {
        let e = read_bounded(Path::new("/nonexistent/x"), MIB, "x", "").unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound));
    }

    #[test]
    fn a_non_utf8_path_is_shown_escaped_not_replaced() {
        let p = Path::new(std::ffi::OsStr::from_bytes(b"caf\xe9.jpg"));
        let s = shown(p);
        assert!(s.contains("\\xE9") || s.contains("\\xe9"), "{s}");
        assert!(!s.contains('\u{FFFD}'), "{s}");
    }

    #[test]
    fn atomic_writes_replace_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        let out = dir.path().join("report.html");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_atomic(&out, b"report").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&out).unwrap(), b"report");
        assert!(!std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_failed_atomic_write_says_so_and_leaves_nothing_behind() {
        // The rename fails (a non-empty folder stands at the path) after
        // the temporary file was written: it must not stay behind.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("report.json");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        let e = write_atomic(&target, b"x").unwrap_err();
        assert!(
            e.to_string().contains("cannot write") && e.to_string().contains("report.json"),
            "{e}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("report.json")]);
    }
}
