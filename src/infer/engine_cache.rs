//! The TensorRT engine cache on disk: one folder per (model, TensorRT
//! version, GPU, precision, DLA core, input shape), so a restart reuses the
//! engines onnxruntime's TensorRT provider built instead of spending minutes
//! rebuilding them, and an upgrade of TensorRT or a new board never loads a
//! stale one.
//!
//! In: the cache root and a [`CacheKey`]. Out: a [`CacheEntry`] folder to hand
//! to the provider. Each entry holds `key.json`, written only after a session
//! built with it ran; an entry without it (a build that was cut short) or
//! with a different or unreadable one is wiped and rebuilt, never fatal.
//! Under systemd the root is `$STATE_DIRECTORY/engines` (`StateDirectory=`
//! in the unit), elsewhere `~/.cache/fer-edge/engines`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything a built TensorRT engine depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// Model file stem, for people reading the folder.
    pub model: String,
    pub model_sha256: String,
    /// `getInferLibVersion()` of the TensorRT library, if it could be read.
    pub tensorrt: Option<i32>,
    /// GPU name from the CUDA driver, if it could be read.
    pub gpu: Option<String>,
    /// `fp32`, `fp16` or `int8`.
    pub precision: String,
    pub dla_core: Option<u32>,
    pub shape: Vec<usize>,
}

impl CacheKey {
    /// Folder name: readable, and unique for the key (DeepStream names its
    /// engines `<model>_b1_gpu0_fp16.engine` the same way).
    pub fn folder_name(&self) -> String {
        let slug = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect()
        };
        let shape: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        format!(
            "{}-{}-trt{}-{}-{}{}-{}",
            slug(&self.model),
            &self.model_sha256[..self.model_sha256.len().min(12)],
            self.tensorrt
                .map(|v| v.to_string())
                .unwrap_or_else(|| "unknown".into()),
            slug(self.gpu.as_deref().unwrap_or("gpu-unknown")),
            self.precision,
            self.dla_core
                .map(|c| format!("-dla{c}"))
                .unwrap_or_default(),
            shape.join("x")
        )
    }
}

/// One entry's folder.
#[derive(Debug)]
pub struct CacheEntry {
    dir: PathBuf,
    key: CacheKey,
}

impl CacheEntry {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records that the engines in this folder loaded and ran.
    pub fn mark_complete(&self) {
        let tmp = self.dir.join("key.json.tmp");
        let json = serde_json::to_vec_pretty(&self.key).unwrap_or_default();
        let ok = std::fs::write(&tmp, json)
            .and_then(|_| std::fs::rename(&tmp, self.dir.join("key.json")));
        if let Err(e) = ok {
            tracing::warn!(
                "engine cache {}: cannot write key.json: {e}",
                self.dir.display()
            );
        }
    }

    /// Empties the folder so the engines are built afresh.
    pub fn wipe(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!("engine cache {}: {e}", self.dir.display());
        }
    }
}

/// The cache root when the config names none.
pub fn default_root() -> Option<PathBuf> {
    if let Some(state) = std::env::var_os("STATE_DIRECTORY") {
        // systemd passes a colon-separated list; ours names one folder.
        let first = state.to_string_lossy().split(':').next()?.to_string();
        return Some(PathBuf::from(first).join("engines"));
    }
    if let Some(c) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(c).join("fer-edge/engines"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fer-edge/engines"))
}

/// Opens (creating, or wiping when unusable) the entry for `key`. Errors
/// only when the folder cannot be made: the caller then runs uncached.
pub fn open(root: &Path, key: &CacheKey) -> Result<CacheEntry, String> {
    let dir = root.join(key.folder_name());
    let entry = CacheEntry {
        dir: dir.clone(),
        key: key.clone(),
    };
    let has_files = std::fs::read_dir(&dir).is_ok_and(|mut rd| rd.next().is_some());
    if has_files {
        let recorded = std::fs::read(dir.join("key.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheKey>(&b).ok());
        match recorded {
            Some(k) if &k == key => {
                tracing::info!("TensorRT engine cache hit: {}", dir.display());
                return Ok(entry);
            }
            Some(_) => tracing::warn!(
                "engine cache {}: recorded key differs; rebuilding",
                dir.display()
            ),
            None => tracing::warn!(
                "engine cache {}: incomplete or unreadable entry; rebuilding",
                dir.display()
            ),
        }
        entry.wipe();
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            model: "model".into(),
            model_sha256: "ab".repeat(32),
            tensorrt: Some(100300),
            gpu: Some("Orin (nvgpu)".into()),
            precision: "fp16".into(),
            dla_core: None,
            shape: vec![1, 3, 227, 227],
        }
    }

    #[test]
    fn the_folder_name_changes_with_every_part_of_the_key() {
        let base = key().folder_name();
        assert_eq!(
            base,
            "model-abababababab-trt100300-orin--nvgpu--fp16-1x3x227x227"
        );
        let mut k = key();
        k.tensorrt = Some(8601);
        assert_ne!(k.folder_name(), base);
        let mut k = key();
        k.precision = "fp32".into();
        assert_ne!(k.folder_name(), base);
        let mut k = key();
        k.dla_core = Some(0);
        assert_ne!(k.folder_name(), base);
    }

    #[test]
    fn a_complete_entry_is_kept_and_a_corrupt_one_is_wiped_not_fatal() {
        let root = tempfile::tempdir().unwrap();
        let e = open(root.path(), &key()).unwrap();
        std::fs::write(e.dir().join("engine.bin"), b"engine").unwrap();
        e.mark_complete();
        let again = open(root.path(), &key()).unwrap();
        assert!(
            again.dir().join("engine.bin").exists(),
            "complete entry kept"
        );

        std::fs::write(again.dir().join("key.json"), b"{ not json").unwrap();
        let rebuilt = open(root.path(), &key()).unwrap();
        assert!(rebuilt.dir().is_dir());
        assert!(
            !rebuilt.dir().join("engine.bin").exists(),
            "corrupt entry wiped"
        );
    }

    #[test]
    fn an_entry_cut_short_before_its_key_was_written_is_rebuilt() {
        let root = tempfile::tempdir().unwrap();
        let e = open(root.path(), &key()).unwrap();
        std::fs::write(e.dir().join("half.engine"), b"partial").unwrap();
        let again = open(root.path(), &key()).unwrap();
        assert!(!again.dir().join("half.engine").exists());
    }

    #[test]
    fn an_empty_entry_is_simply_used() {
        let root = tempfile::tempdir().unwrap();
        let e = open(root.path(), &key()).unwrap();
        let again = open(root.path(), &key()).unwrap();
        assert_eq!(e.dir(), again.dir());
        assert!(again.dir().is_dir());
    }

    #[test]
    fn an_unwritable_root_is_an_error_the_caller_can_run_without() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err = open(&file, &key()).unwrap_err();
        assert!(err.contains("cannot create"), "{err}");
    }
}
