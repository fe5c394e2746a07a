//! Depthwise k×k convolution with stride, BN folded; forward and data gradient.

use crate::gpu::{Dispatch, Gpu, pipelines::grid_1d};
use crate::ops::conv::out_size;

#[derive(Clone, Copy, Debug)]
pub struct DwShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl DwShape {
    pub fn out(&self) -> (usize, usize) {
        (
            out_size(self.h, self.k, self.stride, self.pad),
            out_size(self.w, self.k, self.stride, self.pad),
        )
    }
    fn params(&self) -> [u32; 8] {
        let (oh, ow) = self.out();
        [
            self.c,
            self.h,
            self.w,
            oh,
            ow,
            self.k,
            self.stride,
            self.pad,
        ]
        .map(|v| v as u32)
    }
}

/// Strips of 8 along rows, 64 invocations per workgroup (see the shader).
fn strips(rows: usize, width: usize) -> [u32; 3] {
    grid_1d(((rows * width.div_ceil(8)) as u32).div_ceil(64))
}

/// What the shader's fixed window (20 slots) and its parity rule (8 % S == 0) allow.
fn check_shape(s: &DwShape) {
    assert!(
        7 * s.stride + s.k <= 20 && 8 % s.stride == 0,
        "depthwise: kernel {} stride {} is outside what shaders/depthwise.wgsl handles",
        s.k,
        s.stride
    );
}

/// out = bias + dw(act(x)); act = silu when `in_silu` (x is a pre-activation).
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: DwShape,
    in_silu: bool,
    x: &wgpu::Buffer,
    wt: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Dispatch {
    check_shape(&s);
    let (oh, ow) = s.out();
    let mut d = gpu.dispatch(
        label,
        "depthwise",
        "forward",
        &[
            ("K", s.k as f64),
            ("S", s.stride as f64),
            ("IN_SILU", in_silu as u32 as f64),
        ],
        &s.params(),
        &[(1, Some(wt)), (2, Some(bias)), (3, Some(x)), (4, Some(out))],
        strips(s.c * oh, ow),
    );
    d.flops = 2.0 * (s.c * oh * ow * s.k * s.k) as f64;
    d.bytes = 4.0 * (s.c * s.h * s.w + s.c * oh * ow) as f64;
    d
}

/// dx = act'(z_in)·dwᵀ(dy) (+ res).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    label: &str,
    s: DwShape,
    in_silu: bool,
    dy: &wgpu::Buffer,
    wt: &wgpu::Buffer,
    zin: Option<&wgpu::Buffer>,
    res: Option<&wgpu::Buffer>,
    dx: &wgpu::Buffer,
) -> Dispatch {
    check_shape(&s);
    let (oh, ow) = s.out();
    let consts = [
        ("K", s.k as f64),
        ("S", s.stride as f64),
        ("IN_SILU", in_silu as u32 as f64),
        ("HAS_RES", res.is_some() as u32 as f64),
    ];
    let mut d = gpu.dispatch(
        label,
        "depthwise",
        "backward",
        &consts,
        &s.params(),
        &[
            (1, Some(wt)),
            (3, zin),
            (4, Some(dx)),
            (5, res),
            (6, Some(dy)),
        ],
        strips(s.c * s.h, s.w),
    );
    d.flops = 2.0 * (s.c * oh * ow * s.k * s.k) as f64;
    d.bytes = 4.0
        * (s.c * oh * ow + s.c * s.h * s.w * (1 + in_silu as usize + res.is_some() as usize))
            as f64;
    d
}

pub mod cpu {
    use super::DwShape;
    use crate::ops::conv::cpu::for_each_tap;
    use crate::ops::{dsilu, silu};

    pub fn forward(s: DwShape, in_silu: bool, x: &[f32], wt: &[f32], bias: &[f32]) -> Vec<f32> {
        let (oh, ow) = s.out();
        let (ohw, hw, kk) = (oh * ow, s.h * s.w, s.k * s.k);
        let mut y = vec![0f32; s.c * ohw];
        for c in 0..s.c {
            let (plane, xc, wc) = (
                &mut y[c * ohw..(c + 1) * ohw],
                &x[c * hw..(c + 1) * hw],
                &wt[c * kk..(c + 1) * kk],
            );
            plane.fill(bias[c]);
            for_each_tap(s.h, s.w, s.k, s.stride, s.pad, |op, ip, t| {
                plane[op] += wc[t] * if in_silu { silu(xc[ip]) } else { xc[ip] }
            });
        }
        y
    }

    /// Scatter form of the data gradient (the GPU uses the gather form: a different order).
    pub fn backward(
        s: DwShape,
        dy: &[f32],
        wt: &[f32],
        zin: Option<&[f32]>,
        res: Option<&[f32]>,
    ) -> Vec<f32> {
        let (oh, ow) = s.out();
        let (ohw, hw, kk) = (oh * ow, s.h * s.w, s.k * s.k);
        let mut dx = vec![0f32; s.c * hw];
        for c in 0..s.c {
            let (plane, gc, wc) = (
                &mut dx[c * hw..(c + 1) * hw],
                &dy[c * ohw..(c + 1) * ohw],
                &wt[c * kk..(c + 1) * kk],
            );
            for_each_tap(s.h, s.w, s.k, s.stride, s.pad, |op, ip, t| {
                plane[ip] += wc[t] * gc[op]
            });
        }
        if let Some(z) = zin {
            for (d, &zv) in dx.iter_mut().zip(z) {
                *d *= dsilu(zv);
            }
        }
        if let Some(r) = res {
            for (d, &rv) in dx.iter_mut().zip(r) {
                *d += rv;
            }
        }
        dx
    }
}
