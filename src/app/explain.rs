//! One explanation: run the plan on a photo (`run_one`), then write every output format
//! the run asks for and the JSON report last (`write_one`), each file atomically.

use super::augment;
use super::engine::Engine;
use super::record::{ExplainOptions, Explained, Report, report};
use super::scorecam;
use super::write::{self, FORMATS, Item};
use crate::cam::methods::Explainer;
use crate::error::Result;
use crate::model::plan::ExplainerOutput;
use crate::model::plan::{self, Output, Plan, PlanOptions};
use crate::preprocess::Preprocessed;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The GPU part of one explanation: the plan run on the preprocessed photo (forward,
/// backward, the gradient methods' maps), then Score-CAM's masked passes if asked for. With
/// `--aug-smooth`, six augmented inputs instead (`run_aug`), their maps averaged.
pub fn run_one(engine: &mut Engine, pre: &Preprocessed, o: &ExplainOptions) -> Result<Explained> {
    let (h, w) = (pre.height, pre.width);
    let before = engine.gpu.pipelines.stats();
    let first = match o.aug_smooth {
        true => run_aug(engine, pre, o)?,
        false => {
            let opts = plan_options(engine, o, (h, w));
            let mut pass = plan_pass(engine, &pre.tensor, (h, w), o, (&opts, o.target))?;
            let target = pass.out.target;
            let (made, s) = score_cams(engine, &opts, &pre.tensor, (h, w), o, target)?;
            merge(
                &mut pass.out,
                o,
                (made.into_iter().map(|mut e| e.remove(0)), s[0]),
            );
            pass
        }
    };
    let after = engine.gpu.pipelines.stats();
    Ok(Explained {
        compile_s: after.seconds - before.seconds,
        out: first.out,
        gpu_memory_bytes: engine.gpu_bytes(),
        input_size: (h, w),
        plan_build_s: first.plan_build_s,
        embedding: first.embedding,
    })
}

/// `--aug-smooth`: the six augmented inputs (`augment::RUNS`). The gradient methods' run as one
/// batch through a plan of six images where it fits (`aug_batched`), else one after another;
/// Score-CAM's and AblationCAM's as the originals of one set of masked copies, mixed in their
/// batches (`score_cams`). Every input explains the photo's target; the maps are averaged.
fn run_aug(engine: &mut Engine, pre: &Preprocessed, o: &ExplainOptions) -> Result<Pass> {
    let (h, w) = (pre.height, pre.width);
    let inputs: Vec<f32> = (augment::RUNS.iter())
        .flat_map(|&aug| augment::input(&pre.tensor, w, aug))
        .collect();
    let by_score = |e: &&Explainer| e.method.is_score_cam();
    let grads = ExplainOptions {
        explainers: o
            .explainers
            .iter()
            .filter(|e| !by_score(e))
            .copied()
            .collect(),
        ..o.clone()
    };
    let score_only = grads.explainers.is_empty() && !o.explainers.is_empty();
    let (mut pass, score_opts) = if score_only {
        // the photo's prediction from the plan Score-CAM's copies run in, as without augmenting
        let opts = plan_options(engine, o, (h, w));
        (
            plan_pass(engine, &pre.tensor, (h, w), o, (&opts, o.target))?,
            opts,
        )
    } else {
        let pass = match aug_batched(engine, &inputs, (h, w), &grads)? {
            Some(p) => p,
            None => aug_looped(engine, pre, &grads)?,
        };
        let opts = PlanOptions {
            eigen_smooth: o.eigen_smooth,
            ..PlanOptions::forward(batch_of(o))
        };
        (pass, opts)
    };
    let target = pass.out.target;
    let (made, [s, build_s]) = score_cams(engine, &score_opts, &inputs, (h, w), o, target)?;
    let sizes = pass.out.map_sizes.clone();
    let made = made
        .into_iter()
        .map(|runs| augment::average_one(runs, &sizes, w));
    merge(&mut pass.out, o, (made, s));
    // Score-CAM's plan, when not the gradient methods'
    pass.plan_build_s += build_s;
    Ok(pass)
}

/// `--aug-smooth`'s six runs (`augment::RUNS`, their inputs one after another in `inputs`) as
/// one batch through a plan of six images (`Plan::run_images`), their maps averaged; None
/// where the six do not fit the adapter (`Plan::images_fit`: on a CPU adapter, within 2 GiB),
/// and the runs go one after another. `o` holds no Score-CAM (`run_aug`).
fn aug_batched(
    engine: &mut Engine,
    inputs: &[f32],
    (h, w): (usize, usize),
    o: &ExplainOptions,
) -> Result<Option<Pass>> {
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
    engine.comparison = o.comparison;
    let runs = engine.run_images(inputs, (h, w), &opts, o.target, o.score)?;
    // the first image is the photo as it is
    let embedding = match o.embedding {
        true => Some(engine.embedding(h, w, &opts)?),
        false => None,
    };
    Ok(Some(Pass {
        out: augment::average(runs, (h, w)),
        plan_build_s,
        embedding,
    }))
}

/// `--aug-smooth`'s six runs one after another through a plan of one image, their maps
/// averaged. `o` holds no Score-CAM (`run_aug`).
fn aug_looped(engine: &mut Engine, pre: &Preprocessed, o: &ExplainOptions) -> Result<Pass> {
    let (h, w) = (pre.height, pre.width);
    let opts = plan_options(engine, o, (h, w));
    let mut first = plan_pass(engine, &pre.tensor, (h, w), o, (&opts, o.target))?;
    let out = std::mem::take(&mut first.out);
    let target = Some(out.target);
    let mut seconds = [out.gpu_seconds, out.readback_seconds];
    let mut runs = vec![out];
    let again = ExplainOptions {
        embedding: false,
        ..o.clone()
    };
    for &aug in &augment::RUNS[1..] {
        let x = augment::input(&pre.tensor, w, aug);
        let r = plan_pass(engine, &x, (h, w), &again, (&opts, target))?.out;
        seconds
            .iter_mut()
            .zip([r.gpu_seconds, r.readback_seconds])
            .for_each(|(s, e)| *s += e);
        runs.push(r);
    }
    first.out = augment::average(runs, (h, w));
    [first.out.gpu_seconds, first.out.readback_seconds] = seconds;
    Ok(first)
}

/// What one run of the plan (and Score-CAM's passes) gives.
struct Pass {
    out: Output,
    plan_build_s: f64,
    embedding: Option<Vec<f32>>,
}

/// Score-CAM's masked copies per batch: `--batch`, or the plan's default.
fn batch_of(o: &ExplainOptions) -> usize {
    match o.batch {
        0 => PlanOptions::AUTO_BATCH,
        n => n,
    }
}

/// The plan's options for `o` at an `h`×`w` input: the gradient methods (Score-CAM's are
/// masked passes the plan runs as copies), the blocks KPCA-CAM fits where it fits them.
fn plan_options(engine: &Engine, o: &ExplainOptions, (h, w): (usize, usize)) -> PlanOptions {
    let score_cam = o.explainers.iter().any(|e| e.method.is_score_cam());
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
        masked: if score_cam { batch_of(o) } else { 0 },
        eigen_smooth: o.eigen_smooth,
        images: 1,
    }
}

/// One run of the plan of `opts` on the input tensor `x`, at `target` (None: the top one),
/// and the retrieval embedding if asked for.
fn plan_pass(
    engine: &mut Engine,
    x: &[f32],
    (h, w): (usize, usize),
    o: &ExplainOptions,
    (opts, target): (&PlanOptions, Option<usize>),
) -> Result<Pass> {
    engine.comparison = o.comparison;
    let out = engine.run(x, h, w, opts, target, o.score)?;
    let plan_build_s = engine.last_plan_build_s;
    // before Score-CAM's masked copies overwrite the plan's features
    let embedding = match o.embedding {
        true => Some(engine.embedding(h, w, opts)?),
        false => None,
    };
    Ok(Pass {
        out,
        plan_build_s,
        embedding,
    })
}

/// Score-CAM's and AblationCAM's explainers of `o`, each for every original in `originals`
/// (one or more inputs one after another, as many at once as the plan of `opts` holds), by
/// masked copies of that plan (`scorecam::explain`): one output per explainer and original,
/// with their time and the time the plan took to build (0 when made before). None asked for:
/// nothing, and no plan.
fn score_cams(
    engine: &mut Engine,
    opts: &PlanOptions,
    originals: &[f32],
    (h, w): (usize, usize),
    o: &ExplainOptions,
    target: usize,
) -> Result<(Vec<Vec<ExplainerOutput>>, [f64; 2])> {
    let wanted: Vec<Explainer> = (o.explainers.iter().copied())
        .filter(|e| e.method.is_score_cam())
        .collect();
    if wanted.is_empty() {
        return Ok((Vec::new(), [0.0; 2]));
    }
    let gpu = engine.gpu.clone();
    let gpu = &*gpu;
    let plan = engine.plan(h, w, opts)?;
    let t0 = Instant::now();
    plan::note_batch(o.batch, plan.masked_copies());
    let count = originals.len() / (3 * h * w);
    let total = scorecam::passes(plan, &wanted, &o.score_blocks, count);
    let pb = indicatif::ProgressBar::new(total as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} masked passes (Score-CAM, AblationCAM; {} per batch) [{{elapsed_precise}}, eta {{eta}}]",
            plan.masked_copies()
        ))
        .unwrap(),
    );
    let mut made: Vec<Vec<ExplainerOutput>> = vec![Vec::new(); wanted.len()];
    let at_once = plan.masked_originals_held().max(1) * 3 * h * w;
    for chunk in originals.chunks(at_once) {
        plan.set_masked_originals(gpu, chunk)?;
        for (&e, runs) in wanted.iter().zip(&mut made) {
            let done = pb.position() as usize;
            runs.extend(scorecam::explain(
                gpu,
                plan,
                e,
                &o.score_blocks,
                (target, o.score),
                &mut |n| pb.set_position((done + n) as u64),
            )?);
        }
    }
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    Ok((made, [seconds, engine.last_plan_build_s]))
}

/// `out`'s explainers in the order `o` asks for: the plan's gradient methods as they are, and
/// Score-CAM's from `made` (one per explainer, in order); their time (`score_cams`) added to
/// the GPU part.
fn merge(
    out: &mut Output,
    o: &ExplainOptions,
    (mut made, seconds): (impl Iterator<Item = ExplainerOutput>, f64),
) {
    if !o.explainers.iter().any(|e| e.method.is_score_cam()) {
        return;
    }
    let mut grads = std::mem::take(&mut out.explainers).into_iter();
    out.explainers = o
        .explainers
        .iter()
        .map(|e| {
            if e.method.is_score_cam() {
                made.next()
            } else {
                grads.next()
            }
            .expect("one output per explainer")
        })
        .collect();
    out.mirror_first();
    out.masked_seconds += seconds;
    out.gpu_seconds += seconds;
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
