//! The model on the GPU: the uploaded weights, and what a plan (`plan.rs`) is asked for and
//! gives back: the score, the options, the outputs.

use super::weights::Weights;
use crate::cam::methods::Explainer;
use crate::error::Result;
use crate::gpu::{Gpu, GpuBuf};
use crate::ops::gemm::GemmWeights;
use crate::ops::{conv, gemm, head, se};

/// A block's squeeze-excite weights: reduce (CSE, CMID) and its bias, expand (CMID, CSE) and
/// its bias.
pub(super) struct SeGpu([GpuBuf; 4]);

impl SeGpu {
    pub(super) fn weights(&self) -> se::SeWeights<'_> {
        let [w_r, b_r, w_x, b_x] = &self.0;
        se::SeWeights {
            w_r: &w_r.buf,
            b_r: &b_r.buf,
            w_x: &w_x.buf,
            b_x: &b_x.buf,
        }
    }
}

pub(super) struct BlockGpu {
    pub(super) expand: Option<(GemmWeights, GemmWeights, GpuBuf)>, // w (CMID, CIN), wᵀ (CIN, CMID), b
    pub(super) dw_w: GpuBuf,
    pub(super) dw_b: GpuBuf,
    pub(super) se: Option<SeGpu>,
    pub(super) proj_w: GemmWeights,  // (COUT, CMID)
    pub(super) proj_wt: GemmWeights, // (CMID, COUT)
    pub(super) proj_b: GpuBuf,
}

/// Weights resident on the GPU. Every 1×1 conv (and its transpose), the stem and the
/// classifier live in rgba32float textures (`gemm::GemmWeights`); the classifier matrix is
/// split into row chunks of at most the adapter's largest 2-D texture side.
pub struct ModelGpu {
    pub weights: std::sync::Arc<Weights>,
    pub(super) stem_w: GemmWeights,
    pub(super) stem_b: GpuBuf,
    pub(super) blocks: Vec<BlockGpu>,
    pub(super) head_w: GemmWeights,
    pub(super) head_wt: GemmWeights,
    pub(super) head_b: GpuBuf,
    pub(super) fc: Vec<(GemmWeights, usize, usize)>, // (chunk (rows, K), first row, rows)
    pub(super) fc_b: GpuBuf,
    /// Σ over the input channels of each head-conv row (BN folded): W·1, for the head's HVP
    pub(super) head_w1: GpuBuf,
    /// cell centres (lat, lon in radians, f32) of a geolocation head: the region score
    pub(super) cells: Option<GpuBuf>,
    pub bytes: u64,
}

impl ModelGpu {
    pub fn upload(gpu: &Gpu, weights: Weights) -> Result<ModelGpu> {
        let bytes = std::cell::Cell::new(0u64);
        let up = |label: String, data: &[f32]| -> Result<GpuBuf> {
            bytes.set(bytes.get() + (data.len() * 4) as u64);
            gpu.upload(&label, data)
        };
        // a 1×1 conv's weights (M, K) and their transpose, as the GEMM reads them
        let up_gemm = |label: String, w: &[f32], m: usize, k: usize| -> Result<[GemmWeights; 2]> {
            let fwd = GemmWeights::upload(gpu, &format!("{label}.w"), w, m, k)?;
            let wt = gemm::cpu::transpose(w, m, k);
            let bwd = GemmWeights::upload(gpu, &format!("{label}.wt"), &wt, k, m)?;
            bytes.set(bytes.get() + fwd.bytes() + bwd.bytes());
            Ok([fwd, bwd])
        };
        let cfg = &weights.cfg;
        let stem_w = conv::upload_weights(gpu, "stem.w", (cfg.stem, 3, 3), &weights.stem.w)?;
        bytes.set(bytes.get() + stem_w.bytes());
        let stem_b = up("stem.b".into(), &weights.stem.b)?;
        let mut blocks = Vec::new();
        for (i, (b, w)) in cfg.blocks.iter().zip(&weights.blocks).enumerate() {
            let expand = match &w.expand {
                Some(e) => {
                    let [ew, ewt] = up_gemm(format!("{i}.expand"), &e.w, b.cmid(), b.cin)?;
                    Some((ew, ewt, up(format!("{i}.expand.b"), &e.b)?))
                }
                None => None,
            };
            let [proj_w, proj_wt] =
                up_gemm(format!("{i}.project"), &w.project.w, b.cout, b.cmid())?;
            blocks.push(BlockGpu {
                expand,
                dw_w: up(format!("{i}.dw.w"), &w.dw.w)?,
                dw_b: up(format!("{i}.dw.b"), &w.dw.b)?,
                se: match &w.se {
                    Some((r, x)) => Some(SeGpu([
                        up(format!("{i}.se_reduce.w"), &r.w)?,
                        up(format!("{i}.se_reduce.b"), &r.b)?,
                        up(format!("{i}.se_expand.w"), &x.w)?,
                        up(format!("{i}.se_expand.b"), &x.b)?,
                    ])),
                    None => None,
                },
                proj_w,
                proj_wt,
                proj_b: up(format!("{i}.project.b"), &w.project.b)?,
            });
        }
        let last = cfg.blocks.last().unwrap().cout;
        let [head_w, head_wt] = up_gemm("head".into(), &weights.head_conv.w, cfg.head, last)?;
        let head_b = up("head.b".into(), &weights.head_conv.b)?;
        let w1: Vec<f32> = weights
            .head_conv
            .w
            .chunks(last)
            .map(|row| row.iter().sum())
            .collect();
        let head_w1 = up("head.w1".into(), &w1)?;
        let k = cfg.head;
        let n = weights.classifier.n;
        // rows per chunk: what one texture holds, a multiple of the gradient segment
        let max_rows = (gpu.limits.max_texture_dimension_2d as usize / head::SEG_ROWS
            * head::SEG_ROWS)
            .max(head::SEG_ROWS);
        let mut fc = Vec::new();
        let mut row0 = 0;
        while row0 < n {
            let rows = max_rows.min(n - row0);
            let chunk = GemmWeights::upload(
                gpu,
                &format!("fc.w[{row0}..{}]", row0 + rows),
                &weights.classifier.w[row0 * k..(row0 + rows) * k],
                rows,
                k,
            )?;
            bytes.set(bytes.get() + chunk.bytes());
            fc.push((chunk, row0, rows));
            row0 += rows;
        }
        let fc_b = up("fc.b".into(), &weights.classifier.b)?;
        let cells = match &weights.classifier.kind {
            super::weights::HeadKind::Geo { lat, lon } => {
                let v: Vec<f32> = lat
                    .iter()
                    .zip(lon)
                    .flat_map(|(a, o)| [a.to_radians() as f32, o.to_radians() as f32])
                    .collect();
                Some(up("fc.cells".into(), &v)?)
            }
            _ => None,
        };
        gpu.check_errors("weight upload")?;
        Ok(ModelGpu {
            weights: weights.into(),
            stem_w,
            stem_b,
            blocks,
            head_w,
            head_wt,
            head_b,
            head_w1,
            fc,
            fc_b,
            cells,
            bytes: bytes.get(),
        })
    }

    pub fn n_classes(&self) -> usize {
        self.weights.classifier.n
    }
}

/// What the Grad-CAM score is.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Score {
    /// softmax probability of the target (the official algorithm)
    Prob,
    Logit,
    /// the probability mass within this many km of the target cell's centre (geolocation)
    Region(f32),
}

impl Score {
    /// (info[1], info[4]) as the head kernels read them.
    pub(super) fn code(self) -> (u32, u32) {
        match self {
            Score::Prob => (0, 0),
            Score::Logit => (1, 0),
            Score::Region(km) => (2, km.to_bits()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// record the backward and the CAM phase (explain); false: forward only (predict)
    pub backward: bool,
    /// blocks whose maps are fused, ascending
    pub blocks: Vec<usize>,
    /// the CAM methods and their fusion rules (Combi-CAM by default)
    pub explainers: Vec<Explainer>,
    /// masked copies per batch (Score-CAM, the metrics; see `Plan::run_masked`), within the
    /// adapter's limits: 0, none; `AUTO_BATCH`, the default for the plan's size
    /// (`Plan::default_batch`)
    pub masked: usize,
}

impl PlanOptions {
    /// `masked`: as many copies per batch as `Plan::default_batch` gives at the plan's size.
    /// One value for every size, so an engine keeps one plan per run (re-recorded per size)
    /// rather than one per batch that the sizes give.
    pub const AUTO_BATCH: usize = usize::MAX;

    /// The forward alone (predict), with `masked` copies per submission (0: none).
    pub fn forward(masked: usize) -> PlanOptions {
        PlanOptions {
            backward: false,
            blocks: vec![],
            explainers: vec![],
            masked,
        }
    }
}

/// One explainer's results after a run.
#[derive(Clone, Debug)]
pub struct ExplainerOutput {
    pub explainer: Explainer,
    /// per block: the map (post-ReLU, unnormalised) at (h, w), for fused blocks
    pub maps: Vec<Option<Vec<f32>>>,
    /// the fused map at (H, W), normalised to [0, 1]
    pub fused: Vec<f32>,
    /// min and max of the fused map before normalisation
    pub fused_range: (f32, f32),
    pub map_max: Vec<Option<f32>>,
    pub map_mean: Vec<Option<f32>>,
}

/// Everything read back after one run.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub target: usize,
    pub argmax: usize,
    pub probs: Vec<f32>,
    pub logits: Vec<f32>,
    /// per block: the Grad-CAM map (post-ReLU, unnormalised) at (h, w), for fused blocks
    pub maps: Vec<Option<Vec<f32>>>,
    pub map_sizes: Vec<(usize, usize)>,
    /// (H, W), normalised to [0, 1]
    pub combicam: Vec<f32>,
    /// min and max of the fused sum before normalisation
    pub fused_range: (f32, f32),
    pub act_maxabs: Vec<f32>,
    pub map_max: Vec<Option<f32>>,
    pub map_mean: Vec<Option<f32>>,
    /// every explainer's results, in the order of `PlanOptions::explainers` (the fields above
    /// repeat the first one's)
    pub explainers: Vec<ExplainerOutput>,
    /// wall-clock seconds of the submission and of the read-back
    pub gpu_seconds: f64,
    pub readback_seconds: f64,
}

impl Output {
    /// The first explainer's results as the output's own (Combi-CAM by default).
    pub fn mirror_first(&mut self) {
        if let Some(first) = self.explainers.first() {
            self.maps = first.maps.clone();
            self.combicam = first.fused.clone();
            self.fused_range = first.fused_range;
            self.map_max = first.map_max.clone();
            self.map_mean = first.map_mean.clone();
        }
    }
}

pub use super::plan::{Phase, Plan};
