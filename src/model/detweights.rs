//! Deterministic test weights: a counter-based hash of (tensor name, element index), the
//! same formula as tests/golden/detweights.py, so PyTorch and we build identical networks
//! without shipping weight files.

/// FNV-1a, 64 bits.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1), exact multiples of 2⁻²⁴.
pub fn unit(name_hash: u64, i: u64) -> f64 {
    (splitmix64(name_hash ^ i) >> 40) as f64 / 16777216.0
}

fn is_bn(name: &str) -> bool {
    let module = name.rsplit('.').nth(1).unwrap_or("");
    module.starts_with("_bn") || module == "bn1" || module == "bn2" || module == "bn3"
}

/// (lo, hi) for element `i` of tensor `name` with `shape`.
pub fn range(name: &str, shape: &[usize], i: usize) -> (f64, f64) {
    if name.ends_with(".running_mean") {
        (-0.1, 0.1)
    } else if name.ends_with(".running_var") || (is_bn(name) && name.ends_with(".weight")) {
        (0.5, 1.5)
    } else if is_bn(name) && name.ends_with(".bias") {
        (-0.2, 0.2)
    } else if shape.len() == 4 {
        let a = (3.0 / (shape[1] * shape[2] * shape[3]) as f64).sqrt();
        (-a, a)
    } else if shape.len() == 2 && name.ends_with(".weight") {
        let a = 4.0 * (3.0 / shape[1] as f64).sqrt();
        (-a, a)
    } else if name.ends_with("mvmf.mus") {
        if i < shape[1] {
            (-90.0, 90.0)
        } else {
            (-180.0, 180.0)
        }
    } else if name.ends_with("mvmf.kappas") {
        (10.0, 1000.0)
    } else {
        (-0.1, 0.1)
    }
}

pub fn tensor_f64(name: &str, shape: &[usize]) -> Vec<f64> {
    let h = fnv1a64(name);
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            let (lo, hi) = range(name, shape, i);
            lo + (hi - lo) * unit(h, i as u64)
        })
        .collect()
}

pub fn tensor(name: &str, shape: &[usize]) -> Vec<f32> {
    let h = fnv1a64(name);
    let n: usize = shape.iter().product();
    if n > 1 << 20 {
        // large head matrices: same values, computed in parallel chunks
        let (lo, hi) = range(name, shape, 0);
        let mut out = vec![0f32; n];
        let threads = crate::gpu::workers::cores(usize::MAX);
        let chunk = n.div_ceil(threads);
        let parts = std::sync::Mutex::new(out.chunks_mut(chunk).enumerate().collect::<Vec<_>>());
        crate::gpu::workers::run(threads, || {
            while let Some((t, part)) = parts.lock().unwrap().pop() {
                for (j, v) in part.iter_mut().enumerate() {
                    *v = (lo + (hi - lo) * unit(h, (t * chunk + j) as u64)) as f32;
                }
            }
        });
        drop(parts);
        return out;
    }
    tensor_f64(name, shape)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// The input image used by the golden files: u("input", i) mapped to (−2, 2).
pub fn input(h: usize, w: usize) -> Vec<f32> {
    let hs = fnv1a64("input");
    (0..3 * h * w)
        .map(|i| (-2.0 + 4.0 * unit(hs, i as u64)) as f32)
        .collect()
}
