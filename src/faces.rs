//! The per-frame face chain: detect (or follow) → align → emotion.
//!
//! In: one RGB frame, and for video the [`Plan`] the track core made for
//! it (full detection, or O-Net refinement of the boxes it follows). Out: a
//! [`FaceReading`] per face (best detector score first) and how long each
//! stage took. `fer-edge analyze` calls [`FaceChain::process`] per image;
//! the daemon and the bench call [`FaceChain::run`] per frame. A face that cannot be aligned
//! (degenerate landmarks) is skipped, logged and counted in
//! [`FrameResult::skipped_faces`]; it never fails the frame.

use std::sync::mpsc;
use std::time::Instant;

use crate::align::{self, Framing};
use crate::config::Config;
use crate::detect::{DetectError, Detector};
use crate::emotion::calibration::CalibrationConfig;
use crate::emotion::{EmotionError, EmotionModel};
use crate::frame::{Detection, FaceReading, RgbImage};
use crate::infer::{self, Backend, InferError, Placement};
use crate::track::core::{FrameOutput, Held, Observation, Plan, TrackCore};

/// Errors building the chain (fatal at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{stage} engine {name:?}: {source}")]
    Backend {
        stage: &'static str,
        name: String,
        #[source]
        source: InferError,
    },
    #[error("face detector: {0}")]
    Detector(#[from] DetectError),
    #[error("emotion model: {0}")]
    Emotion(#[from] EmotionError),
    #[error("cannot start the background detector thread: {0}")]
    Thread(std::io::Error),
}

/// Errors processing one frame (the caller logs, counts and moves on).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("face detection failed: {0}")]
    Detect(#[from] DetectError),
    #[error("emotion inference failed: {0}")]
    Emotion(#[from] EmotionError),
}

/// Milliseconds spent per stage on one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Full detection (0 on a followed frame).
    pub detect_ms: f64,
    /// Following: O-Net on each followed face (0 on a detection frame).
    pub follow_ms: f64,
    /// The track core: association, smoothing, summaries.
    pub track_ms: f64,
    pub align_ms: f64,
    pub emotion_ms: f64,
    /// The whole frame on the frame thread (the stages above and the
    /// glue between them): `inference` in every report.
    pub frame_ms: f64,
}

/// What one frame gave: what the track core takes ([`Observation`]: the
/// faces, tracked first then seeds, and whether a detection ran) and what
/// only the chain knows (faces read, time per stage, faces skipped).
#[derive(Debug, Clone, Default)]
pub struct FrameResult {
    pub observation: Observation,
    /// Faces aligned and read on this frame (the others kept their track's
    /// held reading).
    pub read: usize,
    pub times: StageTimes,
    pub skipped_faces: usize,
}

impl FrameResult {
    /// The faces found, tracked first, then seeds.
    pub fn faces(&self) -> &[FaceReading] {
        &self.observation.readings
    }
}

/// Where one model of the chain runs.
#[derive(Debug, Clone)]
pub struct ModelPlacement {
    /// `detector P-Net`, `emotion`, …
    pub model: String,
    /// The engine's config name.
    pub engine: &'static str,
    pub placement: Placement,
}

/// One video frame through the chain and the track core.
#[derive(Debug, Clone)]
pub struct Step {
    pub output: FrameOutput,
    pub times: StageTimes,
    /// Faces found on this frame (tentative tracks' included).
    pub faces: usize,
    /// Of those, faces aligned and read (the others kept a held reading).
    pub read: usize,
    /// A full detection finished in the background since the last frame,
    /// and how long it took (ms).
    pub background_detect_ms: Option<f64>,
}

/// The full detector on its own thread: it takes a frame when idle and
/// hands back what it found, while the caller keeps following faces.
struct Background {
    jobs: Option<mpsc::SyncSender<RgbImage>>,
    results: mpsc::Receiver<(Result<Vec<Detection>, DetectError>, f64)>,
    busy: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(mut detector: Detector) -> std::io::Result<Background> {
        let (jobs, job_rx) = mpsc::sync_channel::<RgbImage>(1);
        let (done_tx, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("detector".into())
            .spawn(move || {
                for img in job_rx {
                    let t = Instant::now();
                    let found = detector.detect(&img);
                    if done_tx.send((found, ms(t))).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Background {
            jobs: Some(jobs),
            results,
            busy: false,
            thread: Some(thread),
        })
    }

    /// Hands `img` over when idle; false when still busy with an older one.
    fn submit(&mut self, img: &RgbImage) -> Result<bool, DetectError> {
        if self.busy {
            return Ok(false);
        }
        let sent = self.jobs.as_ref().map(|j| j.send(img.clone()));
        match sent {
            Some(Ok(())) => {
                self.busy = true;
                Ok(true)
            }
            _ => Err(DetectError::BackgroundStopped),
        }
    }

    /// What the last job found, once it is done.
    fn poll(&mut self) -> Result<Option<(Vec<Detection>, f64)>, DetectError> {
        match self.results.try_recv() {
            Ok((found, ms)) => {
                self.busy = false;
                Ok(Some((found?, ms)))
            }
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(DetectError::BackgroundStopped),
        }
    }
}

impl Background {
    /// Waits for a detection in flight and drops its result.
    fn settle(&mut self) {
        if self.busy {
            let _ = self.results.recv();
            self.busy = false;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Detector, aligner and emotion model, loaded and checked.
pub struct FaceChain {
    /// Engines of the detector and the emotion model, in that order.
    backends: [Box<dyn Backend>; 2],
    detector: Detector,
    /// `[follow] background`: full detections on their own thread.
    background: Option<Background>,
    /// `[follow] threshold`: a followed face scoring less is lost.
    follow_threshold: f32,
    emotion: EmotionModel,
    framing: Framing,
    /// `[calibration]`, when it changes readings.
    calibration: Option<CalibrationConfig>,
}

impl FaceChain {
    /// Loads every model the config names; fails with the first problem.
    pub fn from_config(cfg: &Config) -> Result<FaceChain, SetupError> {
        let [det, emo] = cfg.stage_backends().map(|(stage, name)| {
            infer::backend(name, &cfg.inference).map_err(|source| SetupError::Backend {
                stage,
                name: name.to_string(),
                source,
            })
        });
        let backends = [det?, emo?];
        // With a background detector each side gets one core: the detector
        // thread, and the frame thread that follows faces (measured: a
        // second follower thread only contends with the detector, and
        // costs ~6 MB of sessions). `threads` applies to detecting on the
        // frame thread.
        let one = crate::detect::DetectorConfig {
            threads: 1,
            ..cfg.detector.clone()
        };
        let (detector, background) = if cfg.follow.background {
            let d = Detector::from_config(&one, backends[0].as_ref())?;
            let follower = Detector::from_config(&one, backends[0].as_ref())?;
            (
                follower,
                Some(Background::start(d).map_err(SetupError::Thread)?),
            )
        } else {
            (
                Detector::from_config(&cfg.detector, backends[0].as_ref())?,
                None,
            )
        };
        let emotion = EmotionModel::from_config(&cfg.emotion, backends[1].as_ref())?;
        let framing = emotion.framing(&cfg.align);
        Ok(FaceChain {
            backends,
            detector,
            background,
            follow_threshold: cfg.follow.threshold,
            emotion,
            framing,
            calibration: cfg
                .calibration
                .is_applied()
                .then(|| cfg.calibration.clone()),
        })
    }

    /// True when `[calibration]` changes this chain's readings.
    pub fn is_calibrated(&self) -> bool {
        self.calibration.is_some()
    }

    /// The detector's and the emotion model's engines.
    pub fn backends(&self) -> [&dyn Backend; 2] {
        [self.backends[0].as_ref(), self.backends[1].as_ref()]
    }

    /// The engine names as one label: `onnxruntime`, or
    /// `detector=tract,emotion=onnxruntime` when they differ.
    pub fn engine_label(&self) -> String {
        let [d, e] = self.backends().map(|b| b.name());
        if d == e {
            d.to_string()
        } else {
            format!("detector={d},emotion={e}")
        }
    }

    /// Where every model runs; P-Net is prepared for `frame` (w, h).
    pub fn placements(&mut self, frame: (u32, u32)) -> Result<Vec<ModelPlacement>, DetectError> {
        let [d, e] = self.backends().map(|b| b.name());
        let mut out: Vec<ModelPlacement> = self
            .detector
            .placements(frame)?
            .into_iter()
            .map(|(net, placement)| ModelPlacement {
                model: format!("detector {net}"),
                engine: d,
                placement,
            })
            .collect();
        out.push(ModelPlacement {
            model: "emotion".into(),
            engine: e,
            placement: self.emotion.placement().clone(),
        });
        Ok(out)
    }

    pub fn emotion_model(&self) -> &EmotionModel {
        &self.emotion
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Runs the full chain on one frame (a still image: always detects).
    pub fn process(&mut self, img: &RgbImage) -> Result<FrameResult, FrameError> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let found = self.detector.detect(img)?;
        times.detect_ms = ms(t);
        let mut result = self.read(img, found.into_iter().map(|d| (d, None, false)), &mut times)?;
        result.times = times;
        result.observation.detected = true;
        Ok(result)
    }

    /// One video frame at time `t` through the track core: take what a
    /// background detection found, plan, run the plan, track.
    pub fn track_frame(
        &mut self,
        core: &mut TrackCore,
        t: f64,
        img: &RgbImage,
    ) -> Result<Step, FrameError> {
        let t_frame = Instant::now();
        let mut background_detect_ms = None;
        if let Some(bg) = self.background.as_mut() {
            match bg.poll() {
                Ok(Some((found, ms))) => {
                    let boxes: Vec<_> = found.iter().map(|d| d.bbox).collect();
                    core.seed(t, &boxes);
                    background_detect_ms = Some(ms);
                }
                Ok(None) => {}
                Err(e @ DetectError::BackgroundStopped) => {
                    // Carry on with detections on this thread.
                    tracing::error!("{e}; detecting on the frame thread from now on");
                    self.background = None;
                }
                Err(e) => {
                    // That frame's detection failed; the next one is due.
                    tracing::warn!("background face detection failed: {e}");
                }
            }
        }
        let plan = core.plan(t);
        let r = self.run(img, &plan)?;
        let (mut times, faces, read) = (r.times, r.faces().len(), r.read);
        let t_track = Instant::now();
        let output = core.update(t, r.observation);
        times.track_ms = ms(t_track);
        times.frame_ms = ms(t_frame);
        Ok(Step {
            output,
            times,
            faces,
            read,
            background_detect_ms,
        })
    }

    /// Forgets a background detection still in flight (waits for it to
    /// finish): the next frames start from a clean slate.
    pub fn settle(&mut self) {
        if let Some(bg) = self.background.as_mut() {
            bg.settle();
        }
    }

    /// True when full detections run on their own thread.
    pub fn detects_in_background(&self) -> bool {
        self.background.is_some()
    }

    /// Runs the chain on one video frame as the track core planned it.
    pub fn run(&mut self, img: &RgbImage, plan: &Plan) -> Result<FrameResult, FrameError> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let background = match self.background.as_mut() {
            Some(bg) if plan.detect => bg.submit(img)?,
            _ => false,
        };
        if plan.detect && self.background.is_none() {
            let found = self.detector.detect(img)?;
            times.detect_ms = ms(t);
            let mut result =
                self.read(img, found.into_iter().map(|d| (d, None, false)), &mut times)?;
            result.times = times;
            result.observation.detected = true;
            return Ok(result);
        }
        let found = self
            .detector
            .follow(img, &plan.follow, self.follow_threshold)?;
        times.follow_ms = ms(t);
        let mut found = found.into_iter();
        let tracked: Vec<Option<Detection>> = found.by_ref().take(plan.tracked).collect();
        let lost = tracked.iter().filter(|f| f.is_none()).count();
        let held = plan
            .held
            .iter()
            .map(Option::as_ref)
            .chain(std::iter::repeat(None));
        let followed = tracked
            .into_iter()
            .zip(held)
            .filter_map(|(d, h)| Some((d?, h, false)));
        // New faces the follow pass found come after the followed ones,
        // read in the same call.
        let seeds = found.flatten().map(|d| (d, None, true));
        let mut result = self.read(img, followed.chain(seeds), &mut times)?;
        result.times = times;
        result.observation.detected = background;
        result.observation.lost = lost;
        Ok(result)
    }

    /// Aligns each detection and reads the emotions of all of them in one
    /// call of the model, or keeps the held reading one comes with. Each
    /// item says whether it is a seed (a new face found while following):
    /// `seeded` counts those kept.
    fn read<'h>(
        &mut self,
        img: &RgbImage,
        detections: impl Iterator<Item = (Detection, Option<&'h Held>, bool)>,
        times: &mut StageTimes,
    ) -> Result<FrameResult, FrameError> {
        // Each face kept, with its held reading (None: to be read from
        // its crop, in `crops`' order).
        let mut kept: Vec<(Detection, Option<&Held>)> = Vec::new();
        let mut crops = Vec::new();
        let (mut skipped, mut seeded) = (0, 0);
        let t = Instant::now();
        for (det, held, seed) in detections {
            if held.is_none() {
                match align::align(img, &det.landmarks, &self.framing) {
                    Ok((crop, _)) => crops.push(crop),
                    Err(e) => {
                        tracing::warn!(bbox = ?det.bbox, "face skipped: {e}");
                        skipped += 1;
                        continue;
                    }
                }
            }
            seeded += usize::from(seed);
            kept.push((det, held));
        }
        times.align_ms += ms(t);
        let t = Instant::now();
        let mut read = self.read_crops(&crops)?.into_iter();
        times.emotion_ms += ms(t);
        let mut faces = Vec::with_capacity(kept.len());
        for (detection, held) in kept {
            let (emotion, held_from) = match held {
                Some(h) => (h.emotion.clone(), Some(h.track_id)),
                None => match read.next() {
                    Some(e) => (e, None),
                    None => break,
                },
            };
            faces.push(FaceReading {
                detection,
                emotion,
                held_from,
            });
        }
        Ok(FrameResult {
            observation: Observation {
                readings: faces,
                seeded,
                ..Observation::default()
            },
            read: crops.len(),
            skipped_faces: skipped,
            ..FrameResult::default()
        })
    }

    /// The emotions of aligned crops, `[calibration]` applied: what the
    /// chain reads for every face.
    fn read_crops(
        &mut self,
        crops: &[RgbImage],
    ) -> Result<Vec<crate::frame::Emotion>, EmotionError> {
        let mut read = self.emotion.infer_batch(crops)?;
        if let Some(c) = &self.calibration {
            for e in &mut read {
                *e = c.apply(e);
            }
        }
        Ok(read)
    }

    /// [`Self::read_crops`] for one crop.
    fn read_crop(&mut self, crop: &RgbImage) -> Result<crate::frame::Emotion, EmotionError> {
        self.emotion.infer(crop).map(|e| match &self.calibration {
            Some(c) => c.apply(&e),
            None => e,
        })
    }

    /// Reads a whole image as one face, already cropped (how FER2013-style
    /// results are quoted): resized (bilinear) to the model's input, no
    /// detection or alignment, `[calibration]` applied.
    pub fn read_whole(&mut self, img: &RgbImage) -> Result<crate::frame::Emotion, EmotionError> {
        let (w, h) = (self.framing.width, self.framing.height);
        if img.dimensions() == (w, h) {
            return self.read_crop(img);
        }
        let crop = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
        self.read_crop(&crop)
    }

    /// Runs only the emotion model on aligned crops, in one call where the
    /// engine batches, as a frame's faces are read (benchmarks).
    pub fn infer_crops(
        &mut self,
        crops: &[RgbImage],
    ) -> Result<Vec<crate::frame::Emotion>, EmotionError> {
        self.emotion.infer_batch(crops)
    }

    /// Aligned crop of one face, for debugging and calibration views.
    pub fn aligned_crop(&self, img: &RgbImage, reading: &FaceReading) -> Option<RgbImage> {
        align::align(img, &reading.detection.landmarks, &self.framing)
            .ok()
            .map(|(c, _)| c)
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
