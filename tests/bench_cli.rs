//! A short smoke of `fer-edge bench`: it must keep working (its numbers are
//! for people, not assertions: CI machines are slow and noisy).

use std::process::Command;

/// Runs `fer-edge bench ARGS --json` from the repository root and parses its report.
fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn faces_per_frame(r: &serde_json::Value) -> Vec<u64> {
    r["faces_per_frame"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn bench_reports_every_stage_as_json() {
    // Detections on the frame thread: which frames detect is then fixed;
    // every face read on every frame.
    let r = bench(&[
        "--runs",
        "1",
        "--background",
        "false",
        "--expression-rate",
        "0",
    ]);
    // The daemon's stage names (`stats`, `/metrics`), plus the bench's own
    // decode and serialise.
    for stage in [
        "decode",
        "detect",
        "follow",
        "align",
        "emotion",
        "track",
        "serialise",
    ] {
        assert_eq!(
            r["stages_ms"][stage]["samples"].as_u64(),
            Some(if stage == "detect" {
                3
            } else if stage == "follow" {
                27
            } else {
                30
            }),
            "{stage}: {r}"
        );
    }
    for stage in ["align", "emotion"] {
        assert!(
            r["per_face_ms"][stage]["p50"].as_f64().unwrap() > 0.0,
            "{stage} per face missing: {r}"
        );
    }
    // The bundled sequence: one face on each of its 30 frames.
    assert_eq!(faces_per_frame(&r), vec![1; 30], "{r}");
    // The work: a full detection finds that face on every frame, and the
    // run read all of them.
    assert_eq!(
        r["expected_faces_per_frame"],
        serde_json::json!(vec![1; 30])
    );
    assert_eq!(r["coverage"].as_f64(), Some(1.0), "{r}");
    assert_eq!(r["untimed_frames"], 0);
    // interval 10: frames 0, 11 and 22 detect, the other 27 follow.
    assert_eq!(r["interval"], 10);
    assert_eq!(r["detection_frames"]["frames"], 3, "{r}");
    assert_eq!(r["followed_frames"]["frames"], 27, "{r}");
    assert!(r["frames_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["peak_rss_mb"].as_f64().unwrap() > 1.0);
    assert_eq!(r["read_share"].as_f64(), Some(1.0), "{r}");
}

#[test]
fn a_capped_expression_rate_reads_fewer_faces_but_follows_them_all() {
    // The default 5 readings a second at 15 frames/s: the face is followed
    // and published on every frame, aligned and read on about one in three.
    let r = bench(&["--runs", "1", "--background", "false"]);
    assert_eq!(r["expression_rate_hz"].as_f64(), Some(5.0), "{r}");
    assert_eq!(faces_per_frame(&r), vec![1; 30], "{r}");
    assert_eq!(r["coverage"].as_f64(), Some(1.0), "{r}");
    let read = r["stages_ms"]["emotion"]["samples"].as_u64().unwrap();
    assert!(
        (10..=16).contains(&read),
        "{read} frames read the face: {r}"
    );
    assert_eq!(r["stages_ms"]["align"]["samples"].as_u64(), Some(read));
    let share = r["read_share"].as_f64().unwrap();
    assert!((share - read as f64 / 30.0).abs() < 0.01, "{r}");
}

#[test]
fn bench_model_only_times_the_emotion_model_alone() {
    let r = bench(&["--model-only", "--runs", "3"]);
    assert_eq!(r["per_face_ms"]["emotion"]["samples"], 3);
}

#[test]
fn bench_peak_measures_a_positive_fp32_rate() {
    let r = bench(&["--peak"]);
    assert!(r["peak_gflops_1_thread"].as_f64().unwrap() > 0.1, "{r}");
}

#[test]
fn with_a_background_detector_timing_starts_once_every_face_is_read() {
    // Six faces; frames before the background detector has delivered all
    // of them are run but not timed, and the report says how many. How soon
    // that happens depends on this machine's speed: what must hold is that
    // the report states the work it did, and that a run which read too few
    // faces is refused (exit 1) instead of passed off as a frame rate.
    let out = Command::new(env!("CARGO_BIN_EXE_fer-edge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "bench",
            "--runs",
            "1",
            "--frames",
            "tests/data/sequences/pan6",
        ])
        .args(["--background", "true", "--json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<u64> = r["expected_faces_per_frame"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(expected.len(), 30);
    // Six people (a full detection may add a spurious seventh box).
    assert!(expected.iter().all(|&n| n >= 6), "{expected:?}");
    let untimed = r["untimed_frames"].as_u64().unwrap();
    let timed = r["end_to_end_ms"]["samples"].as_u64().unwrap();
    assert_eq!(timed + untimed, 30, "{r}");
    let coverage = r["coverage"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&coverage), "{r}");
    if untimed > 0 {
        // Timing began on a frame with all its faces read.
        let first = r["faces_per_frame"][untimed as usize].as_u64().unwrap();
        assert!(first >= expected[untimed as usize], "{r}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if coverage >= 0.8 {
        assert!(out.status.success(), "{err}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("not comparable") && err.contains("read"),
            "{err}"
        );
    }
}
