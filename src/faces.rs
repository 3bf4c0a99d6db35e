//! The per-frame face chain: detect → align → emotion.
//!
//! In: one RGB frame. Out: a [`FaceReading`] per face (best detector score
//! first) and how long each stage took. `fer-edge analyze` calls it per
//! image; the daemon calls it per frame. A face that cannot be aligned
//! (degenerate landmarks) is skipped, logged and counted in
//! [`FrameResult::skipped_faces`]; it never fails the frame.

use std::time::Instant;

use crate::align::{self, Framing};
use crate::config::Config;
use crate::detect::{DetectError, Detector};
use crate::emotion::{EmotionError, EmotionModel};
use crate::frame::{FaceReading, RgbImage};
use crate::infer::{self, Backend, InferError};

/// Errors building the chain (fatal at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("[inference] backend: {0}")]
    Backend(#[source] InferError),
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
    pub detect_ms: f64,
    pub align_ms: f64,
    pub emotion_ms: f64,
}

/// What one frame gave.
#[derive(Debug, Clone, Default)]
pub struct FrameResult {
    pub faces: Vec<FaceReading>,
    pub times: StageTimes,
    pub skipped_faces: usize,
}

/// Detector, aligner and emotion model, loaded and checked.
pub struct FaceChain {
    backend: Box<dyn Backend>,
    detector: Detector,
    emotion: EmotionModel,
    framing: Framing,
}

impl FaceChain {
    /// Loads every model the config names; fails with the first problem.
    pub fn from_config(cfg: &Config) -> Result<FaceChain, SetupError> {
        let backend = infer::backend(&cfg.inference.backend).map_err(SetupError::Backend)?;
        let detector = Detector::from_config(&cfg.detector, backend.as_ref())?;
        let emotion = EmotionModel::from_config(&cfg.emotion, backend.as_ref())?;
        let framing = emotion.framing(&cfg.align);
        Ok(FaceChain {
            backend,
            detector,
            emotion,
            framing,
        })
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn emotion_model(&self) -> &EmotionModel {
        &self.emotion
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Runs the chain on one frame.
    pub fn process(&mut self, img: &RgbImage) -> Result<FrameResult, FrameError> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let detections = self.detector.detect(img)?;
        times.detect_ms = ms(t);
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
            times,
            skipped_faces: skipped,
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
