//! `combicam-gpu explain`: its arguments, the run over the images (weights, target, output
//! folder, resume, the decode / GPU / write pipeline, the index and the report index) and the
//! console line of each image.

use super::super::{
    DeviceArgs, INTERRUPTED, WeightsArgs, finish, load_weights_with, note_skipped, open_gpu,
};
use anyhow::bail;
use clap::{Args, ValueEnum};
use combicam_gpu::app::engine::Engine;
use combicam_gpu::app::folder::{FolderRun, prepare_out};
use combicam_gpu::app::record::{ExplainOptions, Report};
use combicam_gpu::app::runs;
use combicam_gpu::app::setup;
use combicam_gpu::cam::methods::parse_explainers;
use combicam_gpu::model::plan::Score;
use combicam_gpu::model::weights;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Copy, Clone, PartialEq, ValueEnum)]
enum RawSize {
    Input,
    Photo,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// Images or folders of images.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    weights: WeightsArgs,
    /// Output folder (created if needed).
    #[arg(long, default_value = "combicam-out", value_name = "DIR")]
    out: PathBuf,
    /// Also write <stem>.cams.safetensors: probs, logits, gradcam.NN, combicam.
    #[arg(long)]
    save_raw: bool,
    /// Size of the fused maps in the raw file: input (the model's input, default) or photo
    /// (also each fused map as `<name>.photo`, resized to the photo's resolution with the
    /// overlays' bilinear rule, to lay over the original photo). `photo` implies --save-raw.
    #[arg(long, value_enum, default_value = "input", value_name = "SIZE")]
    raw_size: RawSize,
    /// Print each image's JSON report on stdout.
    #[arg(long)]
    json: bool,
    /// Blocks to fuse: ranges and lists, e.g. 0-31, 22-29, 0,5,31 (default: all; the last
    /// block when every method is scorecam, scorecam-official, ablationcam, gradcampp-official
    /// or shapleycam).
    #[arg(long, value_name = "LIST")]
    blocks: Option<String>,
    /// CAM methods, computed at every selected block from one forward and one backward:
    /// gradcam (with the sum fusion: Combi-CAM, the default), gradcampp, xgradcam, hirescam,
    /// gradcam-elementwise, layercam, layercam-official, fem (FEM: from the activations
    /// alone), eigencam and eigengradcam (the first principal component of A, resp. g ⊙ A;
    /// the sign by Seg-Eigen-CAM's rule), kpcacam (kernel PCA of A, sigmoid kernel; blocks of
    /// at most 4,096 positions: alone and without --blocks, the blocks that fit), finercam (FinerCAM: Grad-CAM of y_c minus the
    /// --comparison classes nearest by logit, each weighted by its probability; one more
    /// forward and backward); gradcampp-official (the official repository's Grad-CAM++) and
    /// shapleycam (ShapleyCAM: w_k = mean (g − ½·H·A), H·A the head's Hessian-vector
    /// product; prob or logit score), both on the last block only, where the head's
    /// second derivative is computed; scorecam and scorecam-official (one masked forward
    /// pass per channel of each selected block, with a progress bar: 448 at B4's last block);
    /// ablationcam (AblationCAM: w_k = (y − y_k)/y, y_k the score with channel k of the block
    /// output set to 0, one pass per channel from the next block on); fullgrad (FullGrad:
    /// |b ⊙ ∂y/∂z| at every BN-folded conv output and |x ⊙ ∂y/∂x| at the input, each channel
    /// min-max normalised, summed; block l's map holds the terms at its resolution, the fusion
    /// adds the input's; sum fusion only; pytorch-grad-cam scores the logit).
    /// Comma-separated; each writes its own PNGs and raw maps.
    #[arg(long, value_name = "LIST")]
    method: Option<String>,
    /// How each method's block maps are fused: sum (Combi-CAM; default of gradcam, gradcampp,
    /// xgradcam, hirescam, gradcam-elementwise, fem, eigencam, eigengradcam, finercam, and the
    /// only rule of fullgrad), mean (default of layercam-official), mean-normalised, max
    /// (default of layercam), product. The last three normalise each block's map first.
    #[arg(long, value_name = "RULE")]
    fusion: Option<String>,
    /// What the CAM methods differentiate: prob (the target's softmax probability, as the
    /// official code), logit, or region:KM (geolocation: the probability mass of the cells
    /// within KM km of the target cell's centre, "why does it think this region?").
    #[arg(long, default_value = "prob", value_name = "SCORE")]
    score: String,
    /// FinerCAM's comparison classes: the K classes (cells) whose logits are nearest the
    /// target's, as pytorch-grad-cam's FinerCAM (its default: 3). FinerCAM differentiates
    /// Σ_j p_j(y_c − y_j)/Σ_j p_j over them, whatever --score says.
    #[arg(long, default_value_t = 3, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=32))]
    comparison: u32,
    /// Each method's block map becomes the first principal component of its weighted
    /// activations (w_k·A for the channel methods and Score-CAM, g ⊙ A, ReLU(g ⊙ A) or
    /// ReLU(g) ⊙ A for the element-wise ones), signed by Seg-Eigen-CAM's rule, rather than
    /// their sum over channels: pytorch-grad-cam's eigen_smooth (FEM included; eigencam and
    /// eigengradcam are unchanged). Smoother, less noisy maps, at one power iteration per
    /// block and method.
    #[arg(long)]
    eigen_smooth: bool,
    /// Average every map over six runs on the photo flipped or not × multiplied by 0.9, 1.0
    /// or 1.1, each map flipped back (pytorch-grad-cam's aug_smooth), all explaining the
    /// photo's own target: steadier maps. The six run as one batch where six images fit the
    /// adapter (the built-in Lite0 on a 2-core CPU: the whole command about 0.7× as long as
    /// with six runs), else one after another; scorecam's and ablationcam's masked copies of
    /// the six share their batches (six times one run's passes).
    #[arg(long)]
    aug_smooth: bool,
    /// Explain this cell/class instead of the top one: its index, or for ImageNet models its
    /// label (e.g. --target "bow tie"; a unique part of a label works too).
    #[arg(long, value_name = "INDEX|LABEL", conflicts_with = "target_latlon")]
    target: Option<String>,
    /// Explain the cell whose centre is nearest to LAT,LON (degrees; geolocation weights).
    #[arg(long, value_name = "LAT,LON", allow_hyphen_values = true)]
    target_latlon: Option<String>,
    /// Weight of the heat map in the overlay (0 = photo only, 1 = heat map only).
    #[arg(long, default_value_t = 0.5, value_name = "A")]
    alpha: f32,
    /// Longest side of the overlay and heat-map PNGs, in pixels: larger photos are scaled
    /// down for them (a 12-megapixel photo's two PNGs take about 0.25 s to write here). The
    /// maps themselves are unchanged. 0: the photo's own size.
    #[arg(long, default_value_t = 0, value_name = "PIXELS")]
    overlay_size: u32,
    /// Masked copies of the photo per batch for Score-CAM: one submission runs N copies
    /// through the forward at once, each forward buffer holding N images (default: 4 on a CPU
    /// adapter, 32 on a GPU, fewer if they would take over 2 GiB; never more than the adapter's
    /// buffer limits allow, nor, on a CPU adapter, over 2 GiB or the memory the process may
    /// still allocate).
    #[arg(long, value_name = "N", value_parser = super::super::copies)]
    batch: Option<usize>,
    /// Also write `<stem>.report.html` (every block's map over the photo, max |activation| per
    /// block, the prediction; opens offline) and `<out>/index.html` linking every report.
    #[arg(long)]
    report: bool,
    /// Also compute visloc's retrieval embedding (needs rrm_head.pt) and put it in the JSON.
    #[arg(long)]
    embedding: bool,
    /// With --report: show these `evaluate --json` results (metrics table and deletion and
    /// insertion curves) on the report of each image they cover.
    #[arg(long, value_name = "FILE", requires = "report")]
    metrics: Option<PathBuf>,
    /// Top-k entries in the JSON prediction.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Print timings and GPU memory.
    #[arg(long, short)]
    verbose: bool,
    /// Do only shard I of N (1 ≤ I ≤ N): of the images sorted by path, the k-th (from 0) goes
    /// to shard (k mod N) + 1. For job arrays: N tasks with --shard 1/N … N/N cover a folder.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Skip images whose outputs are already complete in --out (their JSON report exists;
    /// it is written last).
    #[arg(long)]
    resume: bool,
    /// Do not descend into sub-folders of folders given as input (by default their images are
    /// explained too, and the outputs keep the sub-folder layout).
    #[arg(long)]
    no_recursive: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

/// How a cell or class is named on the console: its label in quotes, or the cell with its
/// centre.
fn entry_name(e: &combicam_gpu::app::engine::TopEntry) -> String {
    match (&e.label, e.lat, e.lon) {
        (Some(l), _, _) => format!("\"{l}\""),
        (None, Some(la), Some(lo)) => format!("cell {} ({:+.3}, {:+.3})", e.index, la, lo),
        _ => format!("output {}", e.index),
    }
}

/// Said once per run: the upscaling warning of tiny photos.
static UPSCALE_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Said once per run: that compiling the kernels took long.
static SLOW_COMPILE_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Compiling the kernels for longer than this (seconds) gets a word: a driver's first run on a
/// machine (lavapipe here: 4–5 s with an empty cache, 0.2–0.3 s after).
pub const SLOW_COMPILE_S: f64 = 2.0;

/// The line (and with -v the timings) of one explained image: what was explained, and what
/// the model predicted when that is something else.
fn print_explained(report: &Report, path: &Path, json: bool, verbose: bool) {
    if json {
        println!("{}", serde_json::to_string(report).unwrap());
    }
    let (t, top) = (&report.explained, &report.prediction.top[0]);
    let what = if t.index == top.index {
        format!(
            "explained {} (p={:.4}; the top prediction)",
            entry_name(t),
            t.probability
        )
    } else {
        format!(
            "explained {} (p={:.4}; target); top: {} (p={:.4})",
            entry_name(t),
            t.probability,
            entry_name(top),
            top.probability
        )
    };
    let region = match report.score {
        Score::Region(km) => format!(
            ", mass within {km} km {:.4}",
            report.region_mass.unwrap_or(0.0)
        ),
        _ => String::new(),
    };
    eprintln!(
        "{} → {what}{region}; wrote {}",
        path.display(),
        report.outputs.join(", ")
    );
    for w in &report.warnings {
        if w.starts_with(combicam_gpu::app::record::UPSCALED) {
            if UPSCALE_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                continue;
            }
            eprintln!(
                "warning: {}: {w} (said once per run; every image's JSON lists its warnings)",
                path.display()
            );
            continue;
        }
        eprintln!("warning: {}: {w}", path.display());
    }
    let compile_s = report.timings.compile_s;
    if compile_s > SLOW_COMPILE_S
        && !SLOW_COMPILE_SAID.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        eprintln!(
            "note: compiling the GPU kernels took {compile_s:.1} s, as on a driver's first run on a machine; the driver keeps the code on disk, so later runs skip most of it"
        );
    }
    if verbose {
        let t = &report.timings;
        eprintln!(
            "  {}×{} input; decode+preprocess {:.3}s, plan build {:.3}s (compiling pipelines {:.3}s), GPU {:.3}s{}, read-back {:.4}s, write {:.3}s; GPU memory {:.1} MiB",
            report.input_size[0],
            report.input_size[1],
            t.decode_preprocess_s,
            t.plan_build_s,
            t.compile_s,
            t.gpu_s,
            match t.masked_s {
                0.0 => String::new(),
                s => format!(" (of which masked passes {s:.3}s)"),
            },
            t.readback_s,
            t.write_s,
            report.gpu_memory_bytes as f64 / 1048576.0
        );
    }
}

/// The options of one run from the arguments and the weights, checked before any output
/// exists (`setup::explain_options`), with the command line's own settings.
fn options(
    a: &ExplainArgs,
    w: &weights::Weights,
    metrics: Option<std::sync::Arc<Vec<combicam_gpu::app::eval::ImageMetrics>>>,
) -> anyhow::Result<ExplainOptions> {
    let choice = setup::ExplainChoice {
        methods: a.method.clone(),
        fusion: a.fusion.clone(),
        blocks: a.blocks.clone(),
        score: Some(a.score.clone()),
        target: a.target.clone(),
        target_latlon: a.target_latlon.clone(),
    };
    Ok(ExplainOptions {
        alpha: a.alpha,
        overlay_size: a.overlay_size,
        batch: a.batch.unwrap_or(0),
        report: a.report,
        metrics,
        embedding: a.embedding,
        save_raw: a.save_raw || a.raw_size == RawSize::Photo,
        raw_at_photo_size: a.raw_size == RawSize::Photo,
        top_k: a.top_k,
        eigen_smooth: a.eigen_smooth,
        aug_smooth: a.aug_smooth,
        comparison: a.comparison,
        ..setup::explain_options(w, &choice)?
    })
}

pub fn explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.alpha) {
        bail!("--alpha {} is outside 0..1", a.alpha);
    }
    let found = runs::collect(&a.images, !a.no_recursive, Some(&a.out));
    note_skipped(found.skipped_outputs);
    let mut inputs = found.inputs;
    if inputs.is_empty() {
        bail!("no images found in {:?}", a.images);
    }
    if let Some(s) = &a.shard {
        inputs = runs::shard(inputs, runs::parse_shard(s)?);
    }
    // the arguments that need no weights, checked before loading them
    parse_explainers(a.method.as_deref(), a.fusion.as_deref())?;
    setup::parse_score(&a.score)?;
    let metrics = a
        .metrics
        .as_deref()
        .map(combicam_gpu::app::eval::read_metrics)
        .transpose()?
        .map(std::sync::Arc::new);
    let w = load_weights_with(&a.weights, a.embedding, "explains")?;
    let opts = options(&a, &w, metrics)?;
    super::gate()?;
    // a folder this run makes is removed again if no image could be explained
    let made_out = !prepare_out(&a.out)?;
    if made_out {
        // nor does running out of memory, which ends the process at once (`oom`)
        super::oom::remove_if_empty_on_oom(&a.out);
    }
    let t_start = Instant::now();
    // an adapter or weights upload that fails leaves no empty folder behind
    let undo = |e: anyhow::Error| {
        if made_out {
            let _ = std::fs::remove_dir(&a.out);
        }
        e
    };
    let gpu = open_gpu(a.device.device).map_err(undo)?;
    let t_adapter = t_start.elapsed().as_secs_f64();
    let t_upload = Instant::now();
    let mut engine = Engine::new(gpu.clone(), w).map_err(|e| undo(e.into()))?;
    if a.verbose {
        eprintln!(
            "start-up: instance and adapter {t_adapter:.3}s, weights to the GPU {:.3}s",
            t_upload.elapsed().as_secs_f64()
        );
    }
    let run = FolderRun {
        inputs: &inputs,
        out: &a.out,
        resume: a.resume,
        opts: &opts,
        stop: &INTERRUPTED,
        made_out,
    };
    let end = run.run(&mut engine, |report, path, pb| {
        pb.suspend(|| print_explained(report, path, a.json, a.verbose))
    })?;
    let (failed, stopped, skipped) = (end.finished.failed, end.finished.stopped, end.skipped);
    let total = inputs.len();
    if end.succeeded == 0 && made_out {
        if stopped {
            eprintln!("interrupted");
            return Ok(ExitCode::from(130));
        }
        return Ok(finish(failed, total));
    }
    if skipped > 0 {
        eprintln!(
            "{skipped} images already done in {} (--resume)",
            a.out.display()
        );
    }
    let index_note = if a.out.join("index.jsonl").is_file() {
        " (index: index.jsonl)"
    } else {
        ""
    };
    eprintln!("outputs in {}{index_note}", a.out.display());
    if stopped {
        eprintln!("interrupted: rerun the same command with --resume to finish");
        return Ok(ExitCode::from(130));
    }
    Ok(finish(failed, total))
}
