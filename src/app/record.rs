//! One explanation's data: what was asked (`ExplainOptions`), what the GPU made
//! (`Explained`), and the JSON report (`Report`) every writer reads.

use crate::app::engine::{self, Engine, Prediction, TopEntry};
use crate::cam::methods::Explainer;
use crate::model::geo;
use crate::model::plan::{Output, Score};
use crate::model::weights::HeadKind;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct ExplainOptions {
    /// the blocks of the gradient methods
    pub blocks: Vec<usize>,
    /// `blocks` is the default and KPCA-CAM the only gradient method: a run keeps those of
    /// them that fit KPCA-CAM at the photo's size (`cam::eigen::kpca_blocks`)
    pub fit_kpca: bool,
    /// the blocks of Score-CAM (the last one unless --blocks says otherwise)
    pub score_blocks: Vec<usize>,
    /// the CAM methods and fusion rules (Combi-CAM by default)
    pub explainers: Vec<Explainer>,
    /// `--eigen-smooth` (`PlanOptions::eigen_smooth`)
    pub eigen_smooth: bool,
    /// `--aug-smooth`: the maps averaged over six augmented runs (`app::augment`)
    pub aug_smooth: bool,
    /// FinerCAM's comparison classes (`--comparison`, `Engine::comparison`)
    pub comparison: u32,
    pub target: Option<usize>,
    pub score: Score,
    pub alpha: f32,
    /// longest side of the PNGs (0: the photo's size)
    pub overlay_size: u32,
    pub save_raw: bool,
    /// with `save_raw`, also the fused maps at the photo's resolution (`--raw-size photo`)
    pub raw_at_photo_size: bool,
    pub top_k: usize,
    /// masked copies per batch for Score-CAM (0: `PlanOptions::AUTO_BATCH`)
    pub batch: usize,
    /// also write `<stem>.report.html` (`write::html`)
    pub report: bool,
    /// put visloc's retrieval embedding in the JSON (`--embedding`)
    pub embedding: bool,
    /// `evaluate --json` results to show in the reports (`--metrics`)
    pub metrics: Option<std::sync::Arc<Vec<crate::app::eval::ImageMetrics>>>,
}

#[derive(Serialize)]
pub struct BlockReport {
    pub block: usize,
    pub size: [usize; 2],
    /// max |A_l| over the block output (the paper's Figure 4 quantity)
    pub max_abs_activation: f32,
    pub map_max: Option<f32>,
    pub map_mean: Option<f32>,
}

/// One method's results in the JSON report.
#[derive(Serialize)]
pub struct MethodReport {
    pub method: &'static str,
    pub fusion: &'static str,
    /// the fused map's name in the raw file (`combicam` for Combi-CAM)
    pub fused: String,
    /// min and max of the fused map before normalisation
    pub fused_range: [f32; 2],
    /// per selected block: the map's peak and mean (at the block's resolution)
    pub blocks: Vec<MethodBlock>,
}

#[derive(Serialize)]
pub struct MethodBlock {
    pub block: usize,
    pub peak: f32,
    pub mean: f32,
}

#[derive(Serialize)]
pub struct Timings {
    pub decode_preprocess_s: f64,
    /// building the plan for this input size (0 when an earlier image's plan was reused)
    pub plan_build_s: f64,
    /// of which compiling: the shader compiler, and the driver's code generation, which some
    /// drivers (lavapipe) do on a kernel's first dispatch and the plan build forces then
    /// (`Gpu::warm_up`); once per process, and much more on a machine's first run, before the
    /// driver's disk cache holds the code
    pub compile_s: f64,
    /// the GPU part: the plan's submission, and Score-CAM's and AblationCAM's masked passes
    /// (with --aug-smooth, every run's)
    pub gpu_s: f64,
    /// of `gpu_s`: the masked passes (each a batch of copies, one submission; with their
    /// weights and maps, made on the CPU)
    pub masked_s: f64,
    pub readback_s: f64,
    pub write_s: f64,
    /// with --report: writing the page and its block overlays
    pub report_s: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub prediction: Prediction,
    pub target: usize,
    /// the explained cell/class: the top one, or the one --target / --target-latlon named
    pub explained: TopEntry,
    pub score: Score,
    /// with --score region:KM: the probability mass within KM of the target cell's centre
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_mass: Option<f64>,
    /// `--eigen-smooth`: every map is its method's weighted activations' first principal
    /// component
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub eigen_smooth: bool,
    /// `--aug-smooth`: every map is the mean of six augmented runs' (flip × 0.9, 1.0, 1.1)
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aug_smooth: bool,
    pub model: String,
    pub weights: String,
    pub input_size: [usize; 2],
    pub original_size: [u32; 2],
    pub blocks_fused: Vec<usize>,
    pub fused_range: [f32; 2],
    pub blocks: Vec<BlockReport>,
    /// every method asked for (the first is the one `blocks` and `fused_range` describe)
    pub methods: Vec<MethodReport>,
    pub warnings: Vec<String>,
    pub timings: Timings,
    pub adapter: crate::gpu::AdapterSummary,
    /// GPU memory held after this image: weights and plans
    pub gpu_memory_bytes: u64,
    /// with --embedding: visloc's retrieval embedding (L2-normalised)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    pub outputs: Vec<String>,
}

/// A photo enlarged more than this to reach the model's input gets a warning.
pub const MAX_UPSCALE: f64 = 4.0;
/// How that warning begins (the command line prints it once per run).
pub const UPSCALED: &str = "upscaled";

/// What the GPU made of one photo, for `write_one` (possibly on another thread).
pub struct Explained {
    pub out: Output,
    /// GPU memory the engine held after the run
    pub gpu_memory_bytes: u64,
    pub input_size: (usize, usize),
    pub plan_build_s: f64,
    pub compile_s: f64,
    pub embedding: Option<Vec<f32>>,
}

/// What writing needs of the engine, shareable with a writer thread.
#[derive(Clone)]
pub struct WriteContext {
    pub weights: std::sync::Arc<crate::model::weights::Weights>,
    pub adapter: crate::gpu::AdapterSummary,
}

impl WriteContext {
    pub fn of(engine: &Engine) -> WriteContext {
        WriteContext {
            weights: engine.model.weights.clone(),
            adapter: engine.gpu.adapter.clone(),
        }
    }
}

/// The blocks an explainer's map fuses: those with a map.
pub fn used_blocks(maps: &[Option<Vec<f32>>]) -> Vec<usize> {
    (0..maps.len()).filter(|&l| maps[l].is_some()).collect()
}

/// The warnings of one photo: a photo blown up more than `MAX_UPSCALE`, and flat fused maps.
pub fn warnings(photo: &image::RgbImage, (h, w): (usize, usize), out: &Output) -> Vec<String> {
    let mut warnings = Vec::new();
    let (ph, pw) = (photo.height().max(1) as f64, photo.width().max(1) as f64);
    let scale = (h as f64 / ph).max(w as f64 / pw);
    if scale > MAX_UPSCALE {
        warnings.push(format!(
            "{UPSCALED} {scale:.0}× (the photo is {}×{} pixels, the model's input {w}×{h}): the maps show a blown-up image with little detail of its own; use a photo of at least {}×{} pixels",
            photo.width(),
            photo.height(),
            (w as f64 / MAX_UPSCALE).ceil(),
            (h as f64 / MAX_UPSCALE).ceil(),
        ));
    }
    for e in &out.explainers {
        let (lo, hi) = e.fused_range;
        if crate::cam::fusion::cpu::flat_range(lo, hi) {
            warnings.push(format!(
                "the fused {} map is flat (every block's map is zero after ReLU, or their sum is constant to float32 precision); {} is all zeros",
                e.explainer.method.name(),
                e.explainer.fused_name()
            ));
        }
    }
    warnings
}

/// The JSON report of one photo before any file is written: `outputs` empty, the writing
/// timings 0.
pub fn report(
    ctx: &WriteContext,
    image: &Path,
    photo: &image::RgbImage,
    done: &Explained,
    decode_s: f64,
    o: &ExplainOptions,
) -> Report {
    let weights = &*ctx.weights;
    let out = &done.out;
    let (h, w) = done.input_size;
    let cfg = &weights.cfg;
    Report {
        prediction: engine::summarize(weights, &image.display().to_string(), out, o.top_k),
        target: out.target,
        explained: engine::entry(weights, out, out.target),
        score: o.score,
        region_mass: region_mass(&weights.classifier.kind, o.score, out),
        eigen_smooth: o.eigen_smooth,
        aug_smooth: o.aug_smooth,
        model: cfg.name(),
        weights: weights.source.clone(),
        input_size: [h, w],
        original_size: [photo.height(), photo.width()],
        blocks_fused: used_blocks(&out.explainers[0].maps),
        fused_range: [out.fused_range.0, out.fused_range.1],
        blocks: (0..cfg.blocks.len())
            .map(|l| BlockReport {
                block: l,
                size: [out.map_sizes[l].0, out.map_sizes[l].1],
                max_abs_activation: out.act_maxabs[l],
                map_max: out.map_max[l],
                map_mean: out.map_mean[l],
            })
            .collect(),
        methods: out
            .explainers
            .iter()
            .map(|e| MethodReport {
                method: e.explainer.method.name(),
                fusion: e.explainer.fusion.name(),
                fused: e.explainer.fused_name(),
                fused_range: [e.fused_range.0, e.fused_range.1],
                blocks: used_blocks(&e.maps)
                    .into_iter()
                    .map(|l| MethodBlock {
                        block: l,
                        peak: e.map_max[l].unwrap_or(0.0),
                        mean: e.map_mean[l].unwrap_or(0.0),
                    })
                    .collect(),
            })
            .collect(),
        warnings: warnings(photo, (h, w), out),
        timings: Timings {
            decode_preprocess_s: decode_s,
            plan_build_s: done.plan_build_s,
            compile_s: done.compile_s,
            gpu_s: out.gpu_seconds,
            masked_s: out.masked_seconds,
            readback_s: out.readback_seconds,
            write_s: 0.0,
            report_s: 0.0,
        },
        adapter: ctx.adapter.clone(),
        gpu_memory_bytes: done.gpu_memory_bytes,
        embedding: done.embedding.clone(),
        outputs: vec![],
    }
}

/// With `--score region:KM` and cells with centres: the probability mass within KM of the
/// target cell's centre.
fn region_mass(kind: &HeadKind, score: Score, out: &Output) -> Option<f64> {
    match (score, kind) {
        (Score::Region(km), HeadKind::Geo { lat, lon }) => Some(
            (0..out.probs.len())
                .filter(|&i| {
                    geo::haversine_km(lat[out.target], lon[out.target], lat[i], lon[i]) <= km as f64
                })
                .map(|i| out.probs[i] as f64)
                .sum(),
        ),
        _ => None,
    }
}
