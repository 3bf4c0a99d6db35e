//! The machine fer-edge runs on, as reports state it: CPU model and cores,
//! this process's peak memory, and one core's peak FP32 rate; and the one
//! process-wide memory setting, the allocator's mmap threshold.
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

/// Buffers of at least `kb` KiB get their own mapping from the kernel and
/// go back to it when freed (`[inference] malloc_mmap_threshold_kb`; 0
/// leaves glibc's own threshold, which rises to the largest buffer freed so
/// far, up to 32 MiB, after which every thread's heap keeps the detector's
/// pyramid tensors it once held). Measured on the daemon (docs/PERFORMANCE.md):
/// 1024 KiB takes its peak from ~107 to ~84 MB for ~10% of the frame rate.
/// `MALLOC_MMAP_THRESHOLD_` in the environment wins over the config. Only
/// glibc has this setting; elsewhere it does nothing. Returns what was done,
/// for the log.
pub fn set_mmap_threshold(kb: u32) -> Option<String> {
    if kb == 0 {
        return None;
    }
    if let Some(v) = std::env::var_os("MALLOC_MMAP_THRESHOLD_") {
        return Some(format!(
            "allocator: MALLOC_MMAP_THRESHOLD_={} from the environment (over [inference] malloc_mmap_threshold_kb = {kb})",
            v.to_string_lossy()
        ));
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let bytes = (kb as libc::c_int).saturating_mul(1024);
        // SAFETY: mallopt only changes the allocator's parameters; it is
        // called before the pipeline's threads start allocating.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) } == 1;
        Some(if ok {
            format!("allocator: buffers of {kb} KiB and more are mapped and returned when freed")
        } else {
            format!(
                "allocator: glibc refused an mmap threshold of {kb} KiB; its own threshold applies"
            )
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Largest `[inference] malloc_mmap_threshold_kb` (glibc's limit on 64-bit
/// machines, 32 MiB).
pub const MAX_MMAP_THRESHOLD_KB: u32 = 32 * 1024;

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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Whether glibc gave this allocation its own mapping: the IS_MMAPPED
    /// bit of the chunk header, the word before the pointer malloc returned.
    fn is_mmapped(p: *const u8) -> bool {
        // SAFETY: `p` is the start of a live malloc allocation (a Vec<u8>
        // from the system allocator), which glibc always precedes with its
        // chunk's size word.
        unsafe { *(p as *const usize).sub(1) & 2 != 0 }
    }

    #[test]
    fn with_a_threshold_large_buffers_are_mapped_even_after_a_larger_one_was_freed() {
        // glibc alone would raise its threshold to 8 MiB on this free and
        // serve the next 2 MiB buffer from a heap that keeps it.
        assert!(super::set_mmap_threshold(1024).is_some());
        drop(std::hint::black_box(vec![1u8; 8 << 20]));
        let big = std::hint::black_box(vec![1u8; 2 << 20]);
        assert!(
            is_mmapped(big.as_ptr()),
            "a 2 MiB buffer came from the heap"
        );
        let small = std::hint::black_box(vec![1u8; 256 << 10]);
        assert!(!is_mmapped(small.as_ptr()), "a 256 KiB buffer was mapped");
        assert_eq!(super::set_mmap_threshold(0), None);
    }
}
