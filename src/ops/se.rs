//! Squeeze-excite: the squeeze's sum of the depthwise kernel's partial sums and the two small
//! FC layers (one workgroup of `Gpu::wide_workgroup` invocations), and their gradient.

use crate::gpu::{Dispatch, DispatchDesc, Gpu, words};

crate::wgsl_params! {
    /// shaders/se.wgsl's `Params`
    pub struct SeParams for "se" { cmid: u32, cse: u32, hw: u32, parts: u32, inv_hw: f32 }
}

#[derive(Clone, Copy, Debug)]
pub struct SeShape {
    pub cmid: usize,
    pub cse: usize,
    /// spatial size of z_d
    pub hw: usize,
}

impl SeShape {
    /// With `parts` partial sums per channel to add up (the forward's squeeze).
    fn params(&self, parts: usize) -> SeParams {
        SeParams {
            cmid: self.cmid as u32,
            cse: self.cse as u32,
            hw: self.hw as u32,
            parts: parts as u32,
            // as the squeeze's former reduction pass took it: m is bit for bit what it gave
            inv_hw: 1.0 / self.hw as f32,
        }
    }
}

pub struct SeWeights<'a> {
    pub w_r: &'a wgpu::Buffer, // (CSE, CMID)
    pub b_r: &'a wgpu::Buffer, // (CSE)
    pub w_x: &'a wgpu::Buffer, // (CMID, CSE)
    pub b_x: &'a wgpu::Buffer, // (CMID)
}

/// m = Σ part / HW (the squeeze), r = w_r·m + b_r, s = sigmoid(w_x·silu(r) + b_x)
pub struct SeForward<'a> {
    pub sh: SeShape,
    pub w: &'a SeWeights<'a>,
    /// the depthwise kernel's partial sums of act(z_d), (CMID, parts)
    pub part: &'a wgpu::Buffer,
    pub parts: usize,
    /// the squeeze (CMID), written
    pub m: &'a wgpu::Buffer,
    /// the excitation's pre-activation (CSE), written
    pub r: &'a wgpu::Buffer,
    /// the channel scale (CMID), written
    pub s: &'a wgpu::Buffer,
}

/// Lanes on each row of the SE's two long dot products (se.wgsl's RL): 32 on GPUs, where no
/// invocation should walk C_mid alone; 1 with the CPU-shaped kernels, where a workgroup's
/// invocations run one SIMD group after another and every barrier (two a turn of WG / RL
/// rows) switches through all 32 of them. With that, and the squeeze's and ds's turns of one
/// lane a channel (at most 64 partial sums) taking no barrier, lavapipe took B4's 63 SE
/// dispatches from 66–68 to 46–50 ms a 300×450 explain (2-core EPYC, 2026-12-05, three
/// alternating runs each; the kernel bench's 1632/68 SE: forward 1.4–2.1 → 0.9–1.5 ms,
/// backward 3.8–6.5 → 2.8–4.5 ms; 8 lanes a row fell between). The kernel reads its shape
/// through `load_shape`, so that lavapipe does not inline each dispatch's uniforms into a
/// kernel variant of its own, as it did with one lane a row: a compile for every new shape
/// and 8 MB kept for each (the Python suite's 1,002 calls of mixed sizes grew by 8 GB).
pub fn dot_lanes(gpu: &Gpu) -> usize {
    if gpu.is_cpu() { 1 } else { GPU_DOT_LANES }
}

/// `dot_lanes` on GPUs; the CPU model (`model::cpu`) adds its SE in their order.
pub const GPU_DOT_LANES: usize = 32;

/// The pipeline constants: the workgroup and the lanes a row.
fn constants(gpu: &Gpu) -> [(&'static str, f64); 2] {
    [
        ("WG", gpu.wide_workgroup() as f64),
        ("RL", dot_lanes(gpu) as f64),
    ]
}

pub fn forward(gpu: &Gpu, label: &str, a: &SeForward) -> Dispatch {
    let sh = a.sh;
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "se",
        entry: "forward",
        constants: &constants(gpu),
        params: words(&sh.params(a.parts)),
        bindings: &[
            (1, Some(a.w.w_r)),
            (2, Some(a.w.b_r)),
            (3, Some(a.w.w_x)),
            (4, Some(a.w.b_x)),
            (5, Some(a.m)),
            (6, Some(a.r)),
            (7, Some(a.s)),
            (10, Some(a.part)),
        ],
        groups: [1, 1, 1],
        ..Default::default()
    });
    d.flops = 4.0 * (sh.cmid * sh.cse) as f64 + (sh.cmid * a.parts) as f64;
    d.bytes = 8.0 * (sh.cmid * sh.cse) as f64 + 4.0 * (sh.cmid * a.parts) as f64;
    d
}

/// ds = Σ part, dm = w_rᵀ·((w_xᵀ·(ds·s(1−s)))·silu'(r))
pub struct SeBackward<'a> {
    pub sh: SeShape,
    pub w: &'a SeWeights<'a>,
    /// the squeeze's pre-activation (CSE), from the forward
    pub r: &'a wgpu::Buffer,
    /// the channel scale (CMID), from the forward
    pub s: &'a wgpu::Buffer,
    /// partial sums of ∂/∂s, (CMID, parts): the projection backward's `gemm::PartOp::DotAct`
    pub part: &'a wgpu::Buffer,
    pub parts: usize,
    /// ∂/∂s (CMID), written
    pub ds: &'a wgpu::Buffer,
    /// ∂/∂(pooled input) (CMID), written
    pub dm: &'a wgpu::Buffer,
}

pub fn backward(gpu: &Gpu, label: &str, a: &SeBackward) -> Dispatch {
    let sh = a.sh;
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "se",
        entry: "backward",
        constants: &constants(gpu),
        params: words(&sh.params(a.parts)),
        bindings: &[
            (1, Some(a.w.w_r)),
            (3, Some(a.w.w_x)),
            (6, Some(a.r)),
            (7, Some(a.s)),
            (8, Some(a.ds)),
            (9, Some(a.dm)),
            (10, Some(a.part)),
        ],
        groups: [1, 1, 1],
        ..Default::default()
    });
    d.flops = 4.0 * (sh.cmid * sh.cse) as f64 + (sh.cmid * a.parts) as f64;
    d.bytes = 8.0 * (sh.cmid * sh.cse) as f64 + 4.0 * (sh.cmid * a.parts) as f64;
    d
}

pub mod cpu {
    use super::SeShape;

    /// The squeeze from the depthwise kernel's partial sums: m[c] = Σ_q part[c, q] / hw.
    pub fn squeeze(part: &[f32], parts: usize, hw: usize) -> Vec<f32> {
        part.chunks(parts)
            .map(|p| p.iter().sum::<f32>() / hw as f32)
            .collect()
    }
    use crate::ops::{Act, dsilu, sigmoid, silu};

    /// Returns (r, s); the long dot products add as `lanes` lanes do (`lane_sum`).
    pub fn forward(
        (sh, lanes): (SeShape, usize),
        w_r: &[f32],
        b_r: &[f32],
        w_x: &[f32],
        b_x: &[f32],
        m: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let r: Vec<f32> = (0..sh.cse)
            .map(|j| b_r[j] + lane_sum(sh.cmid, lanes, |c| w_r[j * sh.cmid + c] * m[c]))
            .collect();
        let h: Vec<f32> = r.iter().map(|&v| silu(v)).collect();
        let s = (0..sh.cmid)
            .map(|c| sigmoid(b_x[c] + (0..sh.cse).map(|j| w_x[c * sh.cse + j] * h[j]).sum::<f32>()))
            .collect();
        (r, s)
    }

    /// Σ_{i<n} f(i) in the order se.wgsl's `row_dot` adds it with `lanes` lanes a row
    /// (`se::dot_lanes`): lane q adding the i ≡ q (mod lanes) in order, then the lanes in
    /// order.
    pub fn lane_sum(n: usize, lanes: usize, f: impl Fn(usize) -> f32) -> f32 {
        (0..lanes)
            .map(|q| (q..n).step_by(lanes).map(&f).fold(0f32, |s, v| s + v))
            .fold(0f32, |t, v| t + v)
    }

    /// dm; the long dot products add as `lanes` lanes do (`lane_sum`).
    pub fn backward(
        (sh, lanes): (SeShape, usize),
        w_r: &[f32],
        w_x: &[f32],
        r: &[f32],
        s: &[f32],
        ds: &[f32],
    ) -> Vec<f32> {
        let dq: Vec<f32> = (0..sh.cmid).map(|c| ds[c] * s[c] * (1.0 - s[c])).collect();
        let dr: Vec<f32> = (0..sh.cse)
            .map(|j| lane_sum(sh.cmid, lanes, |c| w_x[c * sh.cse + j] * dq[c]) * dsilu(r[j]))
            .collect();
        (0..sh.cmid)
            .map(|c| (0..sh.cse).map(|j| w_r[j * sh.cmid + c] * dr[j]).sum())
            .collect()
    }

    /// du ← (du·s + dm/HW)·act'(zd) (without SE: s = 1, dm = 0). On the GPU the depthwise
    /// backward applies it as it reads dy (`depthwise::SeIn`).
    pub fn apply_backward(
        act: Act,
        sh: SeShape,
        s: &[f32],
        dm: &[f32],
        du: &[f32],
        zd: &[f32],
    ) -> Vec<f32> {
        let mut out = vec![0f32; du.len()];
        for c in 0..sh.cmid {
            for p in 0..sh.hw {
                let i = c * sh.hw + p;
                out[i] = (du[i] * s[c] + dm[c] / sh.hw as f32) * act.grad(zd[i]);
            }
        }
        out
    }
}
