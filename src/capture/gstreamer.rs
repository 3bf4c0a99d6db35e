//! The GStreamer source: RTSP/HTTP/file URIs, Jetson CSI cameras through
//! `nvarguscamerasrc`, and any pipeline a user describes the way Jetson
//! and DeepStream users already do.
//!
//! In: `[source] kind = "gstreamer"` with a `uri` (fer-edge builds the
//! decoding pipeline: RTSP over TCP with `latency_ms`, credentials from
//! `credentials_file` set as properties, never in a string or a log line)
//! or a `pipeline` (fer-edge appends the conversion to RGB and its sink).
//! Out: owned RGB [`Frame`]s. The sink keeps one buffer and drops older
//! ones, so a slow consumer gets the latest frame, never a queue of stale
//! ones. The negotiated caps are logged once per connection; a size change
//! mid-stream is followed frame by frame.
//!
//! Bounded before decoding: every decoder in the pipeline (those
//! `decodebin` plugs in, and a user pipeline's own) gets a probe on its
//! input that reads the frame size the parser in front of it announced
//! (JPEG's header, H.264's SPS): a size over `max_pixels` is refused there,
//! its frames dropped before the decoder allocates anything and counted as
//! frame errors. (A user pipeline with a decoder but no parser in front,
//! `... ! jpegdec`, gives the size only once decoded; put `jpegparse` or
//! `h264parse` before the decoder.) The RGB frame is checked again after.
//!
//! Faults: a stream that errors or ends (a camera reboot, a network cut, a
//! server restart) is torn down and reopened with exponential backoff; each
//! failed attempt is [`CaptureError::Unavailable`], which the capture feed
//! counts as an outage (stats and `/metrics`). At start, a source that
//! cannot deliver its first frame within `open_timeout_ms` is
//! [`CaptureError::Open`] with GStreamer's reason and a hint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::{backoff_delay, redact, CaptureError, Frame, FrameSource, SourceConfig};
use crate::frame::RgbImage;

/// The element names fer-edge gives the parts it adds.
const SINK: &str = "fer_edge_sink";
const SRC: &str = "fer_edge_src";

/// A running pipeline.
struct Running {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    /// The caps were logged for this connection.
    caps_logged: bool,
    /// A sample pulled while opening, handed out first.
    first: Option<gst::Sample>,
    /// Frames the size guard dropped before decoding, and the last size
    /// it refused.
    refused: Arc<Refused>,
    /// `refused` frames already reported.
    reported: u64,
}

/// What the decoders' size guards refused.
#[derive(Default)]
struct Refused {
    frames: AtomicU64,
    size: Mutex<Option<(u64, u64)>>,
}

/// Puts a size guard on the input of `element` when it is a decoder: a
/// caps event announcing more than `max_pixels` is swallowed and the
/// frames after it are dropped (counted), until caps within the limit.
fn guard_decoder(element: &gst::Element, max_pixels: u64, refused: &Arc<Refused>) {
    let is_decoder = element
        .factory()
        .is_some_and(|f| f.klass().contains("Decoder"));
    if !is_decoder {
        return;
    }
    for pad in element.sink_pads() {
        let refused = refused.clone();
        let oversized = AtomicBool::new(false);
        pad.add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER,
            move |_, info| match &info.data {
                Some(gst::PadProbeData::Event(ev)) => {
                    let gst::EventView::Caps(c) = ev.view() else {
                        return gst::PadProbeReturn::Ok;
                    };
                    let size = c.caps().structure(0).and_then(|st| {
                        let w = st.get::<i32>("width").ok()?;
                        let h = st.get::<i32>("height").ok()?;
                        Some((w.max(0) as u64, h.max(0) as u64))
                    });
                    let over = size.is_some_and(|(w, h)| w * h > max_pixels);
                    oversized.store(over, Ordering::SeqCst);
                    if over {
                        *refused.size.lock().unwrap_or_else(|e| e.into_inner()) = size;
                        return gst::PadProbeReturn::Drop;
                    }
                    gst::PadProbeReturn::Ok
                }
                Some(gst::PadProbeData::Buffer(_)) if oversized.load(Ordering::SeqCst) => {
                    refused.frames.fetch_add(1, Ordering::SeqCst);
                    gst::PadProbeReturn::Drop
                }
                _ => gst::PadProbeReturn::Ok,
            },
        );
    }
}

/// Guards every decoder of `pipeline`, those there now and those a
/// `decodebin` adds once it knows the stream.
fn guard_decoders(pipeline: &gst::Pipeline, max_pixels: u64) -> Arc<Refused> {
    let refused = Arc::new(Refused::default());
    for element in pipeline.iterate_recurse().into_iter().flatten() {
        guard_decoder(&element, max_pixels, &refused);
    }
    let r = refused.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        guard_decoder(element, max_pixels, &r);
    });
    refused
}

impl Refused {
    /// True once a size was refused.
    fn any(&self) -> bool {
        self.size.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// Frames refused so far, and why, in words.
    fn reason(&self, max_pixels: u64) -> String {
        let n = self.frames.load(Ordering::SeqCst);
        match *self.size.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((w, h)) => format!(
                "{n} frame(s) of {w}x{h} refused before decoding: over source.max_pixels = {max_pixels}"
            ),
            None => format!("{n} frame(s) refused before decoding: over source.max_pixels"),
        }
    }
}

/// How long a pipeline's teardown may hold the caller. rtspsrc joins its
/// own thread when it stops, and that thread may be blocked reading from a
/// server that drips a byte at a time: such a teardown goes on in the
/// background instead of holding the frame loop (or `check`).
const TEARDOWN_WAIT: Duration = Duration::from_secs(1);

/// Teardowns still blocked in the background; past [`MAX_STUCK`] no new
/// connection is opened (each holds a thread and a socket), so a hostile
/// server cannot make fer-edge pile them up.
static STUCK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_STUCK: usize = 4;

impl Drop for Running {
    fn drop(&mut self) {
        // 0: closing, 1: closed, 2: left to close in the background.
        let state = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let (pipeline, closing) = (self.pipeline.clone(), state.clone());
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("gst-teardown".into())
            .spawn(move || {
                let _ = pipeline.set_state(gst::State::Null);
                if closing.swap(1, Ordering::SeqCst) == 2 {
                    STUCK.fetch_sub(1, Ordering::SeqCst);
                    tracing::info!("a camera connection that was slow to close has closed");
                }
                let _ = done_tx.send(());
            });
        if spawned.is_err() {
            let _ = self.pipeline.set_state(gst::State::Null);
            return;
        }
        if done_rx.recv_timeout(TEARDOWN_WAIT).is_ok() {
            return;
        }
        STUCK.fetch_add(1, Ordering::SeqCst);
        if state
            .compare_exchange(0, 2, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // It closed in the meantime.
            STUCK.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        tracing::warn!(
            "the camera's connection did not close within {} s (a server that holds it open, \
             sending a byte at a time?): it is left to close in the background",
            TEARDOWN_WAIT.as_secs()
        );
    }
}

pub struct GstSource {
    cfg: SourceConfig,
    login: Option<(String, String)>,
    running: Option<Running>,
    seq: u64,
    started: Instant,
    next_try: Instant,
    attempt: u32,
    /// Size of the latest frame, for `describe`.
    size: Option<(u32, u32, String)>,
}

/// What the source is, for logs: the URI (redacted) or the pipeline.
fn what(cfg: &SourceConfig) -> String {
    match (&cfg.uri, &cfg.pipeline) {
        (Some(u), _) => redact(u),
        (None, Some(p)) => format!("pipeline \"{p}\""),
        (None, None) => "gstreamer (no uri or pipeline)".into(),
    }
}

/// The pipeline description: the source part, then RGB conversion and the sink.
fn description(cfg: &SourceConfig) -> String {
    let head = match (&cfg.uri, &cfg.pipeline) {
        (Some(uri), _) if uri.starts_with("rtsp://") || uri.starts_with("rtsps://") => format!(
            "rtspsrc name={SRC} protocols={} latency={} ! decodebin",
            cfg.rtsp_transport.as_str(),
            cfg.latency_ms
        ),
        (Some(_), _) => format!("uridecodebin name={SRC}"),
        (None, Some(p)) => p.clone(),
        (None, None) => String::new(),
    };
    format!(
        "{head} ! videoconvert ! video/x-raw,format=RGB ! appsink name={SINK} max-buffers=1 drop=true"
    )
}

pub fn open(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    open_as(cfg, false)
}

/// As [`open`], but a camera that cannot be reached now is not an error:
/// the source starts down and is retried with backoff, as a camera lost
/// once running is. A pipeline that does not parse still is.
pub fn open_waiting(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>, CaptureError> {
    open_as(cfg, true)
}

/// Start failures that no retry can mend: the description itself.
const DESCRIPTION_ERRORS: [&str; 3] = [
    "the pipeline does not parse",
    "the description is not a pipeline",
    "fer-edge's appsink is missing",
];

fn open_as(cfg: &SourceConfig, wait: bool) -> Result<Box<dyn FrameSource>, CaptureError> {
    let open_err = |reason: String| CaptureError::Open {
        what: what(cfg),
        reason,
    };
    gst::init().map_err(|e| open_err(format!("cannot start GStreamer: {e}")))?;
    let login = match &cfg.credentials_file {
        Some(p) => Some(super::read_login(p).map_err(open_err)?),
        None => None,
    };
    let mut s = GstSource {
        cfg: cfg.clone(),
        login,
        running: None,
        seq: 0,
        started: Instant::now(),
        next_try: Instant::now(),
        attempt: 0,
        size: None,
    };
    match s.start() {
        Ok(r) => s.running = Some(r),
        Err(e) if wait && !DESCRIPTION_ERRORS.iter().any(|d| e.starts_with(d)) => {
            tracing::warn!(
                source = %what(cfg),
                "the camera cannot be opened now ({}); retrying with backoff (up to {} s apart)",
                hint(cfg, &e),
                cfg.reopen_max_backoff_s
            );
            let _ = s.lost(e);
        }
        Err(e) => return Err(open_err(hint(cfg, &e))),
    }
    Ok(Box::new(s))
}

/// The reason with what to try.
fn hint(cfg: &SourceConfig, reason: &str) -> String {
    let lower = reason.to_lowercase();
    let fix = if lower.contains("unauthorized") || lower.contains("401") {
        " (the camera refused the login: check source.credentials_file, one line user:password)"
    } else if lower.contains("no element") {
        " (a GStreamer plugin is missing: install gstreamer1.0-plugins-good/-bad/-libav, or on a Jetson nvidia-l4t-gstreamer)"
    } else if cfg.uri.is_some()
        && (lower.contains("could not open")
            || lower.contains("timed out")
            || lower.contains("no frame"))
    {
        " (is the camera on the network and the URL right? try: gst-launch-1.0 playbin uri=URL)"
    } else {
        ""
    };
    format!("{reason}{fix}")
}

impl GstSource {
    /// Builds and starts the pipeline, and waits for its first frame.
    fn start(&self) -> Result<Running, String> {
        let stuck = STUCK.load(Ordering::SeqCst);
        if stuck >= MAX_STUCK {
            return Err(format!(
                "{stuck} earlier connections to this source are still stuck closing \
                 (the server holds them open); no new one until they close"
            ));
        }
        let element = gst::parse::launch(&description(&self.cfg))
            .map_err(|e| format!("the pipeline does not parse: {e}"))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the description is not a pipeline".to_string())?;
        let sink = pipeline
            .by_name(SINK)
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or("fer-edge's appsink is missing from the pipeline")?;
        // A file plays at its own rate, as a camera would deliver it
        // (a pipeline's own source is looked at once it is paused, below).
        let file = self
            .cfg
            .uri
            .as_deref()
            .is_some_and(|u| u.starts_with("file://"));
        sink.set_property("sync", file);
        self.configure_source(&pipeline);
        let refused = guard_decoders(&pipeline, self.cfg.max_pixels);
        let running = Running {
            pipeline,
            sink,
            caps_logged: false,
            first: None,
            refused,
            reported: 0,
        };
        let start = |state| {
            running.pipeline.set_state(state).map_err(|_| {
                bus_error(&running.pipeline)
                    .unwrap_or_else(|| "the pipeline would not start".into())
            })
        };
        // A pipeline of the user's whose source is not live (a file,
        // multifilesrc, videotestsrc) would otherwise run as fast as it
        // decodes and the newest-frame sink would skip most of it: it plays
        // at its timestamps instead. Live sources (cameras, RTSP) deliver
        // at their own rate and are never held back.
        let paused = start(gst::State::Paused)?;
        if self.cfg.pipeline.is_some() && paused != gst::StateChangeSuccess::NoPreroll {
            running.sink.set_property("sync", true);
        }
        start(gst::State::Playing)?;
        self.first_frame(running)
    }

    /// Points the pipeline's own source at the URI, with rtspsrc's TCP
    /// timeout bounded and the camera's login.
    fn configure_source(&self, pipeline: &gst::Pipeline) {
        if let (Some(uri), Some(src)) = (&self.cfg.uri, pipeline.by_name(SRC)) {
            if src.has_property("location") {
                src.set_property("location", uri);
                // rtspsrc waits 20 s on a stalled TCP connection by
                // default (a server that drips a byte at a time, or
                // announces a body it never sends): no longer than the
                // whole open may take.
                if src.has_property("tcp-timeout") {
                    src.set_property("tcp-timeout", self.cfg.open_timeout_ms * 1000);
                }
                if let Some((u, p)) = &self.login {
                    src.set_property("user-id", u);
                    src.set_property("user-pw", p);
                }
            } else {
                src.set_property("uri", uri);
            }
        }
    }

    /// Waits up to `open_timeout_ms` for the first frame (kept to be handed
    /// out first), or for the error that explains why none comes.
    fn first_frame(&self, mut running: Running) -> Result<Running, String> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.open_timeout_ms);
        while Instant::now() < deadline {
            if let Some(s) = running
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(100))
            {
                running.first = Some(s);
                return Ok(running);
            }
            // Frames refused for their size explain an end or a silence.
            let refused = running.refused.any();
            let because = |what: String| match refused {
                true => format!("{what}: {}", running.refused.reason(self.cfg.max_pixels)),
                false => what,
            };
            if let Some(e) = bus_error(&running.pipeline) {
                return Err(because(e));
            }
            if running.sink.is_eos() {
                return Err(because("the stream ended before its first frame".into()));
            }
        }
        if running.refused.any() {
            return Err(format!(
                "no frame within {} ms: {}",
                self.cfg.open_timeout_ms,
                running.refused.reason(self.cfg.max_pixels)
            ));
        }
        Err(format!(
            "no frame within {} ms (source.open_timeout_ms)",
            self.cfg.open_timeout_ms
        ))
    }

    fn unavailable(&self, reason: String) -> CaptureError {
        CaptureError::Unavailable {
            what: what(&self.cfg),
            reason,
        }
    }

    /// Tears the pipeline down and schedules the next attempt.
    fn lost(&mut self, reason: String) -> CaptureError {
        self.running = None;
        self.next_try = Instant::now() + backoff_delay(self.attempt, self.cfg.reopen_max_backoff_s);
        self.attempt += 1;
        self.unavailable(reason)
    }

    /// An RGB frame from a sample (any stride, any size).
    fn frame(&mut self, sample: &gst::Sample, log_caps: bool) -> Result<Frame, CaptureError> {
        let bad = |reason: String| CaptureError::Frame {
            what: what(&self.cfg),
            reason,
        };
        let caps = sample
            .caps()
            .ok_or_else(|| bad("a sample without caps".into()))?;
        let info =
            gst_video::VideoInfo::from_caps(caps).map_err(|e| bad(format!("caps {caps}: {e}")))?;
        let (w, h, stride) = (info.width(), info.height(), info.stride()[0] as usize);
        if log_caps {
            tracing::info!(
                source = %what(&self.cfg),
                "negotiated {}x{} {} at {}/{} frames/s",
                w,
                h,
                info.format().to_str(),
                info.fps().numer(),
                info.fps().denom()
            );
        }
        if (w as u64) * (h as u64) > self.cfg.max_pixels {
            return Err(bad(format!("{w}x{h} frames exceed source.max_pixels")));
        }
        let buffer = sample
            .buffer()
            .ok_or_else(|| bad("a sample without a buffer".into()))?;
        let map = buffer
            .map_readable()
            .map_err(|e| bad(format!("unreadable buffer: {e}")))?;
        let data = map.as_slice();
        let row = w as usize * 3;
        if stride < row || data.len() < stride * (h as usize - 1) + row {
            return Err(bad(format!(
                "a {}-byte buffer for {w}x{h} RGB (stride {stride})",
                data.len()
            )));
        }
        let mut rgb = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            rgb.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        let image = RgbImage::from_raw(w, h, rgb).ok_or_else(|| bad("size mismatch".into()))?;
        self.size = Some((w, h, info.format().to_str().to_string()));
        let seq = self.seq;
        self.seq += 1;
        Ok(Frame {
            seq,
            timestamp: self.started.elapsed().as_secs_f64(),
            captured_at: Instant::now(),
            image,
            origin: None,
        })
    }
}

/// The first error or end-of-stream on the pipeline's bus, as text.
fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    let msg = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!(
            "{} (from {})",
            e.error(),
            e.src().map(|s| s.name().to_string()).unwrap_or_default()
        )),
        gst::MessageView::Eos(_) => Some("the stream ended".into()),
        _ => None,
    }
}

impl FrameSource for GstSource {
    fn describe(&self) -> String {
        match &self.size {
            Some((w, h, f)) => format!("GStreamer {} ({w}x{h} {f} → RGB)", what(&self.cfg)),
            None => format!("GStreamer {}", what(&self.cfg)),
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.running.is_none() {
            let now = Instant::now();
            if now < self.next_try {
                std::thread::sleep(self.next_try - now);
            }
            match self.start() {
                Ok(r) => {
                    tracing::info!(source = %what(&self.cfg), "stream reconnected after {} attempt(s)", self.attempt);
                    self.running = Some(r);
                    self.attempt = 0;
                }
                Err(e) => {
                    let n = self.attempt + 1;
                    return Err(self.lost(format!("reconnect attempt {n} failed: {e}")));
                }
            }
        }
        let timeout = self.cfg.read_timeout_ms;
        let max_pixels = self.cfg.max_pixels;
        let r = self.running.as_mut().expect("started above");
        // Frames the size guard dropped since the last call: one frame
        // error for them (the feed counts it), and the stream goes on.
        let refused = r.refused.frames.load(Ordering::SeqCst);
        if refused > r.reported {
            r.reported = refused;
            return Err(CaptureError::Frame {
                what: what(&self.cfg),
                reason: r.refused.reason(max_pixels),
            });
        }
        let log_caps = !r.caps_logged;
        r.caps_logged = true;
        let sample = match r.first.take() {
            Some(s) => Some(s),
            None => r
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(timeout)),
        };
        match sample {
            Some(s) => self.frame(&s, log_caps).map(Some),
            None => {
                let reason = bus_error(&r.pipeline).unwrap_or_else(|| {
                    if r.sink.is_eos() {
                        "the stream ended".into()
                    } else {
                        format!("no frame within {timeout} ms")
                    }
                });
                Err(self.lost(reason))
            }
        }
    }

    fn is_live(&self) -> bool {
        true
    }
}
