//! Model files on disk: where a configured model path points, and presence
//! and integrity checks shared by every stage that loads a model.
//!
//! In: paths. Out: the path back, or an error that names the file, what is
//! wrong, and how to fix it. A folder may carry a `SHA256SUMS` file in the
//! usual `sha256sum` format; when present every listed file must match.
//!
//! A relative model path is looked for, in order: beside the config file
//! that names it and in the folder above it (a checkout keeps `config/`
//! beside `models/`), in the installed data folders
//! (`<binary>/../share/fer-edge` and `/usr/share/fer-edge`, where the .deb
//! puts `models/`), in the source checkout a binary was built in (a
//! `target/…/fer-edge` finds the repository's `models/`), and in the working
//! directory. So `models/mtcnn` works from a source checkout, from an
//! installed package, and in any folder a user types `fer-edge` in.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A model file that is missing, unreadable or not the file it claims to be.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("model file {path} does not exist; set {key} to the folder that holds it")]
    Missing { path: PathBuf, key: &'static str },
    #[error("{key} = {value:?} was not found; tried {}: install the models (the fer-edge package puts them in /usr/share/fer-edge/models) or set {key} to their folder", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        key: &'static str,
        value: PathBuf,
        tried: Vec<PathBuf>,
    },
    #[error("cannot read model file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model file {path} has sha256 {actual}, but {listed_in} says {expected}: the file is corrupt or was replaced; restore it, or regenerate the model and its checksum")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
        listed_in: PathBuf,
    },
    #[error("{path}:{line}: not a `sha256sum` line (expected `<64 hex digits>  <file name>`)")]
    BadSumsLine { path: PathBuf, line: usize },
    #[error(transparent)]
    Bounded(#[from] crate::fileio::ReadError),
}

/// The installed data folders, most specific first.
pub fn data_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../share/fer-edge"));
    }
    dirs.push(PathBuf::from("/usr/share/fer-edge"));
    if let Some(checkout) = std::env::current_exe().ok().and_then(|e| checkout_of(&e)) {
        dirs.push(checkout);
    }
    dirs
}

/// The source checkout a binary sits in (`<repo>/target/release/fer-edge`):
/// the nearest of its first four ancestors holding both `Cargo.toml` and
/// `models/`.
pub fn checkout_of(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(4)
        .find(|d| d.join("Cargo.toml").is_file() && d.join("models").is_dir())
        .map(Path::to_path_buf)
}

/// A relative path as the config file in `config_dir` may mean it: beside
/// the file, then in the folder above (a checkout keeps `config/` beside
/// `models/` and `tests/`).
pub fn beside_config(value: &Path, config_dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![config_dir.join(value)];
    if let Some(up) = config_dir.parent().filter(|u| !u.as_os_str().is_empty()) {
        out.push(up.join(value));
    }
    out
}

/// Where a configured model path may be, in the order they are tried.
pub fn candidates(value: &Path, config_dir: Option<&Path>, data_dirs: &[PathBuf]) -> Vec<PathBuf> {
    if value.is_absolute() {
        return vec![value.to_path_buf()];
    }
    let mut out = config_dir.map_or_else(Vec::new, |d| beside_config(value, d));
    out.extend(data_dirs.iter().map(|d| d.join(value)));
    out.push(value.to_path_buf());
    out
}

/// The first existing place for a configured model path (see the module
/// doc), or an error listing every place tried.
pub fn locate(
    key: &'static str,
    value: &Path,
    config_dir: Option<&Path>,
) -> Result<PathBuf, ModelFileError> {
    let tried = candidates(value, config_dir, &data_dirs());
    match tried.iter().find(|p| p.exists()) {
        // Canonical, so messages say /usr/share/... rather than /usr/bin/../share/...
        Some(p) => Ok(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        None => Err(ModelFileError::NotFound {
            key,
            value: value.to_path_buf(),
            tried,
        }),
    }
}

/// Returns `path` if it is an existing regular file no larger than a model
/// can be ([`MODEL_LIMIT`](crate::fileio::MODEL_LIMIT)).
pub fn require_file(path: &Path, key: &'static str) -> Result<PathBuf, ModelFileError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(ModelFileError::Missing {
            path: path.to_path_buf(),
            key,
        });
    }
    let meta = crate::fileio::regular_file(path)?;
    let limit = crate::fileio::MODEL_LIMIT;
    if meta.len() > limit {
        return Err(crate::fileio::ReadError::TooLarge {
            path: crate::fileio::shown(path),
            size: meta.len(),
            limit_mb: limit >> 20,
            what: "a model",
            hint: "",
        }
        .into());
    }
    Ok(path.to_path_buf())
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, ModelFileError> {
    let read_err = |source| ModelFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = crate::fileio::open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Checks a file against an expected hex digest.
pub fn verify_sha256(path: &Path, expected: &str, listed_in: &Path) -> Result<(), ModelFileError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected.trim()) {
        Ok(())
    } else {
        Err(ModelFileError::Checksum {
            path: path.to_path_buf(),
            expected: expected.trim().to_string(),
            actual,
            listed_in: listed_in.to_path_buf(),
        })
    }
}

/// Verifies every file listed in `dir/SHA256SUMS`, if that file exists.
pub fn verify_sha256sums(dir: &Path) -> Result<(), ModelFileError> {
    let sums = dir.join("SHA256SUMS");
    if !sums.is_file() {
        return Ok(());
    }
    let text = crate::fileio::read_text_bounded(
        &sums,
        crate::fileio::MANIFEST_LIMIT,
        "a SHA256SUMS file",
    )?;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || ModelFileError::BadSumsLine {
            path: sums.clone(),
            line: n + 1,
        };
        let (digest, name) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let name = name.trim_start().trim_start_matches('*');
        if digest.len() != 64 || name.is_empty() {
            return Err(bad());
        }
        let file = require_file(&dir.join(name), "the model folder")?;
        verify_sha256(&file, digest, &sums)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn sha256_of_known_bytes_matches_the_standard_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_tampered_file_fails_its_sums_check_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("m.onnx"), b"abc").unwrap();
        fs::write(
            dir.path().join("SHA256SUMS"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  m.onnx\n",
        )
        .unwrap();
        verify_sha256sums(dir.path()).unwrap();
        fs::write(dir.path().join("m.onnx"), b"abd").unwrap();
        let err = verify_sha256sums(dir.path()).unwrap_err().to_string();
        assert!(err.contains("m.onnx") && err.contains("corrupt"), "{err}");
    }

    #[test]
    fn a_binary_in_a_checkouts_target_folder_finds_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        std::fs::write(repo.join("Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(repo.join("models")).unwrap();
        std::fs::create_dir_all(repo.join("target/release")).unwrap();
        let exe = repo.join("target/release/fer-edge");
        assert_eq!(checkout_of(&exe).as_deref(), Some(repo));
        assert_eq!(checkout_of(Path::new("/usr/bin/fer-edge")), None);
    }

    #[test]
    fn a_relative_model_path_is_tried_beside_the_config_then_installed_then_here() {
        let c = candidates(
            Path::new("models/mtcnn"),
            Some(Path::new("/etc/fer-edge")),
            &[PathBuf::from("/usr/share/fer-edge")],
        );
        assert_eq!(
            c,
            vec![
                PathBuf::from("/etc/fer-edge/models/mtcnn"),
                PathBuf::from("/etc/models/mtcnn"),
                PathBuf::from("/usr/share/fer-edge/models/mtcnn"),
                PathBuf::from("models/mtcnn"),
            ]
        );
        assert_eq!(
            candidates(Path::new("/opt/m"), Some(Path::new("/etc")), &[]),
            vec![PathBuf::from("/opt/m")]
        );
    }

    #[test]
    fn a_model_found_nowhere_lists_every_place_tried() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(
            "[detector] model_dir",
            Path::new("no/such/models"),
            Some(dir.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&dir.path().join("no/such/models").display().to_string())
                && err.contains("/usr/share/fer-edge/no/such/models")
                && err.contains("[detector] model_dir"),
            "{err}"
        );
    }

    #[test]
    fn a_model_beside_the_config_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("models/x")).unwrap();
        let got = locate("[emotion] model", Path::new("models/x"), Some(dir.path())).unwrap();
        assert_eq!(got, dir.path().canonicalize().unwrap().join("models/x"));
    }

    #[test]
    fn a_missing_file_names_the_config_key_to_fix() {
        let err = require_file(Path::new("/nonexistent/x.onnx"), "[emotion] model")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/x.onnx") && err.contains("[emotion] model"),
            "{err}"
        );
    }
}
