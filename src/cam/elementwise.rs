//! CAM methods that weight every element of a block output by its own gradient:
//! HiResCAM, Grad-CAM element-wise, LayerCAM and the official repository's LayerCAM
//! (shaders/cam_elementwise.wgsl).
//! GPU launcher and CPU reference side by side.

use super::methods::{ImageStrides, Method};
use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d},
    words,
};
use crate::ops::reduce::{self, Reduce, RowsArgs};

crate::wgsl_params! {
    /// shaders/cam_elementwise.wgsl's `Params`
    pub struct CamElementwiseParams for "cam_elementwise" { c: u32, hw: u32, map_off: u32, gmax_off: u32, mstride: u32 }
}

pub struct ElementwiseArgs<'a> {
    pub c: usize,
    pub hw: usize,
    /// the block output A: (C, HW)
    pub blk: &'a wgpu::Buffer,
    /// ∂score/∂A: (C, HW)
    pub grad: &'a wgpu::Buffer,
    /// max g over the block at `gmax_off` (LayerCamOfficial; `reduce::rows` Max makes it)
    pub gmax: &'a wgpu::Buffer,
    pub gmax_off: usize,
    /// maps, written at `map_off`
    pub maps: &'a wgpu::Buffer,
    pub map_off: usize,
    /// a batch's images apart in `maps` (image z's block maximum: gmax[gmax_off + z])
    pub strides: ImageStrides,
}

fn code(m: Method) -> u32 {
    match m {
        Method::HiResCam => 0,
        Method::LayerCam => 1,
        Method::LayerCamOfficial => 2,
        Method::GradCamElementwise => 3,
        other => panic!("{other:?} is not an element-wise method"),
    }
}

/// maps[map_off + p] = max(0, Σ_k f(g[k, p])·A[k, p]) (see the shader)
pub fn map(gpu: &Gpu, label: &str, method: Method, a: &ElementwiseArgs) -> Dispatch {
    let params = CamElementwiseParams {
        c: a.c as u32,
        hw: a.hw as u32,
        map_off: a.map_off as u32,
        gmax_off: a.gmax_off as u32,
        mstride: a.strides.maps as u32,
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_elementwise")),
        entry: "map",
        constants: &[("METHOD", code(method) as f64)],
        params: words(&params),
        bindings: &[
            (1, Some(a.blk)),
            (2, Some(a.grad)),
            (3, Some(a.gmax)),
            (4, Some(a.maps)),
        ],
        groups: grid_1d((a.hw.div_ceil(4) as u32).div_ceil(64)),
        ..Default::default()
    });
    d.flops = 3.0 * (a.c * a.hw) as f64;
    d.bytes = 4.0 * (2 * a.c * a.hw + a.hw) as f64;
    d
}

/// max g over the block, into gmax[gmax_off] (the official LayerCAM's scale).
pub fn gmax(gpu: &Gpu, label: &str, a: &ElementwiseArgs) -> Dispatch {
    reduce::rows(
        gpu,
        label,
        Reduce::Max,
        &RowsArgs {
            rows: 1,
            len: a.c * a.hw,
            in_off: 0,
            out_off: a.gmax_off,
            x: a.grad,
            y: None,
            out: a.gmax,
        },
    )
}

/// The method's map at one block; the official LayerCAM first takes the block's max
/// gradient. `label(what)` names each dispatch.
pub fn record(
    gpu: &Gpu,
    label: &dyn Fn(&str) -> String,
    method: Method,
    a: &ElementwiseArgs,
    d: &mut Vec<Dispatch>,
) {
    if method == Method::LayerCamOfficial {
        d.push(gmax(gpu, &label("gmax"), a));
    }
    d.push(map(gpu, &label("map"), method, a));
}

pub mod cpu {
    use super::Method;

    pub fn map(method: Method, a: &[f32], g: &[f32], c: usize, hw: usize) -> Vec<f32> {
        let gmax = g.iter().fold(f32::MIN, |m, &v| m.max(v)).max(0.0);
        let scale = 1.0 / (gmax + 1e-8);
        let term = |g: f32, a: f32| match method {
            Method::HiResCam => g * a,
            Method::LayerCam => g.max(0.0) * a,
            Method::LayerCamOfficial => g.max(0.0) * scale * a,
            Method::GradCamElementwise => (g * a).max(0.0),
            other => panic!("{other:?} is not an element-wise method"),
        };
        (0..hw)
            .map(|p| {
                (0..c)
                    .map(|k| term(g[k * hw + p], a[k * hw + p]))
                    .sum::<f32>()
                    .max(0.0)
            })
            .collect()
    }
}
