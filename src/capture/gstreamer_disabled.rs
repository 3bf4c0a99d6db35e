//! The GStreamer source's disabled twin: this build was made without the
//! `gstreamer` feature (it links libgstreamer, whose headers are needed at
//! build time).

use super::{CaptureError, FrameSource, SourceConfig};

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

/// The URI without user information.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => uri.to_string(),
    }
}
