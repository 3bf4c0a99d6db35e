//! The camera, the light on the faces and the tracks: what the picture itself says.

use super::*;

pub(super) fn camera(c: &CameraFigures, a: &mut Vec<Advice>) {
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

pub(super) fn quality(fig: &Figures, a: &mut Vec<Advice>) {
    let Some(q) = &fig.quality else { return };
    let b = q.face_brightness.p50;
    let mut push = |level, topic, text: String| a.push(Advice { level, topic, text });
    if b < DARK_FACE {
        push(
            Level::Warning,
            "exposure",
            format!(
                "faces are underexposed: median face brightness {b:.0}/255, {:.1} stops below mid-grey: add front light facing people, or raise the camera's exposure or gain",
                crate::calibrate::quality::stops(MID_GREY, b)
            ),
        );
    } else if b > BRIGHT_FACE {
        push(
            Level::Warning,
            "exposure",
            format!(
                "faces are overexposed: median face brightness {b:.0}/255, {:.1} stops above mid-grey: lower the camera's exposure or move it out of direct light",
                crate::calibrate::quality::stops(b, MID_GREY)
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

pub(super) fn tracks(fig: &Figures, a: &mut Vec<Advice>) {
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
