//! Shared test helpers: one device for the whole binary, deterministic random tensors and
//! comparisons that print the max error on success and the position on failure.

use combicam_gpu::gpu::{Gpu, GpuBuf};
use combicam_gpu::ops::tolerance::{Tolerance, compare};
use std::sync::{Arc, OnceLock};

/// A new, empty folder under the temp dir, its own for this call: the tests of the one binary
/// run at once, and two that named the same folder once shared it (one's clean-up removed the
/// other's outputs while it ran, seen on a fast GPU)
pub fn fresh_dir(tag: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("combicam-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn gpu() -> &'static Gpu {
    shared_gpu()
}

/// The test binary's one device, for what keeps a handle on it (`Engine`).
pub fn shared_gpu() -> &'static Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(None) {
        Ok(g) => {
            eprintln!("adapter: {}", g.adapter.line());
            Arc::new(g)
        }
        Err(e) => panic!(
            "these tests need a GPU adapter and found none ({e}). On Linux without a GPU: \
             `apt-get install mesa-vulkan-drivers` (software Vulkan, lavapipe)"
        ),
    })
}

/// Uniform in [lo, hi), from a 64-bit LCG seeded by `seed`.
pub fn rand(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 40) as f32 / 16777216.0)
        })
        .collect()
}

pub fn up(data: &[f32]) -> GpuBuf {
    gpu().upload("test", data).unwrap()
}

pub fn zeros(n: usize) -> GpuBuf {
    gpu().zeros("test", n).unwrap()
}

pub fn read(b: &GpuBuf) -> Vec<f32> {
    gpu().read(b).unwrap()
}

/// Compare, print the outcome, panic with the mismatch report on failure. With
/// `COMBICAM_TOLERANCE_LOG=FILE`, also append `file:line name used max|diff|` for the caller:
/// the measurements written beside the tolerances.
#[track_caller]
pub fn check(name: &str, got: &[f32], want: &[f32], shape: &[usize], tol: Tolerance) -> f32 {
    let c = compare(name, got, want, shape, tol);
    if let Ok(path) = std::env::var("COMBICAM_TOLERANCE_LOG") {
        use std::io::Write;
        let at = std::panic::Location::caller();
        let line = format!(
            "{}:{}\t{name}\t{:e}\t{:e}\t{:e}\t{:e}\n",
            at.file(),
            at.line(),
            c.used,
            c.max_abs,
            tol.relative,
            tol.absolute
        );
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
    }
    println!("{}", c.report.lines().next().unwrap());
    assert!(c.ok(), "{}", c.report);
    c.max_abs
}

/// The first index where `a` and `b` differ in any bit (−0 against +0, NaN payloads
/// included), or `None` where they are the same bits over their common length.
pub fn first_bit_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}
