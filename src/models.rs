//! Model files on disk: presence and integrity checks shared by every stage
//! that loads a model.
//!
//! In: paths. Out: the path back, or an error that names the file, what is
//! wrong, and how to fix it. A folder may carry a `SHA256SUMS` file in the
//! usual `sha256sum` format; when present every listed file must match.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A model file that is missing, unreadable or not the file it claims to be.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("model file {path} does not exist; set {key} to the folder that holds it (paths are relative to the working directory)")]
    Missing { path: PathBuf, key: &'static str },
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
}

/// Returns `path` if it is an existing file.
pub fn require_file(path: &Path, key: &'static str) -> Result<PathBuf, ModelFileError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(ModelFileError::Missing {
            path: path.to_path_buf(),
            key,
        })
    }
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, ModelFileError> {
    let read_err = |source| ModelFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::open(path).map_err(read_err)?;
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
    let text = fs::read_to_string(&sums).map_err(|source| ModelFileError::Read {
        path: sums.clone(),
        source,
    })?;
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
