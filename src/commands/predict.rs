//! `combicam-gpu predict`: its arguments, the forward pass over the images, visloc's search
//! within cell, and the printed prediction.

use super::super::{
    DeviceArgs, INTERRUPTED, WeightsArgs, finish, image_paths, load, load_weights_with, open_gpu,
};
use anyhow::bail;
use clap::Args;
use combicam_gpu::app::engine::Engine;
use combicam_gpu::app::runs;
use combicam_gpu::model::plan::{PlanOptions, Score};
use combicam_gpu::model::{search, weights};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PredictArgs {
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

pub fn predict(a: PredictArgs) -> anyhow::Result<ExitCode> {
    let images = image_paths(&a.images)?;
    if a.top_k_neighbours == 0 {
        bail!(
            "--top-k-neighbours 0: keep at least 1 neighbour (default {})",
            search::TOP_K
        );
    }
    // the background files first: a wrong one fails before any model work
    let within = match (&a.background, &a.cells_assignments) {
        (Some(b), Some(c)) => {
            // a file that crashes the HDF5 library is refused before it is opened here
            super::probe::check(b)?;
            Some((search::Background::open(b)?, search::Assignments::open(c)?))
        }
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
    let mut engine = Engine::new(gpu.clone(), w)?;
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
            let mut p = combicam_gpu::app::engine::summarize(
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

fn print_prediction(p: &combicam_gpu::app::engine::Prediction) {
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
