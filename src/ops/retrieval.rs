//! The retrieval head's kernels (shaders/retrieval.wgsl): a matrix-vector product with bias
//! (then ReLU or a residual add), LayerNorm and L2 normalisation of one vector.

use crate::gpu::{Dispatch, DispatchDesc, Gpu, pipelines::grid_1d, words};

crate::wgsl_params! {
    /// shaders/retrieval.wgsl's `Params`
    pub struct RetrievalParams for "retrieval" { n: u32, k: u32, eps: f32, _p0: u32 }
}

/// What follows the matrix-vector product.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum After {
    Nothing,
    Relu,
    /// + r[i]
    Residual,
}

pub struct LinearArgs<'a> {
    /// outputs (rows of w)
    pub n: usize,
    /// inputs
    pub k: usize,
    pub x: &'a wgpu::Buffer,
    /// (n, k) row-major
    pub w: &'a wgpu::Buffer,
    pub b: &'a wgpu::Buffer,
    /// (n), for `After::Residual`
    pub r: Option<&'a wgpu::Buffer>,
    pub out: &'a wgpu::Buffer,
}

/// out = w·x + b, then `after`.
pub fn linear(gpu: &Gpu, label: &str, after: After, a: &LinearArgs) -> Dispatch {
    let mode = match after {
        After::Nothing => 0,
        After::Relu => 1,
        After::Residual => 2,
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "retrieval",
        entry: "linear",
        constants: &[("MODE", mode as f64)],
        params: words(&RetrievalParams {
            n: a.n as u32,
            k: a.k as u32,
            ..Default::default()
        }),
        bindings: &[
            (1, Some(a.x)),
            (2, Some(a.w)),
            (3, Some(a.b)),
            (4, a.r),
            (5, Some(a.out)),
        ],
        groups: grid_1d(a.n as u32),
        ..Default::default()
    });
    d.flops = 2.0 * (a.n * a.k) as f64;
    d.bytes = 4.0 * (a.n * a.k + a.n + a.k) as f64;
    d
}

/// out = LayerNorm(x)·gain + shift over `k` values.
pub fn layernorm(
    gpu: &Gpu,
    label: &str,
    (k, eps): (usize, f32),
    x: &wgpu::Buffer,
    (gain, shift): (&wgpu::Buffer, &wgpu::Buffer),
    out: &wgpu::Buffer,
) -> Dispatch {
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "retrieval",
        entry: "layernorm",
        params: words(&RetrievalParams {
            k: k as u32,
            eps,
            ..Default::default()
        }),
        bindings: &[
            (1, Some(x)),
            (2, Some(gain)),
            (3, Some(shift)),
            (5, Some(out)),
        ],
        groups: [1, 1, 1],
        ..Default::default()
    });
    d.flops = 8.0 * k as f64;
    d.bytes = 16.0 * k as f64;
    d
}

/// out = x/max(‖x‖₂, 1e-12) over `k` values.
pub fn l2norm(gpu: &Gpu, label: &str, k: usize, x: &wgpu::Buffer, out: &wgpu::Buffer) -> Dispatch {
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "retrieval",
        entry: "l2norm",
        params: words(&RetrievalParams {
            k: k as u32,
            ..Default::default()
        }),
        bindings: &[(1, Some(x)), (5, Some(out))],
        groups: [1, 1, 1],
        ..Default::default()
    });
    d.flops = 3.0 * k as f64;
    d.bytes = 8.0 * k as f64;
    d
}

/// The plain-loop references (sums in f64).
pub mod cpu {
    use super::After;

    pub fn linear(
        after: After,
        w: &[f32],
        b: &[f32],
        x: &[f32],
        r: Option<&[f32]>,
        n: usize,
        k: usize,
    ) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let s: f64 = (0..k).map(|j| w[i * k + j] as f64 * x[j] as f64).sum();
                let v = (s + b[i] as f64) as f32;
                match after {
                    After::Nothing => v,
                    After::Relu => v.max(0.0),
                    After::Residual => v + r.expect("a residual")[i],
                }
            })
            .collect()
    }

    pub fn layernorm(x: &[f32], gain: &[f32], shift: &[f32], eps: f32) -> Vec<f32> {
        let k = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / k;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / k;
        let inv = 1.0 / (var + eps as f64).sqrt();
        x.iter()
            .zip(gain.iter().zip(shift))
            .map(|(&v, (&g, &s))| ((v as f64 - mean) * inv * g as f64 + s as f64) as f32)
            .collect()
    }

    pub fn l2norm(x: &[f32]) -> Vec<f32> {
        let n = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        x.iter()
            .map(|&v| (v as f64 / n.max(1e-12)) as f32)
            .collect()
    }
}
