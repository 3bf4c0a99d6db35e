//! The GStreamer source's disabled twin: this build was made without the
//! `gstreamer` feature (it links libgstreamer, whose headers are needed at
//! build time).

use super::{redact, CaptureError, FrameSource, SourceConfig};

/// A build without the feature cannot wait for what it cannot open.
pub fn open_waiting(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    open(cfg)
}

pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    Err(CaptureError::Open {
        what: cfg
            .uri
            .as_deref()
            .map(redact)
            .or_else(|| cfg.pipeline.clone())
            .unwrap_or_else(|| "gstreamer".into()),
        reason: "GStreamer sources are not enabled in this build; rebuild with `--features gstreamer` (needs libgstreamer1.0-dev and libgstreamer-plugins-base1.0-dev)".into(),
    })
}
