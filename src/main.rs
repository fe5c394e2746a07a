//! The `combicam-gpu` command line: parse, call the library, print.

pub(crate) mod commands;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use combicam_gpu::app::runs;
use combicam_gpu::app::setup;
use combicam_gpu::app::{bench, check};
use combicam_gpu::gpu::{self, Gpu};
use combicam_gpu::model::weights::{self, TensorSource, Weights};
use combicam_gpu::preprocess;
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
    Explain(commands::explain::ExplainArgs),
    /// Predict: top cells with coordinates and confidence radii (or top ImageNet labels).
    Predict(commands::predict::PredictArgs),
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
    /// (internal) Open an HDF5 background collection in a child process (`predict` runs it).
    #[command(name = commands::probe::COMMAND, hide = true)]
    ProbeHdf5 { path: PathBuf },
}

#[derive(Args)]
struct FetchArgs {
    /// Hub repository, e.g. timm/efficientnet_b4.ra2_in1k or timm/tf_efficientnet_b4.ns_jft_in1k.
    /// The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; the
    /// endpoint $HF_ENDPOINT, else huggingface.co.
    #[arg(value_name = "REPO")]
    repo: String,
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

#[global_allocator]
static ALLOCATOR: commands::oom::ExitOnOom = commands::oom::ExitOnOom;

fn main() -> ExitCode {
    // `combicam-gpu bench compare a b | head` should stop quietly, not panic on a closed pipe
    #[cfg(unix)]
    // SAFETY: restores the default SIGPIPE action before any thread starts; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    private_runtime_dir();
    // running out of memory in a thread's start is the allocator's one line, not a panic
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !commands::oom::panic_hook(info) {
            default_hook(info);
        }
    }));
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
    dispatch(Cli::parse())
}

/// One command, from its parsed arguments.
fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Devices => devices(),
        Cmd::Predict(a) => commands::predict::predict(a),
        Cmd::Evaluate(a) => commands::evaluate::run(a),
        Cmd::Explain(a) => commands::explain::explain(a),
        Cmd::Bench(a) => {
            if let Some(commands::bench::BenchCmd::Compare { files }) = &a.cmd {
                bench::compare(files)?;
                return Ok(ExitCode::SUCCESS);
            }
            let opts = a.options()?;
            let w = match &a.weights {
                Some(p) => weights::load_paths(
                    &resolve_weights(std::slice::from_ref(p))?,
                    &Default::default(),
                )?,
                None => setup::test_weights(&a.variant, a.cells, false)?,
            };
            commands::gate()?;
            // its own header names the adapter and its driver
            let gpu = Gpu::new(a.device)?;
            bench::run(std::sync::Arc::new(gpu), w, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert(a) => convert(a),
        Cmd::ProbeHdf5 { path } => commands::probe::run(&path),
        Cmd::Fetch(a) => fetch(a),
        Cmd::Check(a) => {
            let (h, w) = bench::parse_size(&a.size)?;
            let net = check::test_network(&a.variant)?;
            commands::gate()?;
            // its own header names the adapter
            let gpu = Gpu::new(a.device.device)?;
            let ok = check::run(&gpu, net, h, w)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn convert(a: ConvertArgs) -> anyhow::Result<ExitCode> {
    use combicam_gpu::model::weights::checkpoint::{self, OutDtype};
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
    commands::gate()?;
    combicam_gpu::app::render::write_bytes_atomic(&bytes, &a.out)?;
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
    let hub = combicam_gpu::app::hub::Hub::from_env()?;
    let repo = a.repo.trim_start_matches("hf:");
    commands::gate()?;
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
    Ok(setup::resolve_weights(paths)?)
}

fn open_gpu(device: Option<usize>) -> anyhow::Result<std::sync::Arc<Gpu>> {
    commands::gate()?;
    let gpu = Gpu::new(device)?;
    eprintln!("adapter: {}", gpu.adapter.line());
    Ok(std::sync::Arc::new(gpu))
}

fn devices() -> anyhow::Result<ExitCode> {
    commands::gate()?;
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

impl WeightsArgs {
    fn choice(&self) -> setup::WeightsChoice {
        setup::WeightsChoice {
            paths: self.weights.clone(),
            arch: self.arch.clone(),
            test_weights: self.test_weights.clone(),
            cells: self.cells,
        }
    }
}

/// --weights, else $COMBICAM_WEIGHTS, else the weights in ./weights/, else the built-in Lite0.
/// `does` says what the command does with them ("evaluates"), for the built-in model's note.
fn load_weights(a: &WeightsArgs, does: &str) -> anyhow::Result<Weights> {
    load_weights_with(a, false, does)
}

/// `load_weights`, with visloc's retrieval head too when `retrieval`.
fn load_weights_with(a: &WeightsArgs, retrieval: bool, does: &str) -> anyhow::Result<Weights> {
    let l = setup::load_weights(&a.choice(), retrieval, does)?;
    if a.test_weights.is_none() {
        eprintln!("{}", l.said);
    }
    for note in &l.notes {
        eprintln!("note: {note}");
    }
    Ok(l.weights)
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

fn finish(failed: usize, total: usize) -> ExitCode {
    if failed > 0 {
        eprintln!("{failed} of {total} images failed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
