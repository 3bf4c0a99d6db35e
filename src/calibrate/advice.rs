//! From measurements to advice: what is wrong at this site, what to change.
//!
//! In: the survey's [`Figures`], the camera's [`CameraFigures`], the
//! engines' [`EngineSpeed`]s and the [`Context`] (the current settings and
//! what was asked). Out: [`Advice`] in plain words, worst first, and the
//! [`Setting`]s to write into `calibration.toml`, each with the measured
//! number that backs it. Nothing is recommended that the data cannot
//! back: no faces, no face-dependent setting; too few readings, no
//! baseline. Pure; the thresholds are the constants below.

use serde::Serialize;

use super::survey::{Figures, Spread};

/// Fewer processed frames than this, and the run is too short to judge.
pub const MIN_FRAMES: usize = 20;
/// Face readings needed before `min_face_size` is recommended.
pub const MIN_FACE_READINGS: usize = 30;
/// Face readings needed for a neutral baseline.
pub const MIN_BASELINE_READINGS: usize = 30;
/// A baseline face whose mean probability of one other expression reaches
/// this is not neutral: its class bias would suppress that expression at
/// the site (a smiling "baseline" once wrote a happy bias of 3.6).
pub const BASELINE_NOT_NEUTRAL: f32 = 0.6;
/// Face box side (px) below which expressions are read poorly (FER-2013's
/// faces are 48 px; the detector's cell is 12 px).
pub const READABLE_FACE_PX: f32 = 48.0;
/// Median face brightness (luma, 0–255) below which faces are underexposed.
pub const DARK_FACE: f32 = 70.0;
/// … and above which they are overexposed.
pub const BRIGHT_FACE: f32 = 200.0;
/// Median RMS contrast of a face below which it is flat.
pub const FLAT_FACE: f32 = 15.0;
/// Stops darker than the scene from which a face counts as backlit.
pub const BACKLIT_STOPS: f32 = 1.0;
/// Median relative sharpness of the aligned crops
/// ([`super::quality::relative_sharpness`]) below which faces are blurred.
/// Measured on the bundled sequences (default model, 64 px crops): pan1
/// 244, the same darkened 242, pan6's smaller faces 111 (59 at worst),
/// pan1 under a 3 px Gaussian blur 7.
pub const BLURRED_FACE: f32 = 30.0;
/// Median head roll (degrees) from which the camera looks tilted.
pub const TILTED_DEG: f32 = 12.0;
/// Mid-grey luma, for exposure in stops.
const MID_GREY: f32 = 118.0;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Stops the device from working here (no faces, a camera that vanishes).
    Problem,
    /// Degrades readings or speed; the text says the fix.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
    /// Measured and fine.
    Ok,
}

impl Level {
    /// The word shown before a finding (text and HTML).
    pub fn tag(self) -> &'static str {
        match self {
            Level::Problem => "PROBLEM",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Ok => "ok",
        }
    }
}

/// One finding, in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advice {
    pub level: Level,
    /// `duration`, `camera`, `faces`, `exposure`, `sharpness`, `tracks`,
    /// `speed`, `baseline`.
    pub topic: &'static str,
    pub text: String,
}

/// One key to write into `calibration.toml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub section: &'static str,
    pub key: &'static str,
    pub value: toml::Value,
    /// The comment above it: why, with the measured number.
    pub why: String,
}

/// A camera outage during the run (the capture feed's).
pub use crate::capture::feed::Outage;

/// What the source delivered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CameraFigures {
    /// The source as it describes itself (device, negotiated format).
    pub source: String,
    pub live: bool,
    /// The frame rate asked of it (`[source] fps`).
    pub requested_fps: f64,
    pub delivered: u64,
    /// Frames per second delivered (between the first and last frame).
    pub delivered_fps: f64,
    /// Frames not processed because a newer one arrived first.
    pub skipped: u64,
    /// Frames the driver reported lost (sequence gaps).
    pub dropped_by_source: u64,
    /// Frames that could not be decoded.
    pub frame_errors: u64,
    pub outages: Vec<Outage>,
    /// A replay that ended before the duration: when (seconds).
    pub ended_at_s: Option<f64>,
}

/// What was timed: the config as it is, or with one setting changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    AsConfigured,
    /// `[detector] min_face_size` set to this.
    MinFaceSize(u32),
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variant::AsConfigured => f.write_str("as configured"),
            Variant::MinFaceSize(m) => write!(f, "min_face_size = {m}"),
        }
    }
}

/// One engine's speed on frames from this run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineSpeed {
    pub engine: String,
    pub variant: Variant,
    /// Sustained frames per second (detection and followed frames amortised).
    pub frames_per_s: f64,
    pub end_to_end_ms_p50: f64,
    /// Median per stage, ms, under the daemon's stage names (`detect`,
    /// `follow`, `align`, `emotion`, …).
    pub stages_ms_p50: std::collections::BTreeMap<String, f64>,
    /// The work done: of the faces a full detection finds on the timed
    /// frames, the share this run read (1 = all). Rates of runs that read
    /// different work are not compared.
    pub coverage: f64,
}

/// Whether two timings did the same work (see `bench::comparable`).
fn same_work(a: &EngineSpeed, b: &EngineSpeed) -> bool {
    let min = crate::bench::MIN_COVERAGE;
    a.coverage >= min && b.coverage >= min && (a.coverage - b.coverage).abs() <= 0.05
}

/// The current settings and what was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub min_face_size: f32,
    /// `[inference] backend`.
    pub engine: String,
    /// `[detector] backend` or `[emotion] backend` is set (they win over
    /// `[inference] backend`).
    pub stage_engines: bool,
    pub target_fps: f64,
    pub baseline: bool,
}

/// Everything the advice is drawn from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub figures: &'a Figures,
    pub camera: &'a CameraFigures,
    /// Engines as configured, then variants (e.g. with the recommended
    /// `min_face_size`).
    pub speed: &'a [EngineSpeed],
    /// Engines that could not be measured, with why.
    pub unavailable: &'a [(String, String)],
    pub context: &'a Context,
}

/// The advice and the settings, worst advice first.
pub fn advise(i: Inputs) -> (Vec<Advice>, Vec<Setting>) {
    let mut a = Vec::new();
    let mut s = Vec::new();
    duration(&i, &mut a);
    camera(i.camera, &mut a);
    let faces_seen = i.figures.faces.is_some();
    if faces_seen {
        faces(&i, &mut a, &mut s);
        quality(i.figures, &mut a);
        tracks(i.figures, &mut a);
    } else {
        let text = if i.figures.frames < MIN_FRAMES {
            format!(
                "no face was seen in the {} frame(s) processed, too few to tell (a face counts once its track is confirmed, after [tracker] min_hits frames): run longer; nothing that depends on faces is recommended",
                i.figures.frames
            )
        } else {
            format!(
                "no face was seen in {:.0} s ({} frames): point the camera at where people stand, at face height, and check the light; nothing that depends on faces is recommended",
                i.figures.span_s, i.figures.frames
            )
        };
        a.push(Advice {
            level: Level::Problem,
            topic: "faces",
            text,
        });
    }
    speed(&i, &mut a, &mut s);
    if i.context.baseline {
        baseline(i.figures, &mut a, &mut s);
    }
    a.sort_by_key(|x| x.level);
    (a, s)
}

fn duration(i: &Inputs, a: &mut Vec<Advice>) {
    if i.figures.frames < MIN_FRAMES {
        a.push(Advice {
            level: Level::Warning,
            topic: "duration",
            text: format!(
                "too short to say much: {} frame(s) processed in {:.1} s (at least {MIN_FRAMES} are needed); run again with a longer --duration (60s is the default)",
                i.figures.frames, i.figures.span_s
            ),
        });
    }
}

fn camera(c: &CameraFigures, a: &mut Vec<Advice>) {
    let mut push = |level, text: String| {
        a.push(Advice {
            level,
            topic: "camera",
            text,
        })
    };
    if c.delivered == 0 {
        push(Level::Problem, format!("{} delivered no frame", c.source));
    }
    if !c.outages.is_empty() {
        let first = &c.outages[0];
        let lost: f64 = c
            .outages
            .iter()
            .filter_map(|o| o.to_s.map(|t| t - o.from_s))
            .sum();
        let tail = match c.outages.last().and_then(|o| o.to_s) {
            Some(_) => format!("{lost:.1} s without frames in all"),
            None => "it had not come back when the run ended".into(),
        };
        push(
            Level::Problem,
            format!(
                "the camera was unavailable {} time(s), first at {:.1} s ({}); {tail}: check the cable, the USB power and `dmesg`",
                c.outages.len(),
                first.from_s,
                first.reason
            ),
        );
    }
    if c.live && c.delivered > 1 && c.delivered_fps < 0.9 * c.requested_fps {
        push(
            Level::Warning,
            format!(
                "the camera delivered {:.1} of the {:.0} frames/s asked for: many cameras lengthen the exposure in low light; add light, or set [source] fps = {:.0}",
                c.delivered_fps,
                c.requested_fps,
                c.delivered_fps.floor().max(1.0)
            ),
        );
    }
    if c.dropped_by_source * 100 > c.delivered.max(1) {
        push(
            Level::Warning,
            format!(
                "the driver lost {} of {} frames: USB bandwidth or a busy CPU; try [source] format = \"mjpeg\" or a lower resolution",
                c.dropped_by_source,
                c.delivered + c.dropped_by_source
            ),
        );
    }
    if c.frame_errors > 0 {
        push(
            Level::Warning,
            format!("{} frame(s) could not be decoded", c.frame_errors),
        );
    }
    if c.skipped * 20 > c.delivered.max(1) {
        push(
            Level::Info,
            format!(
                "{} of {} frames were skipped because a newer frame was ready first (the daemon does the same): see the speed advice",
                c.skipped, c.delivered
            ),
        );
    }
    if let Some(t) = c.ended_at_s {
        push(
            Level::Info,
            format!("the replay ended after {t:.1} s, before the --duration"),
        );
    }
}

/// The largest `min_face_size` that keeps ≥ 99% of the faces seen, with a
/// 10% margin for the box's jitter from frame to frame.
pub fn min_face_size_for(size_px: &Spread) -> f32 {
    (0.9 * size_px.p1).floor().max(12.0)
}

fn faces(i: &Inputs, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
    let f = i.figures.faces.as_ref().expect("faces were seen");
    let size = &f.size_px;
    a.push(Advice {
        level: Level::Ok,
        topic: "faces",
        text: format!(
            "{} face reading(s) on {} of {} frames, up to {} at once; face size {:.0}–{:.0} px (median {:.0})",
            f.readings, f.frames_with_faces, i.figures.frames, f.most_faces_in_a_frame, size.min, size.max, size.p50
        ),
    });
    if size.p10 < READABLE_FACE_PX {
        a.push(Advice {
            level: Level::Warning,
            topic: "faces",
            text: format!(
                "faces are small: 10% are under {:.0} px (the smallest {:.0} px), and expressions read poorly below about {READABLE_FACE_PX:.0} px: mount the camera closer to where people stand, narrow its field of view, or use a higher resolution",
                size.p10, size.min
            ),
        });
    }
    if f.readings >= MIN_FACE_READINGS {
        let m = min_face_size_for(size);
        // The same engine timed with the recommended value and as configured.
        let pair = i
            .speed
            .iter()
            .find(|e| matches!(e.variant, Variant::MinFaceSize(_)))
            .and_then(|with| {
                i.speed
                    .iter()
                    .find(|e| e.variant == Variant::AsConfigured && e.engine == with.engine)
                    .map(|without| (with, without))
            });
        // Rates within a quarter of each other are this machine's noise.
        let slower = pair.filter(|(with, without)| with.frames_per_s < without.frames_per_s * 0.75);
        // Nor may it read fewer faces than the config does.
        let fewer = pair.filter(|(with, without)| with.coverage + 0.05 < without.coverage);
        if let (true, Some((with, without))) = (m > i.context.min_face_size * 1.05, fewer) {
            a.push(Advice {
                level: Level::Info,
                topic: "faces",
                text: format!(
                    "min_face_size = {m:.0} was timed on {}, but it read {:.0}% of the faces a full detection finds against {:.0}% as configured: not recommended from this run",
                    with.engine,
                    with.coverage * 100.0,
                    without.coverage * 100.0
                ),
            });
        } else if let (true, Some((with, without))) = (m > i.context.min_face_size * 1.05, slower) {
            // A recommendation must agree with the speed table beside it.
            a.push(Advice {
                level: Level::Info,
                topic: "faces",
                text: format!(
                    "min_face_size = {m:.0} would keep the faces seen, but measured on {} it ran at {:.1} frames/s against {:.1} as configured: not recommended from this run (run calibrate again on a quieter machine to confirm)",
                    with.engine, with.frames_per_s, without.frames_per_s
                ),
            });
        } else if m > i.context.min_face_size * 1.05 {
            let measured = pair
                .and_then(|(with, without)| {
                    Some(format!(
                        "; measured on {}: a full detection takes {:.0} ms with it, {:.0} ms without",
                        with.engine,
                        full_detection_ms(with)?,
                        full_detection_ms(without)?
                    ))
                })
                .unwrap_or_default();
            s.push(Setting {
                section: "detector",
                key: "min_face_size",
                value: toml::Value::Integer(m as i64),
                why: format!(
                    "99% of the {} faces seen were at least {:.0} px (smallest {:.0} px); {m:.0} keeps them with a 10% margin and skips smaller pyramid levels (was {:.0}){measured}",
                    f.readings, size.p1, size.min, i.context.min_face_size
                ),
            });
        } else {
            a.push(Advice {
                level: Level::Ok,
                topic: "faces",
                text: format!(
                    "min_face_size = {:.0} already keeps the faces seen (smallest {:.0} px)",
                    i.context.min_face_size, size.min
                ),
            });
        }
    } else {
        a.push(Advice {
            level: Level::Info,
            topic: "faces",
            text: format!(
                "{} face reading(s) are too few to recommend min_face_size (at least {MIN_FACE_READINGS} are needed)",
                f.readings
            ),
        });
    }
    if f.roll_deg.p50.abs() > TILTED_DEG {
        a.push(Advice {
            level: Level::Warning,
            topic: "faces",
            text: format!(
                "faces lean {:.0}° on the median: level the camera (alignment corrects roll, but the detector finds tilted faces less often)",
                f.roll_deg.p50
            ),
        });
    }
}

/// Median time of a full detection: on the frame thread, or on the
/// background detector's (where `min_face_size` saves its time).
fn full_detection_ms(e: &EngineSpeed) -> Option<f64> {
    let st = &e.stages_ms_p50;
    st.get("detect")
        .or_else(|| st.get("detect_background"))
        .copied()
}

fn quality(fig: &Figures, a: &mut Vec<Advice>) {
    let Some(q) = &fig.quality else { return };
    let b = q.face_brightness.p50;
    let mut push = |level, topic, text: String| a.push(Advice { level, topic, text });
    if b < DARK_FACE {
        push(
            Level::Warning,
            "exposure",
            format!(
                "faces are underexposed: median face brightness {b:.0}/255, {:.1} stops below mid-grey: add front light facing people, or raise the camera's exposure or gain",
                super::quality::stops(MID_GREY, b)
            ),
        );
    } else if b > BRIGHT_FACE {
        push(
            Level::Warning,
            "exposure",
            format!(
                "faces are overexposed: median face brightness {b:.0}/255, {:.1} stops above mid-grey: lower the camera's exposure or move it out of direct light",
                super::quality::stops(b, MID_GREY)
            ),
        );
    } else {
        push(
            Level::Ok,
            "exposure",
            format!("faces are well exposed: median brightness {b:.0}/255"),
        );
    }
    if q.face_contrast.p50 < FLAT_FACE && b >= DARK_FACE {
        push(
            Level::Warning,
            "exposure",
            format!(
                "faces are flat: median contrast {:.0} (under {FLAT_FACE:.0}): haze, a dirty lens or fog; clean the lens, add light",
                q.face_contrast.p50
            ),
        );
    }
    let stops = q.backlight_stops.p50;
    if stops >= BACKLIT_STOPS {
        push(
            Level::Warning,
            "exposure",
            format!(
                "faces are {stops:.1} stops darker than the scene: backlit; move the camera so that windows and lamps are not behind people, or add front light"
            ),
        );
    }
    let sharp = q.sharpness.p50;
    if sharp < BLURRED_FACE {
        push(
            Level::Warning,
            "sharpness",
            format!(
                "faces are blurred: median sharpness {sharp:.0} (edges of the aligned face relative to its contrast; under {BLURRED_FACE:.0} is blurred): focus the lens, clean it, or add light so that the exposure gets shorter (motion blur)"
            ),
        );
    } else {
        push(
            Level::Ok,
            "sharpness",
            format!("faces are sharp: median sharpness {sharp:.0}"),
        );
    }
}

fn tracks(fig: &Figures, a: &mut Vec<Advice>) {
    let t = &fig.tracks;
    let dur = t
        .duration_s
        .map(|d| format!(", median duration {:.1} s", d.p50))
        .unwrap_or_default();
    let switches = t.id_switches;
    if t.tracks >= 3 && switches * 5 > t.tracks {
        a.push(Advice {
            level: Level::Warning,
            topic: "tracks",
            text: format!(
                "{switches} of {} tracks look like a person who got a new id (a track began where another had just ended){dur}: faces are lost between frames; more light (less motion blur), a higher frame rate, or a larger [tracker] max_age_s help",
                t.tracks
            ),
        });
    } else {
        a.push(Advice {
            level: Level::Ok,
            topic: "tracks",
            text: format!("{} track(s), {switches} id switch(es){dur}", t.tracks),
        });
    }
    if let (n @ 1.., Some(longest)) = (t.lost, t.longest_lost_s) {
        a.push(Advice {
            level: Level::Warning,
            topic: "tracks",
            text: format!(
                "{n} time(s) a face went untracked and came back where it had been as a new track (the longest gap {longest:.1} s): if the person stayed, the detector lost them (check light, angle and min_face_size); while untracked nothing is published for them"
            ),
        });
    }
}

fn speed(i: &Inputs, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
    for (engine, why) in i.unavailable {
        let who = if engine == "all" {
            "the engines were".to_string()
        } else {
            format!("engine {engine} was")
        };
        a.push(Advice {
            level: Level::Info,
            topic: "speed",
            text: format!("{who} not timed: {why}"),
        });
    }
    let configured: Vec<&EngineSpeed> = i
        .speed
        .iter()
        .filter(|e| e.variant == Variant::AsConfigured)
        .collect();
    let Some(best) = configured
        .iter()
        .copied()
        .max_by(|x, y| x.frames_per_s.total_cmp(&y.frames_per_s))
    else {
        return;
    };
    let ctx = i.context;
    let current = configured.iter().find(|e| e.engine == ctx.engine);
    let target = ctx.target_fps;
    let list = configured
        .iter()
        .map(|e| {
            format!(
                "{} {:.1} (faces read {:.0}%)",
                e.engine,
                e.frames_per_s,
                e.coverage * 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    a.push(Advice {
        level: if best.frames_per_s >= target {
            Level::Ok
        } else {
            Level::Warning
        },
        topic: "speed",
        text: if best.frames_per_s >= target {
            format!("frames/s this board sustains with the faces seen here: {list} (target {target:.0})")
        } else {
            format!(
                "no engine reaches {target:.0} frames/s with the faces seen here ({list}): raise [follow] interval, raise min_face_size, or lower the camera resolution"
            )
        },
    });
    // A faster engine that read fewer faces did less work: no comparison.
    if let Some(c) = current.filter(|c| c.engine != best.engine && !same_work(c, best)) {
        a.push(Advice {
            level: Level::Info,
            topic: "speed",
            text: format!(
                "{} and {} are not compared: they read {:.0}% and {:.0}% of the faces a full detection finds, so their frame rates measure different work (time longer with --duration, or more --speed-runs)",
                c.engine,
                best.engine,
                c.coverage * 100.0,
                best.coverage * 100.0
            ),
        });
        return;
    }
    let better = match current {
        Some(c) => best.engine != c.engine && best.frames_per_s > 1.1 * c.frames_per_s,
        None => best.engine != ctx.engine && best.coverage >= crate::bench::MIN_COVERAGE,
    };
    if better {
        let why = format!(
            "fastest engine measured here: {:.1} frames/s, against {} (end to end {:.1} ms median)",
            best.frames_per_s,
            current.map_or_else(
                || format!("{} not measured", ctx.engine),
                |c| format!("{:.1} on {}", c.frames_per_s, c.engine)
            ),
            best.end_to_end_ms_p50
        );
        let engine = toml::Value::String(best.engine.clone());
        s.push(Setting {
            section: "inference",
            key: "backend",
            value: engine.clone(),
            why: why.clone(),
        });
        if ctx.stage_engines {
            for section in ["detector", "emotion"] {
                s.push(Setting {
                    section,
                    key: "backend",
                    value: engine.clone(),
                    why: "the base config names an engine per stage, which would win over [inference] backend".into(),
                });
            }
        }
    }
}

fn baseline(fig: &Figures, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
    let Some(raw) = fig
        .raw
        .as_ref()
        .filter(|r| r.readings >= MIN_BASELINE_READINGS)
    else {
        a.push(Advice {
            level: Level::Problem,
            topic: "baseline",
            text: format!(
                "no baseline: {} face reading(s), at least {MIN_BASELINE_READINGS} are needed; have one person hold a neutral face in view for the whole --duration",
                fig.raw.as_ref().map_or(0, |r| r.readings)
            ),
        });
        return;
    };
    let (other, p_other) = crate::frame::Expression::ALL
        .iter()
        .zip(raw.mean_probability)
        .skip(1)
        .fold(
            (crate::frame::Expression::Neutral, 0.0f32),
            |best, (e, p)| {
                if p > best.1 {
                    (*e, p)
                } else {
                    best
                }
            },
        );
    if p_other >= BASELINE_NOT_NEUTRAL {
        a.push(Advice {
            level: Level::Problem,
            topic: "baseline",
            text: format!(
                "no baseline written: the face read as {} (mean probability {p_other:.2}, neutral {:.2}), not neutral; a baseline from it would suppress {} here. Run it again with a relaxed, neutral face",
                other.name(),
                raw.mean_probability[0],
                other.name()
            ),
        });
        return;
    }
    if raw.most_faces_at_once > 1 {
        a.push(Advice {
            level: Level::Warning,
            topic: "baseline",
            text: format!(
                "{} faces were seen at once: the baseline mixes them; run it again with one person in view",
                raw.most_faces_at_once
            ),
        });
    }
    let bias = class_bias(&raw.mean_log_probability);
    let n = raw.readings;
    let r3 = |v: f32| toml::Value::Float(((v as f64) * 1000.0).round() / 1000.0);
    s.push(Setting {
        section: "calibration",
        key: "valence_offset",
        value: r3(raw.mean_valence),
        why: format!(
            "mean valence of {n} readings of a neutral face here: {:.3} (a neutral face should read 0)",
            raw.mean_valence
        ),
    });
    s.push(Setting {
        section: "calibration",
        key: "arousal_offset",
        value: r3(raw.mean_arousal),
        why: format!("mean arousal of the same readings: {:.3}", raw.mean_arousal),
    });
    s.push(Setting {
        section: "calibration",
        key: "class_bias",
        value: toml::Value::Array(bias.iter().map(|&b| r3(b)).collect()),
        why: format!(
            "per expression, how far its mean log-probability rose above neutral's on a neutral face (0 when below): mean probabilities were {}",
            crate::frame::Expression::ALL
                .iter()
                .zip(raw.mean_probability)
                .map(|(e, p)| format!("{} {p:.2}", e.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    a.push(Advice {
        level: Level::Ok,
        topic: "baseline",
        text: format!(
            "neutral baseline from {n} readings: valence offset {:.3}, arousal offset {:.3}, class bias [{}]",
            raw.mean_valence,
            raw.mean_arousal,
            bias.iter()
                .map(|b| format!("{b:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
}

/// The least bias that makes Neutral the top class of the average neutral
/// face: each expression's mean log-probability above Neutral's, else 0.
pub fn class_bias(mean_log_p: &[f32; 7]) -> [f32; 7] {
    let mut b = [0f32; 7];
    for i in 1..7 {
        b[i] = (mean_log_p[i] - mean_log_p[0]).clamp(0.0, 10.0);
    }
    b
}

/// `calibration.toml`: a header, then each section with its keys, every
/// key under a comment saying why.
pub fn settings_toml(header: &[String], settings: &[Setting]) -> String {
    let mut out: String = header.iter().map(|l| format!("# {l}\n")).collect();
    if settings.is_empty() {
        out += "#\n# Nothing to change: every measured figure is fine with the current settings,\n# or there was too little data to back a change (see report.html).\n";
    }
    let mut sections: Vec<&str> = Vec::new();
    for st in settings {
        if !sections.contains(&st.section) {
            sections.push(st.section);
        }
    }
    for section in sections {
        out += &format!("\n[{section}]\n");
        for st in settings.iter().filter(|x| x.section == section) {
            for line in st.why.lines() {
                out += &format!("# {line}\n");
            }
            out += &format!("{} = {}\n", st.key, st.value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::survey::{FaceFigures, QualityFigures, TrackFigures};

    fn spread(min: f32, p1: f32, p10: f32, p50: f32) -> Spread {
        Spread {
            count: 100,
            min,
            p1,
            p10,
            p50,
            p90: p50,
            max: p50 * 1.2,
            mean: p50,
        }
    }

    fn figures(faces: bool) -> Figures {
        Figures {
            frames: 300,
            span_s: 20.0,
            frame_size: [640, 480],
            process_ms: None,
            faces: faces.then(|| FaceFigures {
                readings: 300,
                frames_with_faces: 300,
                most_faces_in_a_frame: 1,
                size_px: spread(90.0, 95.0, 100.0, 110.0),
                size_histogram: vec![],
                heatmap: vec![],
                roll_deg: spread(-2.0, -2.0, -1.0, 1.0),
                score: spread(0.99, 0.99, 0.99, 0.99),
            }),
            quality: faces.then(|| QualityFigures {
                face_brightness: spread(100.0, 100.0, 110.0, 120.0),
                face_contrast: spread(40.0, 40.0, 40.0, 40.0),
                scene_brightness: spread(120.0, 120.0, 120.0, 120.0),
                backlight_stops: spread(0.0, 0.0, 0.0, 0.0),
                sharpness: spread(200.0, 200.0, 200.0, 200.0),
                face_brightness_histogram: vec![],
            }),
            tracks: TrackFigures {
                tracks: 1,
                duration_s: None,
                id_switches: 0,
                lost: 0,
                longest_lost_s: None,
            },
            timeline: vec![],
            va_by_track: Default::default(),
            raw: None,
        }
    }

    fn camera() -> CameraFigures {
        CameraFigures {
            source: "cam".into(),
            live: true,
            requested_fps: 15.0,
            delivered: 300,
            delivered_fps: 15.0,
            skipped: 0,
            dropped_by_source: 0,
            frame_errors: 0,
            outages: vec![],
            ended_at_s: None,
        }
    }

    fn ctx() -> Context {
        Context {
            min_face_size: 20.0,
            engine: "tract".into(),
            stage_engines: false,
            target_fps: 15.0,
            baseline: false,
        }
    }

    fn speed(engine: &str, fps: f64) -> EngineSpeed {
        EngineSpeed {
            engine: engine.into(),
            variant: Variant::AsConfigured,
            frames_per_s: fps,
            end_to_end_ms_p50: 1000.0 / fps,
            stages_ms_p50: Default::default(),
            coverage: 1.0,
        }
    }

    fn run(
        f: &Figures,
        c: &CameraFigures,
        sp: &[EngineSpeed],
        x: &Context,
    ) -> (Vec<Advice>, Vec<Setting>) {
        advise(Inputs {
            figures: f,
            camera: c,
            speed: sp,
            unavailable: &[],
            context: x,
        })
    }

    fn warned(a: &[Advice], topic: &str) -> bool {
        a.iter()
            .any(|x| x.topic == topic && x.level <= Level::Warning)
    }

    #[test]
    fn min_face_size_follows_the_smallest_faces_and_never_exceeds_them() {
        let (a, s) = run(&figures(true), &camera(), &[], &ctx());
        let m = s.iter().find(|x| x.key == "min_face_size").unwrap();
        assert_eq!(m.value, toml::Value::Integer(85));
        assert!(m.why.contains("95 px"), "{}", m.why);
        assert!(
            !warned(&a, "exposure") && !warned(&a, "sharpness") && !warned(&a, "faces"),
            "{a:?}"
        );
        // Timed both ways: the detection time goes into the reason.
        let mut with = speed("tract", 40.0);
        with.variant = Variant::MinFaceSize(85);
        with.stages_ms_p50.insert("detect_background".into(), 120.0);
        let mut without = speed("tract", 45.0);
        without
            .stages_ms_p50
            .insert("detect_background".into(), 260.0);
        let (_, s) = run(&figures(true), &camera(), &[without, with], &ctx());
        let why = &s.iter().find(|x| x.key == "min_face_size").unwrap().why;
        assert!(why.contains("120 ms with it, 260 ms without"), "{why}");
        // Already low enough: nothing to write.
        let c = Context {
            min_face_size: 85.0,
            ..ctx()
        };
        let (_, s) = run(&figures(true), &camera(), &[], &c);
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn no_faces_is_a_problem_and_recommends_nothing_about_faces() {
        let (a, s) = run(
            &figures(false),
            &camera(),
            &[],
            &Context {
                baseline: true,
                ..ctx()
            },
        );
        assert_eq!(a[0].level, Level::Problem);
        assert!(a.iter().any(|x| x.text.contains("no face was seen")));
        assert!(a
            .iter()
            .any(|x| x.topic == "baseline" && x.level == Level::Problem));
        assert!(s.is_empty(), "{s:?}");
    }

    #[test]
    fn dark_backlit_blurred_small_and_tilted_faces_are_each_named_with_a_fix() {
        let mut f = figures(true);
        let q = f.quality.as_mut().unwrap();
        q.face_brightness = spread(20.0, 20.0, 25.0, 30.0);
        q.backlight_stops = spread(2.0, 2.0, 2.0, 2.3);
        q.sharpness = spread(5.0, 5.0, 6.0, 7.0);
        let faces = f.faces.as_mut().unwrap();
        faces.size_px = spread(20.0, 22.0, 30.0, 40.0);
        faces.roll_deg = spread(20.0, 20.0, 20.0, 20.0);
        let (a, _) = run(&f, &camera(), &[], &ctx());
        let text =
            |topic: &str, word: &str| a.iter().any(|x| x.topic == topic && x.text.contains(word));
        assert!(text("exposure", "underexposed"));
        assert!(text("exposure", "2.3 stops darker than the scene: backlit"));
        assert!(text("sharpness", "blurred"));
        assert!(text("faces", "faces are small"));
        assert!(text("faces", "level the camera"));
    }

    #[test]
    fn the_camera_advice_follows_what_it_delivered() {
        let mut c = camera();
        c.delivered_fps = 7.5;
        c.dropped_by_source = 30;
        c.outages = vec![Outage {
            from_s: 3.0,
            to_s: None,
            reason: "device disappeared".into(),
        }];
        let (a, _) = run(&figures(true), &c, &[], &ctx());
        assert_eq!(a[0].level, Level::Problem);
        assert!(a[0].text.contains("had not come back"), "{}", a[0].text);
        assert!(a.iter().any(|x| x.text.contains("7.5 of the 15")));
        assert!(a.iter().any(|x| x.text.contains("lost 30 of 330")));
    }

    #[test]
    fn the_fastest_engine_is_recommended_only_when_clearly_faster() {
        let sp = [speed("tract", 10.0), speed("onnxruntime", 20.0)];
        let (_, s) = run(&figures(true), &camera(), &sp, &ctx());
        let b = s.iter().find(|x| x.key == "backend").unwrap();
        assert_eq!(b.value, toml::Value::String("onnxruntime".into()));
        assert!(b.why.contains("20.0 frames/s") && b.why.contains("10.0 on tract"));
        let close = [speed("tract", 10.0), speed("onnxruntime", 10.5)];
        let (a, s) = run(&figures(true), &camera(), &close, &ctx());
        assert!(!s.iter().any(|x| x.key == "backend"));
        assert!(warned(&a, "speed"), "10.5 < 15 frames/s target: {a:?}");
        // Twice as fast, but it read half the faces: not the same work.
        let fewer = EngineSpeed {
            coverage: 0.5,
            ..speed("onnxruntime", 20.0)
        };
        let (a, s) = run(
            &figures(true),
            &camera(),
            &[speed("tract", 10.0), fewer],
            &ctx(),
        );
        assert!(!s.iter().any(|x| x.key == "backend"), "{s:?}");
        assert!(
            a.iter()
                .any(|x| x.text.contains("not compared") && x.text.contains("50%")),
            "{a:?}"
        );
    }

    #[test]
    fn a_neutral_baseline_offsets_the_means_and_biases_classes_above_neutral() {
        let mut f = figures(true);
        f.raw = Some(crate::calibrate::survey::RawReadings {
            readings: 100,
            mean_valence: 0.2,
            mean_arousal: -0.1,
            mean_probability: [0.3, 0.5, 0.05, 0.05, 0.04, 0.03, 0.03],
            mean_log_probability: [-1.5, -0.9, -3.0, -3.0, -3.2, -3.5, -3.5],
            most_faces_at_once: 1,
        });
        let (_, s) = run(
            &f,
            &camera(),
            &[],
            &Context {
                baseline: true,
                ..ctx()
            },
        );
        let get = |k: &str| s.iter().find(|x| x.key == k).unwrap().value.clone();
        assert_eq!(get("valence_offset"), toml::Value::Float(0.2));
        assert_eq!(get("arousal_offset"), toml::Value::Float(-0.1));
        let bias = class_bias(&f.raw.as_ref().unwrap().mean_log_probability);
        assert!((bias[1] - 0.6).abs() < 1e-6 && bias[0] == 0.0 && bias[2] == 0.0);
    }

    #[test]
    fn min_face_size_is_not_recommended_when_its_own_timing_was_slower() {
        let with = EngineSpeed {
            variant: Variant::MinFaceSize(85),
            ..speed("tract", 31.0)
        };
        let (a, s) = run(
            &figures(true),
            &camera(),
            &[speed("tract", 62.0), with.clone()],
            &ctx(),
        );
        assert!(!s.iter().any(|x| x.key == "min_face_size"), "{s:?}");
        assert!(
            a.iter()
                .any(|x| x.topic == "faces" && x.text.contains("31.0 frames/s against 62.0")),
            "{a:?}"
        );
        // Faster with it: recommended, with the timing in its reason.
        let faster = EngineSpeed {
            frames_per_s: 70.0,
            ..with
        };
        let (_, s) = run(
            &figures(true),
            &camera(),
            &[speed("tract", 62.0), faster],
            &ctx(),
        );
        assert!(s.iter().any(|x| x.key == "min_face_size"), "{s:?}");
        // Faster, but it read fewer faces: not the same work, not recommended.
        let fewer = EngineSpeed {
            frames_per_s: 70.0,
            coverage: 0.6,
            variant: Variant::MinFaceSize(85),
            ..speed("tract", 70.0)
        };
        let (a, s) = run(
            &figures(true),
            &camera(),
            &[speed("tract", 62.0), fewer],
            &ctx(),
        );
        assert!(!s.iter().any(|x| x.key == "min_face_size"), "{s:?}");
        assert!(
            a.iter().any(|x| x.text.contains("60% of the faces")),
            "{a:?}"
        );
    }

    #[test]
    fn a_baseline_of_a_face_that_is_not_neutral_is_refused_with_the_reason() {
        let mut f = figures(true);
        f.raw = Some(crate::calibrate::survey::RawReadings {
            readings: 100,
            mean_valence: 0.7,
            mean_arousal: 0.3,
            mean_probability: [0.02, 0.95, 0.01, 0.01, 0.005, 0.0025, 0.0025],
            mean_log_probability: [-3.9, -0.05, -4.6, -4.6, -5.3, -6.0, -6.0],
            most_faces_at_once: 1,
        });
        let ctx = Context {
            baseline: true,
            ..ctx()
        };
        let (a, s) = run(&f, &camera(), &[], &ctx);
        assert!(
            !s.iter().any(|x| x.section == "calibration"),
            "nothing written: {s:?}"
        );
        let refusal = a
            .iter()
            .find(|x| x.topic == "baseline" && x.level == Level::Problem)
            .expect("a problem");
        assert!(
            refusal
                .text
                .contains("read as happy (mean probability 0.95"),
            "{}",
            refusal.text
        );
    }

    #[test]
    fn the_toml_groups_keys_by_section_with_their_reasons_and_parses() {
        let s = vec![
            Setting {
                section: "detector",
                key: "min_face_size",
                value: toml::Value::Integer(80),
                why: "faces ≥ 90 px".into(),
            },
            Setting {
                section: "calibration",
                key: "class_bias",
                value: toml::Value::Array(vec![toml::Value::Float(0.0); 7]),
                why: "neutral".into(),
            },
        ];
        let text = settings_toml(&["made by fer-edge calibrate".into()], &s);
        assert!(
            text.contains("[detector]\n# faces ≥ 90 px\nmin_face_size = 80\n"),
            "{text}"
        );
        let cfg = crate::config::Config::parse(&text, std::path::Path::new("c.toml")).unwrap();
        assert_eq!(cfg.detector.min_face_size, 80.0);
        assert!(settings_toml(&[], &[]).contains("Nothing to change"));
    }
}
