//! Row reductions (one workgroup per row): pools, Grad-CAM channel weights, the SE gradient
//! and statistics; and the gradient of the global average pool of silu.

use crate::gpu::{
    Dispatch, Gpu,
    pipelines::{fbits, grid_1d, grid_items},
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Mean = 0,
    MeanSilu = 1,
    /// Σ x·silu(y)
    DotSilu = 2,
    MaxAbs = 3,
    Max = 4,
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

/// `rows`, with the means (Mean, MeanSilu) taken as sum·`scale` instead of sum/len: a mean
/// over more elements than the row holds, e.g. over the partial sums of a pool.
pub fn rows_scaled(gpu: &Gpu, label: &str, mode: Reduce, a: &RowsArgs, scale: f32) -> Dispatch {
    let params = [
        a.rows as u32,
        a.len as u32,
        a.in_off as u32,
        a.out_off as u32,
        fbits(scale),
        0,
        0,
        0,
    ];
    let mut d = gpu.dispatch(
        label,
        "reduce",
        "rows",
        &[("MODE", mode as u32 as f64)],
        &params,
        &[(1, Some(a.x)), (2, a.y), (3, Some(a.out))],
        grid_1d((a.rows as u32).div_ceil(8)),
    );
    d.flops = (a.rows * a.len) as f64 * if mode == Reduce::DotSilu { 2.0 } else { 1.0 };
    d.bytes = 4.0 * (a.rows * a.len * if a.y.is_some() { 2 } else { 1 } + a.rows) as f64;
    d
}

/// out[r, i] = g[r]/len·silu'(z[r, i])
pub fn pool_backward(
    gpu: &Gpu,
    label: &str,
    rows: usize,
    len: usize,
    z: &wgpu::Buffer,
    g: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Dispatch {
    let params = [
        rows as u32,
        len as u32,
        0,
        0,
        fbits(1.0 / len as f32),
        0,
        0,
        0,
    ];
    let mut d = gpu.dispatch(
        label,
        "reduce",
        "pool_backward",
        &[],
        &params,
        &[(1, Some(z)), (2, Some(g)), (3, Some(out))],
        grid_items(rows * len),
    );
    d.flops = 4.0 * (rows * len) as f64;
    d.bytes = 8.0 * (rows * len) as f64;
    d
}

pub mod cpu {
    use super::Reduce;
    use crate::ops::{dsilu, silu};

    pub fn rows(mode: Reduce, x: &[f32], y: Option<&[f32]>, rows: usize, len: usize) -> Vec<f32> {
        (0..rows)
            .map(|r| {
                let xs = &x[r * len..(r + 1) * len];
                match mode {
                    Reduce::Mean => xs.iter().sum::<f32>() / len as f32,
                    Reduce::MeanSilu => xs.iter().map(|&v| silu(v)).sum::<f32>() / len as f32,
                    Reduce::DotSilu => {
                        let ys = &y.unwrap()[r * len..(r + 1) * len];
                        xs.iter().zip(ys).map(|(&a, &b)| a * silu(b)).sum()
                    }
                    Reduce::MaxAbs => xs.iter().fold(f32::MIN, |a, v| a.max(v.abs())),
                    Reduce::Max => xs.iter().fold(f32::MIN, |a, &v| a.max(v)),
                }
            })
            .collect()
    }

    pub fn pool_backward(z: &[f32], g: &[f32], rows: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows * len];
        for r in 0..rows {
            for i in 0..len {
                out[r * len + i] = g[r] / len as f32 * dsilu(z[r * len + i]);
            }
        }
        out
    }
}
