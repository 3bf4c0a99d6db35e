//! The V4L2 source's disabled twin: this build was made without the `v4l2`
//! feature (it needs libclang at build time for the kernel headers).

use std::path::{Path, PathBuf};

use super::{CameraInfo, CaptureError, FrameSource, SourceConfig};

/// A build without the feature cannot wait for what it cannot open.
pub fn open_waiting(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    open(cfg)
}

pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    Err(CaptureError::Open {
        what: cfg.device.display().to_string(),
        reason: "V4L2 camera support is not enabled in this build; rebuild with `--features v4l2` (needs libclang-dev)".into(),
    })
}

pub fn describe(path: &Path, by_id: Vec<PathBuf>) -> CameraInfo {
    CameraInfo {
        error: Some("V4L2 camera support is not enabled in this build; rebuild with `--features v4l2` (needs libclang-dev)".into()),
        ..CameraInfo::unqueried(path, by_id)
    }
}
