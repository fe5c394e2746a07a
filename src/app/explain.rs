//! One explanation: run the plan on a photo (`run_one`), then write every output format
//! the run asks for and the JSON report last (`write_one`), each file atomically.

use super::augment;
use super::engine::Engine;
use super::record::{ExplainOptions, Explained, Report, report};
use super::scorecam;
use super::write::{self, FORMATS, Item};
use crate::cam::methods::Explainer;
use crate::error::Result;
use crate::model::plan::{self, Output, Plan, PlanOptions};
use crate::preprocess::Preprocessed;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The GPU part of one explanation: the plan run on the preprocessed photo (forward,
/// backward, the gradient methods' maps), then Score-CAM's masked passes if asked for. With
/// `--aug-smooth` the six augmented inputs (`augment`) run as one batch where the methods
/// allow (`aug_batched`), else one after another; their maps are averaged.
pub fn run_one(engine: &mut Engine, pre: &Preprocessed, o: &ExplainOptions) -> Result<Explained> {
    let (h, w) = (pre.height, pre.width);
    let before = engine.gpu.pipelines.stats();
    let batched = match o.aug_smooth {
        true => aug_batched(engine, pre, o)?,
        false => None,
    };
    let first = match batched {
        Some(p) => p,
        None => run_pass(engine, &pre.tensor, (h, w), o, o.target)?,
    };
    let after = engine.gpu.pipelines.stats();
    let mut out = first.out;
    if o.aug_smooth && !first.batched {
        let target = Some(out.target);
        let mut seconds = [out.gpu_seconds, out.readback_seconds, out.masked_seconds];
        let mut runs = vec![out];
        let again = ExplainOptions {
            embedding: false,
            ..o.clone()
        };
        for &aug in &augment::RUNS[1..] {
            let x = augment::input(&pre.tensor, w, aug);
            let r = run_pass(engine, &x, (h, w), &again, target)?.out;
            let each = [r.gpu_seconds, r.readback_seconds, r.masked_seconds];
            seconds.iter_mut().zip(each).for_each(|(s, e)| *s += e);
            runs.push(r);
        }
        out = augment::average(runs, (h, w));
        [out.gpu_seconds, out.readback_seconds, out.masked_seconds] = seconds;
    }
    Ok(Explained {
        compile_s: after.seconds - before.seconds,
        out,
        gpu_memory_bytes: engine.gpu_bytes(),
        input_size: (h, w),
        plan_build_s: first.plan_build_s,
        embedding: first.embedding,
    })
}

/// `--aug-smooth`'s six runs (`augment::RUNS`) as one batch through a plan of six images
/// (`Plan::run_images`), their maps averaged; None where the six do not fit the adapter
/// (`Plan::images_fit`: on a CPU adapter, within 2 GiB) or a method takes no batch
/// (`PlanOptions::batches_images`: Score-CAM's and AblationCAM's masked passes batch copies
/// of one image instead), and the runs go one after another. Every image explains the
/// photo's target, as the looped runs do.
fn aug_batched(
    engine: &mut Engine,
    pre: &Preprocessed,
    o: &ExplainOptions,
) -> Result<Option<Pass>> {
    let (h, w) = (pre.height, pre.width);
    let mut opts = plan_options(engine, o, (h, w));
    opts.images = augment::RUNS.len();
    if !opts.batches_images() || !Plan::images_fit(&engine.gpu, &engine.model, h, w, opts.images) {
        return Ok(None);
    }
    // what `images_fit` does not foresee (a GPU's memory, which wgpu does not tell; the CAM
    // phase's scratch, KPCA-CAM's kernel matrices above all) can still stop the plan of six:
    // the runs then go one after another, and a real error comes back from them
    if let Err(e) = engine.plan(h, w, &opts) {
        eprintln!(
            "note: --aug-smooth's six runs did not fit this adapter at once ({e}); running them one after another"
        );
        return Ok(None);
    }
    // the build just done: `run_images` below finds the plan made and reports none
    let plan_build_s = engine.last_plan_build_s;
    let x: Vec<f32> = (augment::RUNS.iter())
        .flat_map(|&aug| augment::input(&pre.tensor, w, aug))
        .collect();
    engine.comparison = o.comparison;
    let runs = engine.run_images(&x, (h, w), &opts, o.target, o.score)?;
    // the first image is the photo as it is
    let embedding = match o.embedding {
        true => Some(engine.embedding(h, w, &opts)?),
        false => None,
    };
    Ok(Some(Pass {
        out: augment::average(runs, (h, w)),
        plan_build_s,
        embedding,
        batched: true,
    }))
}

/// What one run of the plan (and Score-CAM's passes) gives.
struct Pass {
    out: Output,
    plan_build_s: f64,
    embedding: Option<Vec<f32>>,
    /// the six augmented runs of `--aug-smooth` in one batch, already averaged
    batched: bool,
}

/// The plan's options for `o` at an `h`×`w` input: the gradient methods (Score-CAM's are
/// masked passes the plan runs as copies), the blocks KPCA-CAM fits where it fits them.
fn plan_options(engine: &Engine, o: &ExplainOptions, (h, w): (usize, usize)) -> PlanOptions {
    let score_cam = o.explainers.iter().any(|e| e.method.is_score_cam());
    let batch = match o.batch {
        0 => PlanOptions::AUTO_BATCH,
        n => n,
    };
    let blocks = match o.fit_kpca {
        true => engine.kpca_blocks(&o.blocks, (h, w)),
        false => o.blocks.clone(),
    };
    PlanOptions {
        backward: true,
        blocks,
        explainers: o
            .explainers
            .iter()
            .copied()
            .filter(|e| !e.method.is_score_cam())
            .collect(),
        masked: if score_cam { batch } else { 0 },
        eigen_smooth: o.eigen_smooth,
        images: 1,
    }
}

/// One run on the input tensor `x`: the plan, then Score-CAM's masked passes.
fn run_pass(
    engine: &mut Engine,
    x: &[f32],
    (h, w): (usize, usize),
    o: &ExplainOptions,
    target: Option<usize>,
) -> Result<Pass> {
    let score_cams: Vec<Explainer> = o
        .explainers
        .iter()
        .copied()
        .filter(|e| e.method.is_score_cam())
        .collect();
    let opts = plan_options(engine, o, (h, w));
    engine.comparison = o.comparison;
    let mut out = engine.run(x, h, w, &opts, target, o.score)?;
    let plan_build_s = engine.last_plan_build_s;
    // before Score-CAM's masked copies overwrite the plan's features
    let embedding = if o.embedding {
        Some(engine.embedding(h, w, &opts)?)
    } else {
        None
    };
    if !score_cams.is_empty() {
        let t0 = Instant::now();
        let gpu = engine.gpu.clone();
        let gpu = &*gpu;
        let plan = engine.plan(h, w, &opts)?;
        plan::note_batch(o.batch, plan.masked_copies());
        let acts = scorecam::block_outputs(gpu, plan, &o.score_blocks)?;
        let total = scorecam::passes(plan, &score_cams, &o.score_blocks);
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} masked passes (Score-CAM, AblationCAM; {} per batch) [{{elapsed_precise}}, eta {{eta}}]",
                plan.masked_copies()
            ))
            .unwrap(),
        );
        let mut made = Vec::new();
        let mut done = 0;
        for &e in &score_cams {
            let eo = scorecam::explain(
                gpu,
                plan,
                &acts,
                e,
                &o.score_blocks,
                (out.target, o.score),
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
        out.masked_seconds = t0.elapsed().as_secs_f64();
        out.gpu_seconds += out.masked_seconds;
    }
    Ok(Pass {
        out,
        plan_build_s,
        embedding,
        batched: false,
    })
}

/// The CPU part: every format the run asks for (`write::FORMATS`), then the JSON report,
/// written last so that its presence means the image is complete.
pub fn write_one(it: &Item) -> Result<Report> {
    let t0 = Instant::now();
    let mut report = report(it.ctx, it.image, it.photo, it.done, it.decode_s, it.o);
    let mut page_s = 0.0;
    for f in FORMATS.iter().filter(|f| f.wanted(it.o)) {
        let t = Instant::now();
        report.timings.write_s = t0.elapsed().as_secs_f64() - page_s;
        let files = f.write(it, &report)?;
        if f.is_report_page() {
            page_s += t.elapsed().as_secs_f64();
        }
        report
            .outputs
            .extend(files.iter().map(|p| p.display().to_string()));
    }
    let p_json = it.dir.join(format!("{}.json", it.stem));
    report.outputs.push(p_json.display().to_string());
    report.timings.write_s = t0.elapsed().as_secs_f64() - page_s;
    report.timings.report_s = page_s;
    write::json::write(&report, &p_json)?;
    Ok(report)
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
