//! ROAD, Remove And Debias (Rong et al., ICML 2022), as pytorch-grad-cam 1.5.7 computes it
//! (`metrics/road.py`): at each percentile p of 10, 20, …, 90, the pixels a saliency map S
//! ranks highest (MoRF) or lowest (LeRF) are removed and filled by the noisy linear imputer,
//! and the metric is the target's probability on the imputed input minus that on the input.
//!
//! - MoRF at p keeps the pixels with S < percentile(S, p) (so at p = 10 it removes about 90%);
//!   LeRF at p keeps those with 1 − S < percentile(1 − S, p): pytorch-grad-cam's
//!   `RemoveMostRelevantFirst` and `RemoveLeastRelevantFirst`, percentiles as numpy's
//!   (linear), compared in float32 as torch does.
//! - The imputer (`NoisyLinearImputer`): each removed pixel equals the weighted mean of its 8
//!   neighbours inside the image (1/6 on the sides, 1/12 on the diagonals, the weights of
//!   neighbours outside dropped), one sparse symmetric system over all removed pixels for the
//!   three channels, then Gaussian noise of σ = `noise` on them (0: deterministic). Solved
//!   here by a sparse Cholesky factorisation (faer) in f64, where pytorch-grad-cam calls
//!   scipy's `spsolve`. When no pixel is kept (a map with ties at its percentile), the system
//!   has no solution; the removed pixels are then 0 (the normalised input's middle) plus noise.
//! - MoRF and LeRF are each the mean over the percentiles; combined = (LeRF − MoRF)/2.

use crate::error::{Error, Result};
use faer::linalg::solvers::Solve;
use faer::sparse::{SparseColMat, Triplet};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// The imputation noise σ of pytorch-grad-cam's ROAD classes (`--road-noise`).
pub const DEFAULT_NOISE: f32 = 0.01;

/// The imputer's noise must be a standard deviation: a one-line error naming `what` (the
/// flag or keyword that gave it) otherwise.
pub fn check_noise(sigma: f32, what: &str) -> crate::error::Result<()> {
    if sigma.is_finite() && sigma >= 0.0 {
        return Ok(());
    }
    Err(crate::error::Error::Input(format!(
        "{what} {sigma}: give a standard deviation, 0 or more (default {DEFAULT_NOISE})"
    )))
}

/// The percentiles of pytorch-grad-cam's ROAD averages.
pub const PERCENTILES: [u32; 9] = [10, 20, 30, 40, 50, 60, 70, 80, 90];

/// (row offset, column offset, weight) of the imputer's neighbours, in pytorch-grad-cam's order.
const NEIGHBOURS: [(i64, i64, f64); 8] = [
    (1, 1, 1.0 / 12.0),
    (0, 1, 1.0 / 6.0),
    (-1, 1, 1.0 / 12.0),
    (1, -1, 1.0 / 12.0),
    (0, -1, 1.0 / 6.0),
    (-1, -1, 1.0 / 12.0),
    (1, 0, 1.0 / 6.0),
    (-1, 0, 1.0 / 6.0),
];

/// One explainer's ROAD on one image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Road {
    /// probability after − before, per percentile (MoRF: lower is better)
    pub morf: Vec<f32>,
    /// the same, least relevant first (higher is better)
    pub lerf: Vec<f32>,
    pub morf_mean: f64,
    pub lerf_mean: f64,
    /// (LeRF − MoRF)/2: higher is better
    pub combined: f64,
}

impl Road {
    /// From the probabilities before (`y`) and after each imputation: MoRF's, then LeRF's.
    pub fn from_scores(y: f32, morf: &[f32], lerf: &[f32]) -> Road {
        let diff = |v: &[f32]| v.iter().map(|&p| p - y).collect::<Vec<f32>>();
        let mean = |v: &[f32]| v.iter().map(|&d| d as f64).sum::<f64>() / v.len().max(1) as f64;
        let (morf, lerf) = (diff(morf), diff(lerf));
        let (morf_mean, lerf_mean) = (mean(&morf), mean(&lerf));
        Road {
            combined: (lerf_mean - morf_mean) / 2.0,
            morf,
            lerf,
            morf_mean,
            lerf_mean,
        }
    }
}

/// numpy's `percentile(v, p)` (the default, linear interpolation), in f64.
pub fn percentile(v: &[f32], p: f64) -> f64 {
    let mut s: Vec<f32> = v.to_vec();
    s.sort_by(f32::total_cmp);
    let pos = p / 100.0 * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    let (a, b, t) = (s[lo] as f64, s[hi] as f64, pos - lo as f64);
    // numpy's _lerp: from the nearer end
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// The pixels MoRF (`most` true) or LeRF keeps at percentile `p` of the map `s`.
pub fn kept(s: &[f32], p: u32, most: bool) -> Vec<bool> {
    let v: Vec<f32> = if most {
        s.to_vec()
    } else {
        s.iter().map(|&x| 1.0 - x).collect()
    };
    // torch compares a float32 tensor with the threshold as float32
    let t = percentile(&v, p as f64) as f32;
    v.iter().map(|&x| x < t).collect()
}

/// The input `x` (3, H, W) with the pixels not `keep` imputed, plus N(0, noise²) on them
/// (`seed` makes the noise reproducible).
pub fn impute(
    x: &[f32],
    (h, w): (usize, usize),
    keep: &[bool],
    noise: f32,
    seed: u64,
) -> Result<Vec<f32>> {
    let hw = h * w;
    let removed: Vec<usize> = (0..hw).filter(|&i| !keep[i]).collect();
    let mut var = vec![usize::MAX; hw];
    for (v, &i) in removed.iter().enumerate() {
        var[i] = v;
    }
    let n = removed.len();
    let mut out = x.to_vec();
    let mut sol = faer::Mat::<f64>::zeros(n, 3);
    if n > 0 && n < hw {
        // −A of pytorch-grad-cam's system (symmetric positive definite): the sum of the
        // neighbours' weights on the diagonal, −weight to each removed neighbour; its lower
        // triangle. The right-hand side: the kept neighbours' weighted values.
        let mut entries = Vec::with_capacity(5 * n);
        for (v, &i) in removed.iter().enumerate() {
            let (y, xx) = ((i / w) as i64, (i % w) as i64);
            let mut diag = 0.0;
            for &(dy, dx, wt) in &NEIGHBOURS {
                let (ny, nx) = (y + dy, xx + dx);
                if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                    continue;
                }
                diag += wt;
                let j = ny as usize * w + nx as usize;
                if keep[j] {
                    for c in 0..3 {
                        sol[(v, c)] += wt * x[c * hw + j] as f64;
                    }
                } else if var[j] < v {
                    entries.push(Triplet::new(v, var[j], -wt));
                }
            }
            entries.push(Triplet::new(v, v, diag));
        }
        let a = SparseColMat::<usize, f64>::try_new_from_triplets(n, n, &entries)
            .map_err(|e| Error::Input(format!("ROAD's imputer: {e:?}")))?;
        let llt = a
            .sp_cholesky(faer::Side::Lower)
            .map_err(|e| Error::Input(format!("ROAD's imputer: the system is singular ({e:?})")))?;
        llt.solve_in_place(sol.as_mut());
    }
    let normal = Normal::new(0.0f32, noise.max(0.0))
        .map_err(|e| Error::Input(format!("--road-noise {noise}: {e}")))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for c in 0..3 {
        for (v, &i) in removed.iter().enumerate() {
            let e = if noise > 0.0 {
                normal.sample(&mut rng)
            } else {
                0.0
            };
            out[c * hw + i] = sol[(v, c)] as f32 + e;
        }
    }
    Ok(out)
}

/// ROAD's imputations: MoRF's at each percentile, then LeRF's.
pub const IMPUTATIONS: usize = 2 * PERCENTILES.len();

/// ROAD's imputed inputs `range` (of `IMPUTATIONS`: MoRF's at each percentile, then LeRF's),
/// one after another (len × 3 × H × W): a batch at a time, so that memory stays that of a
/// batch whatever the input's size. The imputations run on every core (each its own system;
/// the result does not depend on how many, nor on the batches).
pub fn inputs(
    x: &[f32],
    (h, w): (usize, usize),
    s: &[f32],
    (noise, seed): (f32, u64),
    range: std::ops::Range<usize>,
) -> Result<Vec<f32>> {
    let jobs: Vec<(usize, u32, bool)> = [true, false]
        .into_iter()
        .flat_map(|most| PERCENTILES.iter().map(move |&p| (p, most)))
        .enumerate()
        .map(|(j, (p, most))| (j, p, most))
        .filter(|j| range.contains(&j.0))
        .collect();
    let one = |i: usize| {
        let (j, p, most) = jobs[i];
        let keep = kept(s, p, most);
        impute(x, (h, w), &keep, noise, seed.wrapping_add(j as u64))
    };
    let next = crate::gpu::workers::Queue::new(jobs.len());
    let done = std::sync::Mutex::new(Vec::with_capacity(jobs.len()));
    crate::gpu::workers::run(crate::gpu::workers::cores(jobs.len()), || {
        while let Some(j) = next.take() {
            let r = one(j);
            done.lock().unwrap().push((j, r));
        }
    });
    let mut done: Vec<(usize, Result<Vec<f32>>)> = done.into_inner().unwrap();
    done.sort_by_key(|d| d.0);
    let mut all = Vec::with_capacity(jobs.len() * x.len());
    for (_, r) in done {
        all.extend(r?);
    }
    Ok(all)
}
