//! A ROS 2 camera topic as a frame source: what a robot's camera driver
//! publishes, read over DDS (RustDDS, no ROS installation).
//!
//! In: `[source] topic` (`/camera/image_raw` is `sensor_msgs/Image`,
//! `…/compressed` is `sensor_msgs/CompressedImage`), `max_pixels`,
//! `read_timeout_ms`, and `[ros2]`'s domain and discovery range. Out: RGB
//! frames carrying the image's `header` as their [`Origin`] (its stamp
//! becomes the messages' frame time, its frame id the ROS 2 output's);
//! [`FrameSource::dropped`] counts samples a newer one replaced before
//! they were read (the newest wins, as with every source).
//!
//! The reader is best effort: it matches drivers publishing with
//! SensorDataQoS and reliable ones alike. No image for `read_timeout_ms`
//! (the driver stopped, restarted, or the robot is not there yet) is
//! [`CaptureError::Unavailable`]: the feed logs the outage once, counts it
//! and carries on reading; frames resume as soon as images come again. A
//! malformed sample, an unknown encoding or an image over `max_pixels` is
//! [`CaptureError::Frame`]: skipped and counted. Sizes are checked from the
//! message (width, height, or the JPEG/PNG header) before any pixel is
//! read; DDS itself refuses fragmented samples over 64 MiB (vendored
//! RustDDS, `vendor/README.md`).

use std::time::{Duration, Instant};

use super::{CaptureError, Frame, FrameSource, Origin, SourceConfig};
use crate::ros2::dds::{CameraReader, ImageSample};
use crate::ros2::image::{self, Transport};
use crate::ros2::msgs::Header;
use crate::ros2::Network;

/// How often the reader is looked at while no image is waiting.
const POLL: Duration = Duration::from_millis(2);

pub struct Ros2Camera {
    topic: String,
    transport: Transport,
    network: Network,
    reader: CameraReader,
    max_pixels: u64,
    read_timeout: Duration,
    t0: Instant,
    seq: u64,
    replaced: u64,
    size: Option<(u32, u32)>,
}

pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    let topic = cfg.topic.clone().unwrap_or_default();
    let what = format!("ros2://{topic}");
    let fail = |reason: String| CaptureError::Open {
        what: what.clone(),
        reason,
    };
    image::validate_topic(&topic).map_err(fail)?;
    let network = cfg.dds.network(|k| std::env::var(k).ok()).map_err(fail)?;
    let reader = CameraReader::join(&network, &topic).map_err(|e| fail(e.to_string()))?;
    let transport = Transport::of_topic(&topic);
    tracing::info!(
        "reading {} images from {topic} ({network})",
        transport.message()
    );
    Ok(Box::new(Ros2Camera {
        topic,
        transport,
        network,
        reader,
        max_pixels: cfg.max_pixels,
        read_timeout: Duration::from_millis(cfg.read_timeout_ms),
        t0: Instant::now(),
        seq: 0,
        replaced: 0,
        size: None,
    }))
}

impl Ros2Camera {
    fn bad(&self, reason: String) -> CaptureError {
        CaptureError::Frame {
            what: format!("ros2://{}", self.topic),
            reason,
        }
    }

    /// The sample as a frame, stamped with its header.
    fn frame(&mut self, sample: ImageSample) -> Result<Frame, CaptureError> {
        let captured_at = Instant::now();
        let (header, image) = match sample {
            ImageSample::Raw(m) => {
                let img = image::raw_to_rgb(&m, self.max_pixels);
                (m.header, img)
            }
            ImageSample::Compressed(m) => {
                let img = image::compressed_to_rgb(&m, self.max_pixels);
                (m.header, img)
            }
        };
        let image = image.map_err(|e| self.bad(e))?;
        let size = image.dimensions();
        if let Some(was) = self.size.filter(|s| *s != size) {
            tracing::info!(
                "images on {} are now {}x{} (were {}x{})",
                self.topic,
                size.0,
                size.1,
                was.0,
                was.1
            );
        }
        self.size = Some(size);
        self.seq += 1;
        let Header { stamp, frame_id } = header;
        Ok(Frame {
            seq: self.seq,
            timestamp: self.t0.elapsed().as_secs_f64(),
            captured_at,
            image,
            origin: Some(Origin {
                stamp: stamp.seconds(),
                frame_id,
            }),
        })
    }
}

impl FrameSource for Ros2Camera {
    fn describe(&self) -> String {
        format!(
            "ros2://{} ({}, DDS domain {})",
            self.topic,
            self.transport.message(),
            self.network.domain_id
        )
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let start = Instant::now();
        loop {
            match self.reader.take_latest() {
                Ok(Some((sample, replaced))) => {
                    self.replaced += replaced;
                    return self.frame(sample).map(Some);
                }
                Ok(None) if start.elapsed() >= self.read_timeout => {
                    return Err(CaptureError::Unavailable {
                        what: format!("ros2://{}", self.topic),
                        reason: format!(
                            "no image for {} ms: is the camera driver publishing on {} in domain {}? (`ros2 topic hz {}` on the robot)",
                            self.read_timeout.as_millis(),
                            self.topic,
                            self.network.domain_id,
                            self.topic
                        ),
                    })
                }
                Ok(None) => std::thread::sleep(POLL),
                Err(e) => return Err(self.bad(e)),
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.replaced
    }

    fn is_live(&self) -> bool {
        true
    }
}
