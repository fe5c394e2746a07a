//! Fusion rules: the selected blocks' maps of one CAM method upsampled (bilinear,
//! align_corners = true) to the model input size and combined into one map, then min-max
//! normalised (shaders/cam_fusion.wgsl). GPU launchers and the CPU reference side by side.

use super::methods::{Fusion, ImageStrides};
use crate::error::Result;
use crate::gpu::{
    Dispatch, DispatchDesc, Gpu, GpuBuf,
    pipelines::{Source, grid_1d, grid_items},
    words,
};

crate::wgsl_params! {
    /// shaders/cam_fusion.wgsl's `Params`
    pub struct CamFusionParams for "cam_fusion" { out_h: u32, out_w: u32, nblocks: u32, total: u32, ngroups: u32, gtotal: u32, mstride: u32, _p: u32 }
}

/// The fused blocks grouped by map size (runs of consecutive blocks whose maps share one),
/// for the rules that add the upsampled maps: each group's maps are added up at their own
/// size first (`stats` does it), so that `fuse` upsamples a map per group rather than per
/// block.
#[derive(Debug, PartialEq)]
pub struct Groups {
    /// per group: (offset in the sums, h·w, first fused block, blocks) (shader's `gmeta`)
    pub meta: Vec<u32>,
    /// per group: (offset in the sums, h, w, 0), as `fuse` reads a block's map
    pub fuse_meta: Vec<u32>,
}

impl Groups {
    pub fn count(&self) -> usize {
        self.meta.len() / 4
    }

    /// floats in the sums
    pub fn total(&self) -> usize {
        self.meta.chunks(4).map(|g| g[1] as usize).sum()
    }
}

/// `sizes`: the fused blocks' map sizes, in `bmeta`'s order.
pub fn groups(sizes: &[(usize, usize)]) -> Groups {
    let mut g = Groups {
        meta: Vec::new(),
        fuse_meta: Vec::new(),
    };
    let (mut b, mut at) = (0, 0);
    while b < sizes.len() {
        let (h, w) = sizes[b];
        let run = sizes[b..].iter().take_while(|&&s| s == (h, w)).count();
        g.meta
            .extend_from_slice(&[at as u32, (h * w) as u32, b as u32, run as u32]);
        g.fuse_meta
            .extend_from_slice(&[at as u32, h as u32, w as u32, 0]);
        at += h * w;
        b += run;
    }
    g
}

/// Whether `rule` fuses the groups' sums (`Groups`) rather than each block's map.
pub fn sums_groups(rule: Fusion) -> bool {
    matches!(rule, Fusion::Sum | Fusion::Mean)
}

/// `Groups` on the GPU: both metadata and the sums, which `stats` writes and `fuse` reads.
pub struct GroupBuffers {
    pub groups: Groups,
    pub meta: GpuBuf,
    pub fuse_meta: GpuBuf,
    pub sums: GpuBuf,
}

impl GroupBuffers {
    /// The groups of the fused blocks' map `sizes` (in `bmeta`'s order); `alloc(floats)`
    /// makes the sums.
    pub fn new(
        gpu: &Gpu,
        sizes: &[(usize, usize)],
        alloc: impl FnOnce(usize) -> Result<GpuBuf>,
    ) -> Result<GroupBuffers> {
        let groups = groups(sizes);
        Ok(GroupBuffers {
            meta: gpu.upload_u32("cam.group_meta", &groups.meta)?,
            fuse_meta: gpu.upload_u32("cam.group_fuse_meta", &groups.fuse_meta)?,
            sums: alloc(groups.total())?,
            groups,
        })
    }
}

pub struct FuseArgs<'a> {
    pub out_h: usize,
    pub out_w: usize,
    /// how many blocks `bmeta` lists
    pub nblocks: usize,
    /// the maps, each at its offset
    pub maps: &'a wgpu::Buffer,
    /// per fused block vec4(map offset, h, w, 0)
    pub bmeta: &'a wgpu::Buffer,
    /// per fused block (min, max) of its map: rules that normalise each map first
    pub bnorm: &'a wgpu::Buffer,
    /// a map at (H, W) added to the rule's result (FullGrad's input term)
    pub base: Option<&'a wgpu::Buffer>,
    /// the blocks' groups, whose sums `stats` wrote: fused in their maps' place (a rule
    /// that `sums_groups`)
    pub groups: Option<&'a GroupBuffers>,
    /// (H, W), written
    pub fused: &'a wgpu::Buffer,
    /// a batch's images apart in `maps` (the groups' sums: their total)
    pub strides: ImageStrides,
}

/// fused = the rule over the upsampled maps (see the shader)
pub fn fuse(gpu: &Gpu, label: &str, rule: Fusion, a: &FuseArgs) -> Dispatch {
    assert!(
        a.groups.is_none() || sums_groups(rule),
        "{label}: only a summing rule fuses the groups' sums"
    );
    let (nmaps, maps, bmeta, mstride) = match a.groups {
        // the groups' sums lie their total apart (`stats` writes them so)
        Some(g) => (
            g.groups.count(),
            &g.sums.buf,
            &g.fuse_meta.buf,
            g.groups.total(),
        ),
        None => (a.nblocks, a.maps, a.bmeta, a.strides.maps),
    };
    let params = CamFusionParams {
        out_h: a.out_h as u32,
        out_w: a.out_w as u32,
        nblocks: nmaps as u32,
        total: a.nblocks as u32,
        mstride: mstride as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_fusion")),
        entry: "fuse",
        constants: &[
            ("RULE", rule.code() as f64),
            ("BASE", a.base.is_some() as u32 as f64),
        ],
        params: words(&params),
        bindings: &[
            (3, Some(maps)),
            (4, Some(bmeta)),
            (5, Some(a.fused)),
            (8, Some(a.bnorm)),
            (10, a.base),
        ],
        groups: grid_items(a.out_h * a.out_w),
        ..Default::default()
    });
    d.flops = 12.0 * (a.out_h * a.out_w * nmaps) as f64;
    d.bytes = 4.0 * (a.out_h * a.out_w * (4 * nmaps + 1)) as f64;
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
    let params = CamFusionParams {
        out_h: out_h as u32,
        out_w: out_w as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_fusion")),
        entry: "minmax",
        params: words(&params),
        bindings: &[(5, Some(fused)), (6, Some(mm))],
        groups: [1, 1, 1],
        ..Default::default()
    });
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
    let params = CamFusionParams {
        out_h: out_h as u32,
        out_w: out_w as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_fusion")),
        entry: "normalize",
        params: words(&params),
        bindings: &[(5, Some(fused)), (6, Some(mm)), (7, Some(norm))],
        groups: grid_items(out_h * out_w),
        ..Default::default()
    });
    d.flops = 2.0 * (out_h * out_w) as f64;
    d.bytes = 8.0 * (out_h * out_w) as f64;
    d
}

/// The fused blocks' maps, for their statistics (`stats`).
pub struct StatsArgs<'a> {
    /// how many blocks `bmeta` lists
    pub nblocks: usize,
    /// the floats of their maps together (what the dispatch reads, for `bench`'s rates)
    pub floats: usize,
    /// the model's blocks: `stats` holds max at l and mean at total + l
    pub total: usize,
    pub maps: &'a wgpu::Buffer,
    /// per fused block vec4(map offset, h, w, block index l)
    pub bmeta: &'a wgpu::Buffer,
    /// per fused block (min, max), written
    pub bnorm: &'a wgpu::Buffer,
    /// (2·total), written at the fused blocks
    pub stats: &'a wgpu::Buffer,
    /// the groups whose sums to write too, for a rule that fuses them (`sums_groups`)
    pub groups: Option<&'a GroupBuffers>,
    /// a batch's images apart in `maps` (the rest follows from the sizes)
    pub strides: ImageStrides,
}

/// Every fused block's map statistics in one dispatch, a workgroup per block: max and mean
/// into `stats`, (min, max) into `bnorm` (what the normalising rules read); with `groups`,
/// their sums too, in workgroups of their own.
pub fn stats(gpu: &Gpu, label: &str, a: &StatsArgs) -> Dispatch {
    let (ngroups, gtotal) = a
        .groups
        .map_or((0, 0), |g| (g.groups.count(), g.groups.total()));
    let params = CamFusionParams {
        nblocks: a.nblocks as u32,
        total: a.total as u32,
        ngroups: ngroups as u32,
        gtotal: gtotal as u32,
        mstride: a.strides.maps as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "cam",
        source: Some(Source::Table("cam_fusion")),
        entry: "stats_of_maps",
        params: words(&params),
        bindings: &[
            (3, Some(a.maps)),
            (4, Some(a.bmeta)),
            (8, Some(a.bnorm)),
            (9, Some(a.stats)),
            (11, a.groups.map(|g| &g.meta.buf)),
            (12, a.groups.map(|g| &g.sums.buf)),
        ],
        groups: grid_1d((a.nblocks + gtotal.div_ceil(256)) as u32),
        ..Default::default()
    });
    // each map read once for its statistics, and once more into its group's sum
    let reads = a.floats * if a.groups.is_some() { 2 } else { 1 };
    d.bytes = 4.0 * (reads + gtotal + 3 * a.nblocks) as f64;
    d
}

pub mod cpu {
    use super::Fusion;

    pub use crate::ops::resample::upsample;

    /// A map's (min, max, mean).
    pub fn stats(m: &[f32]) -> (f32, f32, f32) {
        let lo = m.iter().fold(f32::MAX, |a, &v| a.min(v));
        let hi = m.iter().fold(f32::MIN, |a, &v| a.max(v));
        let mean = (m.iter().map(|&v| v as f64).sum::<f64>() / m.len().max(1) as f64) as f32;
        (lo, hi, mean)
    }

    /// The rule over the upsampled maps, then min-max normalised (zeros when flat).
    /// Returns (normalised, raw fused).
    pub fn fuse(
        rule: Fusion,
        maps: &[(&[f32], usize, usize)],
        out_h: usize,
        out_w: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let n = out_h * out_w;
        let mut acc = vec![if rule == Fusion::Product { 1f32 } else { 0f32 }; n];
        for (b, (m, h, w)) in maps.iter().enumerate() {
            let lo = m.iter().fold(f32::MAX, |a, &v| a.min(v));
            let hi = m.iter().fold(f32::MIN, |a, &v| a.max(v));
            for (s, u) in acc.iter_mut().zip(upsample(m, *h, *w, out_h, out_w)) {
                let nv = (u - lo) / (hi - lo + 1e-7);
                match rule {
                    Fusion::Sum | Fusion::Mean => *s += u,
                    Fusion::MeanNormalised => *s += nv,
                    Fusion::Max => *s = if b == 0 { nv } else { s.max(nv) },
                    Fusion::Product => *s *= nv,
                }
            }
        }
        if matches!(rule, Fusion::Mean | Fusion::MeanNormalised) {
            acc.iter_mut().for_each(|v| *v /= maps.len() as f32);
        }
        (normalize(&acc), acc)
    }

    /// Whether a map ranging over [lo, hi] is flat to float32 precision (a NaN range is too):
    /// normalising it gives zeros.
    #[expect(clippy::neg_cmp_op_on_partial_ord, reason = "a NaN range is flat too")]
    pub fn flat_range(lo: f32, hi: f32) -> bool {
        !(hi - lo > 1e-5 * lo.abs().max(hi.abs()))
    }

    /// (v − min)/(max − min), or zeros when the map is flat: max − min ≤ 1e-5·max(|min|,
    /// |max|) (min-max would only stretch float32 rounding noise to [0, 1]).
    pub fn normalize(v: &[f32]) -> Vec<f32> {
        let lo = v.iter().fold(f32::MAX, |a, &b| a.min(b));
        let hi = v.iter().fold(f32::MIN, |a, &b| a.max(b));
        let flat = flat_range(lo, hi);
        v.iter()
            .map(|&x| if flat { 0.0 } else { (x - lo) / (hi - lo) })
            .collect()
    }
}
