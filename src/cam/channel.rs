//! CAM methods that give each channel of a block output one weight: Grad-CAM, Grad-CAM++,
//! XGrad-CAM, the official Grad-CAM++ (from the gradient) and FEM (from the activations
//! alone) (shaders/cam_channel.wgsl), and the weighted channel sum they share. GPU launchers
//! and the CPU reference side by side.

use super::methods::{ImageStrides, Method};
use crate::gpu::{
    Dispatch, DispatchDesc, Gpu, GpuBuf,
    pipelines::{Source, grid_1d},
    words,
};

crate::wgsl_params! {
    /// shaders/cam_channel.wgsl's `Params`
    pub struct CamChannelParams for "cam_channel" {
        c: u32, hw: u32, map_off: u32, w_off: u32, lanes: u32, wstride: u32, mstride: u32, nb: u32,
    }
}

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
    /// a batch's images apart in `w` and `maps`
    pub strides: ImageStrides,
}

fn code(m: Method) -> u32 {
    match m {
        Method::GradCam | Method::FinerCam => 0,
        Method::GradCamPP => 1,
        Method::XGradCam => 2,
        Method::GradCamPPOfficial => 3,
        Method::Fem => 4,
        Method::ShapleyCam => 5,
        other => panic!("{other:?} is not a channel-weight method"),
    }
}

/// Whether `m`'s channel weights are the gradient's channel means (Grad-CAM's, FinerCAM's):
/// those `from_parts` gives from the gradient's partials.
pub fn is_gradient_mean(m: Method) -> bool {
    m.family() == super::methods::Family::Channel && code(m) == 0
}

/// Passes over a channel's positions `channel_weights` makes for `m`.
fn passes(m: Method) -> usize {
    match code(m) {
        0 | 2 | 5 => 1,
        1 | 3 => 2,
        _ => 3,
    }
}

/// With the GPU-shaped kernels, blocks of this many positions or more get 64 lanes a channel in
/// `channel_weights`, and blocks of at most this many 32 lanes a position in `weighted_map`.
const GPU_SMALL_BLOCK: usize = 4096;
/// …and from this many, a workgroup a channel (`lanes`).
const GPU_LARGE_BLOCK: usize = 8192;

/// Invocations per channel in `channel_weights`: 8, or 64 where 8 would each take more loop
/// turns than lavapipe allows an invocation (65,535 in all, past which it ends the loops
/// silently): FEM's three passes over a block of 174,000 positions would. With the GPU-shaped
/// kernels, 64 from `GPU_SMALL_BLOCK` positions on: B4's block 0 at 300×450 has 24 channels
/// of 33,750 positions, which 8 lanes a channel left to 192 invocations (1.8 ms on an H200).
/// From `GPU_LARGE_BLOCK` positions on, `wide` lanes (`Gpu::wide_workgroup`: 1,024 on most
/// GPUs), one channel a workgroup: 64 lanes had each walk 527 positions of that block 0
/// (0.21 ms on an H200).
pub fn lanes(m: Method, hw: usize, gpu_shaped: bool, wide: usize) -> usize {
    const TURNS: usize = 60_000;
    if gpu_shaped && hw >= GPU_LARGE_BLOCK {
        wide.max(64)
    } else if gpu_shaped && hw >= GPU_SMALL_BLOCK {
        64
    } else if passes(m) * hw.div_ceil(8) + 4 * 8 <= TURNS {
        8
    } else {
        64
    }
}

fn params(a: &ChannelArgs, lanes: usize) -> CamChannelParams {
    CamChannelParams {
        c: a.c as u32,
        hw: a.hw as u32,
        map_off: a.map_off as u32,
        w_off: a.w_off as u32,
        lanes: lanes as u32,
        wstride: a.strides.weights as u32,
        mstride: a.strides.maps as u32,
        nb: a.strides.blocks as u32,
    }
}

/// w[w_off + k] for every channel k, by `method` (see the shader).
pub fn channel_weights(gpu: &Gpu, label: &str, method: Method, a: &ChannelArgs) -> Dispatch {
    let wide = gpu.wide_workgroup() as usize;
    let lanes = lanes(method, a.hw, !gpu.is_cpu(), wide);
    // invocations a workgroup: 64, or one channel's lanes where they are more
    let wg = lanes.max(64);
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_channel")),
        entry: "channel_weights",
        constants: &[("METHOD", code(method) as f64), ("CW_WG", wg as f64)],
        params: words(&params(a, lanes)),
        bindings: &[
            (1, Some(a.blk)),
            (2, Some(a.grad)),
            (3, Some(a.w)),
            (5, a.hvp),
        ],
        groups: grid_1d((a.c as u32).div_ceil((wg / lanes) as u32)),
        ..Default::default()
    });
    d.flops = 4.0 * (a.c * a.hw) as f64;
    d.bytes = 8.0 * (a.c * a.hw) as f64;
    d
}

/// maps[map_off + p] = max(0, Σ_k w[w_off + k]·A[k, p])
pub fn weighted_map(gpu: &Gpu, label: &str, a: &ChannelArgs) -> Dispatch {
    // GPUs, small blocks: 32 lanes a position over the channels; else 8 positions an invocation
    let lanes = !gpu.is_cpu() && a.hw <= GPU_SMALL_BLOCK;
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_channel")),
        entry: if lanes {
            "weighted_map_lanes"
        } else {
            "weighted_map"
        },
        params: words(&params(a, 8)),
        bindings: &[(1, Some(a.blk)), (3, Some(a.w)), (4, Some(a.maps))],
        groups: grid_1d(if lanes {
            (a.hw as u32).div_ceil(8)
        } else {
            (a.hw.div_ceil(8) as u32).div_ceil(64)
        }),
        ..Default::default()
    });
    d.flops = 2.0 * (a.c * a.hw) as f64;
    d.bytes = 4.0 * (a.c * a.hw + a.hw) as f64;
    d
}

/// Row partials of every block's output A (max |A|, from the forward's projection GEMMs)
/// and of the gradients g the backward's GEMMs make (Σ g), in two buffers of one layout
/// (`PartsLayout`): what `from_parts` reads.
pub struct BlockParts {
    pub act: GpuBuf,
    pub grad: GpuBuf,
    pub layout: PartsLayout,
    /// whether the backward wrote block l's rows of `grad` (its gradient came from a GEMM)
    pub has_grad: Vec<bool>,
}

/// Block l's C_l rows of `parts[l]` partials each start at `offs[l]`; `total` floats in all.
#[derive(Clone, Debug)]
pub struct PartsLayout {
    pub offs: Vec<usize>,
    pub parts: Vec<usize>,
    pub total: usize,
}

impl PartsLayout {
    /// For blocks of `channels[l]` channels of `hw[l]` positions, a row of P positions
    /// holding `parts_of(P)` partials.
    pub fn new(channels: &[usize], hw: &[usize], parts_of: &dyn Fn(usize) -> usize) -> Self {
        let (mut offs, mut parts, mut total) = (vec![], vec![], 0);
        for (&c, &n) in channels.iter().zip(hw) {
            offs.push(total);
            parts.push(parts_of(n));
            total += c * parts_of(n);
        }
        PartsLayout { offs, parts, total }
    }
}

/// What `from_parts` writes for the blocks of `table` (one row per block: block l, C, HW,
/// whether it takes Grad-CAM weights from its gradient's partials, and where they go).
pub struct FromPartsArgs<'a> {
    pub parts: &'a BlockParts,
    /// (l, C, HW, Grad-CAM weights at this offset of `w`)
    pub blocks: &'a [(usize, usize, usize, Option<usize>)],
    pub w: &'a wgpu::Buffer,
    /// max |A_l| per block, written at l
    pub amax: &'a wgpu::Buffer,
    /// a batch's images apart in `w` and `amax` (the partials' rows: C an image in each
    /// block's, as the GEMMs write them)
    pub strides: ImageStrides,
}

/// Every listed block's max |A| and, where asked, its Grad-CAM channel weights, in one
/// dispatch from the partials the GEMMs wrote (see the shader).
pub fn from_parts(gpu: &Gpu, label: &str, a: &FromPartsArgs) -> crate::error::Result<Dispatch> {
    let lay = &a.parts.layout;
    let wg = gpu.wide_workgroup() as usize;
    let mut table = Vec::new();
    let mut floats = 0;
    for &(l, c, hw, w_off) in a.blocks {
        assert!(
            w_off.is_none() || a.parts.has_grad[l],
            "{label}: block {l}'s gradient has no partials"
        );
        let row = [l, c, hw, lay.parts[l], lay.offs[l], w_off.unwrap_or(0)];
        table.extend(row.map(|v| v as u32));
        // invocations per channel: the largest power of two, up to 32 (its first lane adds
        // them up in turn), that the workgroup spreads over C channels
        let lanes = (wg / c.max(1)).clamp(1, 32).ilog2();
        table.extend([w_off.is_some() as u32, 1 << lanes]);
        floats += c * lay.parts[l] * (1 + w_off.is_some() as usize);
    }
    let table = gpu.upload_u32(&format!("{label}.table"), &table)?;
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_channel")),
        entry: "from_parts",
        constants: &[("FP_WG", wg as f64)],
        params: words(&CamChannelParams {
            c: a.blocks.len() as u32,
            hw: 0,
            map_off: 0,
            w_off: 0,
            lanes: 0,
            wstride: a.strides.weights as u32,
            mstride: 0,
            nb: a.strides.blocks as u32,
        }),
        bindings: &[
            (3, Some(a.w)),
            (7, Some(&table.buf)),
            (8, Some(&a.parts.grad.buf)),
            (9, Some(&a.parts.act.buf)),
            (10, Some(a.amax)),
        ],
        groups: [a.blocks.len() as u32, 1, 1],
        ..Default::default()
    });
    d.flops = floats as f64;
    d.bytes = 4.0 * floats as f64;
    Ok(d)
}

pub mod cpu {
    use super::Method;

    /// `from_parts` for one block: (max over the A partials, Σ of each channel's g
    /// partials / HW), rows of `parts` partials per channel.
    pub fn from_parts(aparts: &[f32], gparts: &[f32], parts: usize, hw: usize) -> (f32, Vec<f32>) {
        let amax = aparts.iter().fold(0f32, |m, &v| m.max(v));
        let w = gparts
            .chunks(parts)
            .map(|r| r.iter().sum::<f32>() / hw as f32)
            .collect();
        (amax, w)
    }

    /// The method's map at one block: A (C, HW), g (C, HW); `hvp` (C, HW), the head's
    /// Hessian-vector product along the method's direction (the official Grad-CAM++,
    /// ShapleyCAM).
    pub fn map(
        method: Method,
        a: &[f32],
        g: &[f32],
        hvp: Option<&[f32]>,
        c: usize,
        hw: usize,
    ) -> Vec<f32> {
        weighted_map(&weights(method, a, g, hvp, c, hw), a, c, hw)
    }

    /// The method's channel weights (`hvp` for the methods from the head's Hessian-vector
    /// product).
    pub fn weights(
        method: Method,
        a: &[f32],
        g: &[f32],
        hvp: Option<&[f32]>,
        c: usize,
        hw: usize,
    ) -> Vec<f32> {
        match method {
            Method::GradCamPPOfficial => {
                let h = hvp.expect("the official Grad-CAM++ needs the head's HVP");
                official_weights(g, h, c, hw)
            }
            Method::ShapleyCam => {
                let h = hvp.expect("ShapleyCAM needs the head's HVP");
                let d: Vec<f32> = g.iter().zip(h).map(|(g, h)| g - 0.5 * h).collect();
                channel_weights(Method::GradCam, a, &d, c, hw)
            }
            _ => channel_weights(method, a, g, c, hw),
        }
    }

    /// One weight per channel of A (C, HW) from g (C, HW) (FEM: from A alone).
    pub fn channel_weights(method: Method, a: &[f32], g: &[f32], c: usize, hw: usize) -> Vec<f32> {
        (0..c)
            .map(|k| {
                let (ak, gk) = (&a[k * hw..(k + 1) * hw], &g[k * hw..(k + 1) * hw]);
                let sum_a: f32 = ak.iter().sum();
                match method {
                    Method::GradCam | Method::FinerCam => gk.iter().sum::<f32>() / hw as f32,
                    Method::XGradCam => {
                        gk.iter().zip(ak).map(|(g, a)| g * a).sum::<f32>() / (sum_a + 1e-7)
                    }
                    Method::Fem => {
                        let n = hw as f32;
                        let mean = sum_a / n;
                        let var = ak.iter().map(|&a| (a - mean) * (a - mean)).sum::<f32>() / n;
                        let th = mean + 2.0 * var.sqrt();
                        ak.iter().filter(|&&a| a > th).count() as f32 / n
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
