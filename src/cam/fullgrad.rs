//! FullGrad (pytorch-grad-cam's): the terms |b ⊙ ∂y/∂z| at every BN-folded conv output z
//! and |x ⊙ ∂y/∂x| at the input, each channel min-max normalised and the channels summed
//! (shaders/cam_fullgrad.wgsl). The backward records a term where its gradient is made
//! (`model::plan`); the CAM phase fuses the sums. GPU launcher and CPU reference side by side.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d, grid_items},
    words,
};
use crate::ops::Act;

crate::wgsl_params! {
    /// shaders/cam_fullgrad.wgsl's `Params`
    pub struct CamFullgradParams for "cam_fullgrad" { c: u32, hw: u32, map_off: u32, mstride: u32, mmstride: u32, _p0: u32, _p1: u32, _p2: u32 }
}

/// How a term reads ∂y/∂z from the gradient the backward holds (the shader's `MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// g is ∂y/∂z (a projection's or expansion's output, the head's pre-activation)
    Plain,
    /// g is the gradient at the depthwise output's SE-scaled activation: ∂y/∂z =
    /// (g·s_c + dm_c/HW)·act'(z), as the depthwise backward reads it
    Se {
        s: &'a wgpu::Buffer,
        dm: &'a wgpu::Buffer,
        z: &'a wgpu::Buffer,
    },
    /// g is the gradient at act(z): ∂y/∂z = g·act'(z) (the stem)
    Act { z: &'a wgpu::Buffer },
    /// the input term: v = |g ⊙ x|, g = ∂y/∂x, no bias
    Input { x: &'a wgpu::Buffer },
}

impl Read<'_> {
    fn code(&self) -> u32 {
        match self {
            Read::Plain => 0,
            Read::Se { .. } => 1,
            Read::Act { .. } => 2,
            Read::Input { .. } => 3,
        }
    }
}

/// One term: (C, HW) `g` read as `read`, with the conv's bias `bias` (unused for the input).
pub struct TermArgs<'a> {
    pub c: usize,
    pub hw: usize,
    pub act: Act,
    pub g: &'a wgpu::Buffer,
    pub bias: Option<&'a wgpu::Buffer>,
    pub read: Read<'a>,
    /// (2C) per-channel (min, max) scratch
    pub mm: &'a wgpu::Buffer,
    /// the sum is written (`first`) or added at `map_off`
    pub map: &'a wgpu::Buffer,
    pub map_off: usize,
    pub first: bool,
    /// a batch's images apart in `map` and in `mm`
    pub strides: (usize, usize),
}

/// The term's two dispatches: per channel (min, max) of v, then the normalised channels
/// summed into the map.
pub fn record(gpu: &Gpu, label: &str, a: &TermArgs, d: &mut Vec<Dispatch>) {
    let params = CamFullgradParams {
        c: a.c as u32,
        hw: a.hw as u32,
        map_off: a.map_off as u32,
        mstride: a.strides.0 as u32,
        mmstride: a.strides.1 as u32,
        ..Default::default()
    };
    let (s, dm, z) = match a.read {
        Read::Se { s, dm, z } => (Some(s), Some(dm), Some(z)),
        Read::Act { z } | Read::Input { x: z } => (None, None, Some(z)),
        Read::Plain => (None, None, None),
    };
    let bindings = [
        (1, Some(a.g)),
        (2, a.bias),
        (3, s),
        (4, dm),
        (5, z),
        (6, Some(a.mm)),
        (7, Some(a.map)),
    ];
    let constants = [
        ("MODE", a.read.code() as f64),
        ("FIRST", a.first as u32 as f64),
        a.act.constant(),
    ];
    let reads = (1 + z.is_some() as usize) * a.c * a.hw;
    // minmax does not touch the map (binding 7)
    for (entry, groups, bindings) in [
        ("minmax", grid_1d(a.c as u32), &bindings[..6]),
        ("accumulate", grid_items(a.hw), &bindings[..]),
    ] {
        let mut x = gpu.dispatch(&DispatchDesc {
            label: &format!("{label}.{entry}"),
            family: "cam",
            source: Some(Source::Table("cam_fullgrad")),
            entry,
            constants: &constants,
            params: words(&params),
            bindings,
            groups,
            ..Default::default()
        });
        x.flops = 4.0 * (a.c * a.hw) as f64;
        x.bytes = 4.0 * (reads + a.hw) as f64;
        d.push(x);
    }
}

pub mod cpu {
    use crate::ops::Act;
    use crate::ops::se::{SeShape, cpu::apply_backward};

    /// How a term reads ∂y/∂z (`super::Read`), on the CPU.
    pub enum Read<'a> {
        Plain,
        Se {
            s: &'a [f32],
            dm: &'a [f32],
            z: &'a [f32],
        },
        Act {
            z: &'a [f32],
        },
        Input {
            x: &'a [f32],
        },
    }

    /// v = |b ⊙ ∂y/∂z| (|x ⊙ ∂y/∂x| for the input), (C, HW); through the SE, ∂y/∂z is
    /// `se::cpu::apply_backward`'s, as the depthwise backward reads it.
    pub fn values(
        act: Act,
        g: &[f32],
        bias: &[f32],
        read: &Read,
        (c, hw): (usize, usize),
    ) -> Vec<f32> {
        let dz: Vec<f32> = match read {
            Read::Plain | Read::Input { .. } => g.to_vec(),
            Read::Se { s, dm, z } => {
                let sh = SeShape {
                    cmid: c,
                    cse: 0,
                    hw,
                };
                apply_backward(act, sh, s, dm, g, z)
            }
            Read::Act { z } => g.iter().zip(*z).map(|(&g, &z)| g * act.grad(z)).collect(),
        };
        let scale = |at: usize| match read {
            Read::Input { x } => x[at],
            _ => bias[at / hw],
        };
        dz.iter()
            .enumerate()
            .map(|(at, &d)| (scale(at) * d).abs())
            .collect()
    }

    /// Σ_c (v_c − min_c)/(1e-7 + (max_c − min_c)) at every position.
    pub fn term(v: &[f32], (c, hw): (usize, usize)) -> Vec<f32> {
        let mut out = vec![0f32; hw];
        for row in v.chunks(hw).take(c) {
            let lo = row.iter().fold(f32::MAX, |a, &b| a.min(b));
            let hi = row.iter().fold(f32::MIN, |a, &b| a.max(b));
            for (o, &x) in out.iter_mut().zip(row) {
                *o += (x - lo) / (1e-7 + (hi - lo));
            }
        }
        out
    }
}
