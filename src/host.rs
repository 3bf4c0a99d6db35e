//! The machine fer-edge runs on, as reports state it: CPU model and cores,
//! this process's peak memory, and one core's peak FP32 rate.
//!
//! In: `/proc` and the CPU. Out: plain numbers and text. A bottom layer:
//! `bench`, `calibrate` and `model compare` all report it; it depends on
//! nothing of fer-edge's.

use std::time::Instant;

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

/// CPU model and core count, for reports.
pub fn machine() -> String {
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
