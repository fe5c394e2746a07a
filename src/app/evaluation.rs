//! `evaluate` over images, for every front end: one image's metrics for every explainer
//! (`image_metrics`) and their means over images (`means`), as `evaluate --json` writes them.

use super::engine::Engine;
use super::eval::{self, ImageMetrics, Spec};
use crate::error::Result;
use crate::model::plan::{self, PlanOptions, Score};
use crate::preprocess::Preprocessed;
use serde::Serialize;
use std::collections::BTreeMap;

/// One explainer's metrics averaged over the images it was scored on.
#[derive(Serialize, Default, Clone, Debug)]
pub struct Mean {
    pub deletion_auc: f64,
    pub insertion_auc: f64,
    pub average_drop: f64,
    /// the fraction of images whose confidence increased
    pub increase: f64,
    pub images: usize,
    /// ROAD's MoRF, LeRF and combined means, over the images that have them
    #[serde(skip_serializing_if = "Option::is_none")]
    pub road: Option<[f64; 3]>,
}

/// The masked passes one image costs: its curves and its explainers' maps.
pub fn passes_per_image(
    specs: &[Spec],
    (steps, road): (usize, bool),
    cfg: &crate::model::config::ModelCfg,
) -> Result<usize> {
    let mut n = specs.len() * eval::passes_per_explainer(steps, road);
    for s in specs {
        n += eval::map_passes(s, cfg)?;
    }
    Ok(n)
}

/// One image's metrics: the unmodified input's top output and its probability Y, then each
/// explainer's saliency map and its metrics. `batch`: masked copies per submission as asked
/// (None: the adapter's default); `road_noise`: ROAD's σ (None: no ROAD). `progress(n)`: n
/// masked passes of this image done so far.
pub fn image_metrics(
    engine: &mut Engine,
    image: &str,
    pre: &Preprocessed,
    specs: &[Spec],
    (steps, batch, road_noise): (usize, Option<usize>, Option<f32>),
    progress: &mut dyn FnMut(usize),
) -> Result<ImageMetrics> {
    let (h, w) = (pre.height, pre.width);
    let x = &pre.tensor;
    let asked = batch;
    let batch = batch.unwrap_or(PlanOptions::AUTO_BATCH);
    let fwd = PlanOptions::forward(batch);
    let o = engine.run(x, h, w, &fwd, None, Score::Prob)?;
    if let Some(asked) = asked {
        let got = engine.plan(h, w, &fwd)?.masked_copies();
        plan::note_batch(asked, got);
    }
    let (target, y) = (o.argmax, o.probs[o.argmax]);
    let mut explainers = BTreeMap::new();
    let mut done = 0;
    for s in specs {
        let mut last = 0;
        let map = eval::saliency(engine, s, x, (h, w), target, batch, &mut |n| {
            last = n;
            progress(done + n)
        })?;
        done += last;
        let mut last = 0;
        let m = eval::metrics(
            engine,
            x,
            (h, w),
            &map,
            (target, y),
            &eval::Protocol {
                steps,
                batch,
                road_noise,
            },
            &mut |n| {
                last = n;
                progress(done + n)
            },
        )?;
        done += last;
        explainers.insert(s.name.clone(), m);
    }
    Ok(ImageMetrics {
        image: image.to_string(),
        target,
        explainers,
    })
}

/// Every explainer's metrics averaged over the images it was scored on.
pub fn means(results: &[ImageMetrics]) -> BTreeMap<String, Mean> {
    let mut mean: BTreeMap<String, Mean> = BTreeMap::new();
    for r in results {
        for (name, m) in &r.explainers {
            let e = mean.entry(name.clone()).or_default();
            e.deletion_auc += m.deletion_auc;
            e.insertion_auc += m.insertion_auc;
            e.average_drop += m.average_drop;
            e.increase += m.increase as u8 as f64;
            e.images += 1;
            if let Some(r) = &m.road {
                let s = e.road.get_or_insert([0.0; 3]);
                for (a, v) in s.iter_mut().zip([r.morf_mean, r.lerf_mean, r.combined]) {
                    *a += v;
                }
            }
        }
    }
    for (name, m) in mean.iter_mut() {
        let n = m.images.max(1) as f64;
        m.deletion_auc /= n;
        m.insertion_auc /= n;
        m.average_drop /= n;
        m.increase /= n;
        let with_road = results
            .iter()
            .filter(|r| r.explainers.get(name).is_some_and(|e| e.road.is_some()))
            .count()
            .max(1) as f64;
        if let Some(r) = &mut m.road {
            r.iter_mut().for_each(|v| *v /= with_road);
        }
    }
    mean
}

/// What `evaluate --json` writes: every image's metrics and curves, and the means.
#[derive(Serialize)]
pub struct Report {
    pub steps: usize,
    pub adapter: crate::gpu::AdapterSummary,
    pub model: String,
    pub weights: String,
    pub images: Vec<ImageMetrics>,
    pub mean: BTreeMap<String, Mean>,
}
