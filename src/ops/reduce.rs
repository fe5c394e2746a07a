//! Row reductions (one workgroup per row): the head's global pool, and row statistics
//! (mean, max |x|, max, min, Σ x·act(y), mean act'(x)); and the gradient of the global
//! average pool of the activation.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{grid_1d, grid_items},
    words,
};
use crate::ops::Act;

crate::wgsl_params! {
    /// shaders/reduce.wgsl's `Params`
    pub struct ReduceParams for "reduce" {
        rows: u32, len: u32, in_off: u32, out_off: u32, inv_len: f32, _p0: u32, _p1: u32, _p2: u32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Mean,
    /// mean act(x)
    MeanAct(Act),
    /// Σ x·act(y)
    DotAct(Act),
    MaxAbs,
    Max,
    Min,
    /// mean act'(x)
    MeanDAct(Act),
}

impl Reduce {
    /// The shader's MODE and the activation its modes 1 and 2 use.
    fn constants(self) -> [(&'static str, f64); 2] {
        let (mode, act) = match self {
            Reduce::Mean => (0, Act::Silu),
            Reduce::MeanAct(a) => (1, a),
            Reduce::DotAct(a) => (2, a),
            Reduce::MaxAbs => (3, Act::Silu),
            Reduce::Max => (4, Act::Silu),
            Reduce::Min => (5, Act::Silu),
            Reduce::MeanDAct(a) => (6, a),
        };
        [("MODE", mode as f64), act.constant()]
    }
}

pub struct RowsArgs<'a> {
    pub rows: usize,
    pub len: usize,
    pub in_off: usize,
    pub out_off: usize,
    pub x: &'a wgpu::Buffer,
    pub y: Option<&'a wgpu::Buffer>,
    pub out: &'a wgpu::Buffer,
}

pub fn rows(gpu: &Gpu, label: &str, mode: Reduce, a: &RowsArgs) -> Dispatch {
    rows_scaled(gpu, label, mode, a, 1.0 / a.len.max(1) as f32)
}

/// `rows`, with the means (Mean, MeanAct) taken as sum·`scale` instead of sum/len: a mean
/// over more elements than the row holds, e.g. over the partial sums of a pool.
pub fn rows_scaled(gpu: &Gpu, label: &str, mode: Reduce, a: &RowsArgs, scale: f32) -> Dispatch {
    let params = ReduceParams {
        rows: a.rows as u32,
        len: a.len as u32,
        in_off: a.in_off as u32,
        out_off: a.out_off as u32,
        inv_len: scale,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "reduce",
        entry: "rows",
        constants: &mode.constants(),
        params: words(&params),
        bindings: &[(1, Some(a.x)), (2, a.y), (3, Some(a.out))],
        groups: grid_1d((a.rows as u32).div_ceil(8)),
        ..Default::default()
    });
    d.flops = (a.rows * a.len) as f64
        * if matches!(mode, Reduce::DotAct(_)) {
            2.0
        } else {
            1.0
        };
    d.bytes = 4.0 * (a.rows * a.len * if a.y.is_some() { 2 } else { 1 } + a.rows) as f64;
    d
}

/// out[r, i] = g[r]/len·act'(z[r, i]): the gradient of the global pool of act(z)
pub struct PoolBackward<'a> {
    pub act: Act,
    pub rows: usize,
    pub len: usize,
    /// (rows, len) the pooled pre-activation
    pub z: &'a wgpu::Buffer,
    /// (rows) ∂/∂pooled
    pub g: &'a wgpu::Buffer,
    /// (rows, len), written
    pub out: &'a wgpu::Buffer,
}

pub fn pool_backward(gpu: &Gpu, label: &str, a: &PoolBackward) -> Dispatch {
    let (act, rows, len, z, g, out) = (a.act, a.rows, a.len, a.z, a.g, a.out);
    let params = ReduceParams {
        rows: rows as u32,
        len: len as u32,
        inv_len: 1.0 / len as f32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "reduce",
        entry: "pool_backward",
        constants: &[act.constant()],
        params: words(&params),
        bindings: &[(1, Some(z)), (2, Some(g)), (3, Some(out))],
        groups: grid_items(rows * len),
        ..Default::default()
    });
    d.flops = 4.0 * (rows * len) as f64;
    d.bytes = 8.0 * (rows * len) as f64;
    d
}

pub mod cpu {
    use super::Reduce;
    use crate::ops::Act;

    pub fn rows(mode: Reduce, x: &[f32], y: Option<&[f32]>, rows: usize, len: usize) -> Vec<f32> {
        (0..rows)
            .map(|r| {
                let xs = &x[r * len..(r + 1) * len];
                match mode {
                    Reduce::Mean => xs.iter().sum::<f32>() / len as f32,
                    Reduce::MeanAct(a) => xs.iter().map(|&v| a.apply(v)).sum::<f32>() / len as f32,
                    Reduce::DotAct(a) => {
                        let ys = &y.unwrap()[r * len..(r + 1) * len];
                        xs.iter().zip(ys).map(|(&v, &w)| v * a.apply(w)).sum()
                    }
                    Reduce::MaxAbs => xs.iter().fold(f32::MIN, |a, v| a.max(v.abs())),
                    Reduce::Max => xs.iter().fold(f32::MIN, |a, &v| a.max(v)),
                    Reduce::Min => xs.iter().fold(f32::MAX, |a, &v| a.min(v)),
                    Reduce::MeanDAct(a) => xs.iter().map(|&v| a.grad(v)).sum::<f32>() / len as f32,
                }
            })
            .collect()
    }

    pub fn pool_backward(act: Act, z: &[f32], g: &[f32], rows: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows * len];
        for r in 0..rows {
            for i in 0..len {
                out[r * len + i] = g[r] / len as f32 * act.grad(z[r * len + i]);
            }
        }
        out
    }
}
