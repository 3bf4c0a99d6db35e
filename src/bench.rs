//! `fer-edge bench`: the real stages on replayed frames, timed.
//!
//! In: a folder of frames (default the bundled 640×480 ones), the config and
//! optionally another model bundle. Out: per stage (decode, detect, align,
//! emotion per face, track+smooth, serialise) the median, p90 and p99 in
//! milliseconds, end-to-end frames/s and faces/s, and peak RSS; as text or
//! JSON. `--model-only` times just the emotion model on one aligned crop
//! (batch 1), the number to compare engines on. Benchmarks, not tests:
//! nothing here fails on a slow machine.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::analyze;
use crate::config::Config;
use crate::faces::{FaceChain, SetupError};
use crate::frame::{FaceReading, RgbImage};
use crate::publish::payload::{ExpressionMsg, FrameStamp};
use crate::telemetry::Percentiles;
use crate::track::smooth::EmotionSmoother;
use crate::track::Tracker;

/// Options of one bench run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub frames: PathBuf,
    pub runs: usize,
    pub model_only: bool,
}

/// Errors of the bench command.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{0}")]
    Input(String),
    #[error("frame processing failed: {0}")]
    Frame(#[from] crate::faces::FrameError),
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub backend: String,
    pub model: String,
    pub model_input: String,
    pub frames: Vec<String>,
    pub runs: usize,
    pub faces_per_frame: Vec<usize>,
    pub stages_ms: BTreeMap<String, Percentiles>,
    pub end_to_end_ms: Percentiles,
    pub frames_per_s: f64,
    pub faces_per_s: f64,
    pub peak_rss_mb: f64,
}

/// Peak resident set size of this process (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

fn progress(done: usize, total: usize) {
    if std::io::stderr().is_terminal() {
        let w = 30;
        let fill = done * w / total.max(1);
        eprint!(
            "\r[{}{}] {done}/{total}",
            "#".repeat(fill),
            "-".repeat(w - fill)
        );
        if done == total {
            eprintln!();
        }
    }
}

/// Runs the benchmark.
pub fn run(cfg: &Config, opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let mut chain = FaceChain::from_config(cfg)?;
    let mut sink = Vec::new();
    let (files, _) = analyze::expand_inputs(std::slice::from_ref(&opts.frames), &mut sink);
    if files.is_empty() {
        return Err(BenchError::Input(format!(
            "{}: no PNG/JPEG frames to replay",
            opts.frames.display()
        )));
    }
    let frames: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|b| (f.clone(), b))
                .map_err(|e| BenchError::Input(format!("{}: {e}", f.display())))
        })
        .collect::<Result<_, _>>()?;
    let m = chain.emotion_model().manifest().clone();
    let mut stages: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut e2e = Vec::new();
    let mut faces_per_frame = vec![0; frames.len()];
    let mut total_faces = 0usize;
    let total = opts.runs * if opts.model_only { 1 } else { frames.len() };
    let mut done = 0;
    let wall = Instant::now();
    if opts.model_only {
        let img = analyze::decode_bytes(&frames[0].1).map_err(BenchError::Input)?;
        let first = chain.process(&img)?;
        let reading = first.faces.first().ok_or_else(|| {
            BenchError::Input(format!(
                "{}: no face to align for --model-only",
                frames[0].0.display()
            ))
        })?;
        let crop = chain
            .aligned_crop(&img, reading)
            .ok_or_else(|| BenchError::Input("the face could not be aligned".into()))?;
        for _ in 0..3 {
            chain_infer(&mut chain, &crop)?;
        }
        for _ in 0..opts.runs {
            let t = Instant::now();
            chain_infer(&mut chain, &crop)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            stages.entry("emotion_per_face").or_default().push(ms);
            e2e.push(ms);
            done += 1;
            progress(done, total);
        }
        faces_per_frame = vec![1];
        total_faces = opts.runs;
    } else {
        // Warm-up: prepares the detector's pyramid and the run states.
        for (_, bytes) in frames.iter().take(2) {
            let img = analyze::decode_bytes(bytes).map_err(BenchError::Input)?;
            chain.process(&img)?;
        }
        for _ in 0..opts.runs {
            let mut tracker = Tracker::new(cfg.tracker.clone());
            let mut smoothers: BTreeMap<u64, EmotionSmoother> = BTreeMap::new();
            for (i, (_, bytes)) in frames.iter().enumerate() {
                let t0 = Instant::now();
                let img = analyze::decode_bytes(bytes).map_err(BenchError::Input)?;
                let t_decode = t0.elapsed().as_secs_f64() * 1000.0;
                let r = chain.process(&img)?;
                let t1 = Instant::now();
                let boxes: Vec<_> = r.faces.iter().map(|f| f.detection.bbox).collect();
                let up = tracker.update(i as f64 / 15.0, &boxes);
                let mut smoothed = Vec::new();
                for (face, id) in r.faces.iter().zip(&up.assigned) {
                    let id = id.unwrap_or(0);
                    let s = smoothers
                        .entry(id)
                        .or_insert_with(|| EmotionSmoother::new(&cfg.smoothing))
                        .update(i as f64 / 15.0, &face.emotion);
                    smoothed.push((id, face, s));
                }
                let t_track = t1.elapsed().as_secs_f64() * 1000.0;
                let t2 = Instant::now();
                let mut bytes_out = 0;
                for (id, face, s) in &smoothed {
                    bytes_out += serialise(*id, face, s, &m.name).len();
                }
                std::hint::black_box(bytes_out);
                let t_ser = t2.elapsed().as_secs_f64() * 1000.0;
                let n = r.faces.len();
                faces_per_frame[i] = n;
                total_faces += n;
                stages.entry("decode").or_default().push(t_decode);
                stages.entry("detect").or_default().push(r.times.detect_ms);
                if n > 0 {
                    stages
                        .entry("align_per_face")
                        .or_default()
                        .push(r.times.align_ms / n as f64);
                    stages
                        .entry("emotion_per_face")
                        .or_default()
                        .push(r.times.emotion_ms / n as f64);
                }
                stages.entry("track_smooth").or_default().push(t_track);
                stages.entry("serialise").or_default().push(t_ser);
                e2e.push(t0.elapsed().as_secs_f64() * 1000.0);
                done += 1;
                progress(done, total);
            }
        }
    }
    let secs = wall.elapsed().as_secs_f64().max(1e-9);
    Ok(BenchReport {
        machine: machine(),
        backend: chain.backend().name().to_string(),
        model: format!(
            "{}@{}{}",
            m.name,
            m.version,
            if m.trained { "" } else { " (untrained)" }
        ),
        model_input: format!("{}x{} {:?}", m.input.width, m.input.height, m.input.color),
        frames: files.iter().map(|f| f.display().to_string()).collect(),
        runs: opts.runs,
        faces_per_frame,
        stages_ms: stages
            .into_iter()
            .map(|(k, v)| (k.to_string(), Percentiles::of(&v)))
            .collect(),
        end_to_end_ms: Percentiles::of(&e2e),
        frames_per_s: (e2e.len() as f64 / secs * 100.0).round() / 100.0,
        faces_per_s: (total_faces as f64 / secs * 100.0).round() / 100.0,
        peak_rss_mb: peak_rss_mb(),
    })
}

fn chain_infer(chain: &mut FaceChain, crop: &RgbImage) -> Result<(), BenchError> {
    chain
        .infer_crop(crop)
        .map(|_| ())
        .map_err(|e| BenchError::Frame(crate::faces::FrameError::Emotion(e)))
}

fn serialise(
    id: u64,
    face: &FaceReading,
    s: &crate::track::smooth::Smoothed,
    model: &str,
) -> Vec<u8> {
    let stamp = FrameStamp {
        unix: 0.0,
        frame_time: 0.0,
        frame_seq: 0,
    };
    let msg = ExpressionMsg::new(id, stamp, face, s, model.to_string());
    serde_json::to_vec(&msg).expect("payload serialises")
}

/// Human-readable report.
pub fn text(r: &BenchReport) -> String {
    let mut s = format!(
        "machine: {}\nbackend: {}   model: {} ({})\nframes: {} x {} runs, faces per frame {:?}\n\n{:<18} {:>9} {:>9} {:>9}\n",
        r.machine, r.backend, r.model, r.model_input, r.frames.len(), r.runs, r.faces_per_frame, "stage (ms)", "median", "p90", "p99"
    );
    for (k, p) in &r.stages_ms {
        s += &format!("{k:<18} {:>9.3} {:>9.3} {:>9.3}\n", p.p50, p.p90, p.p99);
    }
    s += &format!(
        "{:<18} {:>9.3} {:>9.3} {:>9.3}\n\nframes/s {:.2}   faces/s {:.2}   peak RSS {:.1} MB\n",
        "end to end",
        r.end_to_end_ms.p50,
        r.end_to_end_ms.p90,
        r.end_to_end_ms.p99,
        r.frames_per_s,
        r.faces_per_s,
        r.peak_rss_mb
    );
    s
}

/// This core's peak single-precision rate in GFLOP/s, measured with a loop
/// of fused multiply-adds on enough independent accumulators to keep every
/// FMA unit busy (latency 4-5 cycles × 2 units). The denominator of
/// "fraction of peak" in the performance table.
pub fn peak_gflops() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU features the function needs were just detected.
            return unsafe { peak_avx2_fma() };
        }
    }
    peak_portable()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn peak_avx2_fma() -> f64 {
    use std::arch::x86_64::*;
    const ACC: usize = 12;
    let iters: u64 = 20_000_000;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); ACC];
    let t = Instant::now();
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    (iters * ACC as u64 * 8 * 2) as f64 / secs / 1e9
}

fn peak_portable() -> f64 {
    const ACC: usize = 12;
    const LANES: usize = 8;
    let iters: u64 = 10_000_000;
    let mut acc = [[1.0f32; LANES]; ACC];
    let t = Instant::now();
    for _ in 0..iters {
        for v in acc.iter_mut() {
            for x in v.iter_mut() {
                *x = x.mul_add(0.999_999, 1e-7);
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    (iters * (ACC * LANES) as u64 * 2) as f64 / secs / 1e9
}
