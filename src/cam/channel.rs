//! CAM methods that give each channel of a block output one weight from its gradient:
//! Grad-CAM, Grad-CAM++, XGrad-CAM (shaders/cam_channel.wgsl), and the weighted channel sum
//! they share. GPU launchers and the CPU reference side by side.

use super::methods::Method;
use crate::gpu::{
    Dispatch, Gpu,
    pipelines::{Source, grid_1d},
};

/// A block output A (C, HW) and its gradient g, and where results go.
pub struct ChannelArgs<'a> {
    pub c: usize,
    pub hw: usize,
    /// the block output A: (C, HW)
    pub blk: &'a wgpu::Buffer,
    /// ∂score/∂A: (C, HW)
    pub grad: &'a wgpu::Buffer,
    /// channel weights, written at `w_off`
    pub w: &'a wgpu::Buffer,
    pub w_off: usize,
    /// maps, written at `map_off`
    pub maps: &'a wgpu::Buffer,
    pub map_off: usize,
    /// the head's Hessian-vector product h (C, HW): GradCamPPOfficial only
    pub hvp: Option<&'a wgpu::Buffer>,
}

fn code(m: Method) -> u32 {
    match m {
        Method::GradCam => 0,
        Method::GradCamPP => 1,
        Method::XGradCam => 2,
        Method::GradCamPPOfficial => 3,
        other => panic!("{other:?} is not a channel-weight method"),
    }
}

fn params(a: &ChannelArgs) -> [u32; 4] {
    [a.c, a.hw, a.map_off, a.w_off].map(|v| v as u32)
}

/// w[w_off + k] for every channel k, by `method` (see the shader).
pub fn channel_weights(gpu: &Gpu, label: &str, method: Method, a: &ChannelArgs) -> Dispatch {
    let mut d = gpu.dispatch_from(
        label,
        "cam",
        Source::Table("cam_channel"),
        "channel_weights",
        &[("METHOD", code(method) as f64)],
        &params(a),
        &[
            (1, Some(a.blk)),
            (2, Some(a.grad)),
            (3, Some(a.w)),
            (5, a.hvp),
        ],
        &[],
        grid_1d((a.c as u32).div_ceil(8)),
    );
    d.flops = 4.0 * (a.c * a.hw) as f64;
    d.bytes = 8.0 * (a.c * a.hw) as f64;
    d
}

/// maps[map_off + p] = max(0, Σ_k w[w_off + k]·A[k, p])
pub fn weighted_map(gpu: &Gpu, label: &str, a: &ChannelArgs) -> Dispatch {
    let mut d = gpu.dispatch_from(
        label,
        "cam",
        Source::Table("cam_channel"),
        "weighted_map",
        &[],
        &params(a),
        &[(1, Some(a.blk)), (3, Some(a.w)), (4, Some(a.maps))],
        &[],
        grid_1d((a.hw.div_ceil(8) as u32).div_ceil(64)),
    );
    d.flops = 2.0 * (a.c * a.hw) as f64;
    d.bytes = 4.0 * (a.c * a.hw + a.hw) as f64;
    d
}

pub mod cpu {
    use super::Method;

    /// One weight per channel of A (C, HW) from g (C, HW).
    pub fn channel_weights(method: Method, a: &[f32], g: &[f32], c: usize, hw: usize) -> Vec<f32> {
        (0..c)
            .map(|k| {
                let (ak, gk) = (&a[k * hw..(k + 1) * hw], &g[k * hw..(k + 1) * hw]);
                let sum_a: f32 = ak.iter().sum();
                match method {
                    Method::GradCam => gk.iter().sum::<f32>() / hw as f32,
                    Method::XGradCam => {
                        gk.iter().zip(ak).map(|(g, a)| g * a).sum::<f32>() / (sum_a + 1e-7)
                    }
                    Method::GradCamPP => gk
                        .iter()
                        .map(|&g| {
                            let g2 = g * g;
                            let aij = if g != 0.0 {
                                g2 / (2.0 * g2 + sum_a * g2 * g + 1e-6)
                            } else {
                                0.0
                            };
                            g.max(0.0) * aij
                        })
                        .sum(),
                    other => panic!("{other:?} is not a channel-weight method"),
                }
            })
            .collect()
    }

    /// The official Grad-CAM++'s weights: Σ g²/(2g² + h·g + 1e-10)·ReLU(g) per channel.
    pub fn official_weights(g: &[f32], h: &[f32], c: usize, hw: usize) -> Vec<f32> {
        (0..c)
            .map(|k| {
                (k * hw..(k + 1) * hw)
                    .map(|i| {
                        let g2 = g[i] * g[i];
                        g2 / (2.0 * g2 + h[i] * g[i] + 1e-10) * g[i].max(0.0)
                    })
                    .sum()
            })
            .collect()
    }

    /// max(0, Σ_k w_k·A[k, p])
    pub fn weighted_map(w: &[f32], a: &[f32], c: usize, hw: usize) -> Vec<f32> {
        (0..hw)
            .map(|p| (0..c).map(|k| w[k] * a[k * hw + p]).sum::<f32>().max(0.0))
            .collect()
    }
}
