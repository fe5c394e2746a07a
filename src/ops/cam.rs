//! Grad-CAM per block and the Combi-CAM fusion: weighted channel sum + ReLU, one
//! upsample-and-sum kernel over all fused blocks, min-max normalisation.

use crate::gpu::{
    Dispatch, Gpu,
    pipelines::{grid_1d, grid_items},
};

/// maps[map_off + p] = max(0, Σ_c α[alpha_off + c]·act[c, p])
#[allow(clippy::too_many_arguments)]
pub fn gradcam_map(
    gpu: &Gpu,
    label: &str,
    c: usize,
    hw: usize,
    map_off: usize,
    alpha_off: usize,
    act: &wgpu::Buffer,
    alpha: &wgpu::Buffer,
    maps: &wgpu::Buffer,
) -> Dispatch {
    let params = [c, hw, map_off, alpha_off, 0, 0, 0, 0].map(|v| v as u32);
    let mut d = gpu.dispatch(
        label,
        "cam",
        "gradcam_map",
        &[],
        &params,
        &[(1, Some(act)), (2, Some(alpha)), (3, Some(maps))],
        grid_1d((hw.div_ceil(8) as u32).div_ceil(64)),
    );
    d.flops = 2.0 * (c * hw) as f64;
    d.bytes = 4.0 * (c * hw + hw) as f64;
    d
}

/// fused = Σ over `bmeta` (vec4: offset, h, w, 0) of the align-corners bilinear upsampling.
pub fn fuse(
    gpu: &Gpu,
    label: &str,
    out_h: usize,
    out_w: usize,
    nblocks: usize,
    maps: &wgpu::Buffer,
    bmeta: &wgpu::Buffer,
    fused: &wgpu::Buffer,
) -> Dispatch {
    let params = [0, 0, 0, 0, out_h, out_w, nblocks, 0].map(|v| v as u32);
    let mut d = gpu.dispatch(
        label,
        "cam",
        "fuse",
        &[],
        &params,
        &[(3, Some(maps)), (4, Some(bmeta)), (5, Some(fused))],
        grid_items(out_h * out_w),
    );
    d.flops = 10.0 * (out_h * out_w * nblocks) as f64;
    d.bytes = 4.0 * (out_h * out_w * (4 * nblocks + 1)) as f64;
    d
}

pub fn minmax(
    gpu: &Gpu,
    label: &str,
    out_h: usize,
    out_w: usize,
    fused: &wgpu::Buffer,
    mm: &wgpu::Buffer,
) -> Dispatch {
    let params = [0, 0, 0, 0, out_h, out_w, 0, 0].map(|v| v as u32);
    let mut d = gpu.dispatch(
        label,
        "cam",
        "minmax",
        &[],
        &params,
        &[(5, Some(fused)), (6, Some(mm))],
        [1, 1, 1],
    );
    d.flops = 2.0 * (out_h * out_w) as f64;
    d.bytes = 4.0 * (out_h * out_w) as f64;
    d
}

pub fn normalize(
    gpu: &Gpu,
    label: &str,
    out_h: usize,
    out_w: usize,
    fused: &wgpu::Buffer,
    mm: &wgpu::Buffer,
    norm: &wgpu::Buffer,
) -> Dispatch {
    let params = [0, 0, 0, 0, out_h, out_w, 0, 0].map(|v| v as u32);
    let mut d = gpu.dispatch(
        label,
        "cam",
        "normalize",
        &[],
        &params,
        &[(5, Some(fused)), (6, Some(mm)), (7, Some(norm))],
        grid_items(out_h * out_w),
    );
    d.flops = 2.0 * (out_h * out_w) as f64;
    d.bytes = 8.0 * (out_h * out_w) as f64;
    d
}

pub mod cpu {
    pub fn gradcam_map(alpha: &[f32], act: &[f32], c: usize, hw: usize) -> Vec<f32> {
        (0..hw)
            .map(|p| {
                (0..c)
                    .map(|k| alpha[k] * act[k * hw + p])
                    .sum::<f32>()
                    .max(0.0)
            })
            .collect()
    }

    /// Bilinear, align_corners = true: source = dst·(in−1)/(out−1).
    pub fn upsample(map: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
        let scale = |n_in: usize, n_out: usize| {
            if n_out > 1 {
                (n_in - 1) as f32 / (n_out - 1) as f32
            } else {
                0.0
            }
        };
        let (sh, sw) = (scale(h, out_h), scale(w, out_w));
        let mut out = vec![0f32; out_h * out_w];
        for oy in 0..out_h {
            let sy = sh * oy as f32;
            let y0 = (sy as usize).min(h - 1);
            let ly = sy - y0 as f32;
            let y1 = (y0 + 1).min(h - 1);
            for ox in 0..out_w {
                let sx = sw * ox as f32;
                let x0 = (sx as usize).min(w - 1);
                let lx = sx - x0 as f32;
                let x1 = (x0 + 1).min(w - 1);
                let v = |y: usize, x: usize| map[y * w + x];
                out[oy * out_w + ox] = (1.0 - ly) * ((1.0 - lx) * v(y0, x0) + lx * v(y0, x1))
                    + ly * ((1.0 - lx) * v(y1, x0) + lx * v(y1, x1));
            }
        }
        out
    }

    /// Σ of upsampled maps, then min-max normalised (zeros when flat). Returns (normalised, raw sum).
    pub fn fuse(
        maps: &[(&[f32], usize, usize)],
        out_h: usize,
        out_w: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut sum = vec![0f32; out_h * out_w];
        for (m, h, w) in maps {
            for (s, v) in sum.iter_mut().zip(upsample(m, *h, *w, out_h, out_w)) {
                *s += v;
            }
        }
        (normalize(&sum), sum)
    }

    pub fn normalize(v: &[f32]) -> Vec<f32> {
        let lo = v.iter().fold(f32::MAX, |a, &b| a.min(b));
        let hi = v.iter().fold(f32::MIN, |a, &b| a.max(b));
        v.iter()
            .map(|&x| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 })
            .collect()
    }
}
