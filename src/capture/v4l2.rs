//! A V4L2 camera as a frame source, through the `v4l` crate.
//!
//! In: `[source] device`, `width`, `height`, `fps`, `format`,
//! `read_timeout_ms`. Out: RGB frames stamped with the driver's timestamp,
//! and a count of frames lost (gaps in the driver's sequence numbers).
//!
//! What the crate does not do for us (see NOTES.md): it blocks forever
//! without a timeout (libv4l-rs#16), so one is always set; its stream's
//! `Drop` panics when STREAMOFF fails with anything but ENODEV, so we catch
//! that unwind; frames are raw bytes, decoded in `convert.rs`. When the
//! device vanishes (ENODEV, a USB camera unplugged) the source reopens it by
//! path with exponential backoff and re-applies the format; callers see
//! [`CaptureError::Unavailable`] meanwhile and keep calling.
//!
//! Not exercised on the build machine (it has no camera): the conversions
//! and error paths are unit-tested on buffers made from real photos.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use v4l::buffer::Type;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{
    backoff_delay, convert, CameraFormat, CameraInfo, CaptureError, Frame, FrameSource,
    PixelFormat, SourceConfig,
};

const ENODEV: i32 = 19;

struct Open {
    // Field order matters: the stream must drop before the device.
    stream: MmapStream<'static>,
    _device: Device,
    width: u32,
    height: u32,
    stride: u32,
    fourcc: FourCC,
}

/// A camera.
pub struct V4l2Source {
    cfg: SourceConfig,
    open: Option<Open>,
    reopen_attempt: u32,
    next_try: Instant,
    last_seq: Option<u32>,
    dropped: u64,
    seq: u64,
    epoch: Option<f64>,
}

pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    let open = open_device(cfg)?;
    Ok(source(cfg, Some(open)))
}

/// As [`open`], but a camera that is absent or busy now is not an error:
/// the source starts closed and is reopened with backoff, as a camera
/// unplugged once running is.
pub fn open_waiting(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    match open_device(cfg) {
        Ok(open) => Ok(source(cfg, Some(open))),
        Err(e) => {
            tracing::warn!(
                device = %cfg.device.display(),
                "the camera cannot be opened now ({e}); retrying with backoff (up to {} s apart)",
                cfg.reopen_max_backoff_s
            );
            Ok(source(cfg, None))
        }
    }
}

fn source(cfg: &SourceConfig, open: Option<Open>) -> Box<dyn FrameSource> {
    Box::new(V4l2Source {
        cfg: cfg.clone(),
        open,
        reopen_attempt: 0,
        next_try: Instant::now(),
        last_seq: None,
        dropped: 0,
        seq: 0,
        epoch: None,
    })
}

fn open_device(cfg: &SourceConfig) -> Result<Open, CaptureError> {
    let what = cfg.device.display().to_string();
    let err = |stage: &str, e: std::io::Error| CaptureError::Open {
        what: what.clone(),
        reason: format!("{stage}: {e}"),
    };
    let device = Device::with_path(&cfg.device).map_err(|e| err("open", e))?;
    let wanted = match cfg.format {
        PixelFormat::Yuyv => FourCC::new(b"YUYV"),
        PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
    };
    let mut fmt = device.format().map_err(|e| err("read format", e))?;
    fmt.width = cfg.width;
    fmt.height = cfg.height;
    fmt.fourcc = wanted;
    let got = device.set_format(&fmt).map_err(|e| err("set format", e))?;
    if got.fourcc != wanted {
        return Err(CaptureError::Open {
            what,
            reason: format!("the driver offers {} instead of {}; set [source] format to one the camera supports", got.fourcc, wanted),
        });
    }
    if (got.width, got.height) != (cfg.width, cfg.height) {
        tracing::warn!(device = %what, "asked for {}x{}, the driver set {}x{}", cfg.width, cfg.height, got.width, got.height);
    }
    let params = v4l::video::capture::Parameters::with_fps(cfg.fps.round().max(1.0) as u32);
    match device.set_params(&params) {
        Ok(p) => {
            tracing::info!(device = %what, format = %got.fourcc, width = got.width, height = got.height, stride = got.stride, interval = %p.interval, "camera format negotiated")
        }
        Err(e) => tracing::warn!(device = %what, "cannot set frame rate {}: {e}", cfg.fps),
    }
    let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, 4)
        .map_err(|e| err("map buffers", e))?;
    stream.set_timeout(Duration::from_millis(cfg.read_timeout_ms));
    Ok(Open {
        stream,
        _device: device,
        width: got.width,
        height: got.height,
        stride: got.stride,
        fourcc: got.fourcc,
    })
}

/// What one device node offers: its name, and every format, frame size
/// and frame rate it lists.
pub fn describe(path: &std::path::Path, by_id: Vec<std::path::PathBuf>) -> CameraInfo {
    let mut info = CameraInfo::unqueried(path, by_id);
    let device = match Device::with_path(path) {
        Ok(d) => d,
        Err(e) => {
            info.error = Some(format!("cannot open: {e} (is the user in group `video`?)"));
            return info;
        }
    };
    match device.query_caps() {
        Ok(c) => {
            info.card = c.card;
            info.driver = c.driver;
            info.bus = c.bus;
            info.captures_video = c
                .capabilities
                .contains(v4l::capability::Flags::VIDEO_CAPTURE);
        }
        Err(e) => info.error = Some(format!("cannot query capabilities: {e}")),
    }
    if !info.captures_video {
        return info;
    }
    let formats = match device.enum_formats() {
        Ok(f) => f,
        Err(e) => {
            info.error = Some(format!("cannot list formats: {e}"));
            return info;
        }
    };
    for f in formats {
        let fourcc = f.fourcc;
        let mut sizes = Vec::new();
        for s in device.enum_framesizes(fourcc).unwrap_or_default() {
            match s.size {
                v4l::framesize::FrameSizeEnum::Discrete(d) => {
                    let rates: Vec<String> = device
                        .enum_frameintervals(fourcc, d.width, d.height)
                        .unwrap_or_default()
                        .iter()
                        .map(|i| match &i.interval {
                            v4l::frameinterval::FrameIntervalEnum::Discrete(fr) => {
                                format!("{:.4}", fr.denominator as f64 / fr.numerator.max(1) as f64)
                                    .trim_end_matches('0')
                                    .trim_end_matches('.')
                                    .to_string()
                            }
                            other => other.to_string(),
                        })
                        .collect();
                    sizes.push(format!(
                        "{}x{} @ {} fps",
                        d.width,
                        d.height,
                        rates.join(", ")
                    ));
                }
                other => sizes.push(other.to_string()),
            }
        }
        info.formats.push(CameraFormat {
            fourcc: fourcc.str().unwrap_or("????").to_string(),
            description: f.description,
            supported: fourcc == FourCC::new(b"YUYV") || fourcc == FourCC::new(b"MJPG"),
            sizes,
        });
    }
    info
}

impl V4l2Source {
    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            // v4l's Stream::drop panics if STREAMOFF fails with anything but
            // ENODEV; a daemon must survive a dying camera.
            if catch_unwind(AssertUnwindSafe(move || drop(open))).is_err() {
                tracing::warn!(device = %self.cfg.device.display(), "camera stream did not stop cleanly");
            }
        }
        self.last_seq = None;
    }

    fn unavailable(&self, reason: String) -> CaptureError {
        CaptureError::Unavailable {
            what: self.cfg.device.display().to_string(),
            reason,
        }
    }
}

impl FrameSource for V4l2Source {
    fn describe(&self) -> String {
        match &self.open {
            Some(o) => format!(
                "V4L2 camera {} ({} {}x{}, stride {})",
                self.cfg.device.display(),
                o.fourcc,
                o.width,
                o.height,
                o.stride
            ),
            None => format!("V4L2 camera {} (reopening)", self.cfg.device.display()),
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.open.is_none() {
            let now = Instant::now();
            if now < self.next_try {
                std::thread::sleep(self.next_try - now);
            }
            match open_device(&self.cfg) {
                Ok(o) => {
                    tracing::info!(device = %self.cfg.device.display(), "camera reopened");
                    self.open = Some(o);
                    self.reopen_attempt = 0;
                }
                Err(e) => {
                    self.next_try = Instant::now()
                        + backoff_delay(self.reopen_attempt, self.cfg.reopen_max_backoff_s);
                    self.reopen_attempt += 1;
                    return Err(self.unavailable(format!(
                        "reopen attempt {} failed: {e}",
                        self.reopen_attempt
                    )));
                }
            }
        }
        let open = self.open.as_mut().expect("opened above");
        let (width, height, stride, fourcc) = (open.width, open.height, open.stride, open.fourcc);
        let (buf, meta) = match open.stream.next() {
            Ok(x) => x,
            Err(e) => {
                let gone = e.raw_os_error() == Some(ENODEV);
                let reason = if gone {
                    format!("device disappeared ({e})")
                } else {
                    format!("no frame within {} ms ({e})", self.cfg.read_timeout_ms)
                };
                if gone {
                    self.close();
                    self.next_try = Instant::now();
                }
                return Err(self.unavailable(reason));
            }
        };
        if let Some(last) = self.last_seq {
            let gap = meta.sequence.wrapping_sub(last).saturating_sub(1);
            self.dropped += gap as u64;
        }
        self.last_seq = Some(meta.sequence);
        let used = (meta.bytesused as usize).min(buf.len());
        let ts = meta.timestamp.sec as f64 + meta.timestamp.usec as f64 * 1e-6;
        let epoch = *self.epoch.get_or_insert(ts);
        let what = self.cfg.device.display().to_string();
        let image = if fourcc == FourCC::new(b"YUYV") {
            convert::yuyv_to_rgb(&buf[..used], width, height, stride)
        } else {
            convert::mjpeg_to_rgb(&buf[..used])
        }
        .map_err(|reason| CaptureError::Frame { what, reason })?;
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(Frame {
            seq,
            timestamp: ts - epoch,
            captured_at: Instant::now(),
            image,
            origin: None,
        }))
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }

    fn is_live(&self) -> bool {
        true
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        self.close();
    }
}
