//! The ROS 2 image source's disabled twin: this build was made without the
//! `ros2` feature (RustDDS).

use super::{CaptureError, FrameSource, SourceConfig};

pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    Err(CaptureError::Open {
        what: format!("ros2://{}", cfg.topic.as_deref().unwrap_or("")),
        reason: "ROS 2 sources are not enabled in this build; rebuild with `--features ros2` (a default feature)".into(),
    })
}
