//! `--aug-smooth`: pytorch-grad-cam's test-time augmentation. The photo's input tensor is run
//! six times, horizontally flipped or not × multiplied by 0.9, 1.0 or 1.1 (ttach's
//! `HorizontalFlip` and `Multiply`, applied to the normalised tensor as there); every map of
//! a flipped run is flipped back, and the six runs' maps are averaged: each fused map (already
//! min-max normalised per run, as pytorch-grad-cam's per-run result is) and each block map.
//! Every run explains the unaugmented photo's target (pytorch-grad-cam re-picks the top class
//! per augmentation when given no target; a fixed one keeps the six maps about one output).

use crate::model::plan::{ExplainerOutput, Output};

/// (flip, factor) of each run, the unaugmented one first: its prediction is the photo's.
pub const RUNS: [(bool, f32); 6] = [
    (false, 1.0),
    (false, 0.9),
    (false, 1.1),
    (true, 0.9),
    (true, 1.0),
    (true, 1.1),
];

/// The input of one run: `x` (C, H, W) times `factor`, each row reversed with `flip`.
pub fn input(x: &[f32], w: usize, (flip, factor): (bool, f32)) -> Vec<f32> {
    let mut y: Vec<f32> = x.iter().map(|v| v * factor).collect();
    if flip {
        flip_rows(&mut y, w);
    }
    y
}

/// Reverse every row of `m`, rows `w` long (a map or a tensor, row-major): a horizontal flip.
pub fn flip_rows(m: &mut [f32], w: usize) {
    for row in m.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// The runs' maps brought back to the photo's orientation and averaged, into the first run's
/// output (its prediction, its target and its fused range stay). `runs[i]` is the output of
/// `RUNS[i]`; every run has the same explainers and blocks.
pub fn average(runs: Vec<Output>, (h, w): (usize, usize)) -> Output {
    let mut runs = runs.into_iter();
    let mut out = runs.next().expect("the unaugmented run");
    let mut each: Vec<Vec<ExplainerOutput>> = std::mem::take(&mut out.explainers)
        .into_iter()
        .map(|e| vec![e])
        .collect();
    for r in runs {
        each.iter_mut()
            .zip(r.explainers)
            .for_each(|(v, e)| v.push(e));
    }
    let sizes = out.map_sizes.clone();
    out.explainers = each
        .into_iter()
        .map(|v| average_one(v, &sizes, w))
        .collect();
    debug_assert!(out.explainers.iter().all(|e| e.fused.len() == h * w));
    out.mirror_first();
    out
}

/// One explainer's outputs of the runs (`runs[i]` of `RUNS[i]`), brought back to the photo's
/// orientation and averaged into the first's: each fused map (min-max normalised per run, as
/// pytorch-grad-cam's per-run result is) and each block map (`sizes`: each block's (h, w));
/// the first run's fused range stays. `w`: the input's width.
pub fn average_one(
    runs: Vec<ExplainerOutput>,
    sizes: &[(usize, usize)],
    w: usize,
) -> ExplainerOutput {
    let n = runs.len() as f32;
    let mut runs = runs.into_iter().zip(RUNS);
    let (mut mine, _) = runs.next().expect("the unaugmented run");
    for (mut theirs, (flip, _)) in runs {
        if flip {
            flip_rows(&mut theirs.fused, w);
            for (m, &(_, bw)) in theirs.maps.iter_mut().zip(sizes) {
                if let Some(m) = m {
                    flip_rows(m, bw);
                }
            }
        }
        add(&mut mine, &theirs);
    }
    mine.fused.iter_mut().for_each(|v| *v /= n);
    for (l, m) in mine.maps.iter_mut().enumerate() {
        if let Some(m) = m {
            m.iter_mut().for_each(|v| *v /= n);
            mine.map_max[l] = Some(m.iter().fold(f32::MIN, |a, &v| a.max(v)));
            mine.map_mean[l] = Some(m.iter().sum::<f32>() / m.len() as f32);
        }
    }
    mine
}

/// `mine` += `theirs`, map by map.
fn add(mine: &mut ExplainerOutput, theirs: &ExplainerOutput) {
    let sum = |a: &mut [f32], b: &[f32]| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    sum(&mut mine.fused, &theirs.fused);
    for (a, b) in mine.maps.iter_mut().zip(&theirs.maps) {
        if let (Some(a), Some(b)) = (a, b) {
            sum(a, b);
        }
    }
}
