//! Squeeze-excite: the squeeze's sum of the depthwise kernel's partial sums and the two small
//! FC layers (one workgroup of `Gpu::wide_workgroup` invocations), and their gradient.

use crate::error::Result;
use crate::gpu::{Dispatch, DispatchDesc, Gpu, GpuBuf, words};

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
    /// w_xᵀ (CSE, CMID) for the GPU-shaped kernels (neighbouring channels' weights side by
    /// side); with the CPU-shaped, the forward's rows stand here (`SeRows::fwd_b`)
    pub w_x: &'a wgpu::Buffer,
    pub b_x: &'a wgpu::Buffer, // (CMID)
    /// the rows the CPU-shaped kernels read as vec4s (se.wgsl VEC), `None` with the GPU-shaped
    pub rows: Option<SeRows<'a>>,
}

/// The SE's weights as the CPU-shaped kernels read them: each dot product's matrix with its
/// rows contiguous, zero-padded to a multiple of 4 (`cpu::pad_rows`).
#[derive(Clone, Copy)]
pub struct SeRows<'a> {
    /// w_r (CSE, C4): the forward's r
    pub fwd_a: &'a wgpu::Buffer,
    /// w_x (CMID, CSE4): the forward's s
    pub fwd_b: &'a wgpu::Buffer,
    /// w_xᵀ (CSE, C4): the backward's dr
    pub bwd_a: &'a wgpu::Buffer,
    /// w_rᵀ (CMID, CSE4): the backward's dm
    pub bwd_b: &'a wgpu::Buffer,
}

/// A block's SE weights on the GPU: w_r (CSE, CMID), b_r, w_xᵀ (CSE, CMID), b_x, and on CPU
/// adapters their vec4 rows (`SeRows`), whose forward rows then stand for w_r and w_x.
pub struct SeBuffers {
    w: [GpuBuf; 4],
    rows: Option<[GpuBuf; 4]>,
}

impl SeBuffers {
    pub fn upload(
        gpu: &Gpu,
        label: &str,
        (cmid, cse): (usize, usize),
        [w_r, b_r, w_x, b_x]: [&[f32]; 4],
    ) -> Result<SeBuffers> {
        let up = |name: &str, v: &[f32]| gpu.upload(&format!("{label}.{name}"), v);
        let (b_r, b_x) = (up("b_r", b_r)?, up("b_x", b_x)?);
        let transpose = crate::ops::gemm::cpu::transpose;
        let w_xt = transpose(w_x, cmid, cse);
        if !vec_rows(gpu) {
            let w = [up("w_r", w_r)?, b_r, up("w_xt", &w_xt)?, b_x];
            return Ok(SeBuffers { w, rows: None });
        }
        // the forward's rows are w_r and w_x, padded: they stand for them in the bindings the
        // CPU-shaped kernels do not read
        let w_rt = transpose(w_r, cse, cmid);
        let rows = [
            up("rows.fwd_a", &cpu::pad_rows(w_r, cse, cmid))?,
            up("rows.fwd_b", &cpu::pad_rows(w_x, cmid, cse))?,
            up("rows.bwd_a", &cpu::pad_rows(&w_xt, cse, cmid))?,
            up("rows.bwd_b", &cpu::pad_rows(&w_rt, cmid, cse))?,
        ];
        let w = [rows[0].clone(), b_r, rows[1].clone(), b_x];
        Ok(SeBuffers {
            w,
            rows: Some(rows),
        })
    }

    pub fn weights(&self) -> SeWeights<'_> {
        let [w_r, b_r, w_x, b_x] = &self.w;
        SeWeights {
            w_r: &w_r.buf,
            b_r: &b_r.buf,
            w_x: &w_x.buf,
            b_x: &b_x.buf,
            rows: self.rows.as_ref().map(|[a, b, c, d]| SeRows {
                fwd_a: &a.buf,
                fwd_b: &b.buf,
                bwd_a: &c.buf,
                bwd_b: &d.buf,
            }),
        }
    }

    /// Bytes on the GPU, each buffer once (the forward's rows also stand for w_r and w_x).
    pub fn bytes(&self) -> u64 {
        let [w_r, b_r, w_x, b_x] = &self.w;
        let own = match &self.rows {
            Some(rows) => rows.iter().collect(),
            None => vec![w_r, w_x],
        };
        (own.into_iter().chain([b_r, b_x]))
            .map(|b| b.buf.size())
            .sum()
    }
}

/// Floats a vector over C_mid takes (m, dm): C_mid rounded up to 4, as se.wgsl reads it in
/// vec4s.
pub fn vec_len(cmid: usize) -> usize {
    cmid.next_multiple_of(4)
}

/// Whether the kernels read the weights as vec4 rows (se.wgsl VEC): with the CPU-shaped
/// kernels.
pub fn vec_rows(gpu: &Gpu) -> bool {
    gpu.is_cpu()
}

/// m = Σ part / HW (the squeeze), r = w_r·m + b_r, s = sigmoid(w_x·silu(r) + b_x)
pub struct SeForward<'a> {
    pub sh: SeShape,
    pub w: &'a SeWeights<'a>,
    /// the depthwise kernel's partial sums of act(z_d), (CMID, parts)
    pub part: &'a wgpu::Buffer,
    pub parts: usize,
    /// the squeeze (CMID; `vec_len(CMID)` floats an image), written
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
/// Since then the CPU-shaped kernels' dot products read vec4 rows (`dot_order`, se.wgsl VEC),
/// one lane a row still, so RL now shapes the GPU-shaped kernels alone.
pub fn dot_lanes(gpu: &Gpu) -> usize {
    if gpu.is_cpu() { 1 } else { GPU_DOT_LANES }
}

/// `dot_lanes` on GPUs.
pub const GPU_DOT_LANES: usize = 32;

/// The order in which the kernels add the SE's dot products, as `cpu::forward` and
/// `cpu::backward` take it: (lanes over C_mid, lanes over C_SE) for `cpu::lane_sum`. GPUs:
/// RL = 32 lanes a row over C_mid, one over C_SE; CPU adapters: four sums a lane over both
/// (vec4 rows, se.wgsl VEC). On lavapipe the vec4 rows took B4's 63 SE dispatches from
/// 47–55 to 25–27 ms a 300×450 explain (`bench --quick`, three alternating runs each, 2-core
/// EPYC, 2026-12-05); the kernel bench's 1632/68 backward from 1.5–2.2 to 0.6–1.0 ms.
pub fn dot_order(gpu: &Gpu) -> (usize, usize) {
    if vec_rows(gpu) { (4, 4) } else { GPU_ORDER }
}

/// `dot_order` on GPUs; the CPU model (`model::cpu`) adds its SE in this order.
pub const GPU_ORDER: (usize, usize) = (GPU_DOT_LANES, 1);

/// The pipeline constants: the workgroup, the lanes a row and the vec4 rows.
fn constants(gpu: &Gpu) -> [(&'static str, f64); 3] {
    [
        ("WG", gpu.wide_workgroup() as f64),
        ("RL", dot_lanes(gpu) as f64),
        ("VEC", if vec_rows(gpu) { 1.0 } else { 0.0 }),
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
            (11, a.w.rows.map(|r| r.fwd_a)),
            (12, a.w.rows.map(|r| r.fwd_b)),
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
    /// ∂/∂(pooled input) (CMID; `vec_len(CMID)` floats, the rest scratch), written
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
            (11, a.w.rows.map(|r| r.bwd_a)),
            (12, a.w.rows.map(|r| r.bwd_b)),
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

    /// Returns (r, s); the dot products over C_mid and C_SE add as `lanes` = (over C_mid, over
    /// C_SE) lanes do (`lane_sum`, `se::dot_order`).
    pub fn forward(
        (sh, (long, short)): (SeShape, (usize, usize)),
        w_r: &[f32],
        b_r: &[f32],
        w_x: &[f32],
        b_x: &[f32],
        m: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let r: Vec<f32> = (0..sh.cse)
            .map(|j| b_r[j] + lane_sum(sh.cmid, long, |c| w_r[j * sh.cmid + c] * m[c]))
            .collect();
        let h: Vec<f32> = r.iter().map(|&v| silu(v)).collect();
        let s = (0..sh.cmid)
            .map(|c| sigmoid(b_x[c] + lane_sum(sh.cse, short, |j| w_x[c * sh.cse + j] * h[j])))
            .collect();
        (r, s)
    }

    /// Σ_{i<n} f(i) in the order se.wgsl adds it with `lanes` lanes a row (`row_dot`, or the
    /// four sums of a vec4 lane): lane q adding the i ≡ q (mod lanes) in order, then the lanes
    /// in order.
    pub fn lane_sum(n: usize, lanes: usize, f: impl Fn(usize) -> f32) -> f32 {
        (0..lanes)
            .map(|q| (q..n).step_by(lanes).map(&f).fold(0f32, |s, v| s + v))
            .fold(0f32, |t, v| t + v)
    }

    /// dm; the dot products add as in `forward`.
    pub fn backward(
        (sh, (long, short)): (SeShape, (usize, usize)),
        w_r: &[f32],
        w_x: &[f32],
        r: &[f32],
        s: &[f32],
        ds: &[f32],
    ) -> Vec<f32> {
        let dq: Vec<f32> = (0..sh.cmid).map(|c| ds[c] * s[c] * (1.0 - s[c])).collect();
        let dr: Vec<f32> = (0..sh.cse)
            .map(|j| lane_sum(sh.cmid, long, |c| w_x[c * sh.cse + j] * dq[c]) * dsilu(r[j]))
            .collect();
        (0..sh.cmid)
            .map(|c| lane_sum(sh.cse, short, |j| w_r[j * sh.cmid + c] * dr[j]))
            .collect()
    }

    /// `w` (rows, cols) with each row zero-padded to a multiple of 4 columns.
    pub fn pad_rows(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let c4 = cols.next_multiple_of(4);
        let mut out = vec![0f32; rows * c4];
        for (o, i) in out.chunks_exact_mut(c4).zip(w.chunks_exact(cols)) {
            o[..cols].copy_from_slice(i);
        }
        out
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
