//! The model on the GPU: the uploaded weights a plan (`plan/`) records against.

use super::weights::Weights;
use crate::error::Result;
use crate::gpu::{Gpu, GpuBuf};
use crate::ops::gemm::GemmWeights;
use crate::ops::{conv, depthwise, gemm, head, se};

pub(super) struct BlockGpu {
    pub(super) expand: Option<(GemmWeights, GemmWeights, GpuBuf)>, // w (CMID, CIN), wᵀ (CIN, CMID), b
    /// (C, K·K) as the depthwise kernels read it
    pub(super) dw_w: GemmWeights,
    pub(super) dw_b: GpuBuf,
    /// squeeze-excite: reduce (CSE, CMID) and its bias, expand (CMID, CSE) and its bias
    pub(super) se: Option<se::SeBuffers>,
    pub(super) proj_w: GemmWeights,  // (COUT, CMID)
    pub(super) proj_wt: GemmWeights, // (CMID, COUT)
    pub(super) proj_b: GpuBuf,
}

/// Weights resident on the GPU. Every 1×1 conv (and its transpose), every depthwise conv, the
/// stem and the classifier live in rgba32float textures (`gemm::GemmWeights`); the classifier
/// matrix is split into row chunks of at most the adapter's largest 2-D texture side.
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
        // a weight texture, its bytes counted
        let counted = |t: GemmWeights| {
            bytes.set(bytes.get() + t.bytes());
            t
        };
        // a 1×1 conv's weights (M, K) and their transpose, as the GEMM reads them
        let up_gemm = |label: String, w: &[f32], m: usize, k: usize| -> Result<[GemmWeights; 2]> {
            let wt = gemm::cpu::transpose(w, m, k);
            Ok([
                counted(GemmWeights::upload(gpu, &format!("{label}.w"), w, m, k)?),
                counted(GemmWeights::upload(gpu, &format!("{label}.wt"), &wt, k, m)?),
            ])
        };
        let cfg = &weights.cfg;
        let stem_w = counted(conv::upload_weights(
            gpu,
            "stem.w",
            (cfg.stem, 3, 3),
            &weights.stem.w,
        )?);
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
                dw_w: counted(depthwise::upload_weights(
                    gpu,
                    &format!("{i}.dw.w"),
                    (b.cmid(), b.k),
                    &w.dw.w,
                )?),
                dw_b: up(format!("{i}.dw.b"), &w.dw.b)?,
                se: match &w.se {
                    Some((r, x)) => {
                        let dims = (b.cmid(), r.b.len());
                        let ws = [&r.w[..], &r.b, &x.w, &x.b];
                        let buffers = se::SeBuffers::upload(gpu, &format!("{i}.se"), dims, ws)?;
                        bytes.set(bytes.get() + buffers.bytes());
                        Some(buffers)
                    }
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
            let chunk = counted(GemmWeights::upload(
                gpu,
                &format!("fc.w[{row0}..{}]", row0 + rows),
                &weights.classifier.w[row0 * k..(row0 + rows) * k],
                rows,
                k,
            )?);
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
