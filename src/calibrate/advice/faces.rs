//! Faces seen: how many, how big, how tilted; `min_face_size` from their sizes.

use super::*;
use crate::calibrate::survey::FaceFigures;

/// The largest `min_face_size` that keeps ≥ 99% of the faces seen, with a
/// 10% margin for the box's jitter from frame to frame.
pub fn min_face_size_for(size_px: &Spread) -> f32 {
    (0.9 * size_px.p1).floor().max(12.0)
}

pub(super) fn faces(i: &Inputs, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
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
        min_face_size(i, f, a, s);
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

/// `min_face_size` from the sizes seen, unless the engines timed with it
/// read fewer faces or ran slower than as configured.
fn min_face_size(i: &Inputs, f: &FaceFigures, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
    let size = &f.size_px;
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
}

/// Median time of a full detection: on the frame thread, or on the
/// background detector's (where `min_face_size` saves its time).
fn full_detection_ms(e: &EngineSpeed) -> Option<f64> {
    let st = &e.stages_ms_p50;
    st.get("detect")
        .or_else(|| st.get("detect_background"))
        .copied()
}
