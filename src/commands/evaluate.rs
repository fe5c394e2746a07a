//! `combicam-gpu evaluate`: the faithfulness metrics of several explainers over images
//! (`combicam_gpu::app::eval`), a table on stdout and `--json`.

use super::super::{DeviceArgs, INTERRUPTED, WeightsArgs, load, load_weights, open_gpu};
use anyhow::{Context, bail};
use clap::Args;
use combicam_gpu::app::engine::Engine;
use combicam_gpu::app::eval::{self, Spec};
use combicam_gpu::app::evaluation;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct EvaluateArgs {
    /// Images or folders of images (folders are scanned recursively).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    weights: WeightsArgs,
    /// Explainers, comma-separated: METHOD[@BLOCKS][:FUSION] with BLOCKS as --blocks takes
    /// them, `all` or `last` (default: all; the last block for scorecam, scorecam-official,
    /// ablationcam, gradcampp-official, shapleycam; kpcacam: the blocks that fit the photo, as explain takes them; `all` takes kpcacam@last), e.g. gradcam@last (classic Grad-CAM), layercam@all:max,
    /// scorecam@last; `combicam` is gradcam@all:sum; `random[:SEED]` a smooth random map (7×7
    /// uniform values upsampled), the baseline; `all`: combicam, gradcam@last, every other
    /// method at its default blocks and fusion, and random (with Score-CAM's masked passes:
    /// slow on a CPU adapter).
    #[arg(
        long,
        default_value = "combicam,gradcam@last,random",
        value_name = "LIST"
    )]
    explainers: String,
    /// Steps of the deletion and insertion curves (n + 1 masked passes each).
    #[arg(long, default_value_t = 50, value_name = "N")]
    steps: usize,
    /// Write every image's metrics and curves, and the means, as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Masked copies of the image per batch: one submission runs N copies through the forward
    /// at once (default: 4 on a CPU adapter, 32 on a GPU, fewer if they would take over 2 GiB;
    /// never more than the adapter's buffer limits allow, nor, on a CPU adapter, over 2 GiB or
    /// the memory the process may still allocate).
    #[arg(long, value_name = "N", value_parser = super::super::copies)]
    batch: Option<usize>,
    /// ROAD's imputation noise σ (pytorch-grad-cam's: 0.01, on the normalised input; seeded,
    /// so runs repeat exactly). 0: no noise, the imputer's linear fill alone.
    #[arg(long, default_value_t = combicam_gpu::app::road::DEFAULT_NOISE, value_name = "SIGMA")]
    road_noise: f32,
    /// Leave ROAD out (its 18 imputations and forward passes per explainer and image).
    #[arg(long)]
    no_road: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(a: EvaluateArgs) -> anyhow::Result<ExitCode> {
    if a.steps == 0 {
        bail!("--steps 0: the curves need at least 1 step (default 50)");
    }
    combicam_gpu::app::road::check_noise(a.road_noise, "--road-noise")?;
    let road = (!a.no_road).then_some(a.road_noise);
    let specs: Vec<Spec> = eval::parse_specs(&a.explainers)?;
    if specs.is_empty() {
        bail!("--explainers is empty: name at least one, e.g. combicam,gradcam@last");
    }
    let images = super::super::image_paths(&a.images)?;
    if let Some(j) = &a.json {
        check_json_path(j)?;
    }
    let w = load_weights(&a.weights, "evaluates")?;
    let (model, source) = (w.cfg.name(), w.source.clone());
    // every explainer's blocks exist, before any work; the masked passes each image costs
    let per_image = evaluation::passes_per_image(&specs, (a.steps, road.is_some()), &w.cfg)?;
    let how = w.preprocessing;
    let gpu = open_gpu(a.device.device)?;
    let mut engine = Engine::new(gpu.clone(), w)?;
    let pb = ProgressBar::new((images.len() * per_image) as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} masked passes {msg} [{elapsed_precise}, eta {eta}]",
        )
        .unwrap(),
    );
    let mut results = Vec::new();
    let mut failed = 0;
    for path in &images {
        if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            pb.finish_and_clear();
            eprintln!("interrupted: nothing written");
            return Ok(ExitCode::from(130));
        }
        pb.set_message(path.display().to_string());
        let base = pb.position();
        let metrics = load(path, &how).and_then(|(_, pre)| {
            let name = path.display().to_string();
            let mut progress = |n| pb.set_position(base + n as u64);
            let m = evaluation::image_metrics(
                &mut engine,
                &name,
                &pre,
                &specs,
                (a.steps, a.batch, road),
                &mut progress,
            );
            Ok(m?)
        });
        match metrics {
            Ok(r) => results.push(r),
            Err(e) => {
                failed += 1;
                pb.suspend(|| {
                    eprintln!(
                        "error: {}: {}",
                        path.display(),
                        format!("{e:#}").replace('\n', " ")
                    )
                });
            }
        }
        pb.set_position(base + per_image as u64);
    }
    pb.finish_and_clear();
    let mean = evaluation::means(&results);
    println!(
        "{} images, {} steps, {model} ({source}) on {}",
        results.len(),
        a.steps,
        gpu.adapter.line()
    );
    print_means(&specs, &mean, road.is_some());
    if let Some(p) = &a.json
        && !results.is_empty()
    {
        let report = evaluation::Report {
            steps: a.steps,
            adapter: gpu.adapter.clone(),
            model,
            weights: source,
            images: results,
            mean,
        };
        let bytes = serde_json::to_vec_pretty(&report)?;
        combicam_gpu::app::render::write_bytes_atomic(&bytes, p)
            .with_context(|| format!("cannot write {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    Ok(super::super::finish(failed, images.len()))
}

/// The table of means on stdout, one row per explainer (ROAD's columns when it ran).
fn print_means(specs: &[Spec], mean: &BTreeMap<String, evaluation::Mean>, road: bool) {
    let road_head = match road {
        true => format!(
            " {:>11} {:>11} {:>11}",
            "ROAD MoRF ↓", "ROAD LeRF ↑", "ROAD comb ↑"
        ),
        false => String::new(),
    };
    println!(
        "{:<24} {:>14} {:>15} {:>15} {:>10}{road_head}",
        "explainer", "deletion AUC ↓", "insertion AUC ↑", "average drop ↓", "increase"
    );
    for s in specs {
        if let Some(m) = mean.get(&s.name) {
            let road = m.road.map_or(String::new(), |r| {
                format!(" {:>11.4} {:>11.4} {:>11.4}", r[0], r[1], r[2])
            });
            println!(
                "{:<24} {:>14.4} {:>15.4} {:>14.2}% {:>9.0}%{road}",
                s.name,
                m.deletion_auc,
                m.insertion_auc,
                m.average_drop,
                100.0 * m.increase
            );
        }
    }
}

/// `--json`: a file name whose folder exists, checked before any work.
fn check_json_path(j: &Path) -> anyhow::Result<()> {
    if j.is_dir() {
        bail!("--json {} is a folder: give a file name", j.display());
    }
    let parent = j.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent
        && !p.is_dir()
    {
        bail!(
            "--json {}: the folder {} does not exist; create it or choose another path",
            j.display(),
            p.display()
        );
    }
    Ok(())
}
