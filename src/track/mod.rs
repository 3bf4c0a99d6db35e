//! One track per face across frames: association, confirmation, ending.
//!
//! In: each frame's detection boxes and the frame's timestamp (seconds, as a
//! value: the tracker never reads a clock). Out: for each detection, the
//! confirmed track it belongs to (if any), and the tracks that started
//! (`new`) or ended (`end`) on this frame.
//!
//! Association is greedy on a score that combines IoU with the box predicted
//! by each track's constant-velocity motion, with a centre-distance fallback
//! for fast or small faces whose boxes no longer overlap. A track is
//! confirmed after `min_hits` hits (only confirmed tracks are reported) and
//! ends `max_age_s` seconds after its last hit. Like rumqtt's `state.rs`,
//! this is a pure state machine; `smooth.rs` beside it smooths each track's
//! readings.

use serde::Deserialize;

use crate::frame::BBox;

pub mod core;
pub mod smooth;

/// `[tracker]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Minimum IoU (against the predicted box) to continue a track.
    pub iou_threshold: f32,
    /// Fallback when boxes do not overlap enough: a detection whose centre is
    /// within this fraction of the track's box size still matches.
    pub max_center_distance: f32,
    /// Hits before a track is confirmed and reported (`new` event).
    pub min_hits: u32,
    /// Seconds without a hit before a confirmed track ends (`end` event).
    pub max_age_s: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            iou_threshold: 0.3,
            max_center_distance: 0.5,
            min_hits: 3,
            max_age_s: 1.0,
        }
    }
}

impl TrackerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.iou_threshold) {
            return Err(format!(
                "tracker.iou_threshold = {} must be in [0, 1)",
                self.iou_threshold
            ));
        }
        if !(0.0..=5.0).contains(&self.max_center_distance) {
            return Err(format!(
                "tracker.max_center_distance = {} must be in [0, 5] (fraction of the box size)",
                self.max_center_distance
            ));
        }
        if self.min_hits == 0 {
            return Err("tracker.min_hits = 0: use 1 to report a face on its first frame".into());
        }
        if !(self.max_age_s > 0.0 && self.max_age_s <= 3600.0) {
            return Err(format!(
                "tracker.max_age_s = {} must be in (0, 3600] seconds",
                self.max_age_s
            ));
        }
        Ok(())
    }
}

/// A face followed across frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub id: u64,
    pub bbox: BBox,
    /// Box centre velocity in pixels per second.
    pub velocity: [f32; 2],
    pub hits: u32,
    pub first_seen: f64,
    pub last_seen: f64,
    pub confirmed: bool,
}

impl Track {
    /// Where the constant-velocity motion puts the box at time `t`.
    pub fn predicted(&self, t: f64) -> BBox {
        let dt = (t - self.last_seen) as f32;
        BBox {
            x: self.bbox.x + self.velocity[0] * dt,
            y: self.bbox.y + self.velocity[1] * dt,
            ..self.bbox
        }
    }
}

/// What one frame did to the tracks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// Per detection (same order as given): its confirmed track id, or None
    /// while the track is still tentative.
    pub assigned: Vec<Option<u64>>,
    /// Tracks confirmed on this frame.
    pub started: Vec<u64>,
    /// Confirmed tracks that ended on this frame, with their last state.
    pub ended: Vec<Track>,
}

/// The tracker state.
#[derive(Debug, Clone)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
    /// Time of the last update.
    last_t: Option<f64>,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Tracker {
        Tracker {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
            last_t: None,
        }
    }

    /// Numbers new tracks from `first` on (see [`crate::run_id`]: ids
    /// are never reused across restarts of a device).
    pub fn numbering_from(mut self, first: u64) -> Tracker {
        self.next_id = first.max(1);
        self
    }

    /// The id the next new track will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Confirmed tracks, in id order.
    pub fn confirmed(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.confirmed)
    }

    /// Tracks (tentative ones too) that had a hit on the last update, in id
    /// order: the faces a follower can refine on the next frame.
    pub fn seen_last(&self) -> impl Iterator<Item = &Track> {
        let last = self.last_t;
        self.tracks
            .iter()
            .filter(move |t| Some(t.last_seen) == last)
    }

    /// Feeds one frame's detections at time `t` (seconds, non-decreasing).
    pub fn update(&mut self, t: f64, detections: &[BBox]) -> Update {
        self.last_t = Some(t);
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, track) in self.tracks.iter().enumerate() {
            let pred = track.predicted(t);
            let size = pred.w.max(pred.h).max(1.0);
            for (di, det) in detections.iter().enumerate() {
                let iou = pred.iou(det);
                let (pc, dc) = (pred.center(), det.center());
                let dist = ((pc[0] - dc[0]).powi(2) + (pc[1] - dc[1]).powi(2)).sqrt() / size;
                // IoU matches rank first; distance-only matches after them.
                let score = if iou >= self.cfg.iou_threshold {
                    1.0 + iou
                } else if dist <= self.cfg.max_center_distance {
                    1.0 - dist / self.cfg.max_center_distance.max(1e-6)
                } else {
                    continue;
                };
                pairs.push((score, ti, di));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut track_used = vec![false; self.tracks.len()];
        let mut det_track: Vec<Option<usize>> = vec![None; detections.len()];
        for (_, ti, di) in pairs {
            if !track_used[ti] && det_track[di].is_none() {
                track_used[ti] = true;
                det_track[di] = Some(ti);
            }
        }
        let mut update = Update::default();
        for (di, det) in detections.iter().enumerate() {
            match det_track[di] {
                Some(ti) => {
                    let tr = &mut self.tracks[ti];
                    let dt = (t - tr.last_seen) as f32;
                    if dt > 0.0 {
                        let (old, new) = (tr.bbox.center(), det.center());
                        let v = [(new[0] - old[0]) / dt, (new[1] - old[1]) / dt];
                        // Light smoothing keeps one jittery box from flinging the prediction.
                        tr.velocity = [
                            0.5 * tr.velocity[0] + 0.5 * v[0],
                            0.5 * tr.velocity[1] + 0.5 * v[1],
                        ];
                    }
                    tr.bbox = *det;
                    tr.last_seen = t;
                    tr.hits += 1;
                    if !tr.confirmed && tr.hits >= self.cfg.min_hits {
                        tr.confirmed = true;
                        update.started.push(tr.id);
                    }
                }
                None => {
                    let confirmed = self.cfg.min_hits <= 1;
                    let id = self.next_id;
                    self.next_id += 1;
                    self.tracks.push(Track {
                        id,
                        bbox: *det,
                        velocity: [0.0, 0.0],
                        hits: 1,
                        first_seen: t,
                        last_seen: t,
                        confirmed,
                    });
                    if confirmed {
                        update.started.push(id);
                    }
                    det_track[di] = Some(self.tracks.len() - 1);
                }
            }
        }
        update.assigned = det_track
            .iter()
            .map(|ti| {
                ti.map(|i| &self.tracks[i])
                    .filter(|t| t.confirmed)
                    .map(|t| t.id)
            })
            .collect();
        // Age out: tentative tracks die on their first miss, confirmed ones after max_age_s.
        let max_age = self.cfg.max_age_s;
        let mut kept = Vec::with_capacity(self.tracks.len());
        for tr in self.tracks.drain(..) {
            let missed = tr.last_seen < t;
            if tr.confirmed && t - tr.last_seen > max_age {
                update.ended.push(tr);
            } else if !tr.confirmed && missed {
                // never reported: drop silently by design (counted as tentative)
            } else {
                kept.push(tr);
            }
        }
        self.tracks = kept;
        update
    }

    /// Ends every confirmed track (shutdown, end of a replay).
    pub fn end_all(&mut self) -> Vec<Track> {
        let ended = self
            .tracks
            .iter()
            .filter(|t| t.confirmed)
            .cloned()
            .collect();
        self.tracks.clear();
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32, y: f32) -> BBox {
        BBox {
            x,
            y,
            w: 80.0,
            h: 100.0,
        }
    }

    fn cfg() -> TrackerConfig {
        TrackerConfig {
            min_hits: 3,
            max_age_s: 0.5,
            ..Default::default()
        }
    }

    #[test]
    fn a_track_is_reported_only_after_min_hits() {
        let mut tr = Tracker::new(cfg());
        assert_eq!(tr.update(0.0, &[b(10.0, 10.0)]).assigned, vec![None]);
        assert_eq!(tr.update(0.1, &[b(12.0, 10.0)]).assigned, vec![None]);
        let u = tr.update(0.2, &[b(14.0, 10.0)]);
        assert_eq!(u.assigned, vec![Some(1)]);
        assert_eq!(u.started, vec![1]);
    }

    #[test]
    fn track_keeps_its_id_when_a_face_moves_slowly() {
        let mut tr = Tracker::new(cfg());
        let mut ids = Vec::new();
        for i in 0..60 {
            let u = tr.update(
                i as f64 / 15.0,
                &[b(100.0 + 4.0 * i as f32, 50.0 + i as f32)],
            );
            ids.extend(u.assigned.into_iter().flatten());
        }
        assert!(ids.len() >= 57);
        assert!(ids.iter().all(|&id| id == ids[0]));
    }

    #[test]
    fn a_face_that_speeds_up_until_its_boxes_stop_overlapping_is_followed_by_its_motion() {
        let mut tr = Tracker::new(cfg());
        let mut ids = Vec::new();
        let mut x = 0.0;
        // Steps grow to 70 px per frame with an 80 px wide box: consecutive
        // boxes then overlap by IoU 0.07 and their centres lie 0.7 box sizes
        // apart, so only the predicted position can match them.
        for i in 0..16 {
            x += (15.0 + 10.0 * i as f32).min(70.0);
            let u = tr.update(i as f64 * 0.1, &[b(x, 100.0)]);
            ids.extend(u.assigned.into_iter().flatten());
        }
        assert!(
            ids.len() >= 13 && ids.iter().all(|&id| id == ids[0]),
            "{ids:?}"
        );
    }

    #[test]
    fn two_faces_crossing_paths_keep_their_ids() {
        let mut tr = Tracker::new(cfg());
        let mut seen: Vec<(f32, u64)> = Vec::new();
        // A walks right, B walks left, at slightly different heights; they
        // cross in the middle at frame ~20.
        for i in 0..40 {
            let t = i as f64 / 15.0;
            let a = b(100.0 + 10.0 * i as f32, 100.0);
            let bb = b(500.0 - 10.0 * i as f32, 130.0);
            let u = tr.update(t, &[a, bb]);
            if i > 3 && !(17..=23).contains(&i) {
                let (ia, ib) = (u.assigned[0].unwrap(), u.assigned[1].unwrap());
                seen.push((a.x, ia));
                seen.push((bb.x, ib));
                assert_ne!(ia, ib);
            }
        }
        let a_ids: std::collections::BTreeSet<u64> = seen.iter().step_by(2).map(|s| s.1).collect();
        let b_ids: std::collections::BTreeSet<u64> =
            seen.iter().skip(1).step_by(2).map(|s| s.1).collect();
        assert_eq!(a_ids.len(), 1, "A swapped ids: {a_ids:?}");
        assert_eq!(b_ids.len(), 1, "B swapped ids: {b_ids:?}");
        assert_ne!(a_ids, b_ids);
    }

    #[test]
    fn a_track_ends_after_max_age_without_hits_and_survives_a_short_gap() {
        let mut tr = Tracker::new(cfg());
        for i in 0..5 {
            tr.update(i as f64 * 0.1, &[b(10.0, 10.0)]);
        }
        // A 0.3 s gap (< 0.5 s): same id afterwards.
        assert!(tr.update(0.6, &[]).ended.is_empty());
        assert_eq!(tr.update(0.8, &[b(12.0, 10.0)]).assigned, vec![Some(1)]);
        // Then gone for good.
        assert!(tr.update(1.2, &[]).ended.is_empty());
        let u = tr.update(1.4, &[]);
        assert_eq!(u.ended.len(), 1);
        assert_eq!(u.ended[0].id, 1);
        assert!((u.ended[0].last_seen - 0.8).abs() < 1e-9);
    }

    #[test]
    fn tentative_tracks_never_start_or_end() {
        let mut tr = Tracker::new(cfg());
        let u = tr.update(0.0, &[b(10.0, 10.0)]);
        assert!(u.started.is_empty());
        let u = tr.update(0.1, &[]);
        assert!(u.ended.is_empty());
        assert!(tr.end_all().is_empty());
    }

    #[test]
    fn end_all_ends_every_confirmed_track() {
        let mut tr = Tracker::new(TrackerConfig {
            min_hits: 1,
            ..cfg()
        });
        let u = tr.update(0.0, &[b(0.0, 0.0), b(300.0, 0.0)]);
        assert_eq!(u.started, vec![1, 2]);
        let ended: Vec<u64> = tr.end_all().iter().map(|t| t.id).collect();
        assert_eq!(ended, vec![1, 2]);
    }

    #[test]
    fn bad_tracker_values_are_named() {
        assert!(TrackerConfig::default().validate().is_ok());
        let e = TrackerConfig {
            max_age_s: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("tracker.max_age_s"));
    }
}
