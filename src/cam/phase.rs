//! The CAM phase of a plan: for every explainer (a method and its fusion rule), its map at
//! every selected block, the maps' statistics and the fused map; and max |A| of every block
//! (the paper's Figure 4 quantity). Recorded once per plan, replayed per image.

use super::channel::{self, BlockParts, ChannelArgs, FromPartsArgs};
use super::eigen::{self, EigenArgs, Input};
use super::elementwise::{self, ElementwiseArgs};
use super::fusion::{self, FuseArgs, GroupBuffers, StatsArgs};
use super::methods::{Explainer, Family, ImageStrides, Method};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, GpuBuf};
use crate::ops::hvp::Direction;

/// What the phase reads: the plan's block outputs and their gradients.
pub struct CamInputs<'a> {
    /// every block's output channels C_l
    pub channels: &'a [usize],
    /// every block's output size
    pub sizes: &'a [(usize, usize)],
    /// every block's output A_l
    pub outs: &'a [GpuBuf],
    /// ∂score/∂A_l, for the blocks the backward reached
    pub grads: &'a [Option<GpuBuf>],
    /// the model input size the maps are fused at
    pub h: usize,
    pub w: usize,
    /// blocks whose maps are made and fused, ascending
    pub blocks: &'a [usize],
    /// the head's Hessian-vector products at the last block, per direction (the official
    /// Grad-CAM++'s, ShapleyCAM's)
    pub hvp: &'a [(Direction, GpuBuf)],
    /// `--eigen-smooth`: every method's map is the first principal component of its weighted
    /// activations rather than their sum over channels (`eigen::Input`)
    pub eigen_smooth: bool,
    /// FullGrad's sums the backward wrote, when an explainer is FullGrad
    pub fullgrad: Option<&'a FullGradMaps>,
    /// the row partials of every A_l and of the gradients the backward's GEMMs made
    pub parts: &'a BlockParts,
    /// images the phase runs at once (workgroup z; `PlanOptions::images`): `outs` and `grads`
    /// hold them one after another, and `alloc` must give each its share of every buffer
    pub images: usize,
}

/// FullGrad's sums, written by the backward where it makes their gradients: every selected
/// block's map at the offsets `map_layout` gives, and the input term at the input size.
pub struct FullGradMaps {
    pub maps: GpuBuf,
    pub input: GpuBuf,
}

/// Where each selected block's map starts in an explainer's maps (`usize::MAX`: not
/// selected), and the floats they take together.
pub fn map_layout(blocks: &[usize], sizes: &[(usize, usize)]) -> (Vec<usize>, usize) {
    let mut offs = vec![usize::MAX; sizes.len()];
    let mut total = 0;
    for &l in blocks {
        offs[l] = total;
        total += sizes[l].0 * sizes[l].1;
    }
    (offs, total)
}

/// One explainer's results on the GPU.
pub struct ExplainerBuffers {
    pub explainer: Explainer,
    /// every selected block's map at `map_offs[l]`
    pub maps: GpuBuf,
    /// the fused map, min-max normalised: (H, W)
    pub norm: GpuBuf,
    /// (min, max) of the fused map before normalising
    pub mm: GpuBuf,
    /// per block: map max at l, map mean at nb + l
    pub stats: GpuBuf,
}

/// The phase's results, to be read back.
pub struct CamBuffers {
    pub explainers: Vec<ExplainerBuffers>,
    /// max |A_l| of every block
    pub act_maxabs: GpuBuf,
    /// where block l's map starts in each explainer's `maps` (selected blocks only)
    pub map_offs: Vec<usize>,
    /// floats in each `maps`
    pub total_maps: usize,
}

/// What every explainer's recording shares: the device, the inputs, the per-block layout
/// of the scratch (channel weights, maps of the selected blocks) and the buffers.
struct Rec<'a> {
    gpu: &'a Gpu,
    inp: &'a CamInputs<'a>,
    /// where block l's channel weights start in `weights`
    w_offs: Vec<usize>,
    /// where block l's map starts in an explainer's maps
    map_offs: Vec<usize>,
    total_maps: usize,
    weights: GpuBuf,
    /// the gradient's channel means (Grad-CAM, FinerCAM), at `w_offs` as `weights`: from
    /// the partials (`channel::from_parts`) where the backward wrote them
    gmeans: GpuBuf,
    gmax: GpuBuf,
    bmeta: GpuBuf,
    /// the fused blocks grouped by map size, when a rule fuses the groups' sums
    /// (`fusion::sums_groups`)
    groups: Option<GroupBuffers>,
    bnorm: GpuBuf,
    fused: GpuBuf,
    /// the eigen methods' (and `--eigen-smooth`'s) means, covariance and v₁, reused block after
    /// block (when one is asked for)
    eigen: Option<GpuBuf>,
    /// how far apart the images' shares of the buffers lie
    strides: ImageStrides,
}

/// Record the phase. `alloc(label, floats)` makes a zeroed buffer of `floats` for every
/// image (`CamInputs::images`) and counts it.
pub fn record(
    gpu: &Gpu,
    inp: &CamInputs,
    explainers: &[Explainer],
    alloc: &mut dyn FnMut(String, usize) -> Result<GpuBuf>,
) -> Result<(Vec<Dispatch>, CamBuffers)> {
    let nb = inp.channels.len();
    let mut w_offs = vec![0; nb];
    let (map_offs, total_maps) = map_layout(inp.blocks, inp.sizes);
    let mut total_c = 0;
    let mut meta = Vec::new();
    for &l in inp.blocks {
        let (bh, bw) = inp.sizes[l];
        w_offs[l] = total_c;
        total_c += inp.channels[l];
        meta.extend_from_slice(&[map_offs[l] as u32, bh as u32, bw as u32, l as u32]);
    }
    let eigen = if explainers
        .iter()
        .any(|e| inp.eigen_smooth || e.method.family() == Family::Eigen)
    {
        let kpca = explainers.iter().any(|e| e.method == Method::KpcaCam);
        let most = inp.blocks.iter().map(|&l| {
            let (c, (h, w)) = (inp.channels[l], inp.sizes[l]);
            match kpca {
                true => eigen::kpca_scratch_len(c, h * w),
                false => eigen::scratch_len(c),
            }
        });
        Some(alloc("cam.eigen".into(), most.max().unwrap_or(1))?)
    } else {
        None
    };
    let groups = match explainers.iter().any(|e| fusion::sums_groups(e.fusion)) {
        true => {
            let sizes: Vec<_> = inp.blocks.iter().map(|&l| inp.sizes[l]).collect();
            let sums = |n| alloc("cam.group_sums".into(), n);
            Some(GroupBuffers::new(gpu, &sizes, sums)?)
        }
        false => None,
    };
    let rec = Rec {
        groups,
        eigen,
        gpu,
        inp,
        weights: alloc("cam.weights".into(), total_c)?,
        gmeans: alloc("cam.gmeans".into(), total_c)?,
        gmax: alloc("cam.gmax".into(), nb)?,
        bmeta: gpu.upload_u32("cam.meta", &meta)?,
        bnorm: alloc("cam.bnorm".into(), 2 * inp.blocks.len())?,
        fused: alloc("cam.fused".into(), inp.h * inp.w)?,
        w_offs,
        map_offs,
        total_maps,
        strides: ImageStrides {
            weights: total_c,
            maps: total_maps,
            blocks: nb,
        },
    };
    let mut d = Vec::new();
    let act_maxabs = rec.block_statistics(explainers, alloc, &mut d)?;
    let mut out = Vec::new();
    for (ei, e) in explainers.iter().enumerate() {
        out.push(rec.explainer(ei, e, alloc, &mut d)?);
    }
    Ok((
        d,
        CamBuffers {
            explainers: out,
            act_maxabs,
            map_offs: rec.map_offs,
            total_maps: rec.total_maps,
        },
    ))
}

impl Rec<'_> {
    /// max |A_l| of every block, and the gradient's channel means of the selected blocks
    /// whose gradient has partials when an explainer takes them, in one dispatch
    /// (`channel::from_parts`).
    fn block_statistics(
        &self,
        explainers: &[Explainer],
        alloc: &mut dyn FnMut(String, usize) -> Result<GpuBuf>,
        d: &mut Vec<Dispatch>,
    ) -> Result<GpuBuf> {
        let inp = self.inp;
        let nb = inp.channels.len();
        let act_maxabs = alloc("cam.act_maxabs".into(), nb)?;
        let means = explainers
            .iter()
            .any(|e| channel::is_gradient_mean(e.method));
        let blocks: Vec<_> = (0..nb)
            .map(|l| {
                let take = means && inp.blocks.contains(&l) && inp.parts.has_grad[l];
                let (h, w) = inp.sizes[l];
                (l, inp.channels[l], h * w, take.then_some(self.w_offs[l]))
            })
            .collect();
        let args = FromPartsArgs {
            parts: inp.parts,
            blocks: &blocks,
            w: &self.gmeans.buf,
            amax: &act_maxabs.buf,
            strides: self.strides,
        };
        d.push(channel::from_parts(self.gpu, "parts.cam", &args)?);
        Ok(act_maxabs)
    }

    /// One explainer: its map at every selected block with the maps' statistics, then the
    /// fusion, its range and the normalised fused map.
    fn explainer(
        &self,
        ei: usize,
        e: &Explainer,
        alloc: &mut dyn FnMut(String, usize) -> Result<GpuBuf>,
        d: &mut Vec<Dispatch>,
    ) -> Result<ExplainerBuffers> {
        let (gpu, inp) = (self.gpu, self.inp);
        let nb = inp.channels.len();
        let tag = e.fused_name();
        let full = (e.method == Method::FullGrad).then(|| {
            inp.fullgrad
                .expect("the backward writes FullGrad's maps when it is asked for")
        });
        let maps = match full {
            Some(f) => f.maps.clone(),
            None => alloc(format!("cam[{ei}].maps"), self.total_maps)?,
        };
        let stats = alloc(format!("cam[{ei}].stats"), 2 * nb)?;
        let mm = alloc(format!("cam[{ei}].minmax"), 2)?;
        let norm = alloc(format!("cam[{ei}].norm"), inp.h * inp.w)?;
        for &l in inp.blocks.iter().filter(|_| full.is_none()) {
            self.block_map(e.method, l, &maps, d);
        }
        // every fused block's max and mean, and the (min, max) the normalising rules read;
        // the groups' sums where the rule fuses them
        let groups = self
            .groups
            .as_ref()
            .filter(|_| fusion::sums_groups(e.fusion));
        d.push(fusion::stats(
            gpu,
            &format!("{tag}.stats.cam"),
            &StatsArgs {
                nblocks: inp.blocks.len(),
                floats: self.total_maps,
                total: nb,
                maps: &maps.buf,
                bmeta: &self.bmeta.buf,
                bnorm: &self.bnorm.buf,
                stats: &stats.buf,
                groups,
                strides: self.strides,
            },
        ));
        let args = FuseArgs {
            out_h: inp.h,
            out_w: inp.w,
            nblocks: inp.blocks.len(),
            maps: &maps.buf,
            bmeta: &self.bmeta.buf,
            bnorm: &self.bnorm.buf,
            base: full.map(|f| &f.input.buf),
            groups,
            fused: &self.fused.buf,
            strides: self.strides,
        };
        d.push(fusion::fuse(
            gpu,
            &format!("{tag}.fuse.cam"),
            e.fusion,
            &args,
        ));
        d.push(fusion::minmax(
            gpu,
            &format!("{tag}.minmax.cam"),
            inp.h,
            inp.w,
            &self.fused.buf,
            &mm.buf,
        ));
        d.push(fusion::normalize(
            gpu,
            &format!("{tag}.normalize.cam"),
            inp.h,
            inp.w,
            &self.fused.buf,
            &mm.buf,
            &norm.buf,
        ));
        Ok(ExplainerBuffers {
            explainer: *e,
            maps,
            norm,
            mm,
            stats,
        })
    }

    /// The method's map at block `l`, into `maps` at `map_offs[l]`.
    fn block_map(&self, method: Method, l: usize, maps: &GpuBuf, d: &mut Vec<Dispatch>) {
        let (gpu, inp) = (self.gpu, self.inp);
        let (c, hw) = (inp.channels[l], inp.sizes[l].0 * inp.sizes[l].1);
        let grad = &inp.grads[l]
            .as_ref()
            .expect("the backward reaches every selected block")
            .buf;
        let blk = &inp.outs[l].buf;
        let label = |what: &str| format!("{l}.{}.{what}.cam", method.name());
        let smooth = inp.eigen_smooth;
        let project = |aux: Option<(&wgpu::Buffer, usize)>, d: &mut Vec<Dispatch>| {
            let scratch = self.eigen.as_ref().expect("made for an eigen map");
            let args = EigenArgs {
                c,
                hw,
                blk,
                grad,
                input: Input::smoothing(method),
                aux,
                scratch: &scratch.buf,
                maps: &maps.buf,
                map_off: self.map_offs[l],
                strides: self.strides,
                // one image's share (`alloc` gives every image its own)
                scratch_stride: scratch.len,
            };
            match method {
                Method::KpcaCam => eigen::record_kpca(gpu, &label, &args, d),
                _ => eigen::record(gpu, &label, &args, d),
            }
        };
        match method.family() {
            Family::Channel => {
                let means = channel::is_gradient_mean(method);
                let w = if means { &self.gmeans } else { &self.weights };
                let args = ChannelArgs {
                    c,
                    hw,
                    blk,
                    grad,
                    w: &w.buf,
                    w_off: self.w_offs[l],
                    maps: &maps.buf,
                    map_off: self.map_offs[l],
                    hvp: method
                        .hvp_direction()
                        .and_then(|d| inp.hvp.iter().find(|h| h.0 == d))
                        .map(|h| &h.1.buf),
                    strides: self.strides,
                };
                // the gradient's channel means came with `from_parts` where it has partials
                if !(means && inp.parts.has_grad[l]) {
                    let label = label("weights");
                    d.push(channel::channel_weights(gpu, &label, method, &args));
                }
                match smooth {
                    true => project(Some((&w.buf, self.w_offs[l])), d),
                    false => d.push(channel::weighted_map(gpu, &label("map"), &args)),
                }
            }
            Family::Elementwise => {
                let args = ElementwiseArgs {
                    c,
                    hw,
                    blk,
                    grad,
                    gmax: &self.gmax.buf,
                    // image z's at l·images + z (the maximum is a `reduce` row of one)
                    gmax_off: l * inp.images,
                    maps: &maps.buf,
                    map_off: self.map_offs[l],
                    strides: self.strides,
                };
                if !smooth {
                    elementwise::record(gpu, &label, method, &args, d);
                } else if method == Method::LayerCamOfficial {
                    d.push(elementwise::gmax(gpu, &label("gmax"), &args));
                    project(Some((&self.gmax.buf, l * inp.images)), d);
                } else {
                    project(None, d);
                }
            }
            Family::Eigen => project(None, d),
            Family::Full => unreachable!("FullGrad's maps are the backward's (FullGradMaps)"),
            Family::Masked => {
                unreachable!(
                    "Score-CAM is made of masked passes (app::scorecam), not a plan's CAM phase"
                )
            }
        }
    }
}

/// The CPU reference of the phase for one explainer: every selected block's map and the
/// normalised fused map at h×w.
pub mod cpu {
    use super::{Explainer, Family, Input, Method};
    use crate::cam::{channel, eigen, elementwise, fusion};

    /// What the reference reads: `a[l]`, `g[l]`: block l's output and gradient,
    /// (C_l, h_l·w_l), with `channels[l]` = C_l and `sizes[l]` = (h_l, w_l); `hvp`: the head's
    /// Hessian-vector product at the last block (GradCamPPOfficial); the selected `blocks`;
    /// the fused map's size `h`×`w`.
    pub struct Blocks<'a> {
        pub a: &'a [&'a [f32]],
        pub g: &'a [&'a [f32]],
        pub hvp: Option<&'a [f32]>,
        pub channels: &'a [usize],
        pub sizes: &'a [(usize, usize)],
        pub blocks: &'a [usize],
        pub h: usize,
        pub w: usize,
        /// `--eigen-smooth` (`CamInputs::eigen_smooth`)
        pub eigen_smooth: bool,
    }

    /// The method's map at one block, `--eigen-smooth` or not.
    fn block_map(
        m: Method,
        a: &[f32],
        g: &[f32],
        hvp: Option<&[f32]>,
        c: usize,
        hw: usize,
        smooth: bool,
    ) -> Vec<f32> {
        let input = Input::smoothing(m);
        match (m.family(), smooth) {
            (Family::Channel, false) => channel::cpu::map(m, a, g, hvp, c, hw),
            (Family::Elementwise, false) => elementwise::cpu::map(m, a, g, c, hw),
            (Family::Channel, true) => {
                let w = channel::cpu::weights(m, a, g, hvp, c, hw);
                eigen::cpu::map(input, a, g, &w, c, hw)
            }
            (Family::Eigen, _) if m == Method::KpcaCam => eigen::cpu::kpca_map(a, c, hw),
            (Family::Elementwise | Family::Eigen, _) => {
                let gmax = g.iter().fold(f32::MIN, |m, &v| m.max(v));
                eigen::cpu::map(input, a, g, &[gmax], c, hw)
            }
            (Family::Masked, _) => unreachable!("Score-CAM is not a plan's CAM phase"),
            (Family::Full, _) => unreachable!("FullGrad is not a map of a block's A and g"),
        }
    }

    pub fn explain(e: Explainer, b: &Blocks) -> (Vec<Option<Vec<f32>>>, Vec<f32>) {
        let Blocks {
            a,
            g,
            hvp,
            channels,
            sizes,
            blocks,
            h,
            w,
            eigen_smooth,
        } = *b;
        let mut maps = vec![None; a.len()];
        for &l in blocks {
            let (c, hw) = (channels[l], sizes[l].0 * sizes[l].1);
            let smooth = eigen_smooth;
            maps[l] = Some(block_map(e.method, a[l], g[l], hvp, c, hw, smooth));
        }
        let list: Vec<(&[f32], usize, usize)> = blocks
            .iter()
            .map(|&l| (maps[l].as_deref().unwrap(), sizes[l].0, sizes[l].1))
            .collect();
        let (norm, _) = fusion::cpu::fuse(e.fusion, &list, h, w);
        (maps, norm)
    }
}
