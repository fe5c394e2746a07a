//! visloc's retrieval head (`rrm_head.pt`, the official `RetrievalModule`): the pooled
//! features f → x = LayerNorm(f); y = LayerNorm'(fc2(ReLU(fc1(x))) + x); embedding =
//! y/‖y‖₂. LayerNorm eps 1e-5 (PyTorch's default). It runs on the GPU straight from the
//! plan's feature buffer (`RetrievalGpu::embed_from`): five dispatches, one submission.

use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, GpuBuf};
use crate::ops::retrieval::{self as op, After};

/// LayerNorm's eps in the official module (nn.LayerNorm's default).
pub const LN_EPS: f32 = 1e-5;

/// The state dict's names under `rrm_head.`, with their shapes for feature size `d` and
/// hidden size `h`.
pub fn tensor_names(d: usize, h: usize) -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("rrm_head.norm.weight", vec![d]),
        ("rrm_head.norm.bias", vec![d]),
        ("rrm_head.res.fc1.weight", vec![h, d]),
        ("rrm_head.res.fc1.bias", vec![h]),
        ("rrm_head.res.fc2.weight", vec![d, h]),
        ("rrm_head.res.fc2.bias", vec![d]),
        ("rrm_head.res.norm.weight", vec![d]),
        ("rrm_head.res.norm.bias", vec![d]),
    ]
}

/// The official module's hidden size (`Residual(hidden_dims=4096)`).
pub const HIDDEN: usize = 4096;

/// The head's weights, in the state dict's order.
#[derive(Clone)]
pub struct RetrievalWeights {
    /// feature size (1792 for B4)
    pub d: usize,
    pub h: usize,
    pub norm_w: Vec<f32>,
    pub norm_b: Vec<f32>,
    /// (h, d)
    pub fc1_w: Vec<f32>,
    pub fc1_b: Vec<f32>,
    /// (d, h)
    pub fc2_w: Vec<f32>,
    pub fc2_b: Vec<f32>,
    pub res_norm_w: Vec<f32>,
    pub res_norm_b: Vec<f32>,
}

impl std::fmt::Debug for RetrievalWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetrievalWeights({} → {} → {})", self.d, self.h, self.d)
    }
}

impl RetrievalWeights {
    /// From the eight tensors of [`tensor_names`], in that order.
    pub fn from_tensors(d: usize, h: usize, mut t: Vec<Vec<f32>>) -> RetrievalWeights {
        assert_eq!(t.len(), 8);
        let mut next = || t.remove(0);
        RetrievalWeights {
            d,
            h,
            norm_w: next(),
            norm_b: next(),
            fc1_w: next(),
            fc1_b: next(),
            fc2_w: next(),
            fc2_b: next(),
            res_norm_w: next(),
            res_norm_b: next(),
        }
    }

    /// The plain-Rust reference of the whole head.
    pub fn embed_cpu(&self, f: &[f32]) -> Vec<f32> {
        let (d, h) = (self.d, self.h);
        let x = op::cpu::layernorm(f, &self.norm_w, &self.norm_b, LN_EPS);
        let hid = op::cpu::linear(After::Relu, &self.fc1_w, &self.fc1_b, &x, None, h, d);
        let y = op::cpu::linear(
            After::Residual,
            &self.fc2_w,
            &self.fc2_b,
            &hid,
            Some(&x),
            d,
            h,
        );
        let y = op::cpu::layernorm(&y, &self.res_norm_w, &self.res_norm_b, LN_EPS);
        op::cpu::l2norm(&y)
    }
}

/// The head on the GPU: weights uploaded once, dispatches made once.
pub struct RetrievalGpu {
    pub d: usize,
    /// GPU memory it holds (weights and scratch)
    pub bytes: u64,
    input: GpuBuf,
    out: GpuBuf,
    dispatches: Vec<Dispatch>,
    staging: wgpu::Buffer,
    /// the weights and scratch the dispatches bind
    _held: Vec<GpuBuf>,
}

impl RetrievalGpu {
    pub fn new(gpu: &Gpu, w: &RetrievalWeights) -> Result<RetrievalGpu> {
        let (d, h) = (w.d, w.h);
        let up = |name: &str, v: &[f32]| gpu.upload(&format!("rrm.{name}"), v);
        let (nw, nb) = (up("norm.w", &w.norm_w)?, up("norm.b", &w.norm_b)?);
        let (w1, b1) = (up("fc1.w", &w.fc1_w)?, up("fc1.b", &w.fc1_b)?);
        let (w2, b2) = (up("fc2.w", &w.fc2_w)?, up("fc2.b", &w.fc2_b)?);
        let (rw, rb) = (
            up("res_norm.w", &w.res_norm_w)?,
            up("res_norm.b", &w.res_norm_b)?,
        );
        let input = gpu.zeros("rrm.features", d)?;
        let x = gpu.zeros("rrm.x", d)?;
        let hid = gpu.zeros("rrm.hidden", h)?;
        let y = gpu.zeros("rrm.y", d)?;
        let yn = gpu.zeros("rrm.y_norm", d)?;
        let out = gpu.zeros("rrm.embedding", d)?;
        let dispatches = vec![
            op::layernorm(
                gpu,
                "rrm.norm",
                (d, LN_EPS),
                &input.buf,
                (&nw.buf, &nb.buf),
                &x.buf,
            ),
            op::linear(
                gpu,
                "rrm.fc1",
                After::Relu,
                &op::LinearArgs {
                    n: h,
                    k: d,
                    x: &x.buf,
                    w: &w1.buf,
                    b: &b1.buf,
                    r: None,
                    out: &hid.buf,
                },
            ),
            op::linear(
                gpu,
                "rrm.fc2",
                After::Residual,
                &op::LinearArgs {
                    n: d,
                    k: h,
                    x: &hid.buf,
                    w: &w2.buf,
                    b: &b2.buf,
                    r: Some(&x.buf),
                    out: &y.buf,
                },
            ),
            op::layernorm(
                gpu,
                "rrm.res.norm",
                (d, LN_EPS),
                &y.buf,
                (&rw.buf, &rb.buf),
                &yn.buf,
            ),
            op::l2norm(gpu, "rrm.l2", d, &yn.buf, &out.buf),
        ];
        let staging = gpu.staging("rrm.read", (d * 4) as u64);
        let held = vec![nw, nb, w1, b1, w2, b2, rw, rb, x, hid, y, yn];
        let bytes = held
            .iter()
            .chain([&input, &out])
            .map(|b| b.buf.size())
            .sum::<u64>()
            + staging.size();
        Ok(RetrievalGpu {
            d,
            bytes,
            input,
            out,
            dispatches,
            staging,
            _held: held,
        })
    }

    /// The embedding of the `d` features at the start of `features` (the plan's buffer): one
    /// submission (copy in, five dispatches, copy out), then the read-back.
    pub fn embed_from(&self, gpu: &Gpu, features: &wgpu::Buffer) -> Result<Vec<f32>> {
        self.run(gpu, Some(features))
    }

    fn run(&self, gpu: &Gpu, features: Option<&wgpu::Buffer>) -> Result<Vec<f32>> {
        let bytes = (self.d * 4) as u64;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        if let Some(f) = features {
            enc.copy_buffer_to_buffer(f, 0, &self.input.buf, 0, bytes);
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in &self.dispatches {
                d.record(&mut pass);
            }
        }
        enc.copy_buffer_to_buffer(&self.out.buf, 0, &self.staging, 0, bytes);
        gpu.queue.submit([enc.finish()]);
        let raw = gpu.read_staging(&self.staging, bytes)?;
        gpu.check_errors("the retrieval head")?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    /// The embedding of features given on the CPU (tests).
    pub fn embed(&self, gpu: &Gpu, f: &[f32]) -> Result<Vec<f32>> {
        assert_eq!(f.len(), self.d);
        gpu.write(&self.input, f);
        self.run(gpu, None)
    }
}
