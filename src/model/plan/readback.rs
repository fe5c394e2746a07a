//! The read-back: the copies a run ends with, as named spans, and their parse into an `Output`.

use super::io::{ExplainerOutput, Output, PlanOptions};
use crate::gpu::GpuBuf;

/// Where a buffer's floats land in the read-back buffer.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Span {
    pub(super) off: usize,
    pub(super) len: usize,
}

impl Span {
    /// Image z's floats (the span's `len` an image, the images one after another).
    pub(super) fn of<'a>(&self, f: &'a [f32], z: usize) -> &'a [f32] {
        let o = self.off + z * self.len;
        &f[o..o + self.len]
    }
}

/// One explainer's results in the read-back buffer.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ExplainerSpans {
    pub(super) maps: Span,
    pub(super) norm: Span,
    pub(super) mm: Span,
    pub(super) stats: Span,
}

/// The read-back: the copies a run ends with, as named spans.
#[derive(Default)]
pub(super) struct ReadBack {
    pub(super) copies: Vec<(wgpu::Buffer, Span)>,
    pub(super) len: usize,
    pub(super) info: Span,
    pub(super) probs: Span,
    pub(super) logits: Span,
    /// with the backward: max |A_l| per block, and per explainer its results
    pub(super) act_maxabs: Span,
    pub(super) explainers: Vec<ExplainerSpans>,
    /// where block l's map starts inside an explainer's maps
    pub(super) map_offs: Vec<usize>,
    /// images a run explains at once (`PlanOptions::images`): `add` copies each one's
    pub(super) images: usize,
}

impl ReadBack {
    /// `len` floats of every image, from a buffer that holds the images one after another.
    pub(super) fn add(&mut self, b: &GpuBuf, len: usize) -> Span {
        let s = Span { off: self.len, len };
        let all = len * self.images.max(1);
        self.copies.push((
            b.buf.clone(),
            Span {
                off: self.len,
                len: all,
            },
        ));
        self.len += all;
        s
    }

    /// `len` floats that every image shares (the head's `info`).
    pub(super) fn add_one(&mut self, b: &GpuBuf, len: usize) -> Span {
        let s = Span { off: self.len, len };
        self.copies.push((b.buf.clone(), s));
        self.len += len;
        s
    }
}

impl ReadBack {
    /// Image z's outputs of a run from the read-back floats `f`.
    pub(super) fn parse(
        &self,
        f: &[f32],
        (sizes, opts): (&[(usize, usize)], &PlanOptions),
        z: usize,
    ) -> Output {
        let rb = self;
        let info: Vec<u32> = rb.info.of(f, 0).iter().map(|v| v.to_bits()).collect();
        let nb = sizes.len();
        let mut out = Output {
            target: info[2] as usize,
            argmax: info[3] as usize,
            probs: rb.probs.of(f, z).to_vec(),
            logits: rb.logits.of(f, z).to_vec(),
            maps: vec![None; nb],
            map_sizes: sizes.to_vec(),
            map_max: vec![None; nb],
            map_mean: vec![None; nb],
            ..Default::default()
        };
        out.act_maxabs = rb.act_maxabs.of(f, z).to_vec();
        for (spans, e) in rb.explainers.iter().zip(&opts.explainers) {
            let maps = spans.maps.of(f, z);
            let stats = spans.stats.of(f, z);
            let mm = spans.mm.of(f, z);
            let mut eo = ExplainerOutput {
                explainer: *e,
                maps: vec![None; nb],
                fused: spans.norm.of(f, z).to_vec(),
                fused_range: (mm[0], mm[1]),
                map_max: vec![None; nb],
                map_mean: vec![None; nb],
            };
            for &l in &opts.blocks {
                let (h, w) = sizes[l];
                let o = rb.map_offs[l];
                eo.maps[l] = Some(maps[o..o + h * w].to_vec());
                eo.map_max[l] = Some(stats[l]);
                eo.map_mean[l] = Some(stats[nb + l]);
            }
            out.explainers.push(eo);
        }
        out.mirror_first();
        out
    }
}
