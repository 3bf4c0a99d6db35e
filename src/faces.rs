//! The per-frame face chain: detect (or follow) → align → emotion.
//!
//! In: one RGB frame, and for video the [`Plan`] the track core made for
//! it (full detection, or O-Net refinement of the boxes it follows). Out: a
//! [`FaceReading`] per face (best detector score first) and how long each
//! stage took. `fer-edge analyze` calls [`FaceChain::process`] per image;
//! the daemon and the bench call [`FaceChain::run`] per frame. A face that cannot be aligned
//! (degenerate landmarks) is skipped, logged and counted in
//! [`FrameResult::skipped_faces`]; it never fails the frame.

use std::time::Instant;

use crate::align::{self, Framing};
use crate::config::Config;
use crate::detect::{DetectError, Detector};
use crate::emotion::{EmotionError, EmotionModel};
use crate::frame::{FaceReading, RgbImage};
use crate::infer::{self, Backend, InferError, Placement};
use crate::track::core::{Observation, Plan};

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
    pub align_ms: f64,
    pub emotion_ms: f64,
}

/// What one frame gave.
#[derive(Debug, Clone, Default)]
pub struct FrameResult {
    pub faces: Vec<FaceReading>,
    pub times: StageTimes,
    pub skipped_faces: usize,
    /// True when the full detector ran; false on a followed frame.
    pub detected: bool,
    /// Followed faces whose O-Net score fell below `follow_threshold`.
    pub lost: usize,
}

impl FrameResult {
    /// What the track core needs from this frame.
    pub fn observation(self) -> Observation {
        Observation {
            readings: self.faces,
            detected: self.detected,
            lost: self.lost,
        }
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

/// Detector, aligner and emotion model, loaded and checked.
pub struct FaceChain {
    /// Engines of the detector and the emotion model, in that order.
    backends: [Box<dyn Backend>; 2],
    detector: Detector,
    emotion: EmotionModel,
    framing: Framing,
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
        let detector = Detector::from_config(&cfg.detector, backends[0].as_ref())?;
        let emotion = EmotionModel::from_config(&cfg.emotion, backends[1].as_ref())?;
        let framing = emotion.framing(&cfg.align);
        Ok(FaceChain {
            backends,
            detector,
            emotion,
            framing,
        })
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
        self.run(img, &Plan::Detect)
    }

    /// Runs the chain on one video frame as the track core planned it.
    pub fn run(&mut self, img: &RgbImage, plan: &Plan) -> Result<FrameResult, FrameError> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let (detections, lost) = match plan {
            Plan::Detect => {
                let d = self.detector.detect(img)?;
                times.detect_ms = ms(t);
                (d, 0)
            }
            Plan::Follow(boxes) => {
                let found = self.detector.follow(img, boxes)?;
                times.follow_ms = ms(t);
                let lost = found.iter().filter(|f| f.is_none()).count();
                (found.into_iter().flatten().collect(), lost)
            }
        };
        let mut result = self.read(img, detections, &mut times)?;
        result.times = times;
        result.detected = matches!(plan, Plan::Detect);
        result.lost = lost;
        Ok(result)
    }

    /// Aligns each detection and reads its emotion.
    fn read(
        &mut self,
        img: &RgbImage,
        detections: Vec<crate::frame::Detection>,
        times: &mut StageTimes,
    ) -> Result<FrameResult, FrameError> {
        let mut faces = Vec::with_capacity(detections.len());
        let mut skipped = 0;
        for det in detections {
            let t = Instant::now();
            let aligned = align::align(img, &det.landmarks, &self.framing);
            times.align_ms += ms(t);
            let (crop, _) = match aligned {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(bbox = ?det.bbox, "face skipped: {e}");
                    skipped += 1;
                    continue;
                }
            };
            let t = Instant::now();
            let emotion = self.emotion.infer(&crop)?;
            times.emotion_ms += ms(t);
            faces.push(FaceReading {
                detection: det,
                emotion,
            });
        }
        Ok(FrameResult {
            faces,
            skipped_faces: skipped,
            ..FrameResult::default()
        })
    }

    /// Runs only the emotion model on an aligned crop (benchmarks).
    pub fn infer_crop(&mut self, crop: &RgbImage) -> Result<crate::frame::Emotion, EmotionError> {
        self.emotion.infer(crop)
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
