//! CAM methods from the first principal component of a block: EigenCAM (of the activations
//! A) and EigenGradCAM (of g ⊙ A) (shaders/cam_eigen.wgsl). X = the (HW × C) matrix, centred
//! per channel over positions; the map is X·v₁, v₁ the covariance XᵀX's top eigenvector
//! (the first right singular vector of X), by power iteration; its sign is flipped when
//! |min| > |max| (Seg-Eigen-CAM's rule: an SVD's direction has no sign, and pytorch-grad-cam's
//! plain EigenCAM leaves it to LAPACK), then ReLU.
//! GPU launchers and CPU reference side by side.

use super::methods::Method;
use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d},
    words,
};

crate::wgsl_params! {
    /// shaders/cam_eigen.wgsl's `Params`
    pub struct CamEigenParams for "cam_eigen" {
        c: u32, hw: u32, map_off: u32, p_from: u32, p_to: u32, steps: u32, _p0: u32, _p1: u32,
    }
}

/// The most channels the power iteration holds in a workgroup (shaders/cam_eigen.wgsl's
/// MAX_C): EfficientNet-B7's widest block has 640.
pub const MAX_CHANNELS: usize = 1024;

pub struct EigenArgs<'a> {
    pub c: usize,
    pub hw: usize,
    /// the block output A: (C, HW)
    pub blk: &'a wgpu::Buffer,
    /// ∂score/∂A: (C, HW) (EigenGradCam)
    pub grad: &'a wgpu::Buffer,
    /// means, covariance and v₁: `scratch_len(c)` floats, reused block after block
    pub scratch: &'a wgpu::Buffer,
    /// maps, written at `map_off`
    pub maps: &'a wgpu::Buffer,
    pub map_off: usize,
}

/// Floats of scratch a block of `c` channels needs: means, covariance, v₁ and a flag.
pub fn scratch_len(c: usize) -> usize {
    2 * c + c * c + 1
}

/// The power iteration's most steps, on both sides (`cpu::top_eigenvector`).
pub const MAX_ITERS: usize = 300;

/// Loop turns one invocation may take in one dispatch: lavapipe ends an invocation's loops
/// after 65,535 turns in all, silently, so every dispatch stays well under that.
const TURNS: usize = 60_000;

/// The shader's workgroup for the power iteration (WG) and its components per invocation.
const WG: usize = 256;

/// Positions per means/cov dispatch: four a turn.
fn chunk() -> usize {
    4 * (TURNS - 8)
}

/// Power steps per dispatch for `c` channels: the largest divisor of MAX_ITERS whose turns
/// fit in TURNS. A step's turns in one invocation: the component loop (MAX_C / WG), for each
/// of its components the row's c / 4 turns and the rest (< 4), the two sums over WG partials
/// four a turn; plus the loads and stores of v around the steps.
fn power_steps(c: usize) -> usize {
    let step = MAX_CHANNELS / WG + c.div_ceil(WG) * (c / 4 + 3) + 2 * (WG / 4);
    let fit = (TURNS - 2 * (MAX_CHANNELS / WG)) / step;
    (1..=MAX_ITERS.min(fit).max(1))
        .rev()
        .find(|s| MAX_ITERS.is_multiple_of(*s))
        .unwrap_or(1)
}

fn uses_grad(m: Method) -> bool {
    match m {
        Method::EigenCam => false,
        Method::EigenGradCam => true,
        other => panic!("{other:?} is not an eigen method"),
    }
}

/// The method's map at one block: means, covariance, power iteration, projection, sign and
/// ReLU. Means and covariance take a dispatch per `chunk()` positions, the power iteration
/// MAX_ITERS / `power_steps(c)` dispatches (those after it stopped return at once).
/// `label(what)` names each.
pub fn record(
    gpu: &Gpu,
    label: &dyn Fn(&str) -> String,
    method: Method,
    a: &EigenArgs,
    d: &mut Vec<Dispatch>,
) {
    assert!(
        a.c <= MAX_CHANNELS,
        "{} channels: the eigen methods hold at most {MAX_CHANNELS}",
        a.c
    );
    let grad = uses_grad(method);
    let (c, hw) = (a.c, a.hw);
    let (x, scratch, map) = (
        [(1, Some(a.blk)), (2, Some(a.grad))],
        (3, Some(a.scratch)),
        (4, Some(a.maps)),
    );
    let params = |from: usize, to: usize, steps: usize| CamEigenParams {
        c: c as u32,
        hw: hw as u32,
        map_off: a.map_off as u32,
        p_from: from as u32,
        p_to: to as u32,
        steps: steps as u32,
        _p0: 0,
        _p1: 0,
    };
    // (entry, params, workgroups, flops, bindings): an auto layout holds only what an entry
    // uses. Sums over positions go in chunks, the power iteration in runs of steps.
    let mut steps: Vec<(&str, CamEigenParams, [u32; 3], f64, Vec<_>)> = Vec::new();
    let chunks: Vec<(usize, usize)> = (0..hw.max(1))
        .step_by(chunk())
        .map(|from| (from, (from + chunk()).min(hw)))
        .collect();
    for &(from, to) in &chunks {
        steps.push((
            "means",
            params(from, to, 0),
            grid_1d((c as u32).div_ceil(64)),
            (c * (to - from)) as f64,
            vec![x[0], x[1], scratch],
        ));
    }
    for &(from, to) in &chunks {
        steps.push((
            "cov",
            params(from, to, 0),
            grid_1d(((c * c) as u32).div_ceil(64)),
            2.0 * (c * c * (to - from)) as f64,
            vec![x[0], x[1], scratch],
        ));
    }
    let run = power_steps(c);
    for _ in 0..MAX_ITERS / run {
        let p = params(0, 0, run);
        steps.push(("power", p, [1, 1, 1], 0.0, vec![scratch]));
    }
    steps.push((
        "project",
        params(0, 0, 0),
        grid_1d((hw as u32).div_ceil(64)),
        2.0 * (c * hw) as f64,
        vec![x[0], x[1], scratch, map],
    ));
    steps.push((
        "sign",
        params(0, 0, 0),
        [1, 1, 1],
        2.0 * hw as f64,
        vec![map],
    ));
    for (entry, p, groups, flops, bindings) in steps {
        let mut x = gpu.dispatch(&DispatchDesc {
            label: &label(entry),
            family: "cam",
            source: Some(Source::Table("cam_eigen")),
            entry,
            constants: &[("GRAD", grad as u32 as f64)],
            params: words(&p),
            bindings: &bindings,
            groups,
            ..Default::default()
        });
        x.flops = flops;
        d.push(x);
    }
}

pub mod cpu {
    use super::{MAX_ITERS, Method, uses_grad};

    /// shaders/cam_eigen.wgsl's stopping threshold
    const STOP: f64 = 1e-6;

    /// The map, in f64: X centred, its covariance, v₁ by the shader's power iteration (its
    /// start, its stopping rule, its step limit), the projection, the sign rule and ReLU.
    /// The same iteration on both sides: where two eigenvalues nearly tie, v₁ is
    /// ill-conditioned and a converged f64 vector and the shader's f32 one would part ways.
    pub fn map(method: Method, a: &[f32], g: &[f32], c: usize, hw: usize) -> Vec<f32> {
        let grad = uses_grad(method);
        let x: Vec<f64> = (0..c * hw)
            .map(|i| {
                let v = a[i] as f64;
                if grad { v * g[i] as f64 } else { v }
            })
            .collect();
        let means: Vec<f64> = (0..c)
            .map(|k| x[k * hw..(k + 1) * hw].iter().sum::<f64>() / hw as f64)
            .collect();
        let xc: Vec<f64> = (0..c * hw).map(|i| x[i] - means[i / hw]).collect();
        let mut cov = vec![0f64; c * c];
        for k in 0..c {
            for q in k..c {
                let s: f64 = (0..hw).map(|p| xc[k * hw + p] * xc[q * hw + p]).sum();
                cov[k * c + q] = s;
                cov[q * c + k] = s;
            }
        }
        let v = top_eigenvector(&cov, c);
        let proj: Vec<f64> = (0..hw)
            .map(|p| (0..c).map(|k| xc[k * hw + p] * v[k]).sum())
            .collect();
        let (mn, mx) = proj
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let flip = mn.abs() > mx.abs();
        proj.iter()
            .map(|&v| (if flip { -v } else { v }).max(0.0) as f32)
            .collect()
    }

    /// The top eigenvector of the symmetric `s` (c × c), unit length, by power iteration as
    /// the shader runs it: until no component moves by more than 1e-6, at most 300 steps.
    pub fn top_eigenvector(s: &[f64], c: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..c)
            .map(|k| 1.0 + 0.5 * (k as f32 * 1.7).sin() as f64)
            .collect();
        for _ in 0..MAX_ITERS {
            let w: Vec<f64> = (0..c)
                .map(|k| (0..c).map(|q| s[k * c + q] * v[q]).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            let moved = w
                .iter()
                .zip(&v)
                .map(|(a, b)| (a / norm - b).abs())
                .fold(0.0, f64::max);
            v = w.iter().map(|x| x / norm).collect();
            if moved <= STOP {
                break;
            }
        }
        v
    }
}
