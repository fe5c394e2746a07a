//! The `combicam-gpu` command line: parse, call the library, print.

mod commands;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use combicam_gpu::cam::explain::{
    ExplainOptions, Report, WriteContext, run_one, unique_stem, write_one,
};
use combicam_gpu::cam::methods::parse_explainers;
use combicam_gpu::cam::runs;
use combicam_gpu::engine::{Engine, parse_blocks};
use combicam_gpu::gpu::{self, Gpu};
use combicam_gpu::model::checkpoint::CERTH_FILES;
use combicam_gpu::model::efficientnet::{PlanOptions, Score};
use combicam_gpu::model::search;
use combicam_gpu::model::weights::{self, Layout, TensorSource, Weights};
use combicam_gpu::{bench, check, preprocess};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Explain why an image-geolocation network places a photo where it does: Grad-CAM at every
/// block of its EfficientNet, fused into one Combi-CAM map, computed by WGSL compute shaders
/// on any Vulkan, Metal or DX12 adapter.
#[derive(Parser)]
#[command(name = "combicam-gpu", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Explain images: overlay and heat-map PNGs, a JSON report and optionally the raw maps.
    Explain(ExplainArgs),
    /// Predict: top cells with coordinates and confidence radii (or top ImageNet labels).
    Predict(PredictArgs),
    /// Faithfulness of explainers: deletion and insertion AUC, Average Drop and Increase.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Time forward, backward, CAM and read-back, per phase and per kernel family.
    Bench(commands::bench::BenchArgs),
    /// List the GPU adapters that --device N chooses from.
    Devices,
    /// Self-test: run a small random network on the adapter and compare every block with the CPU.
    Check(CheckArgs),
    /// Convert weights (PyTorch .pt/.pth, CERTH's folder, several parts) into one checked
    /// safetensors file in the layout `--weights` reads fastest.
    Convert(ConvertArgs),
    /// Download a timm EfficientNet from the Hugging Face hub into its cache; then use it as
    /// `--weights hf:REPO`.
    Fetch(FetchArgs),
}

#[derive(Args)]
struct FetchArgs {
    /// Hub repository, e.g. timm/efficientnet_b4.ra2_in1k or timm/tf_efficientnet_b4.ns_jft_in1k.
    /// The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; the
    /// endpoint $HF_ENDPOINT, else huggingface.co.
    #[arg(value_name = "REPO")]
    repo: String,
}

#[derive(Copy, Clone, PartialEq, ValueEnum)]
enum RawSize {
    Input,
    Photo,
}

#[derive(Copy, Clone, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
}

#[derive(Args)]
struct ConvertArgs {
    /// Weights files or folders, as --weights takes them (e.g. a folder with
    /// efficientnet_backbone.pt and mvmf_head.pt, or the two files).
    #[arg(required = true, value_name = "SRC")]
    src: Vec<PathBuf>,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Element type of the written tensors (the cell centres stay f64).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// Architecture, where the files cannot tell (see `explain --help`).
    #[arg(long, value_name = "NAME")]
    arch: Option<String>,
}

#[derive(Args, Clone)]
struct DeviceArgs {
    /// Adapter index from `combicam-gpu devices` (default: $COMBICAM_DEVICE, else the best one).
    #[arg(long, value_name = "N")]
    device: Option<usize>,
}

#[derive(Args, Clone)]
struct WeightsArgs {
    /// Weights: a .safetensors file, a PyTorch .pt/.pth state dict, or a folder with CERTH's
    /// efficientnet_backbone.pt and mvmf_head.pt (visloc); repeat it to merge files (e.g. the
    /// backbone and the head). Default: $COMBICAM_WEIGHTS, else the weights in ./weights/,
    /// else the built-in ImageNet EfficientNet-Lite0.
    #[arg(long, value_name = "PATH")]
    weights: Vec<PathBuf>,
    /// Architecture, where the file cannot tell: e.g. tf_efficientnet_b4 (timm TF ports and
    /// timm efficientnet_b4 have the same keys). Also efficientnet_b0..b7,
    /// efficientnet_lite0..4, visloc_b4.
    #[arg(long, value_name = "NAME")]
    arch: Option<String>,
    /// Use deterministic random test weights instead (b0..b7 visloc, lite0..4, tf_b0..b7): for
    /// checks, not for answers.
    #[arg(long, value_name = "VARIANT", conflicts_with = "weights")]
    test_weights: Option<String>,
    /// Number of cells of the test weights' geolocation head (visloc b0..b7).
    #[arg(long, default_value_t = 31145, requires = "test_weights")]
    cells: usize,
}

#[derive(Args)]
struct ExplainArgs {
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
    /// block when every method is scorecam, scorecam-official or gradcampp-official).
    #[arg(long, value_name = "LIST")]
    blocks: Option<String>,
    /// CAM methods, computed at every selected block from one forward and one backward:
    /// gradcam (with the sum fusion: Combi-CAM, the default), gradcampp, xgradcam, hirescam,
    /// layercam, layercam-official; and gradcampp-official (the official repository's
    /// Grad-CAM++, on the last block only); scorecam and scorecam-official (one masked forward
    /// pass per channel of each selected block, with a progress bar: 448 at B4's last block).
    /// Comma-separated; each writes its own PNGs and raw maps.
    #[arg(long, value_name = "LIST")]
    method: Option<String>,
    /// How each method's block maps are fused: sum (Combi-CAM; default of gradcam, gradcampp,
    /// xgradcam, hirescam), mean (default of layercam-official), mean-normalised, max
    /// (default of layercam), product. The last three normalise each block's map first.
    #[arg(long, value_name = "RULE")]
    fusion: Option<String>,
    /// What the CAM methods differentiate: prob (the target's softmax probability, as the
    /// official code), logit, or region:KM (geolocation: the probability mass of the cells
    /// within KM km of the target cell's centre, "why does it think this region?").
    #[arg(long, default_value = "prob", value_name = "SCORE")]
    score: String,
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
    /// buffer limits allow, nor over 2 GiB on a CPU adapter).
    #[arg(long, value_name = "N", value_parser = copies)]
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

#[derive(Args)]
struct PredictArgs {
    /// Images or folders of images.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    weights: WeightsArgs,
    /// How many cells/classes to print.
    #[arg(long, default_value_t = 5, value_name = "K")]
    top_k: usize,
    /// One JSON object per image on stdout.
    #[arg(long)]
    json: bool,
    /// Also compute visloc's retrieval embedding (needs rrm_head.pt) and put it in --json.
    #[arg(long)]
    embedding: bool,
    /// visloc's background collection (back_coll_features.hdf5): predict by search within
    /// the top cell, as the official inference.py does. Needs --cells-assignments and
    /// rrm_head.pt.
    #[arg(long, value_name = "FILE", requires = "cells_assignments")]
    background: Option<PathBuf>,
    /// visloc's cells_assignments.pkl: the background images of each cell.
    #[arg(long, value_name = "FILE", requires = "background")]
    cells_assignments: Option<PathBuf>,
    /// Background images of the top cell kept as neighbours before clustering.
    #[arg(long, default_value_t = search::TOP_K, value_name = "K")]
    top_k_neighbours: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args)]
struct CheckArgs {
    /// Architecture of the random network: b0 … b7 (visloc), lite0 … lite4
    /// (efficientnet_lite_pytorch), tf_b0 … tf_b7 (timm TF ports), or a timm name.
    #[arg(long, default_value = "b0")]
    variant: String,
    /// Input size HxW.
    #[arg(long, default_value = "67x45")]
    size: String,
    #[command(flatten)]
    device: DeviceArgs,
}

fn main() -> ExitCode {
    // `combicam-gpu bench compare a b | head` should stop quietly, not panic on a closed pipe
    #[cfg(unix)]
    // SAFETY: restores the default SIGPIPE action before any thread starts; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    private_runtime_dir();
    // Ctrl-C / SIGTERM: finish the current image, then stop (exit 130); a second one exits now
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    match run() {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Vulkan loaders and Mesa print "XDG_RUNTIME_DIR is invalid or not set" on every instance
/// when the variable is missing (servers, containers, cron). Give the process a private
/// runtime folder instead, before any thread or wgpu instance exists.
fn private_runtime_dir() {
    let usable = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .is_some_and(|p| p.is_absolute() && p.is_dir());
    if usable {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let dir = std::env::temp_dir().join(format!("combicam-gpu-runtime-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        // only a folder we own and nobody else can enter
        let ours = std::fs::symlink_metadata(&dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0);
        if ours {
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Devices => devices(),
        Cmd::Predict(a) => predict(a),
        Cmd::Evaluate(a) => commands::evaluate::run(a),
        Cmd::Explain(a) => explain(a),
        Cmd::Bench(a) => {
            if let Some(commands::bench::BenchCmd::Compare { files }) = &a.cmd {
                bench::compare(files)?;
                return Ok(ExitCode::SUCCESS);
            }
            let gpu = open_gpu(a.device)?;
            let w = match &a.weights {
                Some(p) => weights::load_paths(
                    &resolve_weights(std::slice::from_ref(p))?,
                    &Default::default(),
                )?,
                None => test_weights(&a.variant, a.cells, false)?,
            };
            bench::run(&gpu, w, &a.options()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert(a) => convert(a),
        Cmd::Fetch(a) => fetch(a),
        Cmd::Check(a) => {
            let gpu = open_gpu(a.device.device)?;
            let (h, w) = bench::parse_size(&a.size)?;
            let ok = check::run(&gpu, check::test_network(&a.variant)?, h, w)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn convert(a: ConvertArgs) -> anyhow::Result<ExitCode> {
    use combicam_gpu::model::checkpoint::{self, OutDtype};
    let out_abs = std::path::absolute(&a.out).unwrap_or(a.out.clone());
    for s in checkpoint::expand(&resolve_weights(&a.src)?)? {
        if std::path::absolute(&s).unwrap_or(s.clone()) == out_abs {
            bail!(
                "--out {} is one of the inputs; write the converted file elsewhere",
                a.out.display()
            );
        }
    }
    let t = Instant::now();
    let src_paths = resolve_weights(&a.src)?;
    let src = checkpoint::open(&src_paths)?;
    // everything --weights would check (shapes, finite values, BN statistics) before writing
    let opts = weights::LoadOptions {
        arch: a.arch.clone(),
        preprocessing: None,
        // a retrieval head in the files is checked too (it is copied into the output)
        retrieval: src.shape("rrm_head.res.fc1.weight").is_some(),
    };
    let w = weights::load_with(&src, &opts)?;
    let dtype = match a.dtype {
        DtypeArg::F32 => OutDtype::F32,
        DtypeArg::F16 => OutDtype::F16,
        DtypeArg::Bf16 => OutDtype::BF16,
    };
    let meta = std::collections::HashMap::from([
        ("converted_from".to_string(), src.describe()),
        ("architecture".to_string(), weights::arch_name(&w.cfg)),
        (
            "generator".to_string(),
            format!("combicam-gpu {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    let (bytes, n, skipped) = checkpoint::to_safetensors(&src, dtype, meta)?;
    combicam_gpu::cam::render::write_bytes_atomic(&bytes, &a.out)?;
    eprintln!(
        "wrote {} ({} tensors, {:.1} MB; {} left out: integer counters) from {}: {}, {:?} layout, {} outputs, in {:.1}s",
        a.out.display(),
        n,
        bytes.len() as f64 / 1e6,
        skipped,
        src.describe(),
        w.cfg.name(),
        w.layout,
        w.classifier.n,
        t.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn fetch(a: FetchArgs) -> anyhow::Result<ExitCode> {
    let hub = combicam_gpu::hub::Hub::from_env()?;
    let repo = a.repo.trim_start_matches("hf:");
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:20} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap(),
    );
    let snap = hub.fetch(repo, |file, done, total| {
        pb.set_message(file.to_string());
        pb.set_length(total.unwrap_or(done));
        pb.set_position(done);
    })?;
    pb.finish_and_clear();
    eprintln!(
        "fetched {repo} into {}; use it with --weights hf:{repo}",
        snap.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--weights` values with `hf:REPO` resolved to the cached snapshot.
fn resolve_weights(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    Ok(paths
        .iter()
        .map(|p| combicam_gpu::hub::resolve_weights_arg(p))
        .collect::<Result<_, _>>()?)
}

/// `prob`, `logit` or `region:KM`.
fn parse_score(s: &str) -> anyhow::Result<Score> {
    let t = s.trim().to_lowercase();
    match t.as_str() {
        "prob" | "probability" => Ok(Score::Prob),
        "logit" => Ok(Score::Logit),
        _ => match t.strip_prefix("region:").map(|k| k.trim().parse::<f32>()) {
            Some(Ok(km)) if km.is_finite() && km >= 0.0 => Ok(Score::Region(km)),
            _ => bail!(
                "--score {s:?} is not a score: use prob, logit or region:KM (e.g. region:200)"
            ),
        },
    }
}

/// The cell whose centre is nearest to "LAT,LON" (haversine).
fn nearest_cell(w: &Weights, s: &str) -> anyhow::Result<usize> {
    let weights::HeadKind::Geo { lat, lon } = &w.classifier.kind else {
        bail!(
            "--target-latlon needs geolocation weights (cells with centres); {} classifies images",
            w.source
        );
    };
    let parsed: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let [la, lo] = parsed[..] else {
        bail!("--target-latlon {s:?} is not LAT,LON in degrees, e.g. 48.858,2.294");
    };
    if !(-90.0..=90.0).contains(&la) || !(-180.0..=180.0).contains(&lo) {
        bail!("--target-latlon {s:?}: latitude must be in -90..90 and longitude in -180..180");
    }
    let d = |i: usize| combicam_gpu::model::geo::haversine_km(la, lo, lat[i], lon[i]);
    Ok((0..lat.len())
        .min_by(|&a, &b| d(a).total_cmp(&d(b)))
        .unwrap())
}

fn open_gpu(device: Option<usize>) -> anyhow::Result<Gpu> {
    let gpu = Gpu::new(device)?;
    eprintln!("adapter: {}", gpu.adapter.line());
    Ok(gpu)
}

fn devices() -> anyhow::Result<ExitCode> {
    let list = gpu::adapters();
    if list.is_empty() {
        bail!(
            "no GPU adapter found; install a GPU driver, or on Linux without a GPU: apt-get install mesa-vulkan-drivers"
        );
    }
    for (s, _) in list {
        println!(
            "{}: {}  (driver: {} {})",
            s.index,
            s.line(),
            s.driver,
            s.driver_info
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--batch N`: masked copies per batch, at least 1.
fn copies(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "give at least 1 masked copy per batch, or leave --batch out (got {s:?})"
        )),
    }
}

fn variant_index(v: &str) -> anyhow::Result<usize> {
    let t = v.trim().to_lowercase();
    let d = t
        .trim_start_matches("efficientnet-")
        .trim_start_matches("efficientnet_")
        .trim_start_matches('b');
    match d.parse::<usize>() {
        Ok(i) if i < 8 => Ok(i),
        _ => bail!("unknown EfficientNet variant {v:?}; use b0 … b7"),
    }
}

fn test_weights(variant: &str, cells: usize, retrieval: bool) -> anyhow::Result<Weights> {
    if cells == 0 {
        bail!("--cells must be at least 1");
    }
    match variant_index(variant) {
        Ok(v) if retrieval => Ok(weights::formula_with_retrieval(v, cells)),
        Ok(v) => Ok(weights::formula(v, Layout::Visloc, cells)),
        Err(_) if retrieval => {
            bail!("--test-weights {variant} has no retrieval head: use a visloc variant (b0 … b7)")
        }
        Err(_) => Ok(check::test_network(variant)?),
    }
}

/// The built-in model's file in ./weights/ is the built-in model itself, not other weights.
const BUILTIN_FILE: &str = "efficientnet-lite0-57934424.pth";

/// --weights, else $COMBICAM_WEIGHTS, else the weights in ./weights/, else the built-in Lite0.
/// `does` says what the command does with them ("evaluates"), for the built-in model's note.
fn load_weights(a: &WeightsArgs, does: &str) -> anyhow::Result<Weights> {
    load_weights_with(a, false, does)
}

/// `load_weights`, with visloc's retrieval head too when `retrieval`.
fn load_weights_with(a: &WeightsArgs, retrieval: bool, does: &str) -> anyhow::Result<Weights> {
    if let Some(v) = &a.test_weights {
        return test_weights(v, a.cells, retrieval);
    }
    let paths: Vec<PathBuf> = if !a.weights.is_empty() {
        resolve_weights(&a.weights)?
    } else if let Some(p) = std::env::var_os("COMBICAM_WEIGHTS") {
        resolve_weights(&[PathBuf::from(p)])?
    } else {
        local_weights()?
    };
    let opts = weights::LoadOptions {
        arch: a.arch.clone(),
        preprocessing: None,
        retrieval,
    };
    let t = Instant::now();
    let w = if paths.is_empty() {
        if retrieval {
            bail!(
                "the built-in ImageNet model has no retrieval head: --embedding and --background need visloc weights, --weights DIR with efficientnet_backbone.pt, mvmf_head.pt and rrm_head.pt"
            );
        }
        let w = weights::builtin()?;
        eprintln!(
            "weights: none given, so this {does} ImageNet classes with the {} (loaded in \
             {:.2}s). For geolocation, pass the visloc weights: --weights DIR with \
             efficientnet_backbone.pt and mvmf_head.pt (weights/README.md)",
            weights::BUILTIN_NAME,
            t.elapsed().as_secs_f64()
        );
        w
    } else {
        let w = weights::load_paths(&paths, &opts)?;
        eprintln!(
            "weights: {} ({}, {:?} layout, {} outputs) loaded in {:.1}s",
            w.source,
            w.cfg.name(),
            w.layout,
            w.classifier.n,
            t.elapsed().as_secs_f64()
        );
        w
    };
    for note in &w.notes {
        eprintln!("note: {note}");
    }
    Ok(w)
}

/// Weights in ./weights/ (run from a checkout or a folder laid out like one): CERTH's pair,
/// or one weights file; none means the built-in model.
fn local_weights() -> anyhow::Result<Vec<PathBuf>> {
    let dir = Path::new("weights");
    if CERTH_FILES.iter().any(|f| dir.join(f).is_file()) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let found: Vec<PathBuf> = combicam_gpu::model::checkpoint::weight_files_in(dir)
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != BUILTIN_FILE))
        .collect();
    match found.len() {
        0 | 1 => Ok(found),
        _ => bail!(
            "several weights files in ./weights/ ({}); choose with --weights PATH",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Set by Ctrl-C or SIGTERM: a folder run stops between images.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Decode and preprocess; errors name the image.
fn load(
    path: &Path,
    how: &preprocess::Preprocessing,
) -> anyhow::Result<(image::RgbImage, preprocess::Preprocessed)> {
    let photo = preprocess::load_image(path)?;
    let pre = preprocess::preprocess_with(&photo, how)
        .with_context(|| format!("image {}", path.display()))?;
    Ok((photo, pre))
}

/// The images of `inputs` (files, and folders scanned recursively); none is an error.
fn image_paths(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let found = runs::collect(inputs, true, None);
    note_skipped(found.skipped_outputs);
    let images: Vec<PathBuf> = found.inputs.into_iter().map(|i| i.path).collect();
    if images.is_empty() {
        bail!("no images found in {inputs:?}");
    }
    Ok(images)
}

/// Folder scans pass over this tool's own outputs; say so once.
fn note_skipped(n: usize) {
    if n > 0 {
        eprintln!(
            "note: passed over {n} files and folders this tool wrote (overlays, heat maps, reports, run folders); name a file directly to use it"
        );
    }
}

fn predict(a: PredictArgs) -> anyhow::Result<ExitCode> {
    let images = image_paths(&a.images)?;
    if a.top_k_neighbours == 0 {
        bail!(
            "--top-k-neighbours 0: keep at least 1 neighbour (default {})",
            search::TOP_K
        );
    }
    // the background files first: a wrong one fails before any model work
    let within = match (&a.background, &a.cells_assignments) {
        (Some(b), Some(c)) => Some((search::Background::open(b)?, search::Assignments::open(c)?)),
        _ => None,
    };
    let retrieval = a.embedding || within.is_some();
    let w = load_weights_with(&a.weights, retrieval, "predicts")?;
    if within.is_some() && !matches!(w.classifier.kind, weights::HeadKind::Geo { .. }) {
        bail!("--background needs geolocation weights (visloc), not an ImageNet classifier");
    }
    if let (Some((bg, _)), Some(r)) = (&within, &w.retrieval)
        && bg.d != r.d
    {
        bail!(
            "{}: has {}-d features, but the model's embedding is {}-d; give the background collection made with this model's retrieval head",
            bg.path.display(),
            bg.d,
            r.d
        );
    }
    let gpu = open_gpu(a.device.device)?;
    let how = w.preprocessing;
    let mut engine = Engine::new(&gpu, w)?;
    let opts = PlanOptions::forward(0);
    let weights = engine.model.weights.clone();
    let end = runs::pipelined(
        &images,
        &INTERRUPTED,
        |p| p.display().to_string(),
        |path| anyhow::Ok(load(path, &how)?.1),
        |_, pre| {
            let (h, w) = (pre.height, pre.width);
            let out = engine.run(&pre.tensor, h, w, &opts, None, Score::Prob)?;
            let emb = if retrieval {
                Some(engine.embedding(h, w, &opts)?)
            } else {
                None
            };
            Ok((out, emb))
        },
        |path, (out, emb), pb| {
            let mut p = combicam_gpu::engine::summarize(
                &weights,
                &path.display().to_string(),
                &out,
                a.top_k,
            );
            if let (Some((bg, asg)), Some(e)) = (&within, &emb) {
                let top = &p.top[0];
                let centre = (top.lat.unwrap_or(0.0), top.lon.unwrap_or(0.0));
                p.search_within_cell = Some(search::search_within_cell(
                    e,
                    top.index,
                    centre,
                    bg,
                    asg,
                    a.top_k_neighbours,
                    search::EPS_KM,
                )?);
            }
            if a.embedding {
                p.embedding = emb;
            }
            pb.suspend(|| {
                if a.json {
                    println!("{}", serde_json::to_string(&p).unwrap());
                } else {
                    print_prediction(&p);
                }
            });
            Ok(())
        },
    );
    let (failed, stopped) = (end.failed, end.stopped);
    if stopped {
        eprintln!("interrupted");
        return Ok(ExitCode::from(130));
    }
    Ok(finish(failed, images.len()))
}

/// How a cell or class is named on the console: its label in quotes, or the cell with its
/// centre.
fn entry_name(e: &combicam_gpu::engine::TopEntry) -> String {
    match (&e.label, e.lat, e.lon) {
        (Some(l), _, _) => format!("\"{l}\""),
        (None, Some(la), Some(lo)) => format!("cell {} ({:+.3}, {:+.3})", e.index, la, lo),
        _ => format!("output {}", e.index),
    }
}

/// Said once per run: the upscaling warning of tiny photos.
static UPSCALE_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
        if w.starts_with(combicam_gpu::cam::explain::UPSCALED) {
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
    if verbose {
        let t = &report.timings;
        eprintln!(
            "  {}×{} input; decode+preprocess {:.3}s, plan build {:.3}s (compiling pipelines {:.3}s), GPU {:.3}s, read-back {:.4}s, write {:.3}s; GPU memory {:.1} MiB",
            report.input_size[0],
            report.input_size[1],
            t.decode_preprocess_s,
            t.plan_build_s,
            t.compile_s,
            t.gpu_s,
            t.readback_s,
            t.write_s,
            report.gpu_memory_bytes as f64 / 1048576.0
        );
    }
}

fn print_prediction(p: &combicam_gpu::engine::Prediction) {
    println!("{}", p.image);
    for (i, t) in p.top.iter().enumerate() {
        match (&t.label, t.lat, t.lon) {
            (Some(l), _, _) => println!(
                "  {}. class {:>5}  p={:.5}  {}",
                i + 1,
                t.index,
                t.probability,
                l
            ),
            (None, Some(la), Some(lo)) => println!(
                "  {}. cell {:>6}  p={:.6}  lat {:+.4} lon {:+.4}",
                i + 1,
                t.index,
                t.probability,
                la,
                lo
            ),
            _ => println!("  {}. {:>6}  p={:.6}", i + 1, t.index, t.probability),
        }
    }
    if let Some(c) = &p.confidence_km {
        let mut radii: Vec<_> = c.iter().collect();
        radii.sort_by_key(|(k, _)| k.parse::<u32>().unwrap_or(0));
        let s: Vec<String> = radii
            .iter()
            .map(|(k, v)| format!("{k} km: {:.4}", v))
            .collect();
        println!("  confidence  {}", s.join("  "));
    }
    if let Some(f) = &p.search_within_cell {
        let how = match f.method {
            search::Method::Cluster => format!(
                "search within cell {}: {} of the top {} of its {} background images in the largest cluster",
                f.cell,
                f.cluster.len(),
                f.neighbours.len(),
                f.cell_images
            ),
            search::Method::CellCentre => {
                format!("cell {} has no background images: its centre", f.cell)
            }
        };
        println!("  ({how})");
        // the official inference.py's two lines
        println!("Prediction (Lat,Lon): ({:.4}, {:.4})", f.lat, f.lon);
        let c25 = p
            .confidence_km
            .as_ref()
            .and_then(|c| c.get("25"))
            .copied()
            .unwrap_or(0.0);
        println!("Confidence: {:.1}%", 100.0 * c25);
    }
}

fn finish(failed: usize, total: usize) -> ExitCode {
    if failed > 0 {
        eprintln!("{failed} of {total} images failed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
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
    let explainers = parse_explainers(a.method.as_deref(), a.fusion.as_deref())?;
    let score = parse_score(&a.score)?;
    let metrics = a
        .metrics
        .as_deref()
        .map(combicam_gpu::eval::read_metrics)
        .transpose()?
        .map(std::sync::Arc::new);
    let w = load_weights_with(&a.weights, a.embedding, "explains")?;
    let is_geo = matches!(w.classifier.kind, weights::HeadKind::Geo { .. });
    if matches!(score, Score::Region(_)) && !is_geo {
        bail!(
            "--score {} needs geolocation weights (cells with centres); {} classifies images: use --score prob or logit",
            a.score,
            w.source
        );
    }
    let target = match (&a.target_latlon, &a.target) {
        (Some(s), _) => Some(nearest_cell(&w, s)?),
        (None, Some(t)) => Some(combicam_gpu::engine::resolve_target(&w, t)?),
        (None, None) => None,
    };
    let nb = w.cfg.blocks.len();
    // the official Grad-CAM++ alone: the last block by default; Score-CAM (one pass per
    // channel) too, whatever the other methods
    let only_last = explainers
        .iter()
        .filter(|e| !e.method.is_score_cam())
        .all(|e| e.method.last_block_by_default());
    let given = a.blocks.as_ref().map(|s| parse_blocks(s, nb)).transpose()?;
    let score_blocks = given.clone().unwrap_or(vec![nb - 1]);
    let blocks = match given {
        Some(b) => b,
        None if only_last => vec![nb - 1],
        None => (0..nb).collect(),
    };
    // before any output exists
    combicam_gpu::cam::methods::check_official(&explainers, &blocks, nb, score == Score::Prob)?;
    combicam_gpu::cam::scorecam::check_score(&explainers, score)?;
    if let Some(t) = target
        && t >= w.classifier.n
    {
        bail!(
            "--target {t} is out of range: the model has {} outputs (0-{})",
            w.classifier.n,
            w.classifier.n - 1
        );
    }
    // a folder this run makes is removed again if no image could be explained
    let out_existed = a.out.exists();
    std::fs::create_dir_all(&a.out).with_context(|| {
        format!(
            "cannot create output folder {} (choose another with --out)",
            a.out.display()
        )
    })?;
    let probe = a
        .out
        .join(format!(".combicam-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "output folder {} is not writable (choose another with --out)",
            a.out.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    let t_start = Instant::now();
    let gpu = open_gpu(a.device.device)?;
    let t_adapter = t_start.elapsed().as_secs_f64();
    let how = w.preprocessing;
    let t_upload = Instant::now();
    let mut engine = Engine::new(&gpu, w)?;
    if a.verbose {
        eprintln!(
            "start-up: instance and adapter {t_adapter:.3}s, weights to the GPU {:.3}s",
            t_upload.elapsed().as_secs_f64()
        );
    }
    let opts = ExplainOptions {
        blocks,
        score_blocks,
        explainers,
        target,
        score,
        alpha: a.alpha,
        overlay_size: a.overlay_size,
        batch: a.batch.unwrap_or(0),
        report: a.report,
        metrics,
        embedding: a.embedding,
        save_raw: a.save_raw || a.raw_size == RawSize::Photo,
        raw_at_photo_size: a.raw_size == RawSize::Photo,
        top_k: a.top_k,
    };
    let mut used = std::collections::HashSet::new();
    let mut index = runs::Index::new(&a.out);
    let images: Vec<PathBuf> = inputs.iter().map(|i| i.path.clone()).collect();
    // names first, in input order, so that a resumed run names every image as the first did
    let places: Vec<(PathBuf, String)> = inputs
        .iter()
        .map(|i| {
            let dir = a.out.join(&i.rel_dir);
            let stem = unique_stem(&i.path, &mut used, &i.rel_dir);
            (dir, stem)
        })
        .collect();
    // --resume: an image whose JSON (written last) exists is done
    let todo: Vec<usize> = (0..images.len())
        .filter(|&k| {
            let (dir, stem) = &places[k];
            !(a.resume && dir.join(format!("{stem}.json")).is_file())
        })
        .collect();
    let skipped = images.len() - todo.len();
    let ctx = WriteContext::of(&engine);
    // with --resume, the pages of the images done before stay in index.html
    let mut pages: Vec<combicam_gpu::cam::report::IndexEntry> = (0..images.len())
        .filter(|k| a.report && !todo.contains(k))
        .filter_map(|k| {
            let ((dir, stem), rel) = (&places[k], &inputs[k].rel_dir);
            let page = format!("{stem}.report.html");
            dir.join(&page).is_file().then(|| {
                let (overlay, _) =
                    combicam_gpu::cam::explain::png_names(rel, stem, &opts.explainers[0]);
                combicam_gpu::cam::report::IndexEntry {
                    page: rel.join(page).display().to_string(),
                    thumb: overlay.display().to_string(),
                    title: stem.clone(),
                }
            })
        })
        .collect();
    let mut succeeded = 0;
    let end = runs::pipelined(
        &todo,
        &INTERRUPTED,
        |&k| images[k].display().to_string(),
        |&k| {
            let t = Instant::now();
            let (photo, pre) = load(&images[k], &how)?;
            anyhow::Ok((photo, pre, t.elapsed().as_secs_f64()))
        },
        |_, (photo, pre, decode_s)| Ok((run_one(&mut engine, &pre, &opts)?, photo, decode_s)),
        |&k, (done, photo, decode_s), pb| {
            let (path, (dir, stem)) = (&images[k], &places[k]);
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output folder {}", dir.display()))?;
            let report = write_one(&ctx, path, &photo, done, decode_s, dir, stem, &opts)?;
            let top = &report.prediction.top[0];
            index.append(&serde_json::json!({
                "image": path.display().to_string(),
                "outputs": report.outputs,
                "top": top,
                "timings": report.timings,
            }))?;
            if a.report {
                let rel = &inputs[k].rel_dir;
                pages.push(combicam_gpu::cam::report::IndexEntry::of(
                    &report, rel, stem,
                ));
                combicam_gpu::cam::report::write_index(&a.out, &pages)?;
            }
            pb.suspend(|| print_explained(&report, path, a.json, a.verbose));
            succeeded += 1;
            Ok(())
        },
    );
    let (failed, stopped) = (end.failed, end.stopped);
    if succeeded == 0 && !out_existed {
        // nothing to show: leave no empty folder behind (the errors are on stderr)
        let _ = std::fs::remove_dir_all(&a.out);
        if stopped {
            eprintln!("interrupted");
            return Ok(ExitCode::from(130));
        }
        return Ok(finish(failed, images.len()));
    }
    for (k, msg) in &end.errors {
        index.append_error(&images[todo[*k]].display().to_string(), msg)?;
    }
    index.finish()?;
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
    Ok(finish(failed, images.len()))
}
