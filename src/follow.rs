//! The one per-frame video path: the daemon, `fer-edge bench` and
//! `fer-edge calibrate` all run frames through a [`Follower`].
//!
//! In: decoded frames with their time, in order. Out: per frame a
//! [`Step`]: the track core's [`FrameOutput`] (tracks started, faces read
//! and smoothed, tracks ended) and where the time went, under the
//! [`Stage`] names everyone reports with ([`Step::stage_times`]).
//!
//! A [`Follower`] is the [`FaceChain`] (detect or follow → align →
//! emotion, and the background detector) and the [`TrackCore`] (plan,
//! associate, smooth), both built here from one [`Config`]: the knobs of
//! following (`[follow]`: detection interval, follow threshold, background
//! detector) live beside the code that reads them.

use crate::config::Config;
use crate::faces::{FaceChain, FrameError, SetupError, Step};
use crate::frame::RgbImage;
use crate::run_id::RunId;
use crate::telemetry::{Stage, Telemetry};
use crate::track::core::{FrameOutput, TrackCore};

/// `[follow]` lives beside the track core, whose schedule it sets.
pub use crate::track::core::FollowConfig;

impl Step {
    /// Where this frame's time went, under the shared stage names: a full
    /// detection on the frame thread or following, then (with faces)
    /// alignment and emotion, the track core, and a background detection
    /// that finished since the last frame.
    pub fn stage_times(&self) -> Vec<(Stage, f64)> {
        let t = &self.times;
        let mut out = Vec::with_capacity(6);
        if t.detect_ms > 0.0 {
            out.push((Stage::Detect, t.detect_ms));
        } else {
            out.push((Stage::Follow, t.follow_ms));
        }
        if self.read > 0 {
            out.push((Stage::Align, t.align_ms));
            out.push((Stage::Emotion, t.emotion_ms));
        }
        out.push((Stage::Track, t.track_ms));
        if let Some(ms) = self.background_detect_ms {
            out.push((Stage::DetectBackground, ms));
        }
        out
    }

    /// True when the frame waited for a full detection on its own thread.
    pub fn detected_inline(&self) -> bool {
        self.times.detect_ms > 0.0
    }
}

/// The face chain and the track core of one video.
pub struct Follower {
    chain: FaceChain,
    core: TrackCore,
    cfg: Config,
}

impl Follower {
    /// Loads the chain and starts a track core, as `cfg` says.
    pub fn from_config(cfg: &Config) -> Result<Follower, SetupError> {
        Ok(Follower {
            chain: FaceChain::from_config(cfg)?,
            core: Self::new_core(cfg, RunId::current().first_track_id),
            cfg: cfg.clone(),
        })
    }

    /// [`Self::from_config`] for frames from a source: a source that is not
    /// live (an unpaced replay) detects on the frame thread (see
    /// [`FollowConfig::fit_to_source`]), and says so.
    pub fn for_source(cfg: &Config, live: bool) -> Result<Follower, SetupError> {
        let mut cfg = cfg.clone();
        if cfg.follow.fit_to_source(live) {
            tracing::info!("unpaced replay: full detections run on the frame thread (follow.background applies to live sources)");
        }
        Self::from_config(&cfg)
    }

    fn new_core(cfg: &Config, first_track_id: u64) -> TrackCore {
        TrackCore::new(
            cfg.tracker.clone(),
            cfg.smoothing.clone(),
            cfg.follow.interval,
        )
        .with_expression_rate(cfg.follow.expression_rate_hz)
        .numbering_from(first_track_id)
    }

    /// One frame at time `t` (seconds, increasing): plan, detect or follow,
    /// read, track, smooth.
    pub fn step(&mut self, t: f64, img: &RgbImage) -> Result<Step, FrameError> {
        self.chain.track_frame(&mut self.core, t, img)
    }

    /// [`Self::step`], recorded in `telemetry` under the shared stages
    /// (`inference` for the whole frame; an error counted there).
    pub fn step_recorded(
        &mut self,
        t: f64,
        img: &RgbImage,
        telemetry: &Telemetry,
    ) -> Result<Step, FrameError> {
        telemetry.frame_in(Stage::Inference);
        match self.step(t, img) {
            Ok(step) => {
                for (stage, ms) in step.stage_times() {
                    telemetry.frame_out(stage, ms);
                }
                telemetry.frame_out(Stage::Inference, step.times.frame_ms);
                Ok(step)
            }
            Err(e) => {
                telemetry.error(Stage::Inference);
                Err(e)
            }
        }
    }

    /// Ends every track (the video is over): their `end` summaries.
    pub fn finish(&mut self) -> FrameOutput {
        self.core.finish()
    }

    /// Starts a new video: a fresh track core, numbering on from where
    /// the last one stopped (a looped replay never reuses an id), and no
    /// background detection left in flight from the last one.
    pub fn restart(&mut self) {
        self.chain.settle();
        self.core = Self::new_core(&self.cfg, self.core.next_track_id());
    }

    /// The track ids the core holds now (confirmed tracks).
    pub fn tracked(&self) -> &[u64] {
        self.core.tracked()
    }

    pub fn chain(&self) -> &FaceChain {
        &self.chain
    }

    pub fn chain_mut(&mut self) -> &mut FaceChain {
        &mut self.chain
    }

    /// The config it was built from (after fitting to the source).
    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faces::StageTimes;

    fn step(times: StageTimes, faces: usize, background: Option<f64>) -> Step {
        Step {
            output: FrameOutput::default(),
            times,
            faces,
            read: faces,
            background_detect_ms: background,
        }
    }

    #[test]
    fn a_detection_frame_and_a_followed_frame_name_their_stages() {
        let detected = step(
            StageTimes {
                detect_ms: 40.0,
                align_ms: 1.0,
                emotion_ms: 2.0,
                track_ms: 0.1,
                ..Default::default()
            },
            1,
            None,
        );
        assert_eq!(
            detected.stage_times(),
            vec![
                (Stage::Detect, 40.0),
                (Stage::Align, 1.0),
                (Stage::Emotion, 2.0),
                (Stage::Track, 0.1)
            ]
        );
        assert!(detected.detected_inline());
        let followed = step(
            StageTimes {
                follow_ms: 1.5,
                track_ms: 0.1,
                ..Default::default()
            },
            0,
            Some(90.0),
        );
        assert_eq!(
            followed.stage_times(),
            vec![
                (Stage::Follow, 1.5),
                (Stage::Track, 0.1),
                (Stage::DetectBackground, 90.0)
            ]
        );
        assert!(!followed.detected_inline());
    }

    #[test]
    fn follow_values_are_checked_and_background_fits_the_source() {
        assert!(FollowConfig::default().validate().is_ok());
        let e = FollowConfig {
            interval: 5000,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("follow.interval"), "{e}");
        let mut c = FollowConfig::default();
        assert!(!c.fit_to_source(true));
        assert!(c.background);
        assert!(c.fit_to_source(false));
        assert!(!c.background);
    }
}
