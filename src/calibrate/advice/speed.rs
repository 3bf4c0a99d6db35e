//! Engines timed on this run's frames: which one to run.

use super::*;

pub(super) fn speed(i: &Inputs, a: &mut Vec<Advice>, s: &mut Vec<Setting>) {
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
    engine_setting(ctx, best, current.copied(), s);
}

/// `[inference] backend` (and the per-stage keys that would win over it)
/// when another engine was clearly faster on the same work.
fn engine_setting(
    ctx: &Context,
    best: &EngineSpeed,
    current: Option<&EngineSpeed>,
    s: &mut Vec<Setting>,
) {
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
