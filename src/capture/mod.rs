//! Where frames come from: a V4L2 camera, a GStreamer pipeline or URI
//! (RTSP/IP cameras, Jetson CSI), or a replayed recording.
//!
//! In: a `[source]` config. Out: owned RGB [`Frame`]s with a sequence number
//! and a timestamp, one `next_frame` call at a time. The seam is small on
//! purpose (libv4l-rs' lesson, not nokhwa's): open, next frame, how many
//! were dropped. A source copies each frame into an owned buffer at this
//! boundary, so nothing downstream borrows driver memory.
//!
//! Errors are split by what the caller should do: [`CaptureError::Frame`]
//! spoils one frame (log, count, skip), [`CaptureError::Unavailable`] means
//! the device is gone for now (the source reopens it with backoff; keep
//! calling), [`CaptureError::Open`] is fatal at start-up.

use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use crate::frame::RgbImage;

pub mod convert;
pub mod feed;
#[cfg(feature = "gstreamer")]
pub mod gstreamer;
#[cfg(not(feature = "gstreamer"))]
#[path = "gstreamer_disabled.rs"]
pub mod gstreamer;
pub mod replay;
#[cfg(feature = "ros2")]
pub mod ros2;
#[cfg(not(feature = "ros2"))]
#[path = "ros2_disabled.rs"]
pub mod ros2;
#[cfg(feature = "v4l2")]
pub mod v4l2;
#[cfg(not(feature = "v4l2"))]
#[path = "v4l2_disabled.rs"]
pub mod v4l2;

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Increases by one per frame the source produced (gaps = drops).
    pub seq: u64,
    /// Seconds since the source started: nominal (`seq / fps`) for a replay,
    /// the driver's monotonic timestamp for a camera.
    pub timestamp: f64,
    /// When the frame entered fer-edge (for capture→publish latency).
    pub captured_at: Instant,
    pub image: RgbImage,
    /// The time and place the frame itself carries (a ROS 2 image's
    /// header); None for sources without one.
    pub origin: Option<Origin>,
}

pub use crate::frame::Origin;

/// Why a source could not give a frame.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open source {what}: {reason}")]
    Open { what: String, reason: String },
    #[error("bad frame from {what}: {reason}")]
    Frame { what: String, reason: String },
    #[error("{what} is unavailable: {reason}")]
    Unavailable { what: String, reason: String },
}

/// A source of frames.
pub trait FrameSource: Send {
    /// A one-line description for logs (path, negotiated format...).
    fn describe(&self) -> String;
    /// The next frame; `Ok(None)` at the end of a non-looping replay.
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError>;
    /// Frames the source knows it lost (driver sequence gaps).
    fn dropped(&self) -> u64 {
        0
    }
    /// True for sources that produce frames on their own clock (cameras,
    /// paced replays): the pipeline then lets the newest frame win.
    fn is_live(&self) -> bool;
}

/// Which kind of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    #[default]
    Replay,
    V4l2,
    /// A GStreamer `uri` or `pipeline`.
    Gstreamer,
    /// A ROS 2 image `topic` (`sensor_msgs/Image`, or `CompressedImage` on
    /// a `…/compressed` topic), on `[ros2] domain_id`.
    Ros2,
}

/// How RTSP carries the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved in the RTSP connection: passes firewalls and NAT, no loss.
    #[default]
    Tcp,
    Udp,
}

impl RtspTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
}

/// Camera pixel formats fer-edge can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    #[default]
    Yuyv,
    Mjpeg,
}

/// `[source]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `replay` (a folder of images or a video file) or `v4l2` (a camera).
    pub kind: SourceKind,
    /// Replay: a folder of PNG/JPEG images (name order) or a video file
    /// (decoded by the `ffmpeg` program).
    pub path: Option<PathBuf>,
    /// Frame rate: the camera rate to request, or the replay's nominal rate
    /// (which sets its timestamps).
    pub fps: f64,
    /// Replay: start again at the end instead of finishing.
    #[serde(rename = "loop")]
    pub loop_: bool,
    /// Replay: sleep to play at `fps` (true), or go as fast as the pipeline
    /// takes frames, processing every one (false; tests and benchmarks).
    pub pace: bool,
    /// Camera device; prefer the stable `/dev/v4l/by-id/...` name.
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Give up waiting for a camera frame after this long (the v4l crate
    /// would otherwise block forever).
    pub read_timeout_ms: u64,
    /// Longest wait between attempts to reopen a vanished camera.
    pub reopen_max_backoff_s: f64,
    /// GStreamer: a camera or stream URI (`rtsp://`, `rtsps://`, `http(s)://`,
    /// `file://`); fer-edge builds the decoding pipeline.
    pub uri: Option<String>,
    /// GStreamer: a pipeline description producing raw video (e.g. a Jetson
    /// CSI camera: `nvarguscamerasrc sensor-id=0 ! nvvidconv !
    /// video/x-raw,format=BGRx`); fer-edge appends the conversion to RGB and
    /// its sink.
    pub pipeline: Option<String>,
    /// GStreamer RTSP: a file whose first line is `user:password`.
    pub credentials_file: Option<PathBuf>,
    /// GStreamer RTSP: `tcp` (default) or `udp`.
    pub rtsp_transport: RtspTransport,
    /// GStreamer RTSP: jitter buffer, milliseconds.
    pub latency_ms: u32,
    /// GStreamer: how long the first frame may take at start and at each
    /// reconnection.
    pub open_timeout_ms: u64,
    /// Replay: most pixels an image or video frame may have, checked from
    /// the file's header before decoding (default 8192×8192); a larger one
    /// is skipped with an error, as a corrupt frame is. A ROS 2 image is
    /// checked the same way, from its message's width and height.
    pub max_pixels: u64,
    /// ROS 2: the image topic (`/camera/image_raw`, or
    /// `/camera/image_raw/compressed` for JPEG/PNG).
    pub topic: Option<String>,
    /// ROS 2: the domain and discovery range, `[ros2]`'s (copied there by
    /// [`crate::config::Config`]; not a key of `[source]`).
    #[serde(skip)]
    pub dds: crate::ros2::Ros2Config,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Replay,
            path: None,
            fps: 15.0,
            loop_: false,
            pace: true,
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            format: PixelFormat::Yuyv,
            read_timeout_ms: 2000,
            reopen_max_backoff_s: 10.0,
            max_pixels: crate::imageio::PIXEL_LIMIT_DEFAULT,
            uri: None,
            pipeline: None,
            credentials_file: None,
            rtsp_transport: RtspTransport::Tcp,
            latency_ms: 200,
            open_timeout_ms: 10_000,
            topic: None,
            dds: crate::ros2::Ros2Config::default(),
        }
    }
}

impl SourceConfig {
    /// Checks values (no file access). `analyze` ignores `[source]`, so a
    /// missing replay path is only an error for `run` ([`Self::validate_for_run`]).
    pub fn validate(&self) -> Result<(), String> {
        // A replay's frame n is due at n / fps: a vanishing fps makes that
        // time infinite, which no Duration holds.
        if !(0.1..=240.0).contains(&self.fps) {
            return Err(format!("source.fps = {} must be in 0.1..240", self.fps));
        }
        if !(16..=8192).contains(&self.width) || !(16..=8192).contains(&self.height) {
            return Err(format!(
                "source.width/height = {}x{} must be 16..8192 pixels",
                self.width, self.height
            ));
        }
        if !(10..=60_000).contains(&self.read_timeout_ms) {
            return Err(format!(
                "source.read_timeout_ms = {} must be 10..60000",
                self.read_timeout_ms
            ));
        }
        if !(64 * 64..=16384 * 16384).contains(&self.max_pixels) {
            return Err(format!(
                "source.max_pixels = {} must be 4096..268435456 (64x64 to 16384x16384)",
                self.max_pixels
            ));
        }
        if let Some(uri) = &self.uri {
            const SCHEMES: [&str; 5] = ["rtsp://", "rtsps://", "http://", "https://", "file://"];
            if !SCHEMES.iter().any(|s| uri.starts_with(s)) {
                return Err(format!(
                    "source.uri = {:?} must start with rtsp://, rtsps://, http://, https:// or file://",
                    redact(uri)
                ));
            }
        }
        if let Some(p) = &self.pipeline {
            if p.contains("appsink") || p.trim().is_empty() || p.trim_end().ends_with('!') {
                return Err("source.pipeline must describe the source up to raw video, without a sink: fer-edge appends `! videoconvert ! video/x-raw,format=RGB ! appsink`".into());
            }
        }
        if !(1_000..=120_000).contains(&self.open_timeout_ms) {
            return Err(format!(
                "source.open_timeout_ms = {} must be 1000..120000",
                self.open_timeout_ms
            ));
        }
        if let Some(t) = &self.topic {
            crate::ros2::image::validate_topic(t)?;
        }
        if !(self.reopen_max_backoff_s >= 0.1 && self.reopen_max_backoff_s <= 3600.0) {
            return Err(format!(
                "source.reopen_max_backoff_s = {} must be 0.1..3600",
                self.reopen_max_backoff_s
            ));
        }
        Ok(())
    }
}

impl SourceConfig {
    /// What `run` needs on top of [`Self::validate`].
    pub fn validate_for_run(&self) -> Result<(), String> {
        self.validate()?;
        if self.kind == SourceKind::Replay && self.path.is_none() {
            return Err(
                "source.kind = \"replay\" needs source.path: a folder of images or a video file"
                    .into(),
            );
        }
        if self.kind == SourceKind::Gstreamer && !cfg!(feature = "gstreamer") {
            // A configuration error (78), not an unreachable camera (69):
            // systemd must not restart into it every 2 s.
            return Err("source.kind = \"gstreamer\", but this fer-edge was built without GStreamer: rebuild with the default features (`cargo build --release`; needs libgstreamer1.0-dev and libgstreamer-plugins-base1.0-dev), or use kind = \"v4l2\" or \"replay\"".into());
        }
        if self.kind == SourceKind::Ros2 && !cfg!(feature = "ros2") {
            return Err("source.kind = \"ros2\", but this fer-edge was built without ROS 2: rebuild with the default features (`cargo build --release`), or use kind = \"v4l2\", \"gstreamer\" or \"replay\"".into());
        }
        if self.kind == SourceKind::Ros2 && self.topic.is_none() {
            return Err("source.kind = \"ros2\" needs source.topic: the camera's image topic, e.g. \"/camera/image_raw\" (or \"/camera/image_raw/compressed\")".into());
        }
        if self.kind == SourceKind::Gstreamer && self.uri.is_some() == self.pipeline.is_some() {
            return Err("source.kind = \"gstreamer\" needs one of source.uri (rtsp://, http://, file://) or source.pipeline (a GStreamer pipeline producing raw video)".into());
        }
        // A malformed or unsafe credentials file is a configuration error
        // (78: systemd does not restart into it), found before any camera
        // is tried.
        if let Some(p) = &self.credentials_file {
            read_login(p)?;
        }
        Ok(())
    }
}

/// `user:password` from the first line of a camera's credentials file
/// (a private regular file: see [`crate::fileio::read_private_text`]).
pub(crate) fn read_login(path: &std::path::Path) -> Result<(String, String), String> {
    let text = crate::fileio::read_private_text(path, 4096, "a camera's password")
        .map_err(|e| format!("source.credentials_file: {e}"))?;
    let line = text.lines().next().unwrap_or("").trim_end();
    match line.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(format!(
            "source.credentials_file {}: the first line must be user:password",
            crate::fileio::shown(path)
        )),
    }
}

/// One V4L2 device and what it offers (`fer-edge calibrate --list`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CameraInfo {
    pub path: PathBuf,
    /// Stable names under `/dev/v4l/by-id/` that point at it (use these in
    /// `[source] device`: `/dev/videoN` numbers change between boots).
    pub by_id: Vec<PathBuf>,
    pub card: String,
    pub driver: String,
    pub bus: String,
    /// False for metadata nodes (a UVC camera has two `/dev/video*`).
    pub captures_video: bool,
    pub formats: Vec<CameraFormat>,
    /// Set when the device could not be queried.
    pub error: Option<String>,
}

impl CameraInfo {
    /// A device not (yet) queried: its path and stable names only.
    pub fn unqueried(path: &std::path::Path, by_id: Vec<PathBuf>) -> CameraInfo {
        CameraInfo {
            path: path.to_path_buf(),
            by_id,
            card: String::new(),
            driver: String::new(),
            bus: String::new(),
            captures_video: false,
            formats: Vec::new(),
            error: None,
        }
    }
}

/// One pixel format of a camera.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CameraFormat {
    /// `YUYV`, `MJPG`, …
    pub fourcc: String,
    pub description: String,
    /// True when fer-edge can convert it (`[source] format`).
    pub supported: bool,
    /// `640x480 @ 30, 15 fps`, or a stepwise range.
    pub sizes: Vec<String>,
}

/// Every `/dev/video*` node, described (devices that cannot be opened say
/// why in [`CameraInfo::error`]). Empty when there is none.
pub fn list_cameras() -> Vec<CameraInfo> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"video"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_by_key(|p| {
        let n = p.file_name().unwrap_or_default().as_encoded_bytes()[5..].to_vec();
        (n.len(), n)
    });
    let by_id: Vec<(PathBuf, PathBuf)> = std::fs::read_dir("/dev/v4l/by-id")
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((std::fs::canonicalize(e.path()).ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    nodes
        .into_iter()
        .map(|path| {
            let ids = by_id
                .iter()
                .filter(|(target, _)| *target == path)
                .map(|(_, link)| link.clone())
                .collect();
            v4l2::describe(&path, ids)
        })
        .collect()
}

/// A URI without its user information (`rtsp://user:pw@host/x` →
/// `rtsp://host/x`): what logs and errors show of a camera's address.
pub fn redact(uri: &str) -> String {
    let (scheme, rest) = match uri.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        // `admin:pw@10.0.0.5/cam`: a URI without its scheme still carries
        // the password.
        None => (None, uri),
    };
    // A password holding '/' or '@' (`admin:s3cret/PW@host/cam`, not
    // percent-encoded as it should be) ends the authority early: take the
    // last '@' when a `user:` may come before it. A path with '@' after a
    // port is hidden too; hiding too much is the safe side.
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let at = rest
        .rfind('@')
        .filter(|&at| rest[..at].contains(':'))
        .or_else(|| authority.rfind('@'));
    let Some(at) = at else {
        return uri.to_string();
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{}", &rest[at + 1..]),
        None => rest[at + 1..].to_string(),
    }
}

/// Privacy by default for GStreamer and the libraries under it: nothing
/// written into the user's home. Without this, GLib's settings open
/// `~/.cache/dconf/user` for writing, and ORC (which compiles
/// `videoconvert`'s kernels at run time) writes its code to
/// `$XDG_RUNTIME_DIR`, else to `$HOME/orcexec.*`. So GLib keeps its settings
/// in memory (`GSETTINGS_BACKEND=memory`) and, where no runtime directory
/// (a RAM file system) is set, ORC runs its portable C code instead
/// (`ORC_CODE=backup`, ~2 ms more per 640x480 frame converted). Values the
/// user set are kept. GStreamer's own plugin cache
/// (`~/.cache/gstreamer-1.0/registry.*`, the list of installed plugins) is
/// left where GStreamer keeps it; `GST_REGISTRY` moves it.
///
/// Call it first thing in `main`, before any thread starts: it sets
/// process environment variables.
pub fn keep_gstreamer_out_of_home() {
    if std::env::var_os("GSETTINGS_BACKEND").is_none() {
        std::env::set_var("GSETTINGS_BACKEND", "memory");
    }
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    if runtime_dir.is_none() && std::env::var_os("ORC_CODE").is_none() {
        std::env::set_var("ORC_CODE", "backup");
    }
}

/// Opens the configured source.
pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    match cfg.kind {
        SourceKind::Replay => Ok(Box::new(replay::Replay::open(cfg)?)),
        SourceKind::V4l2 => v4l2::open(cfg),
        SourceKind::Gstreamer => gstreamer::open(cfg),
        SourceKind::Ros2 => ros2::open(cfg),
    }
}

/// Opens the configured source for `run`: a camera (V4L2 or GStreamer)
/// that is down when the daemon starts is an outage retried with backoff,
/// as one lost once running is (systemd restarting the daemon every 2 s
/// helps no one). Config errors, and a replay that is not there, still
/// stop the start; `check` and `calibrate` use [`open`], which fails fast.
pub fn open_for_run(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    match cfg.kind {
        SourceKind::Replay => open(cfg),
        SourceKind::V4l2 => v4l2::open_waiting(cfg),
        SourceKind::Gstreamer => gstreamer::open_waiting(cfg),
        // Joining a domain does not need the publisher: a camera that is
        // not publishing yet is an outage the feed reports and waits out.
        SourceKind::Ros2 => ros2::open(cfg),
    }
}

/// What [`probe`] saw of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The source as it describes itself once open (negotiated format…).
    pub describe: String,
    /// The first frame's size.
    pub width: u32,
    pub height: u32,
}

/// Opens the configured source as `run` would and reads its first frame
/// through the daemon's own [`feed::Feed`], giving up after `timeout` (a
/// camera that never delivers, a stream that hangs: the feed's thread is
/// left to stop on its own). The error is the one `run` would give.
pub fn probe(cfg: &SourceConfig, timeout: std::time::Duration) -> Result<Probe, CaptureError> {
    let feed =
        feed::Feed::start(open(cfg)?, Default::default()).map_err(|e| CaptureError::Open {
            what: format!("{:?}", cfg.kind),
            reason: format!("cannot start the capture thread: {e}"),
        })?;
    let no_frame = |why: String| {
        // The outage the feed saw says why better than a bare timeout.
        let reason = match feed.counts().outages.last() {
            Some(o) => format!("{why}; last error: {}", o.reason),
            None => why,
        };
        CaptureError::Unavailable {
            what: feed.describe().to_string(),
            reason,
        }
    };
    match feed.take_timeout(timeout) {
        feed::Take::Frame(f) => Ok(Probe {
            describe: feed.describe().to_string(),
            width: f.image.width(),
            height: f.image.height(),
        }),
        feed::Take::Closed => Err(no_frame("it ended without a frame".into())),
        feed::Take::Empty => Err(no_frame(format!(
            "no frame within {:.0} s",
            timeout.as_secs_f64()
        ))),
    }
}

/// Exponential backoff: 0.25 s doubling up to `max_s`.
pub fn backoff_delay(attempt: u32, max_s: f64) -> std::time::Duration {
    let s = 0.25 * 2f64.powi(attempt.min(16) as i32);
    std::time::Duration::from_secs_f64(s.min(max_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_log_line() {
        assert_eq!(
            redact("rtsp://admin:s3cret@10.0.0.5:554/stream"),
            "rtsp://10.0.0.5:554/stream"
        );
        assert_eq!(redact("rtsp://10.0.0.5/a@b"), "rtsp://10.0.0.5/a@b");
        assert_eq!(redact("file:///tmp/x.mp4"), "file:///tmp/x.mp4");
        // A password with '/' in it, and a URI without its scheme.
        assert_eq!(
            redact("rtsp://admin:s3cret/PW@10.0.0.5/cam"),
            "rtsp://10.0.0.5/cam"
        );
        assert_eq!(redact("admin:s3cret@10.0.0.5/cam"), "10.0.0.5/cam");
        assert_eq!(redact("admin:s3/cret@10.0.0.5/cam"), "10.0.0.5/cam");
        for uri in [
            "rtsp://admin:s3cret/PW@10.0.0.5/cam",
            "admin:s3cret@10.0.0.5/cam",
            "http://u:p@ss/w:rd@h/x",
        ] {
            assert!(
                !redact(uri).contains("s3cret") && !redact(uri).contains("rd@"),
                "{uri}"
            );
        }
    }

    #[cfg(not(feature = "gstreamer"))]
    #[test]
    fn a_gstreamer_source_in_a_build_without_it_names_the_feature_and_hides_the_password() {
        let cfg = SourceConfig {
            kind: SourceKind::Gstreamer,
            uri: Some("rtsp://admin:s3cret@10.0.0.5/stream".into()),
            ..SourceConfig::default()
        };
        let e = open(&cfg)
            .err()
            .expect("no GStreamer in this build")
            .to_string();
        assert!(
            e.contains("--features gstreamer") && e.contains("rtsp://10.0.0.5/stream"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff_delay(0, 10.0).as_millis(), 250);
        assert_eq!(backoff_delay(2, 10.0).as_millis(), 1000);
        assert_eq!(backoff_delay(30, 10.0).as_secs(), 10);
    }

    #[test]
    fn probing_a_replay_reads_its_first_frame_and_a_missing_one_says_so() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let cfg = SourceConfig {
            path: Some(root.join("tests/data/sequences/pan1")),
            ..Default::default()
        };
        let p = probe(&cfg, std::time::Duration::from_secs(5)).unwrap();
        assert_eq!((p.width, p.height), (640, 480));
        assert!(p.describe.contains("pan1"), "{}", p.describe);
        let missing = SourceConfig {
            path: Some(root.join("tests/data/no-such-recording")),
            ..Default::default()
        };
        let e = probe(&missing, std::time::Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("no-such-recording"), "{e}");
    }

    #[test]
    fn a_replay_without_a_path_is_rejected_with_the_fix() {
        assert!(SourceConfig::default().validate().is_ok());
        let e = SourceConfig::default().validate_for_run().unwrap_err();
        assert!(e.contains("source.path"), "{e}");
        let ok = SourceConfig {
            path: Some("x".into()),
            ..Default::default()
        };
        assert!(ok.validate_for_run().is_ok());
    }
}
