//! Pointwise (1×1) convolutions as GEMM: y = A·T(x) + bias (+ residual). The data gradient
//! of a 1×1 conv is the same GEMM with Aᵀ.

use crate::gpu::{Dispatch, Gpu};

/// How the GEMM reads x.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InMode {
    /// x as stored
    Plain = 0,
    /// silu(x)·scale[k]: the projection's input, SE channel scale fused into the loads
    SiluScaled = 1,
}

pub struct GemmArgs<'a> {
    pub m: usize,
    pub k: usize,
    pub p: usize,
    pub a: &'a wgpu::Buffer, // (M, K4): the weights as laid out by `pack`
    pub x: &'a wgpu::Buffer, // (K, P)
    pub bias: Option<&'a wgpu::Buffer>, // (M)
    pub scale: Option<&'a wgpu::Buffer>, // (K), with InMode::SiluScaled
    pub res: Option<&'a wgpu::Buffer>, // (M, P)
    pub y: &'a wgpu::Buffer, // (M, P)
    pub mode: InMode,
}

/// Weights (M, K) row-major → the GEMM's layout (M, K4), each row zero-padded to
/// K4 = ceil(K/4)·4 so that the shader reads them as vec4s.
pub fn pack(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    assert_eq!(
        a.len(),
        m * k,
        "gemm::pack: {} values for a {m}×{k} matrix",
        a.len()
    );
    let k4 = k.div_ceil(4) * 4;
    if k4 == k {
        return a.to_vec();
    }
    let mut out = vec![0f32; m * k4];
    for (dst, src) in out.chunks_exact_mut(k4).zip(a.chunks_exact(k)) {
        dst[..k].copy_from_slice(src);
    }
    out
}

pub fn gemm(gpu: &Gpu, label: &str, g: &GemmArgs) -> Dispatch {
    let constants = [
        ("IN_MODE", g.mode as u32 as f64),
        ("HAS_BIAS", g.bias.is_some() as u32 as f64),
        ("HAS_RES", g.res.is_some() as u32 as f64),
    ];
    let mut d = gpu.dispatch(
        label,
        "gemm",
        "main",
        &constants,
        &[g.m as u32, g.k as u32, g.p as u32, 0],
        &[
            (1, Some(g.a)),
            (2, Some(g.x)),
            (3, g.bias),
            (4, g.scale),
            (5, g.res),
            (6, Some(g.y)),
        ],
        [(g.p as u32).div_ceil(64), (g.m as u32).div_ceil(64), 1],
    );
    d.flops = 2.0 * (g.m * g.k * g.p) as f64;
    d.bytes =
        4.0 * (g.m * g.k + g.k * g.p + g.m * g.p * if g.res.is_some() { 2 } else { 1 }) as f64;
    d
}

/// Plain-loop references.
pub mod cpu {
    use crate::ops::silu;

    /// y[m,p] = Σ_k a[m,k]·T(x[k,p]) + bias[m] + res[m,p]
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        a: &[f32],
        x: &[f32],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        res: Option<&[f32]>,
        m: usize,
        k: usize,
        p: usize,
    ) -> Vec<f32> {
        let mut y = vec![0f32; m * p];
        let mut xt = x.to_vec();
        if let Some(s) = scale {
            for kk in 0..k {
                for v in &mut xt[kk * p..(kk + 1) * p] {
                    *v = silu(*v) * s[kk];
                }
            }
        }
        for mm in 0..m {
            let row = &mut y[mm * p..(mm + 1) * p];
            for kk in 0..k {
                let w = a[mm * k + kk];
                let xr = &xt[kk * p..(kk + 1) * p];
                for (o, &xv) in row.iter_mut().zip(xr) {
                    *o += w * xv;
                }
            }
            let b = bias.map(|b| b[mm]).unwrap_or(0.0);
            for (i, o) in row.iter_mut().enumerate() {
                *o += b + res.map(|r| r[mm * p + i]).unwrap_or(0.0);
            }
        }
        y
    }

    /// Transpose (M, K) → (K, M).
    pub fn transpose(a: &[f32], m: usize, k: usize) -> Vec<f32> {
        let mut t = vec![0f32; a.len()];
        for i in 0..m {
            for j in 0..k {
                t[j * m + i] = a[i * k + j];
            }
        }
        t
    }
}
