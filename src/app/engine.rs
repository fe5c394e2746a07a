//! The engine a command uses: weights on the GPU, plans cached per (input size, options),
//! and the prediction summary shared by `predict` and `explain`.

use crate::cam::methods::{Explainer, Method};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, RecycleStats};
use crate::model::efficientnet::ModelGpu;
use crate::model::geo;
use crate::model::plan::{Output, Plan, PlanOptions, Score};
use crate::model::retrieval::RetrievalGpu;
use crate::model::weights::{HeadKind, Weights};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What tells plans apart: `PlanOptions`'s backward, blocks, explainers, masked copies,
/// eigen-smoothing and images at once.
type PlanKey = (bool, Vec<usize>, Vec<Explainer>, usize, bool, usize);

pub struct Engine {
    /// shared with whoever opened it: a plan's dispatches and the engine's buffers live on it
    pub gpu: Arc<Gpu>,
    pub model: ModelGpu,
    /// seconds the last `plan` call spent building a plan (pipelines compiled on first use
    /// included); 0 when it reused one
    pub last_plan_build_s: f64,
    /// what the last `plan` call took back from the previous plan (None: reused as is)
    pub last_recycled: Option<RecycleStats>,
    /// one plan per set of options, at the last size asked for: a new size is recorded
    /// again, taking back the old plan's memory (see `gpu::recycle`)
    plans: HashMap<PlanKey, Plan>,
    /// visloc's retrieval head on the GPU, made on first use
    retrieval: Option<RetrievalGpu>,
    /// FinerCAM's comparison classes (`--comparison`; pytorch-grad-cam's default, 3)
    pub comparison: u32,
}

impl Engine {
    pub fn new(gpu: Arc<Gpu>, weights: Weights) -> Result<Self> {
        Ok(Engine {
            model: ModelGpu::upload(&gpu, weights)?,
            gpu,
            last_plan_build_s: 0.0,
            last_recycled: None,
            plans: HashMap::new(),
            retrieval: None,
            comparison: 3,
        })
    }

    /// Of `blocks`, those KPCA-CAM takes at an `h`×`w` input (`eigen::kpca_blocks`): what
    /// `kpcacam` alone and without blocks runs at.
    pub fn kpca_blocks(&self, blocks: &[usize], (h, w): (usize, usize)) -> Vec<usize> {
        let (_, _, sizes) = self.model.weights.cfg.sizes(h, w);
        crate::cam::eigen::kpca_blocks(blocks, &sizes)
    }

    pub fn blocks(&self) -> usize {
        self.model.weights.cfg.blocks.len()
    }

    /// The plan for this size and these options: the last one if the size is the same, else
    /// recorded again from the last one's memory.
    pub fn plan(&mut self, h: usize, w: usize, opts: &PlanOptions) -> Result<&Plan> {
        let key = (
            opts.backward,
            opts.blocks.clone(),
            opts.explainers.clone(),
            opts.masked,
            opts.eigen_smooth,
            opts.images,
        );
        self.last_plan_build_s = 0.0;
        self.last_recycled = None;
        let same = self.plans.get(&key).is_some_and(|p| (p.h, p.w) == (h, w));
        if !same {
            let t = std::time::Instant::now();
            let old = self.plans.remove(&key).map(Plan::into_recycler);
            let plan = Plan::build(
                &self.gpu,
                &self.model,
                h,
                w,
                opts.clone(),
                old.unwrap_or_default(),
            )?;
            self.last_plan_build_s = t.elapsed().as_secs_f64();
            self.last_recycled = Some(plan.recycled);
            self.plans.insert(key.clone(), plan);
        }
        Ok(&self.plans[&key])
    }

    /// Run the plan for this size and these options on `input` (3×h×w); FinerCAM's maps
    /// come from a second run with its own score at the first run's target.
    pub fn run(
        &mut self,
        input: &[f32],
        h: usize,
        w: usize,
        opts: &PlanOptions,
        target: Option<usize>,
        score: Score,
    ) -> Result<Output> {
        Ok(self
            .run_images(input, (h, w), opts, target, score)?
            .remove(0))
    }

    /// `run` for `opts.images` images at once (`Plan::run_images`; options that
    /// `PlanOptions::batches_images`), their inputs one after another in `input`: one output
    /// per image, every image explaining image 0's target.
    pub fn run_images(
        &mut self,
        input: &[f32],
        (h, w): (usize, usize),
        opts: &PlanOptions,
        target: Option<usize>,
        score: Score,
    ) -> Result<Vec<Output>> {
        let gpu = self.gpu.clone();
        let finer = Score::Finer(self.comparison);
        let plan = self.plan(h, w, opts)?;
        let is_finer = |e: &Explainer| e.method == Method::FinerCam;
        if !opts.explainers.iter().any(is_finer) {
            return plan.run_images(&gpu, input, target, score);
        }
        // FinerCAM differentiates its own score: a second run of the same plan gives its
        // maps, at the first run's target
        if opts.explainers.iter().all(is_finer) {
            return plan.run_images(&gpu, input, target, finer);
        }
        let mut outs = plan.run_images(&gpu, input, target, score)?;
        let fos = plan.run_images(&gpu, input, Some(outs[0].target), finer)?;
        for (out, fo) in outs.iter_mut().zip(fos) {
            for (mine, theirs) in out.explainers.iter_mut().zip(fo.explainers) {
                if is_finer(&mine.explainer) {
                    *mine = theirs;
                }
            }
            out.gpu_seconds += fo.gpu_seconds;
            out.readback_seconds += fo.readback_seconds;
            out.mirror_first();
        }
        Ok(outs)
    }

    /// The retrieval embedding (visloc's `rrm_head`) of the image the last `run` with these
    /// options and size saw, computed on the GPU from the plan's pooled features.
    pub fn embedding(&mut self, h: usize, w: usize, opts: &PlanOptions) -> Result<Vec<f32>> {
        if self.retrieval.is_none() {
            let rw = self.model.weights.retrieval.clone().ok_or_else(|| {
                Error::Input(
                    "these weights have no retrieval head: pass visloc's rrm_head.pt too".into(),
                )
            })?;
            self.retrieval = Some(RetrievalGpu::new(&self.gpu, &rw)?);
        }
        let features = self.plan(h, w, opts)?.features.buf.clone();
        self.retrieval
            .as_ref()
            .expect("made above")
            .embed_from(&self.gpu, &features)
    }

    /// GPU memory held: weights, the plans held (one per set of options) and the retrieval head.
    pub fn gpu_bytes(&self) -> u64 {
        self.model.bytes
            + self.plans.values().map(|p| p.bytes).sum::<u64>()
            + self.retrieval.as_ref().map_or(0, |r| r.bytes)
    }

    pub fn summarize(&self, image: &str, out: &Output, top_k: usize) -> Prediction {
        summarize(&self.model.weights, image, out, top_k)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TopEntry {
    pub index: usize,
    pub probability: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub image: String,
    pub top: Vec<TopEntry>,
    /// visloc only: Σ p over cells within r km of the predicted cell
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence_km: Option<BTreeMap<String, f64>>,
    /// with --embedding: visloc's retrieval embedding (L2-normalised)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// with --background: the search-within-cell prediction
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_within_cell: Option<crate::model::search::Found>,
}

/// Output `i` (a cell or a class) with its probability and its place or label.
/// `--target`: an index, or (ImageNet models) a label: the label equal to it, ignoring case,
/// else the only label that contains it. Unknown, ambiguous and out-of-range targets are
/// one-line errors naming the fix.
pub fn resolve_target(w: &Weights, s: &str) -> Result<usize> {
    let n = w.classifier.n;
    let t = s.trim();
    if let Ok(i) = t.parse::<usize>() {
        return if i < n {
            Ok(i)
        } else {
            Err(Error::Input(format!(
                "--target {i} is out of range: the model has {n} outputs (0-{})",
                n - 1
            )))
        };
    }
    let HeadKind::Labels(labels) = &w.classifier.kind else {
        return Err(Error::Input(format!(
            "--target {s:?}: geolocation weights have no labels; give a cell index (0-{}) or --target-latlon LAT,LON",
            n - 1
        )));
    };
    let q = t.to_lowercase();
    if let Some(i) = labels.iter().position(|l| l.to_lowercase() == q) {
        return Ok(i);
    }
    let hits: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i].to_lowercase().contains(&q))
        .collect();
    let quoted = |ix: &[usize]| {
        ix.iter()
            .take(6)
            .map(|&i| format!("\"{}\" ({i})", labels[i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match hits.len() {
        1 => Ok(hits[0]),
        0 => Err(Error::Input(format!(
            "--target {s:?} is not a label of this model: give an index (0-{}) or one of its labels (`combicam-gpu predict IMAGE --top-k {n}` lists them)",
            n - 1
        ))),
        k => Err(Error::Input(format!(
            "--target {s:?} is ambiguous: {k} labels contain it ({}{}); give the whole label or its index",
            quoted(&hits),
            if k > 6 { ", …" } else { "" }
        ))),
    }
}

pub fn entry(w: &Weights, out: &Output, i: usize) -> TopEntry {
    let mut e = TopEntry {
        index: i,
        probability: out.probs[i],
        lat: None,
        lon: None,
        label: None,
    };
    match &w.classifier.kind {
        HeadKind::Geo { lat, lon } => {
            e.lat = Some(lat[i]);
            e.lon = Some(lon[i]);
        }
        HeadKind::Labels(l) => e.label = Some(l[i].clone()),
    }
    e
}

pub fn summarize(w: &Weights, image: &str, out: &Output, top_k: usize) -> Prediction {
    let top = geo::top_k(&out.probs, top_k.max(1));
    let entry = |i: usize| entry(w, out, i);
    let confidence_km = match &w.classifier.kind {
        HeadKind::Geo { lat, lon } => Some(
            geo::confidence(&out.probs, lat, lon, top[0])
                .into_iter()
                .map(|(r, p)| (format!("{}", r as u32), p))
                .collect(),
        ),
        HeadKind::Labels(_) => None,
    };
    Prediction {
        image: image.to_string(),
        top: top.into_iter().map(entry).collect(),
        confidence_km,
        embedding: None,
        search_within_cell: None,
    }
}

/// Parse `--blocks`: "0-31", "22-29", "0,5,31", "0-3,30-31".
pub fn parse_blocks(s: &str, nb: usize) -> Result<Vec<usize>> {
    let last = nb.saturating_sub(1);
    let bad = |why: String| {
        Error::Input(format!(
            "--blocks {s:?}: {why}; this model's blocks are 0-{last}: use ranges and lists, e.g. 0-{last} or {}-{last} or 0,{},{last}",
            last.saturating_sub(7).max(last / 2),
            last / 3
        ))
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(bad("empty item".into()));
        }
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: usize = a
            .parse()
            .map_err(|_| bad(format!("{a:?} is not a block index")))?;
        let b: usize = b
            .parse()
            .map_err(|_| bad(format!("{b:?} is not a block index")))?;
        if a > b {
            return Err(bad(format!("range {a}-{b} runs backwards")));
        }
        if b >= nb {
            return Err(bad(format!("block {b} does not exist")));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
