//! Face detection with eye landmarks: MTCNN (P-Net, R-Net, O-Net) on the
//! inference backend.
//!
//! In: an RGB frame. Out: [`Detection`]s (box, score, five landmarks), best
//! first. The decoding arithmetic and NMS are pure functions in `mtcnn.rs`
//! and `nms.rs`; this file owns the models and runs the three stages.
//! P-Net runs once per pyramid level with a fixed input shape per level;
//! those prepared sessions are cached per frame size, so a camera's steady
//! stream of equal frames prepares them once.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::frame::{BBox, Detection, Landmarks, RgbImage};
use crate::infer::{Backend, InferError, Model, Placement, Session};
use crate::models;

pub mod mtcnn;
pub mod nms;
pub mod resample;

use self::mtcnn::{Candidate, PyramidLevel};
use self::nms::{nms, Overlap};

/// `[detector]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Folder holding `pnet.onnx`, `rnet.onnx`, `onet.onnx` (and `SHA256SUMS`).
    pub model_dir: PathBuf,
    /// Smallest face to look for, in pixels of the frame. Larger is faster:
    /// the pyramid starts at `12 / min_face_size`.
    pub min_face_size: f32,
    /// Ratio between pyramid levels (0.709 ≈ 1/√2 halves the area per level).
    pub scale_factor: f32,
    /// Black border around the frame, as a fraction of its shorter side, at
    /// the coarse pyramid levels (those looking for faces half the frame's
    /// height or more), so that a face cut by the frame's edge is still
    /// found: a face close to a kiosk's camera, a tight face crop. Those
    /// levels are tiny, so it costs next to nothing. 0 turns it off (the
    /// reference MTCNN).
    pub edge_margin: f32,
    /// Score thresholds of P-Net, R-Net, O-Net.
    #[serde(deserialize_with = "crate::fixed::floats")]
    pub thresholds: [f32; 3],
    /// At most this many faces per frame, best scores first.
    pub max_faces: usize,
    /// Threads sharing the detector's work (P-Net pyramid levels, R-Net and
    /// O-Net candidates) when it runs on the frame thread. With `background`
    /// the detector thread and the follower use one each. Results do not
    /// depend on it.
    pub threads: usize,
    /// Engine for the three networks; default `[inference] backend`.
    pub backend: Option<String>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model_dir: PathBuf::from("models/mtcnn"),
            min_face_size: 20.0,
            scale_factor: 0.709,
            edge_margin: 0.25,
            thresholds: [0.6, 0.7, 0.7],
            max_faces: 32,
            threads: 2,
            backend: None,
        }
    }
}

impl DetectorConfig {
    /// Checks values without touching the file system.
    pub fn validate(&self) -> Result<(), String> {
        if !(12.0..=4096.0).contains(&self.min_face_size) {
            return Err(format!(
                "detector.min_face_size = {} is out of range: use 12 to 4096 pixels (MTCNN's cell is 12 px)",
                self.min_face_size
            ));
        }
        if !(0.3..=0.95).contains(&self.scale_factor) {
            return Err(format!(
                "detector.scale_factor = {} is out of range: use 0.3 to 0.95 (0.709 is usual)",
                self.scale_factor
            ));
        }
        if !(0.0..=1.0).contains(&self.edge_margin) {
            return Err(format!(
                "detector.edge_margin = {} is out of range: use 0 (off) to 1 (a fraction of the frame's shorter side; 0.25 is usual)",
                self.edge_margin
            ));
        }
        if let Some(t) = self.thresholds.iter().find(|t| !(0.0..1.0).contains(*t)) {
            return Err(format!(
                "detector.thresholds contains {t}: each threshold must be in [0, 1)"
            ));
        }
        if !(1..=16).contains(&self.threads) {
            return Err(format!(
                "detector.threads = {} must be 1 to 16",
                self.threads
            ));
        }
        if self.max_faces == 0 {
            return Err("detector.max_faces = 0 would never report a face: use 1 or more".into());
        }
        if let Some(b) = &self.backend {
            crate::infer::validate_backend_name("detector.backend", b)?;
        }
        Ok(())
    }
}

/// Errors of the detection stage.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Model(#[from] models::ModelFileError),
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error("the background detector thread stopped (a bug: please report it)")]
    BackgroundStopped,
    #[error("{path}: output shapes {got:?} are not MTCNN's {network} outputs {want}")]
    WrongModel {
        path: PathBuf,
        network: &'static str,
        got: Vec<Vec<usize>>,
        want: &'static str,
    },
}

/// A pyramid level and the P-Net session prepared for its size.
type Level = (PyramidLevel, Box<dyn Session>);
/// Prepared P-Net sessions, one per pyramid level.
type Pyramid = Vec<Level>;
/// Levels assigned to one thread, with their index in the pyramid.
type LevelGroup<'a> = Vec<(usize, &'a mut Level)>;

/// MTCNN, ready to run.
pub struct Detector {
    cfg: DetectorConfig,
    pnet_path: PathBuf,
    pnet: Box<dyn Model>,
    /// Prepared P-Net sessions for each pyramid level of one frame size.
    pyramid: Option<((u32, u32), Pyramid)>,
    /// One R-Net and one O-Net session per thread.
    rnet: Vec<Box<dyn Session>>,
    onet: Vec<Box<dyn Session>>,
}

impl Detector {
    /// Loads and checks the three networks from `cfg.model_dir`.
    pub fn from_config(
        cfg: &DetectorConfig,
        backend: &dyn Backend,
    ) -> Result<Detector, DetectError> {
        let dir = &cfg.model_dir;
        models::verify_sha256sums(dir)?;
        let path = |n: &str| -> Result<PathBuf, DetectError> {
            Ok(models::require_file(&dir.join(n), "[detector] model_dir")?)
        };
        let pnet_path = path("pnet.onnx")?;
        let pnet = backend.load(&pnet_path)?;
        let rnet_path = path("rnet.onnx")?;
        let rnet_model = backend.load(&rnet_path)?;
        let rnet = (0..cfg.threads)
            .map(|_| rnet_model.prepare(&[1, 24, 24, 3]))
            .collect::<Result<Vec<_>, _>>()?;
        check_shapes(
            &rnet_path,
            "R-Net",
            rnet[0].as_ref(),
            &[&[1, 4], &[1, 2]],
            "[1,4] box, [1,2] score",
        )?;
        let onet_path = path("onet.onnx")?;
        let onet_model = backend.load(&onet_path)?;
        let onet = (0..cfg.threads)
            .map(|_| onet_model.prepare(&[1, 48, 48, 3]))
            .collect::<Result<Vec<_>, _>>()?;
        check_shapes(
            &onet_path,
            "O-Net",
            onet[0].as_ref(),
            &[&[1, 4], &[1, 10], &[1, 2]],
            "[1,4] box, [1,10] landmarks, [1,2] score",
        )?;
        Ok(Detector {
            cfg: cfg.clone(),
            pnet_path,
            pnet,
            pyramid: None,
            rnet,
            onet,
        })
    }

    /// Where each network runs, preparing P-Net for `frame` (w, h) if needed.
    pub fn placements(
        &mut self,
        frame: (u32, u32),
    ) -> Result<Vec<(&'static str, Placement)>, DetectError> {
        // Preparing the first level tells where P-Net runs; the whole
        // pyramid waits for the first detection (a detector that only
        // follows faces never needs it).
        let pnet = match &self.pyramid {
            Some((size, levels)) if *size == frame && !levels.is_empty() => {
                levels[0].1.placement().clone()
            }
            _ => match self.levels(frame.0, frame.1).first() {
                Some(level) => {
                    let (sw, sh) = level.size(frame.0, frame.1);
                    self.pnet.prepare(&[1, sw, sh, 3])?.placement().clone()
                }
                None => Placement::default(),
            },
        };
        Ok(vec![
            ("P-Net", pnet),
            ("R-Net", self.rnet[0].placement().clone()),
            ("O-Net", self.onet[0].placement().clone()),
        ])
    }

    /// Finds faces in `img`, best score first.
    pub fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>, DetectError> {
        let t0 = std::time::Instant::now();
        let c1 = self.stage1(img)?;
        let t1 = t0.elapsed();
        let n1 = c1.len();
        let c2 = self.stage2(img, c1)?;
        let t2 = t0.elapsed();
        let n2 = c2.len();
        let faces = self.stage3(img, c2)?;
        tracing::trace!(
            pnet_ms = t1.as_secs_f64() * 1e3,
            rnet_ms = (t2 - t1).as_secs_f64() * 1e3,
            onet_ms = (t0.elapsed() - t2).as_secs_f64() * 1e3,
            candidates_after_pnet = n1,
            candidates_after_rnet = n2,
            faces = faces.len(),
            "mtcnn stages"
        );
        Ok(faces)
    }

    /// The pyramid's levels for frames of `w x h`.
    fn levels(&self, w: u32, h: u32) -> Vec<PyramidLevel> {
        let c = &self.cfg;
        mtcnn::pyramid(w, h, c.min_face_size, c.scale_factor, c.edge_margin)
    }

    fn pyramid_for(&mut self, w: u32, h: u32) -> Result<&mut Pyramid, DetectError> {
        let fresh = !matches!(&self.pyramid, Some((size, _)) if *size == (w, h));
        if fresh {
            let scales = self.levels(w, h);
            if let Some(first) = scales.first().map(|l| l.scale) {
                if first < 12.0 / self.cfg.min_face_size {
                    tracing::warn!(
                        "frames of {w}x{h}: faces smaller than {:.0} px are not looked for \
                         (detector.min_face_size = {}), to keep the detector's memory bounded",
                        12.0 / first,
                        self.cfg.min_face_size
                    );
                }
            }
            let mut levels = Vec::new();
            for level in scales {
                let (sw, sh) = level.size(w, h);
                let session = self.pnet.prepare(&[1, sw, sh, 3])?;
                let shapes: Vec<Vec<usize>> =
                    session.outputs().iter().map(|o| o.shape.clone()).collect();
                let ok = shapes.len() == 2
                    && shapes[0].len() == 4
                    && shapes[0][3] == 4
                    && shapes[1].len() == 4
                    && shapes[1][3] == 2;
                if !ok {
                    return Err(DetectError::WrongModel {
                        path: self.pnet_path.clone(),
                        network: "P-Net",
                        got: shapes,
                        want: "[1,W',H',4] box, [1,W',H',2] score",
                    });
                }
                levels.push((level, session));
            }
            self.pyramid = Some(((w, h), levels));
        }
        Ok(&mut self.pyramid.as_mut().expect("pyramid set just above").1)
    }

    fn stage1(&mut self, img: &RgbImage) -> Result<Vec<Candidate>, DetectError> {
        let (w, h) = img.dimensions();
        let threshold = self.cfg.thresholds[0];
        let threads = self.cfg.threads;
        let levels = self.pyramid_for(w, h)?;
        // Spread the levels over the threads by pixel count (level 0 alone is
        // about half the work); each level keeps its own prepared session.
        let mut groups: Vec<(f32, LevelGroup)> = (0..threads).map(|_| (0.0, Vec::new())).collect();
        for (ix, level) in levels.iter_mut().enumerate() {
            let (sw, sh) = level.0.size(w, h);
            let g = groups
                .iter_mut()
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .expect("at least one thread");
            g.0 += (sw * sh) as f32;
            g.1.push((ix, level));
        }
        let run_group = |group: LevelGroup| -> Result<Vec<(usize, Vec<Candidate>)>, DetectError> {
            let mut input = Vec::new();
            let mut out_levels = Vec::new();
            for (ix, (geometry, session)) in group {
                level_input(img, geometry, &mut input);
                let out = session.run(&input)?;
                let shape = &session.outputs()[0].shape;
                let mut level = mtcnn::pnet_candidates(
                    &out[1],
                    &out[0],
                    shape[1],
                    shape[2],
                    geometry.scale,
                    threshold,
                );
                for c in &mut level {
                    c.corners = geometry.to_frame(c.corners);
                }
                let keep = nms_candidates(&level, 0.5, Overlap::Union);
                out_levels.push((ix, keep.into_iter().map(|i| level[i]).collect()));
            }
            Ok(out_levels)
        };
        let mut per_level: Vec<(usize, Vec<Candidate>)> = Vec::new();
        if threads == 1 {
            for (_, g) in groups {
                per_level.extend(run_group(g)?);
            }
        } else {
            let results: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = groups
                    .into_iter()
                    .map(|(_, g)| scope.spawn(move || run_group(g)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            for r in results {
                per_level.extend(r?);
            }
        }
        // Same order as a single thread: level by level.
        per_level.sort_by_key(|(ix, _)| *ix);
        let all: Vec<Candidate> = per_level.into_iter().flat_map(|(_, c)| c).collect();
        let keep = nms_candidates(&all, 0.7, Overlap::Union);
        Ok(keep
            .into_iter()
            .map(|i| {
                let c = all[i];
                let corners =
                    mtcnn::truncate(mtcnn::square(mtcnn::regress(c.corners, c.reg, false)));
                Candidate { corners, ..c }
            })
            .collect())
    }

    fn stage2(
        &mut self,
        img: &RgbImage,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Candidate>, DetectError> {
        let threshold = self.cfg.thresholds[1];
        let passed = par_chunks(&mut self.rnet, &candidates, |session, c, input| {
            crop_input(img, c.corners, 24, input);
            let out = session.run(input)?;
            let score = out[1][1];
            Ok((score > threshold).then(|| Candidate {
                corners: c.corners,
                score,
                reg: [out[0][0], out[0][1], out[0][2], out[0][3]],
            }))
        })?;
        let keep = nms_candidates(&passed, 0.7, Overlap::Union);
        Ok(keep
            .into_iter()
            .map(|i| {
                let c = passed[i];
                Candidate {
                    corners: mtcnn::square(mtcnn::regress(c.corners, c.reg, true)),
                    ..c
                }
            })
            .collect())
    }

    fn stage3(
        &mut self,
        img: &RgbImage,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Detection>, DetectError> {
        let threshold = self.cfg.thresholds[2];
        let found: Vec<OnetReading> =
            par_chunks(&mut self.onet, &candidates, |session, c, input| {
                let r = onet_read(session, img, c.corners, input)?;
                Ok((r.score > threshold).then_some(r))
            })?;
        let boxes: Vec<[f32; 4]> = found.iter().map(|f| f.corners).collect();
        let scores: Vec<f32> = found.iter().map(|f| f.score).collect();
        let size = img.dimensions();
        Ok(nms(&boxes, &scores, 0.7, Overlap::Min)
            .into_iter()
            .take(self.cfg.max_faces)
            .map(|i| found[i].detection(size))
            .collect())
    }

    /// Follows faces between full detections: O-Net alone, once per box, on
    /// a square window around it (the face's predicted box). Per box: the
    /// refined detection, or None when O-Net's face score is below
    /// `threshold` (`[follow] threshold`: the face left, turned away or
    /// was occluded).
    pub fn follow(
        &mut self,
        img: &RgbImage,
        boxes: &[BBox],
        threshold: f32,
    ) -> Result<Vec<Option<Detection>>, DetectError> {
        let size = img.dimensions();
        par_chunks(&mut self.onet, boxes, |session, b, input| {
            let window = mtcnn::follow_window(b.corners());
            let r = onet_read(session, img, window, input)?;
            Ok(Some((r.score >= threshold).then(|| r.detection(size))))
        })
    }
}

/// One O-Net pass over a window: regressed box, score, landmarks.
#[derive(Debug, Clone, Copy)]
struct OnetReading {
    corners: [f32; 4],
    score: f32,
    points: [[f32; 2]; 5],
}

impl OnetReading {
    /// As a detection: the box clipped to the frame (w, h), landmarks as found.
    fn detection(&self, (w, h): (u32, u32)) -> Detection {
        let c = self.corners;
        let (x1, y1) = (c[0].max(0.0), c[1].max(0.0));
        let (x2, y2) = (c[2].min(w as f32 - 1.0), c[3].min(h as f32 - 1.0));
        let p = self.points;
        Detection {
            bbox: BBox::from_corners(x1, y1, x2, y2),
            score: self.score,
            landmarks: Landmarks {
                left_eye: p[0],
                right_eye: p[1],
                nose: p[2],
                mouth_left: p[3],
                mouth_right: p[4],
            },
        }
    }
}

/// Runs O-Net on the window `corners` (truncated to whole pixels first).
fn onet_read(
    session: &mut dyn Session,
    img: &RgbImage,
    corners: [f32; 4],
    input: &mut Vec<f32>,
) -> Result<OnetReading, DetectError> {
    let corners = mtcnn::truncate(corners);
    crop_input(img, corners, 48, input);
    let out = session.run(input)?;
    let reg = [out[0][0], out[0][1], out[0][2], out[0][3]];
    Ok(OnetReading {
        corners: mtcnn::regress(corners, reg, true),
        score: out[2][1],
        points: mtcnn::landmarks(corners, &out[1]),
    })
}

/// Runs `f` over `items` split into contiguous chunks, one per session
/// (one thread each), and returns the results in the items' order.
fn par_chunks<T: Sync, R: Send>(
    sessions: &mut [Box<dyn Session>],
    items: &[T],
    f: impl Fn(&mut dyn Session, &T, &mut Vec<f32>) -> Result<Option<R>, DetectError> + Sync,
) -> Result<Vec<R>, DetectError> {
    let run = |session: &mut Box<dyn Session>, chunk: &[T]| -> Result<Vec<R>, DetectError> {
        let mut input = Vec::new();
        let mut out = Vec::new();
        for item in chunk {
            if let Some(r) = f(session.as_mut(), item, &mut input)? {
                out.push(r);
            }
        }
        Ok(out)
    };
    if sessions.len() == 1 || items.len() < 2 {
        return run(&mut sessions[0], items);
    }
    let chunk = items.len().div_ceil(sessions.len());
    let results: Vec<Result<Vec<R>, DetectError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .zip(items.chunks(chunk))
            .map(|(s, c)| scope.spawn(|| run(s, c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

fn check_shapes(
    path: &Path,
    network: &'static str,
    s: &dyn Session,
    want: &[&[usize]],
    text: &'static str,
) -> Result<(), DetectError> {
    let got: Vec<Vec<usize>> = s.outputs().iter().map(|o| o.shape.clone()).collect();
    if got.len() != want.len() || got.iter().zip(want).any(|(g, w)| g.as_slice() != *w) {
        return Err(DetectError::WrongModel {
            path: path.to_path_buf(),
            network,
            got,
            want: text,
        });
    }
    Ok(())
}

fn nms_candidates(c: &[Candidate], threshold: f32, how: Overlap) -> Vec<usize> {
    let boxes: Vec<[f32; 4]> = c.iter().map(|c| c.corners).collect();
    let scores: Vec<f32> = c.iter().map(|c| c.score).collect();
    nms(&boxes, &scores, threshold, how)
}

/// One network's real input for a face: the file it belongs to, the input
/// shape and the values, built exactly as [`Detector::detect`] builds them
/// (P-Net: the frame's first pyramid level; R-Net and O-Net: the face box).
/// For comparing engines on the same numbers.
pub fn network_inputs(
    img: &RgbImage,
    face: BBox,
    cfg: &DetectorConfig,
) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let (w, h) = img.dimensions();
    let mut out = Vec::new();
    let levels = mtcnn::pyramid(w, h, cfg.min_face_size, cfg.scale_factor, cfg.edge_margin);
    if let Some(level) = levels.first() {
        let (sw, sh) = level.size(w, h);
        let mut input = Vec::new();
        level_input(img, level, &mut input);
        out.push(("pnet.onnx", vec![1, sw, sh, 3], input));
    }
    let corners = mtcnn::square([face.x, face.y, face.x + face.w, face.y + face.h]);
    for (file, size) in [("rnet.onnx", 24), ("onet.onnx", 48)] {
        let mut input = Vec::new();
        crop_input(img, corners, size, &mut input);
        out.push((file, vec![1, size, size, 3], input));
    }
    out
}

/// P-Net's input at one pyramid level: the frame (and its border) resized
/// to the level's size, width-major and normalised.
fn level_input(img: &RgbImage, level: &PyramidLevel, out: &mut Vec<f32>) {
    let (w, h) = img.dimensions();
    let (sw, sh) = level.size(w, h);
    let hwc = resample::resize_area(img, level.region(w, h), sw, sh);
    to_width_major(&hwc, sw, sh, out);
}

/// HWC pixels (0..255) to MTCNN's width-major, normalised `W x H x 3`.
fn to_width_major(hwc: &[f32], w: usize, h: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(w * h * 3, 0.0);
    for y in 0..h {
        for x in 0..w {
            let s = (y * w + x) * 3;
            let d = (x * h + y) * 3;
            for c in 0..3 {
                out[d + c] = (hwc[s + c] - 127.5) * 0.0078125;
            }
        }
    }
}

/// Crops pixel-inclusive `corners` (zero-padded outside the frame) to a
/// `size x size` network input. The reference implementation indexes from 1
/// and so reads the crop one pixel up and left of the corners; the networks
/// were tuned with that, so we keep it.
fn crop_input(img: &RgbImage, corners: [f32; 4], size: usize, out: &mut Vec<f32>) {
    let region = [
        corners[0] - 1.0,
        corners[1] - 1.0,
        corners[2] - corners[0] + 1.0,
        corners[3] - corners[1] + 1.0,
    ];
    let hwc = resample::resize_area(img, region, size, size);
    to_width_major(&hwc, size, size, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_bad_values_are_named() {
        assert!(DetectorConfig::default().validate().is_ok());
        let bad = DetectorConfig {
            min_face_size: 5.0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("detector.min_face_size"));
        let bad = DetectorConfig {
            thresholds: [0.6, 1.5, 0.7],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("detector.thresholds"));
    }

    #[test]
    fn width_major_layout_puts_columns_first() {
        // 2 wide, 1 high: pixel (1, 0) must land at index 1 * h + 0 = 1.
        let hwc = [127.5, 127.5, 127.5, 255.0, 255.0, 255.0];
        let mut out = Vec::new();
        to_width_major(&hwc, 2, 1, &mut out);
        assert_eq!(&out[0..3], &[0.0, 0.0, 0.0]);
        assert!((out[3] - 0.99609375).abs() < 1e-6);
    }
}
