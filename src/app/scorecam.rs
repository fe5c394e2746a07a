//! Score-CAM (README, the methods table): one masked forward pass per channel of each selected block
//! (`Plan::run_masked`), the channel weights from the target's scores, the map
//! ReLU(Σ_k w_k A_k) at the block's resolution, then the fusion rule over the blocks.
//! - `scorecam` (pytorch-grad-cam 1.5): masks up(A_k) min-max normalised per channel, the
//!   scores the explained score (probability, or the logit with `--score logit`), w =
//!   softmax_k(s);
//! - `scorecam-official` (the Combi-CAM repository): raw masks, w_k = the probability;
//! - `ablationcam` (pytorch-grad-cam 1.5's AblationCAM, the channel set to 0 where it sets
//!   min − 1e7 on signed outputs): the block output of the photo with channel k set to 0, run on
//!   from the next block, y_k its score and y the photo's (from the same batched passes: one
//!   more copy with nothing set to 0), w_k = (y − y_k)/y.
//!
//! The masked passes run on the GPU; the weights, the maps (a few hundred channels of a
//! block output; with `--eigen-smooth` the first principal component of w_k·A) and the fusion
//! are computed from them on the CPU.

use crate::cam::channel::cpu::weighted_map;
use crate::cam::eigen::{self, Input};
use crate::cam::fusion::cpu::fuse;
use crate::cam::methods::{Explainer, Method};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::plan::Masks;
use crate::model::plan::{ExplainerOutput, Plan, Score};

/// Score-CAM and AblationCAM weight channels by one output's probability or logit (the
/// official Score-CAM by the probability whatever the score): a region's mass is refused.
pub fn check_score(explainers: &[Explainer], score: Score) -> Result<()> {
    let by_score = [Method::ScoreCam, Method::AblationCam];
    if let Some(e) = explainers.iter().find(|e| by_score.contains(&e.method))
        && matches!(score, Score::Region(_))
    {
        return Err(Error::Input(format!(
            "{} weights the channels by the probability or the logit of one cell, not a region's mass: drop --score region:KM",
            e.method.name()
        )));
    }
    Ok(())
}

/// How many masked passes these explainers need at these blocks for each of `originals`
/// images: one per channel, and for AblationCAM one more per block (the unablated score).
pub fn passes(plan: &Plan, explainers: &[Explainer], blocks: &[usize], originals: usize) -> usize {
    let channels: usize = blocks
        .iter()
        .map(|&l| plan.outs[l].len / (plan.sizes[l].0 * plan.sizes[l].1))
        .sum();
    let each: usize = explainers
        .iter()
        .filter(|e| e.method.is_score_cam())
        .map(|e| match e.method {
            Method::AblationCam => channels + blocks.len(),
            _ => channels,
        })
        .sum();
    originals * each
}

/// The Score-CAM explainer `e` at `blocks`, for each of the masked copies' originals (the
/// plan's image, or `Plan::set_masked_originals`'): their copies run mixed in the batches, and
/// each original's maps come from its own scores and block outputs.
pub fn explain(
    gpu: &Gpu,
    plan: &Plan,
    e: Explainer,
    blocks: &[usize],
    (target, score): (usize, Score),
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<ExplainerOutput>> {
    let official = e.method == Method::ScoreCamOfficial;
    let ablation = e.method == Method::AblationCam;
    check_score(&[e], score)?;
    if blocks.is_empty() {
        return Err(Error::Input(format!("{} needs a block", e.method.name())));
    }
    let nb = plan.sizes.len();
    let empty = ExplainerOutput {
        explainer: e,
        maps: vec![None; nb],
        fused: Vec::new(),
        fused_range: (0.0, 0.0),
        map_max: vec![None; nb],
        map_mean: vec![None; nb],
    };
    let mut outs: Vec<ExplainerOutput> = Vec::new();
    let mut done = 0;
    for &l in blocks {
        let (bh, bw) = plan.sizes[l];
        let c = plan.outs[l].len / (bh * bw);
        let masks = match ablation {
            true => Masks::Ablation {
                block: l,
                channels: 0..c + 1,
            },
            false => Masks::Cam {
                block: l,
                channels: 0..c,
                normalise: !official,
            },
        };
        let s = plan.run_masked(gpu, &masks, target, &mut |n| progress(done + n))?;
        done += s.len();
        // every original's block output, and its copies' scores
        let acts = plan.masked_block_outputs(gpu, l)?;
        let originals = acts.len() / (c * bh * bw);
        outs.resize_with(originals, || empty.clone());
        for ((out, s), a) in outs
            .iter_mut()
            .zip(s.chunks(s.len() / originals))
            .zip(acts.chunks(c * bh * bw))
        {
            let scores: Vec<f32> = s
                .iter()
                .map(|&(logit, p)| match score {
                    Score::Logit if !official => logit,
                    _ => p,
                })
                .collect();
            let w = if ablation {
                cpu::ablation_weights(&scores[..c], scores[c])
            } else if official {
                scores
            } else {
                cpu::softmax(&scores)
            };
            let map = if plan.opts.eigen_smooth {
                eigen::cpu::map(Input::Weighted, a, &[], &w, c, bh * bw)
            } else {
                weighted_map(&w, a, c, bh * bw)
            };
            out.map_max[l] = Some(map.iter().fold(f32::MIN, |m, &v| m.max(v)));
            out.map_mean[l] = Some(map.iter().sum::<f32>() / map.len() as f32);
            out.maps[l] = Some(map);
        }
    }
    for out in &mut outs {
        fuse_blocks(out, plan, blocks);
    }
    Ok(outs)
}

/// `out`'s fused map and its range before normalisation, from its maps at `blocks`.
fn fuse_blocks(out: &mut ExplainerOutput, plan: &Plan, blocks: &[usize]) {
    let maps: Vec<(&[f32], usize, usize)> = blocks
        .iter()
        .map(|&l| {
            (
                out.maps[l].as_deref().unwrap(),
                plan.sizes[l].0,
                plan.sizes[l].1,
            )
        })
        .collect();
    let (norm, raw) = fuse(out.explainer.fusion, &maps, plan.h, plan.w);
    let lo = raw.iter().fold(f32::INFINITY, |m, &v| m.min(v));
    let hi = raw.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    out.fused = norm;
    out.fused_range = (lo, hi);
}

pub mod cpu {
    /// AblationCAM's weights: (y − y_k)/y for each channel's ablated score y_k. At y = 0
    /// exactly (a target whose probability underflows to 0, or a logit of 0) that quotient is
    /// ±inf or NaN for every channel (pytorch-grad-cam's too), so the weights are y − y_k
    /// there: the direction of the weights as y → 0⁺, finite, and the same map up to scale.
    pub fn ablation_weights(ablated: &[f32], y: f32) -> Vec<f32> {
        let scale = if y == 0.0 { 1.0 } else { y };
        ablated.iter().map(|&yk| (y - yk) / scale).collect()
    }

    /// softmax over the channels, as torch computes it (max subtracted first)
    pub fn softmax(s: &[f32]) -> Vec<f32> {
        let m = s.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let e: Vec<f32> = s.iter().map(|&v| (v - m).exp()).collect();
        let z: f32 = e.iter().sum();
        e.iter().map(|v| v / z).collect()
    }
}
