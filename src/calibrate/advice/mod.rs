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

mod baseline;
mod faces;
mod scene;
mod speed;

use baseline::baseline;
pub use baseline::class_bias;
use faces::faces;
pub use faces::min_face_size_for;
use scene::{camera, quality, tracks};
use speed::speed;

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
