//! The CAM phase of a plan: for every explainer (a method and its fusion rule), its map at
//! every selected block, the maps' statistics and the fused map; and max |A| of every block
//! (the paper's Figure 4 quantity). Recorded once per plan, replayed per image.

use super::channel::{self, ChannelArgs};
use super::elementwise::{self, ElementwiseArgs};
use super::fusion::{self, FuseArgs};
use super::methods::{Explainer, Fusion, Method};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, GpuBuf};
use crate::model::config::ModelCfg;
use crate::ops::reduce::{self, Reduce, RowsArgs};

/// What the phase reads: the plan's block outputs and their gradients.
pub struct CamInputs<'a> {
    pub cfg: &'a ModelCfg,
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
    /// the head's Hessian-vector product at the last block (GradCamPPOfficial)
    pub hvp: Option<&'a GpuBuf>,
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

/// Record the phase. `alloc(label, floats)` makes a zeroed buffer and counts it.
pub fn record(
    gpu: &Gpu,
    inp: &CamInputs,
    explainers: &[Explainer],
    alloc: &mut dyn FnMut(String, usize) -> Result<GpuBuf>,
) -> Result<(Vec<Dispatch>, CamBuffers)> {
    let (cfg, sizes, sel) = (inp.cfg, inp.sizes, inp.blocks);
    let nb = cfg.blocks.len();
    let mut d = Vec::new();
    // layout of the per-block scratch: channel weights, and maps of the selected blocks
    let mut w_offs = vec![0; nb];
    let mut map_offs = vec![usize::MAX; nb];
    let (mut total_c, mut total_maps) = (0, 0);
    let mut meta = Vec::new();
    for &l in sel {
        w_offs[l] = total_c;
        total_c += cfg.blocks[l].cout;
        map_offs[l] = total_maps;
        meta.extend_from_slice(&[total_maps as u32, sizes[l].0 as u32, sizes[l].1 as u32, 0]);
        total_maps += sizes[l].0 * sizes[l].1;
    }
    let weights = alloc("cam.weights".into(), total_c)?;
    let gmax = alloc("cam.gmax".into(), nb)?;
    let bmeta = gpu.upload_u32("cam.meta", &meta)?;
    let bnorm = alloc("cam.bnorm".into(), 2 * sel.len())?;
    let fused = alloc("cam.fused".into(), inp.h * inp.w)?;

    // max |A_l| of every block: per channel, then over the channels
    let act_maxabs = alloc("cam.act_maxabs".into(), nb)?;
    let max_cout = cfg.blocks.iter().map(|b| b.cout).max().unwrap_or(1);
    let scratch = alloc("cam.scratch".into(), nb * max_cout)?;
    for (l, b) in cfg.blocks.iter().enumerate() {
        let hw = sizes[l].0 * sizes[l].1;
        d.push(reduce::rows(
            gpu,
            &format!("{l}.maxabs.cam"),
            Reduce::MaxAbs,
            &RowsArgs {
                rows: b.cout,
                len: hw,
                in_off: 0,
                out_off: l * max_cout,
                x: &inp.outs[l].buf,
                y: None,
                out: &scratch.buf,
            },
        ));
        d.push(reduce::rows(
            gpu,
            &format!("{l}.maxabs2.cam"),
            Reduce::Max,
            &RowsArgs {
                rows: 1,
                len: b.cout,
                in_off: l * max_cout,
                out_off: l,
                x: &scratch.buf,
                y: None,
                out: &act_maxabs.buf,
            },
        ));
    }

    let mut out = Vec::new();
    for (ei, e) in explainers.iter().enumerate() {
        let tag = e.fused_name();
        let maps = alloc(format!("cam[{ei}].maps"), total_maps)?;
        let stats = alloc(format!("cam[{ei}].stats"), 2 * nb)?;
        let mm = alloc(format!("cam[{ei}].minmax"), 2)?;
        let norm = alloc(format!("cam[{ei}].norm"), inp.h * inp.w)?;
        for (i, &l) in sel.iter().enumerate() {
            let b = &cfg.blocks[l];
            let hw = sizes[l].0 * sizes[l].1;
            let grad = &inp.grads[l]
                .as_ref()
                .expect("the backward reaches every selected block")
                .buf;
            let blk = &inp.outs[l].buf;
            let label = |what: &str| format!("{l}.{}.{what}.cam", e.method.name());
            match e.method {
                Method::GradCam
                | Method::GradCamPP
                | Method::XGradCam
                | Method::GradCamPPOfficial => {
                    let args = ChannelArgs {
                        c: b.cout,
                        hw,
                        blk,
                        grad,
                        w: &weights.buf,
                        w_off: w_offs[l],
                        maps: &maps.buf,
                        map_off: map_offs[l],
                        hvp: inp.hvp.map(|h| &h.buf),
                    };
                    d.push(channel::channel_weights(
                        gpu,
                        &label("weights"),
                        e.method,
                        &args,
                    ));
                    d.push(channel::weighted_map(gpu, &label("map"), &args));
                }
                Method::ScoreCam | Method::ScoreCamOfficial => {
                    unreachable!(
                        "Score-CAM is made of masked passes (cam::scorecam), not a plan's CAM phase"
                    )
                }
                Method::HiResCam | Method::LayerCam | Method::LayerCamOfficial => {
                    if e.method == Method::LayerCamOfficial {
                        d.push(reduce::rows(
                            gpu,
                            &label("gmax"),
                            Reduce::Max,
                            &RowsArgs {
                                rows: 1,
                                len: b.cout * hw,
                                in_off: 0,
                                out_off: l,
                                x: grad,
                                y: None,
                                out: &gmax.buf,
                            },
                        ));
                    }
                    let args = ElementwiseArgs {
                        c: b.cout,
                        hw,
                        blk,
                        grad,
                        gmax: &gmax.buf,
                        gmax_off: l,
                        maps: &maps.buf,
                        map_off: map_offs[l],
                    };
                    d.push(elementwise::map(gpu, &label("map"), e.method, &args));
                }
            }
            let mut stat = |what: &str, mode: Reduce, out_off: usize, to: &GpuBuf| {
                d.push(reduce::rows(
                    gpu,
                    &label(what),
                    mode,
                    &RowsArgs {
                        rows: 1,
                        len: hw,
                        in_off: map_offs[l],
                        out_off,
                        x: &maps.buf,
                        y: None,
                        out: &to.buf,
                    },
                ));
            };
            stat("map_max", Reduce::Max, l, &stats);
            stat("map_mean", Reduce::Mean, nb + l, &stats);
            if matches!(
                e.fusion,
                Fusion::MeanNormalised | Fusion::Max | Fusion::Product
            ) {
                stat("map_min", Reduce::Min, 2 * i, &bnorm);
                stat("map_max2", Reduce::Max, 2 * i + 1, &bnorm);
            }
        }
        let args = FuseArgs {
            out_h: inp.h,
            out_w: inp.w,
            nblocks: sel.len(),
            maps: &maps.buf,
            bmeta: &bmeta.buf,
            bnorm: &bnorm.buf,
            fused: &fused.buf,
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
            &fused.buf,
            &mm.buf,
        ));
        d.push(fusion::normalize(
            gpu,
            &format!("{tag}.normalize.cam"),
            inp.h,
            inp.w,
            &fused.buf,
            &mm.buf,
            &norm.buf,
        ));
        out.push(ExplainerBuffers {
            explainer: *e,
            maps,
            norm,
            mm,
            stats,
        });
    }
    Ok((
        d,
        CamBuffers {
            explainers: out,
            act_maxabs,
            map_offs,
            total_maps,
        },
    ))
}

/// The CPU reference of the phase for one explainer: every selected block's map and the
/// normalised fused map at h×w.
pub mod cpu {
    use super::{Explainer, Method};
    use crate::cam::{channel, elementwise, fusion};

    /// `a[l]`, `g[l]`: block l's output and gradient, (C_l, h_l·w_l); `sizes[l]` = (h_l, w_l);
    /// `hvp`: the head's Hessian-vector product at the last block (GradCamPPOfficial).
    #[allow(clippy::too_many_arguments)]
    pub fn explain(
        e: Explainer,
        a: &[&[f32]],
        g: &[&[f32]],
        hvp: Option<&[f32]>,
        channels: &[usize],
        sizes: &[(usize, usize)],
        blocks: &[usize],
        h: usize,
        w: usize,
    ) -> (Vec<Option<Vec<f32>>>, Vec<f32>) {
        let mut maps = vec![None; a.len()];
        for &l in blocks {
            let (c, hw) = (channels[l], sizes[l].0 * sizes[l].1);
            maps[l] = Some(match e.method {
                Method::GradCam | Method::GradCamPP | Method::XGradCam => {
                    let wts = channel::cpu::channel_weights(e.method, a[l], g[l], c, hw);
                    channel::cpu::weighted_map(&wts, a[l], c, hw)
                }
                Method::GradCamPPOfficial => {
                    let h = hvp.expect("the official Grad-CAM++ needs the head's HVP");
                    let wts = channel::cpu::official_weights(g[l], h, c, hw);
                    channel::cpu::weighted_map(&wts, a[l], c, hw)
                }
                _ => elementwise::cpu::map(e.method, a[l], g[l], c, hw),
            });
        }
        let list: Vec<(&[f32], usize, usize)> = blocks
            .iter()
            .map(|&l| (maps[l].as_deref().unwrap(), sizes[l].0, sizes[l].1))
            .collect();
        let (norm, _) = fusion::cpu::fuse(e.fusion, &list, h, w);
        (maps, norm)
    }
}
