//! The capture feed: a source read on its own thread, handed to one
//! consumer through a one-slot mailbox. The daemon and `fer-edge
//! calibrate` both read frames through it, so calibrate measures the
//! daemon's own hand-off.
//!
//! In: an opened [`FrameSource`] and the telemetry to count into. Out:
//! [`Frame`]s from [`Feed::take`] / [`Feed::take_timeout`], and at the end
//! what the source did ([`FeedCounts`]: frames delivered, replaced, spoilt,
//! outages and when it ended).
//!
//! Drop policy: a live source (a camera, a paced replay) never waits for
//! the consumer; a newer frame replaces an untaken one and the replaced
//! frame is counted as skipped (`skipped` stage). A source that is not
//! live (an unpaced replay) hands over every frame. A spoilt frame is
//! logged, counted and skipped. A source that becomes unavailable (a camera
//! unplugged) is an outage: logged once when it starts and once when the
//! frames come back; the source reopens itself with backoff meanwhile. A
//! source that cannot be opened again ends the feed, as the end of a
//! replay does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{CaptureError, Frame, FrameSource};
use crate::telemetry::{Counter, Gauge, Stage, Telemetry};

/// A time the source delivered no frames.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outage {
    /// Seconds since the feed started.
    pub from_s: f64,
    /// When frames came again; None if they never did.
    pub to_s: Option<f64>,
    pub reason: String,
}

/// What the source did while the feed ran. Times are seconds since the
/// feed started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedCounts {
    /// Frames the source delivered.
    pub delivered: u64,
    /// When the first and the last frame arrived.
    pub first_s: Option<f64>,
    pub last_s: f64,
    /// Frames a newer one replaced before they were taken.
    pub skipped: u64,
    /// Spoilt frames (counted, skipped).
    pub frame_errors: u64,
    pub outages: Vec<Outage>,
    /// When the source finished by itself (a replay's end, a camera that
    /// could not be reopened); None when the feed was stopped.
    pub ended_at_s: Option<f64>,
    /// Frames the source knows it lost (driver sequence gaps).
    pub dropped_by_source: u64,
}

impl FeedCounts {
    /// The outage going on now, if the source is down (a camera being
    /// reopened with backoff): it is waited for, not stuck.
    pub fn current_outage(&self) -> Option<&Outage> {
        self.outages
            .last()
            .filter(|o| o.to_s.is_none() && self.ended_at_s.is_none())
    }

    /// Frames per second the source delivered between its first and last
    /// frame (0 with fewer than two frames).
    pub fn delivered_fps(&self) -> f64 {
        let span = self.first_s.map_or(0.0, |f| self.last_s - f);
        if span > 0.0 && self.delivered > 1 {
            (self.delivered - 1) as f64 / span
        } else {
            0.0
        }
    }
}

/// What [`Feed::take_timeout`] found.
#[derive(Debug)]
pub enum Take {
    Frame(Frame),
    /// Nothing arrived in time; the feed goes on.
    Empty,
    /// The feed is over and nothing is left.
    Closed,
}

/// The one-slot hand-off between the capture thread and its consumer.
struct Mailbox {
    state: Mutex<(Option<Frame>, bool)>,
    cv: Condvar,
    newest_wins: bool,
}

impl Mailbox {
    fn new(newest_wins: bool) -> Mailbox {
        Mailbox {
            state: Mutex::new((None, false)),
            cv: Condvar::new(),
            newest_wins,
        }
    }

    /// Puts a frame; returns how many untaken frames it replaced (0 or 1).
    /// A lossless mailbox waits for the slot to empty (or to close).
    fn put(&self, frame: Frame) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.newest_wins {
            while s.0.is_some() && !s.1 {
                s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        let replaced = u64::from(s.0.replace(frame).is_some());
        self.cv.notify_all();
        replaced
    }

    /// Takes the next frame, waiting at most `wait` (None: for ever).
    fn take(&self, wait: Option<Duration>) -> Take {
        let deadline = wait.map(|w| Instant::now() + w);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(f) = s.0.take() {
                self.cv.notify_all();
                return Take::Frame(f);
            }
            if s.1 {
                return Take::Closed;
            }
            match deadline {
                None => s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Take::Empty;
                    }
                    s = self
                        .cv
                        .wait_timeout(s, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.cv.notify_all();
    }
}

/// A source read on its own thread.
pub struct Feed {
    mailbox: Arc<Mailbox>,
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<FeedCounts>>,
    thread: Option<JoinHandle<()>>,
    describe: String,
    live: bool,
}

impl Feed {
    /// Starts reading `source` on a thread named `capture`.
    pub fn start(source: Box<dyn FrameSource>, telemetry: Arc<Telemetry>) -> std::io::Result<Feed> {
        let live = source.is_live();
        let describe = source.describe();
        let mailbox = Arc::new(Mailbox::new(live));
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(FeedCounts::default()));
        let thread = {
            let (mailbox, stop, counts) = (mailbox.clone(), stop.clone(), counts.clone());
            std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    capture_loop(source, &mailbox, &stop, &counts, &telemetry);
                    mailbox.close();
                })?
        };
        Ok(Feed {
            mailbox,
            stop,
            counts,
            thread: Some(thread),
            describe,
            live,
        })
    }

    /// The source as it described itself when opened.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// True for a camera or a paced replay (newest frame wins).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The next frame; None once the feed is over and empty.
    pub fn take(&self) -> Option<Frame> {
        match self.mailbox.take(None) {
            Take::Frame(f) => Some(f),
            _ => None,
        }
    }

    /// The next frame, waiting at most `wait`.
    pub fn take_timeout(&self, wait: Duration) -> Take {
        self.mailbox.take(Some(wait))
    }

    /// Asks the capture thread to stop; frames still in flight are not
    /// handed over.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.mailbox.close();
    }

    /// True once [`Self::close`] was called (not when the source finished
    /// by itself: its last frames are still to be taken).
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The outage going on now, if the source is down (a camera being
    /// reopened with backoff): it is waited for, not stuck.
    pub fn outage(&self) -> Option<Outage> {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.current_outage().cloned()
    }

    /// What the source did so far.
    pub fn counts(&self) -> FeedCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the feed, waits for the capture thread (at most one source
    /// read: a camera's `read_timeout_ms`), and returns the counts.
    pub fn stop(mut self) -> FeedCounts {
        self.close();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the capture thread panicked");
            }
        }
        self.counts()
    }
}

impl Drop for Feed {
    /// Stops the capture thread without waiting for it (the daemon's
    /// shutdown does not wait on a camera read).
    fn drop(&mut self) {
        self.close();
    }
}

fn capture_loop(
    mut source: Box<dyn FrameSource>,
    mailbox: &Mailbox,
    stop: &AtomicBool,
    counts: &Mutex<FeedCounts>,
    telemetry: &Telemetry,
) {
    let t0 = Instant::now();
    let now = || t0.elapsed().as_secs_f64();
    let update = |f: &mut dyn FnMut(&mut FeedCounts)| {
        f(&mut counts.lock().unwrap_or_else(|e| e.into_inner()));
    };
    let mut reported_drops = 0;
    while !stop.load(Ordering::SeqCst) {
        match source.next_frame() {
            Ok(Some(frame)) => {
                let t = now();
                telemetry.frame_in(Stage::Capture);
                telemetry.frame_out(
                    Stage::Capture,
                    frame.captured_at.elapsed().as_secs_f64() * 1000.0,
                );
                update(&mut |c| {
                    if let Some(o) = c.outages.last_mut().filter(|o| o.to_s.is_none()) {
                        o.to_s = Some(t);
                        tracing::warn!("the source is back after {:.1} s", t - o.from_s);
                    }
                    c.delivered += 1;
                    c.first_s.get_or_insert(t);
                    c.last_s = t;
                });
                let replaced = mailbox.put(frame);
                if replaced > 0 {
                    telemetry.dropped(Stage::Skipped, replaced);
                    update(&mut |c| c.skipped += replaced);
                }
                let d = source.dropped();
                if d > reported_drops {
                    telemetry.dropped(Stage::Capture, d - reported_drops);
                    telemetry.set(Gauge::FramesDroppedBySource, d);
                    reported_drops = d;
                    update(&mut |c| c.dropped_by_source = d);
                }
            }
            Ok(None) => {
                tracing::info!("source finished");
                let t = now();
                update(&mut |c| c.ended_at_s = Some(t));
                break;
            }
            Err(e @ CaptureError::Frame { .. }) => {
                telemetry.error(Stage::Capture);
                update(&mut |c| c.frame_errors += 1);
                tracing::warn!("{e}; frame skipped");
            }
            Err(e) => {
                if outage(&e, now(), counts, telemetry) {
                    tracing::error!("the source cannot be opened again: no more frames");
                    break;
                }
            }
        }
    }
}

/// Counts a source error: an outage starts (logged once) unless one is
/// going on. True when the source cannot be opened again (the feed ends).
fn outage(e: &CaptureError, t: f64, counts: &Mutex<FeedCounts>, telemetry: &Telemetry) -> bool {
    telemetry.error(Stage::Capture);
    let fatal = matches!(e, CaptureError::Open { .. });
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    if c.outages.last().is_none_or(|o| o.to_s.is_some()) {
        telemetry.add(Counter::SourceOutages, 1);
        tracing::warn!("{e}");
        c.outages.push(Outage {
            from_s: t,
            to_s: None,
            reason: e.to_string(),
        });
    } else {
        tracing::debug!("{e}");
    }
    if fatal {
        c.ended_at_s = Some(t);
    }
    fatal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            timestamp: seq as f64,
            captured_at: Instant::now(),
            image: crate::frame::RgbImage::new(2, 2),
            origin: None,
        }
    }

    #[test]
    fn a_live_mailbox_lets_the_newest_frame_win_and_counts_the_skipped_one() {
        let m = Mailbox::new(true);
        assert_eq!(m.put(frame(1)), 0);
        assert_eq!(m.put(frame(2)), 1);
        assert!(matches!(m.take(None), Take::Frame(f) if f.seq == 2));
        assert!(matches!(
            m.take(Some(Duration::from_millis(5))),
            Take::Empty
        ));
        m.close();
        assert!(matches!(m.take(None), Take::Closed));
    }

    #[test]
    fn a_lossless_mailbox_hands_over_every_frame_in_order() {
        let m = Arc::new(Mailbox::new(false));
        let producer = {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(m.put(frame(i)), 0);
                }
                m.close();
            })
        };
        let mut got = Vec::new();
        while let Take::Frame(f) = m.take(None) {
            got.push(f.seq);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
    }

    /// A live source fed from a channel: a frame, a spoilt frame, or an
    /// outage, as the test sends them.
    struct Scripted {
        rx: mpsc::Receiver<Result<Option<Frame>, CaptureError>>,
    }

    impl FrameSource for Scripted {
        fn describe(&self) -> String {
            "scripted".into()
        }
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            self.rx.recv().unwrap_or(Ok(None))
        }
        fn is_live(&self) -> bool {
            true
        }
    }

    #[test]
    fn the_feed_counts_skips_spoilt_frames_and_outages_and_ends_with_the_source() {
        let (tx, rx) = mpsc::channel();
        let unavailable = || CaptureError::Unavailable {
            what: "cam".into(),
            reason: "unplugged".into(),
        };
        // Two frames nobody takes (one replaced), a spoilt frame, an outage
        // reported twice, then a frame (the source is back), then the end.
        tx.send(Ok(Some(frame(0)))).unwrap();
        tx.send(Ok(Some(frame(1)))).unwrap();
        tx.send(Err(CaptureError::Frame {
            what: "cam".into(),
            reason: "short".into(),
        }))
        .unwrap();
        tx.send(Err(unavailable())).unwrap();
        tx.send(Err(unavailable())).unwrap();
        tx.send(Ok(Some(frame(2)))).unwrap();
        tx.send(Ok(None)).unwrap();
        let telemetry = Arc::new(Telemetry::default());
        let feed = Feed::start(Box::new(Scripted { rx }), telemetry.clone()).unwrap();
        // Let the capture thread run through the script first.
        let t = Instant::now();
        while feed.counts().ended_at_s.is_none() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(feed.take_timeout(Duration::from_secs(1)), Take::Frame(f) if f.seq == 2));
        assert!(matches!(
            feed.take_timeout(Duration::from_secs(1)),
            Take::Closed
        ));
        let c = feed.stop();
        assert_eq!(c.delivered, 3);
        assert_eq!(c.skipped, 2, "frames 0 and 1 were replaced untaken");
        assert_eq!(c.frame_errors, 1);
        assert_eq!(c.outages.len(), 1, "{:?}", c.outages);
        assert!(c.outages[0].to_s.is_some());
        assert!(c.ended_at_s.is_some());
        let snap = telemetry.snapshot();
        assert_eq!(snap.stages["skipped"].dropped, 2);
        assert_eq!(snap.stages["capture"].frames_in, 3);
        assert_eq!(snap.stages["capture"].errors, 3);
        assert_eq!(
            telemetry.totals().source_outages,
            1,
            "one outage, reported twice"
        );
    }
}
