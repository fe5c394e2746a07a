//! One explanation: run the plan on a photo and write the overlay, the heat map, the JSON
//! report and (optionally) the raw maps as safetensors, each atomically.

use super::methods::Explainer;
use super::render::{heatmap_rgb, overlay, write_bytes_atomic, write_png_atomic};
use crate::engine::{Engine, Prediction, TopEntry};
use crate::error::{Error, Result};
use crate::model::efficientnet::{Output, PlanOptions, Score};
use crate::preprocess::Preprocessed;
use safetensors::{Dtype, tensor::TensorView};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct ExplainOptions {
    /// the blocks of the gradient methods
    pub blocks: Vec<usize>,
    /// the blocks of Score-CAM (the last one unless --blocks says otherwise)
    pub score_blocks: Vec<usize>,
    /// the CAM methods and fusion rules (Combi-CAM by default)
    pub explainers: Vec<Explainer>,
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
    /// also write `<stem>.report.html` (`cam::report`)
    pub report: bool,
    /// put visloc's retrieval embedding in the JSON (`--embedding`)
    pub embedding: bool,
    /// `evaluate --json` results to show in the reports (`--metrics`)
    pub metrics: Option<std::sync::Arc<Vec<crate::eval::ImageMetrics>>>,
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
    pub gpu_s: f64,
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

/// The GPU part of one explanation: the plan run on the preprocessed photo (forward,
/// backward, the gradient methods' maps), then Score-CAM's masked passes if asked for.
pub fn run_one(engine: &mut Engine, pre: &Preprocessed, o: &ExplainOptions) -> Result<Explained> {
    let (h, w) = (pre.height, pre.width);
    let score_cams: Vec<Explainer> = o
        .explainers
        .iter()
        .copied()
        .filter(|e| e.method.is_score_cam())
        .collect();
    let batch = match o.batch {
        0 => PlanOptions::AUTO_BATCH,
        n => n,
    };
    let opts = PlanOptions {
        backward: true,
        blocks: o.blocks.clone(),
        explainers: o
            .explainers
            .iter()
            .copied()
            .filter(|e| !e.method.is_score_cam())
            .collect(),
        masked: if score_cams.is_empty() { 0 } else { batch },
    };
    let before = engine.gpu.pipelines.stats();
    let mut out = engine.run(&pre.tensor, h, w, &opts, o.target, o.score)?;
    let after = engine.gpu.pipelines.stats();
    let plan_build_s = engine.last_plan_build_s;
    // before Score-CAM's masked copies overwrite the plan's features
    let embedding = if o.embedding {
        Some(engine.embedding(h, w, &opts)?)
    } else {
        None
    };
    if !score_cams.is_empty() {
        let gpu = engine.gpu;
        let plan = engine.plan(h, w, &opts)?;
        crate::model::masked::note_batch(o.batch, plan.masked_copies());
        let acts = super::scorecam::block_outputs(gpu, plan, &o.score_blocks)?;
        let total = super::scorecam::passes(plan, &score_cams, &o.score_blocks);
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} masked passes (Score-CAM, {} per batch) [{{elapsed_precise}}, eta {{eta}}]",
                plan.masked_copies()
            ))
            .unwrap(),
        );
        let mut made = Vec::new();
        let mut done = 0;
        for &e in &score_cams {
            let eo = super::scorecam::explain(
                gpu,
                plan,
                &acts,
                e,
                &o.score_blocks,
                out.target,
                o.score,
                &mut |n| pb.set_position((done + n) as u64),
            )?;
            done = pb.position() as usize;
            made.push(eo);
        }
        pb.finish_and_clear();
        // every explainer in the order asked for
        let mut grads = std::mem::take(&mut out.explainers).into_iter();
        let mut scores = made.into_iter();
        out.explainers = o
            .explainers
            .iter()
            .map(|e| {
                if e.method.is_score_cam() {
                    scores.next()
                } else {
                    grads.next()
                }
                .expect("one output per explainer")
            })
            .collect();
        out.mirror_first();
    }
    Ok(Explained {
        compile_s: after.seconds - before.seconds,
        out,
        gpu_memory_bytes: engine.gpu_bytes(),
        input_size: (h, w),
        plan_build_s,
        embedding,
    })
}

/// Run and write everything for one photo; `stem` names the files in `out_dir`.
#[allow(clippy::too_many_arguments)]
pub fn explain_one(
    engine: &mut Engine,
    image: &Path,
    photo: &image::RgbImage,
    pre: &Preprocessed,
    decode_s: f64,
    out_dir: &Path,
    stem: &str,
    o: &ExplainOptions,
) -> Result<Report> {
    let done = run_one(engine, pre, o)?;
    write_one(
        &WriteContext::of(engine),
        image,
        photo,
        done,
        decode_s,
        out_dir,
        stem,
        o,
    )
}

/// The CPU part: the overlays and heat maps, the raw maps, and the JSON report (written
/// last, so that its presence means the image is complete).
#[allow(clippy::too_many_arguments)]
pub fn write_one(
    ctx: &WriteContext,
    image: &Path,
    photo: &image::RgbImage,
    done: Explained,
    decode_s: f64,
    out_dir: &Path,
    stem: &str,
    o: &ExplainOptions,
) -> Result<Report> {
    let Explained {
        out,
        gpu_memory_bytes,
        input_size: (h, w),
        plan_build_s,
        compile_s,
        embedding,
    } = done;
    let weights = &*ctx.weights;
    let t0 = Instant::now();
    let shown = super::render::fit(photo, o.overlay_size);
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
    let mut outputs = Vec::new();
    for e in &out.explainers {
        let (lo, hi) = e.fused_range;
        if !(hi - lo > 1e-5 * lo.abs().max(hi.abs())) {
            warnings.push(format!(
                "the fused {} map is flat (every block's map is zero after ReLU, or their sum is constant to float32 precision); {} is all zeros",
                e.explainer.method.name(),
                e.explainer.fused_name()
            ));
        }
        let heat = heatmap_rgb(&e.fused, h, w, shown.width(), shown.height());
        let blended = overlay(&shown, &heat, o.alpha);
        let (p_overlay, p_heat) = png_names(out_dir, stem, &e.explainer);
        write_png_atomic(&blended, &p_overlay)?;
        write_png_atomic(&heat, &p_heat)?;
        outputs.push(p_overlay.display().to_string());
        outputs.push(p_heat.display().to_string());
    }
    if o.save_raw {
        let p_raw = out_dir.join(format!("{stem}.cams.safetensors"));
        let photo_size = o
            .raw_at_photo_size
            .then(|| (photo.height() as usize, photo.width() as usize));
        write_bytes_atomic(&raw_safetensors(&out, h, w, photo_size)?, &p_raw)?;
        outputs.push(p_raw.display().to_string());
    }
    let p_json = out_dir.join(format!("{stem}.json"));
    outputs.push(p_json.display().to_string());
    let cfg = &weights.cfg;
    let report = Report {
        prediction: crate::engine::summarize(weights, &image.display().to_string(), &out, o.top_k),
        target: out.target,
        explained: crate::engine::entry(weights, &out, out.target),
        score: o.score,
        region_mass: match (o.score, &weights.classifier.kind) {
            (Score::Region(km), crate::model::weights::HeadKind::Geo { lat, lon }) => Some(
                (0..out.probs.len())
                    .filter(|&i| {
                        crate::model::geo::haversine_km(
                            lat[out.target],
                            lon[out.target],
                            lat[i],
                            lon[i],
                        ) <= km as f64
                    })
                    .map(|i| out.probs[i] as f64)
                    .sum(),
            ),
            _ => None,
        },
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
        warnings,
        timings: Timings {
            decode_preprocess_s: decode_s,
            plan_build_s,
            compile_s,
            gpu_s: out.gpu_seconds,
            readback_s: out.readback_seconds,
            write_s: t0.elapsed().as_secs_f64(),
            report_s: 0.0,
        },
        adapter: ctx.adapter.clone(),
        gpu_memory_bytes,
        embedding,
        outputs,
    };
    let mut report = report;
    if o.report {
        let t = Instant::now();
        let metrics = o
            .metrics
            .as_deref()
            .and_then(|l| crate::eval::metrics_of(l, image));
        let page = super::report::write(
            out_dir,
            stem,
            photo,
            &out,
            &report,
            &weights.cfg,
            o.alpha,
            metrics,
        )?;
        report.timings.report_s = t.elapsed().as_secs_f64();
        // the JSON stays last: its presence means the image is complete
        let last = report.outputs.pop();
        report.outputs.push(page.display().to_string());
        report.outputs.extend(last);
    }
    let json = serde_json::to_vec_pretty(&report).map_err(|e| Error::output(&p_json, e))?;
    write_bytes_atomic(&json, &p_json)?;
    Ok(report)
}

/// The blocks an explainer's map fuses: those with a map.
pub fn used_blocks(maps: &[Option<Vec<f32>>]) -> Vec<usize> {
    (0..maps.len()).filter(|&l| maps[l].is_some()).collect()
}

/// The overlay and heat-map files of an explainer: `<stem>.combicam.png` and
/// `<stem>.heatmap.png` for Combi-CAM, else `<stem>.<method>[.<rule>].png` and
/// `<stem>.<method>[.<rule>].heatmap.png` (the rule when it is not the method's default).
pub fn png_names(out_dir: &Path, stem: &str, e: &Explainer) -> (PathBuf, PathBuf) {
    if *e == Explainer::COMBICAM {
        return (
            out_dir.join(format!("{stem}.combicam.png")),
            out_dir.join(format!("{stem}.heatmap.png")),
        );
    }
    let tag = e.fused_name();
    let tag = tag.trim_end_matches(".fused");
    (
        out_dir.join(format!("{stem}.{tag}.png")),
        out_dir.join(format!("{stem}.{tag}.heatmap.png")),
    )
}

/// `probs`, `logits` (N); per method m, `m.NN` (h_l, w_l) for the fused blocks (after ReLU,
/// unnormalised; `gradcam.NN` for Grad-CAM) and its fused map (H, W), normalised to [0, 1]
/// (`combicam` for Combi-CAM, else `m.fused`, or `m.RULE.fused` for a rule other than the
/// method's default). With `photo` = (H', W'), each fused map also as `<name>.photo`
/// (H', W'): resized to the photo's resolution by the overlays' bilinear rule.
pub fn raw_safetensors(
    out: &Output,
    h: usize,
    w: usize,
    photo: Option<(usize, usize)>,
) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        (
            "probs".into(),
            vec![out.probs.len()],
            bytemuck::cast_slice(&out.probs).to_vec(),
        ),
        (
            "logits".into(),
            vec![out.logits.len()],
            bytemuck::cast_slice(&out.logits).to_vec(),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for e in &out.explainers {
        tensors.push((
            e.explainer.fused_name(),
            vec![h, w],
            bytemuck::cast_slice(&e.fused).to_vec(),
        ));
        if let Some((ph, pw)) = photo {
            let big = super::render::resize_bilinear(&e.fused, h, w, ph, pw);
            tensors.push((
                format!("{}.photo", e.explainer.fused_name()),
                vec![ph, pw],
                bytemuck::cast_slice(&big).to_vec(),
            ));
        }
        // a method's block maps do not depend on the fusion rule: written once
        if !seen.insert(e.explainer.method) {
            continue;
        }
        for (l, m) in e.maps.iter().enumerate() {
            if let Some(m) = m {
                let (mh, mw) = out.map_sizes[l];
                tensors.push((
                    format!("{}.{l:02}", e.explainer.method.name()),
                    vec![mh, mw],
                    bytemuck::cast_slice(m).to_vec(),
                ));
            }
        }
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = std::collections::HashMap::from([
        ("target".to_string(), out.target.to_string()),
        ("producer".to_string(), "combicam-gpu".to_string()),
    ]);
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Input(format!("cannot encode raw maps: {e}")))
}

/// File stem for outputs, unique within a run and its output sub-folder.
pub fn unique_stem(
    path: &Path,
    used: &mut std::collections::HashSet<(PathBuf, String)>,
    rel_dir: &Path,
) -> String {
    let base = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "image".into());
    let mut stem = base.clone();
    let mut i = 2;
    while !used.insert((rel_dir.to_path_buf(), stem.clone())) {
        stem = format!("{base}-{i}");
        i += 1;
    }
    stem
}
