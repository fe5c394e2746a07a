//! Dense k×k convolution (the stem), BN folded, optional SiLU. Forward only: nothing
//! upstream of block 0 needs a gradient.

use crate::gpu::{Dispatch, Gpu, pipelines::grid_items};

#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    pub fn out(&self) -> (usize, usize) {
        (
            out_size(self.h, self.k, self.stride, self.pad),
            out_size(self.w, self.k, self.stride, self.pad),
        )
    }
}

/// ⌊(n + 2p − k)/s⌋ + 1
pub fn out_size(n: usize, k: usize, s: usize, p: usize) -> usize {
    (n + 2 * p - k) / s + 1
}

pub fn conv(
    gpu: &Gpu,
    label: &str,
    s: ConvShape,
    silu: bool,
    x: &wgpu::Buffer,
    wt: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Dispatch {
    let (oh, ow) = s.out();
    let params = [
        s.cin, s.h, s.w, s.cout, oh, ow, s.k, s.stride, s.pad, 0, 0, 0,
    ]
    .map(|v| v as u32);
    let mut d = gpu.dispatch(
        label,
        "conv",
        "main",
        &[("ACT", silu as u32 as f64)],
        &params,
        &[(1, Some(x)), (2, Some(wt)), (3, Some(bias)), (4, Some(y))],
        grid_items(s.cout * oh * ow),
    );
    d.flops = 2.0 * (s.cout * oh * ow * s.cin * s.k * s.k) as f64;
    d.bytes = 4.0 * (s.cin * s.h * s.w + s.cout * s.cin * s.k * s.k + s.cout * oh * ow) as f64;
    d
}

pub mod cpu {
    use super::ConvShape;
    use crate::ops::silu;

    pub fn conv(s: ConvShape, act: bool, x: &[f32], wt: &[f32], bias: &[f32]) -> Vec<f32> {
        let (oh, ow) = s.out();
        let mut y = vec![0f32; s.cout * oh * ow];
        for o in 0..s.cout {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = bias[o];
                    for c in 0..s.cin {
                        for u in 0..s.k {
                            let ii = (i * s.stride + u) as isize - s.pad as isize;
                            if ii < 0 || ii >= s.h as isize {
                                continue;
                            }
                            for v in 0..s.k {
                                let jj = (j * s.stride + v) as isize - s.pad as isize;
                                if jj < 0 || jj >= s.w as isize {
                                    continue;
                                }
                                acc += wt[((o * s.cin + c) * s.k + u) * s.k + v]
                                    * x[(c * s.h + ii as usize) * s.w + jj as usize];
                            }
                        }
                    }
                    y[(o * oh + i) * ow + j] = if act { silu(acc) } else { acc };
                }
            }
        }
        y
    }
}
