//! Faithfulness metrics (README, Faithfulness): deletion and insertion curves and their AUC (RISE),
//! Average Drop and Increase in Confidence (the Grad-CAM++ paper), for explainers written
//! `METHOD[@BLOCKS][:FUSION]`. The masked copies run on the GPU (`Plan::run_masked`); the
//! ranking, the blur and the arithmetic of the protocol are the plain Rust below.

use crate::app::engine::{Engine, parse_blocks};
use crate::app::road::{self, Road};
use crate::app::scorecam;
use crate::cam::fusion::cpu::{normalize, upsample};
use crate::cam::methods::{Explainer, Fusion, Method, TABLE};
use crate::error::{Error, Result};
use crate::model::plan::Masks;
use crate::model::plan::{PlanOptions, Score};
use crate::ops::masked::cpu::ranks;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What makes the saliency map S of an explainer.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// a CAM method at some blocks, fused by a rule
    Cam {
        explainer: Explainer,
        /// None: every block (the last for Score-CAM and the official Grad-CAM++)
        blocks: Option<String>,
    },
    /// a smooth random map: seeded 7×7 uniform values upsampled bilinearly
    Random { seed: u64 },
}

/// One `--explainers` item and its name in the outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub name: String,
    pub source: Source,
}

/// `combicam`, `random[:SEED]`, or `METHOD[@BLOCKS][:FUSION]` with BLOCKS as `--blocks` takes
/// them or `all`, e.g. `gradcam@31`, `layercam@0-31:max`, `scorecam@31`.
pub fn parse_spec(s: &str) -> Result<Spec> {
    let t = s.trim().to_lowercase();
    let bad = |why: String| {
        Error::Input(format!(
            "--explainers item {s:?}: {why}; write METHOD[@BLOCKS][:FUSION], e.g. combicam, gradcam@31, layercam@0-31:max, scorecam@31, random"
        ))
    };
    if t == "combicam" {
        return Ok(Spec {
            name: t,
            source: Source::Cam {
                explainer: Explainer::COMBICAM,
                blocks: None,
            },
        });
    }
    if let Some(rest) = t.strip_prefix("random") {
        let seed = match rest.strip_prefix(':') {
            Some(n) => n.parse().map_err(|_| bad(format!("{n:?} is not a seed")))?,
            None if rest.is_empty() => 0,
            None => return Err(bad("unknown explainer".into())),
        };
        return Ok(Spec {
            name: t,
            source: Source::Random { seed },
        });
    }
    let (head, fusion) = match t.split_once(':') {
        Some((h, f)) => (h, Some(Fusion::parse(f).map_err(|e| bad(e.to_string()))?)),
        None => (t.as_str(), None),
    };
    let (method, blocks) = match head.split_once('@') {
        Some((m, "all")) => (m, None),
        Some((m, b)) => (m, Some(b.to_string())),
        None => (head, None),
    };
    let method = Method::parse(method).map_err(|e| bad(e.to_string()))?;
    Ok(Spec {
        name: t.clone(),
        source: Source::Cam {
            explainer: Explainer {
                method,
                fusion: fusion.unwrap_or(method.default_fusion()),
            },
            blocks,
        },
    })
}

/// A comma-separated list of `parse_spec` items, where `all` stands for every explainer: Combi-CAM,
/// classic Grad-CAM (`gradcam@last`), every other method of the table at its default blocks
/// with its default fusion (KPCA-CAM at the last block: a photo's early blocks are past its
/// 4,096 positions), and the smooth random baseline. Items named twice count once.
pub fn parse_specs(list: &str) -> Result<Vec<Spec>> {
    let mut names: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.eq_ignore_ascii_case("all") {
            names.push("combicam".into());
            names.push("gradcam@last".into());
            names.extend(TABLE.iter().filter(|i| i.method != Method::GradCam).map(
                |i| match i.method {
                    Method::KpcaCam => format!("{}@last", i.name),
                    _ => i.name.to_string(),
                },
            ));
            names.push("random".into());
        } else {
            names.push(item.to_string());
        }
    }
    let mut specs: Vec<Spec> = Vec::new();
    for n in names {
        let spec = parse_spec(&n)?;
        if !specs.iter().any(|s| s.name == spec.name) {
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// The metrics of one explainer on one image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metrics {
    pub deletion_auc: f64,
    pub insertion_auc: f64,
    pub average_drop: f64,
    pub increase: bool,
    pub deletion: Vec<f32>,
    pub insertion: Vec<f32>,
    /// ROAD (`road::Road`), unless turned off
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub road: Option<Road>,
}

/// How the metrics are run: the curves' steps, masked copies per submission, and ROAD's
/// imputation noise σ (None: no ROAD).
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    pub steps: usize,
    pub batch: usize,
    pub road_noise: Option<f32>,
}

/// The seed of ROAD's imputation noise: every run imputes the same noise.
pub const ROAD_SEED: u64 = 0x524f4144;

/// One image's entry in `evaluate --json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageMetrics {
    pub image: String,
    pub target: usize,
    pub explainers: BTreeMap<String, Metrics>,
}

/// The per-image part of an `evaluate --json` file (`explain --report --metrics FILE`).
pub fn read_metrics(path: &Path) -> Result<Vec<ImageMetrics>> {
    #[derive(Deserialize)]
    struct File {
        images: Vec<ImageMetrics>,
    }
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Input(format!(
            "cannot read the metrics file {} ({e}); give the file `evaluate --json FILE` wrote",
            path.display()
        ))
    })?;
    let f: File = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Input(format!(
            "{} is not an `evaluate --json` file ({e}); give the file `evaluate --json FILE` wrote",
            path.display()
        ))
    })?;
    Ok(f.images)
}

/// The entry of `image` in `list`: the same file (both paths resolved), else the only entry
/// with the same file name.
pub fn metrics_of<'a>(list: &'a [ImageMetrics], image: &Path) -> Option<&'a ImageMetrics> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    if let Some(c) = canon(image)
        && let Some(m) = list
            .iter()
            .find(|m| canon(Path::new(&m.image)) == Some(c.clone()))
    {
        return Some(m);
    }
    let name = image.file_name()?;
    let mut same = list
        .iter()
        .filter(|m| Path::new(&m.image).file_name() == Some(name));
    match (same.next(), same.next()) {
        (Some(m), None) => Some(m),
        _ => None,
    }
}

/// Pixels changed at step i = 0..=n: ⌊i·hw/n⌋.
pub fn counts(steps: usize, hw: usize) -> Vec<usize> {
    (0..=steps).map(|i| i * hw / steps).collect()
}

/// (Σ score_i − (score_0 + score_n)/2) / n: the trapezoid rule over [0, 1].
pub fn auc(curve: &[f32]) -> f64 {
    let n = curve.len() - 1;
    let sum: f64 = curve.iter().map(|&v| v as f64).sum();
    (sum - (curve[0] as f64 + curve[n] as f64) / 2.0) / n as f64
}

/// 100·max(0, Y − O)/Y and whether O > Y.
pub fn average_drop(y: f32, o: f32) -> (f64, bool) {
    let (y, o) = (y as f64, o as f64);
    (100.0 * (y - o).max(0.0) / y, o > y)
}

/// torchvision's `gaussian_blur(x, kernel_size=k, sigma)` of a (3, H, W) image: the kernel
/// exp(−t²/2σ²) over t = −(k−1)/2 … (k−1)/2, normalised, applied as one 2-D kernel (the outer
/// product) with reflect padding (the edge not repeated).
pub fn gaussian_blur(x: &[f32], h: usize, w: usize, k: usize, sigma: f32) -> Vec<f32> {
    let half = (k / 2) as isize;
    let g: Vec<f32> = (0..k)
        .map(|i| {
            let t = i as f32 - (k - 1) as f32 / 2.0;
            (-0.5 * (t / sigma) * (t / sigma)).exp()
        })
        .collect();
    let sum: f32 = g.iter().sum();
    let g: Vec<f32> = g.iter().map(|v| v / sum).collect();
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let mut i = i;
        // mirror about the edges until inside (images smaller than the kernel too)
        loop {
            if i < 0 {
                i = -i;
            } else if i >= n {
                i = 2 * (n - 1) - i;
            } else {
                return i as usize;
            }
            if n == 1 {
                return 0;
            }
        }
    };
    let mut out = vec![0f32; x.len()];
    for c in 0..x.len() / (h * w) {
        let img = &x[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            for xx in 0..w {
                let mut acc = 0f32;
                for (i, gy) in g.iter().enumerate() {
                    let sy = reflect(y as isize + i as isize - half, h);
                    for (j, gx) in g.iter().enumerate() {
                        let sx = reflect(xx as isize + j as isize - half, w);
                        acc += gy * gx * img[sy * w + sx];
                    }
                }
                out[c * h * w + y * w + xx] = acc;
            }
        }
    }
    out
}

/// The smooth random map: 7×7 uniform values from `seed`, upsampled bilinearly (align
/// corners) to h×w and min-max normalised.
pub fn smooth_random(seed: u64, h: usize, w: usize) -> Vec<f32> {
    let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
    let grid: Vec<f32> = (0..49)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / 16777216.0
        })
        .collect();
    normalize(&upsample(&grid, 7, 7, h, w))
}

/// Deletion, insertion, Average Drop, Increase and ROAD of the map `s` (H·W, in [0, 1]) for
/// the image `x`, whose target probability is `y`, as `protocol` says. `progress` is told of
/// each finished masked pass.
pub fn metrics(
    engine: &mut Engine,
    x: &[f32],
    (h, w): (usize, usize),
    s: &[f32],
    (target, y): (usize, f32),
    protocol: &Protocol,
    progress: &mut dyn FnMut(usize),
) -> Result<Metrics> {
    let Protocol {
        steps,
        batch,
        road_noise,
    } = *protocol;
    let opts = PlanOptions::forward(batch);
    let gpu = engine.gpu.clone();
    let gpu = &*gpu;
    let plan = engine.plan(h, w, &opts)?;
    // the plan's x0 is this image
    plan.run(gpu, x, Some(target), Score::Prob)?;
    let rank = ranks(s);
    let counts = counts(steps, h * w);
    let blurred = gaussian_blur(x, h, w, 11, 5.0);
    let mut done = 0;
    let mut run = |m: &Masks| -> Result<Vec<f32>> {
        let r = plan.run_masked(gpu, m, target, &mut |n| progress(done + n))?;
        done += r.len();
        Ok(r.into_iter().map(|(_, p)| p).collect())
    };
    let deletion = run(&Masks::Deletion {
        rank: &rank,
        counts: &counts,
    })?;
    let insertion = run(&Masks::Insertion {
        rank: &rank,
        blurred: &blurred,
        counts: &counts,
    })?;
    let o = run(&Masks::Map { map: s })?[0];
    let (average_drop, increase) = average_drop(y, o);
    let road = match road_noise {
        Some(noise) => {
            // a batch of imputations at a time: memory as for the plan's own batch
            let per = plan.masked_copies().max(1);
            let mut p = Vec::with_capacity(road::IMPUTATIONS);
            for lo in (0..road::IMPUTATIONS).step_by(per) {
                let range = lo..(lo + per).min(road::IMPUTATIONS);
                let inputs = road::inputs(x, (h, w), s, (noise, ROAD_SEED), range)?;
                p.extend(run(&Masks::Inputs { inputs: &inputs })?);
            }
            let (morf, lerf) = p.split_at(road::PERCENTILES.len());
            Some(Road::from_scores(y, morf, lerf))
        }
        None => None,
    };
    Ok(Metrics {
        road,
        deletion_auc: auc(&deletion),
        insertion_auc: auc(&insertion),
        average_drop,
        increase,
        deletion,
        insertion,
    })
}

/// Masked passes the metrics of one explainer cost at `steps`, with ROAD or not.
pub fn passes_per_explainer(steps: usize, road: bool) -> usize {
    2 * (steps + 1) + 1 + if road { road::IMPUTATIONS } else { 0 }
}

/// Masked passes an explainer's map costs (Score-CAM: one per channel of its blocks).
pub fn map_passes(spec: &Spec, cfg: &crate::model::config::ModelCfg) -> Result<usize> {
    match &spec.source {
        Source::Cam { explainer, .. } if explainer.method.is_score_cam() => {
            Ok(blocks_of(spec, cfg.blocks.len())?
                .iter()
                .map(|&l| cfg.blocks[l].cout)
                .sum())
        }
        _ => Ok(0),
    }
}

/// The blocks an explainer fuses, of a model with `nb` blocks (empty for `random`): its
/// `@BLOCKS`, else every block, or the last for the last-block methods.
pub fn blocks_of(spec: &Spec, nb: usize) -> Result<Vec<usize>> {
    let (explainer, blocks) = match &spec.source {
        Source::Random { .. } => return Ok(vec![]),
        Source::Cam { explainer, blocks } => (explainer, blocks),
    };
    let b = match blocks.as_deref() {
        Some("last") => vec![nb - 1],
        Some(b) => parse_blocks(b, nb).map_err(|e| {
            Error::Input(format!(
                "explainer {}: {}",
                spec.name,
                e.to_string().replace("--blocks ", "blocks ")
            ))
        })?,
        None if explainer.method.last_block_by_default() => vec![nb - 1],
        None => (0..nb).collect(),
    };
    crate::cam::methods::check_official(&[*explainer], &b, nb, 0)
        .map_err(|e| Error::Input(format!("explainer {}: {e}", spec.name)))?;
    Ok(b)
}

/// The saliency map S of `spec` for the image `x` (its top class `target`), at the input
/// size, in [0, 1]; the Score-CAM passes it takes are reported to `progress`.
pub fn saliency(
    engine: &mut Engine,
    spec: &Spec,
    x: &[f32],
    (h, w): (usize, usize),
    target: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f32>> {
    let explainer = match &spec.source {
        Source::Random { seed } => return Ok(smooth_random(*seed, h, w)),
        Source::Cam { explainer, .. } => *explainer,
    };
    let blocks = blocks_of(spec, engine.blocks())?;
    if explainer.method.is_score_cam() {
        let opts = PlanOptions::forward(batch);
        let gpu = engine.gpu.clone();
        let gpu = &*gpu;
        let plan = engine.plan(h, w, &opts)?;
        plan.run(gpu, x, Some(target), Score::Prob)?;
        let mut e = scorecam::explain(
            gpu,
            plan,
            explainer,
            &blocks,
            (target, Score::Prob),
            progress,
        )?;
        return Ok(e.remove(0).fused);
    }
    // KPCA-CAM without @BLOCKS: the blocks that fit it at this size, as `explain` takes them
    let blocks = match (explainer.method, &spec.source) {
        (Method::KpcaCam, Source::Cam { blocks: None, .. }) => engine.kpca_blocks(&blocks, (h, w)),
        _ => blocks,
    };
    let opts = PlanOptions {
        backward: true,
        blocks,
        explainers: vec![explainer],
        masked: 0,
        eigen_smooth: false,
        images: 1,
    };
    let out = engine.run(x, h, w, &opts, Some(target), Score::Prob)?;
    Ok(out.explainers[0].fused.clone())
}
