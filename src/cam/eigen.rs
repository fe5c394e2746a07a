//! CAM methods from the first principal component of a block: EigenCAM (of the activations
//! A), EigenGradCAM (of g ⊙ A), and `--eigen-smooth`, which projects any method's weighted
//! activations (w_k·A, ReLU(g ⊙ A), …: `Input`) likewise (shaders/cam_eigen.wgsl). X = the
//! (HW × C) matrix, centred per channel over positions; the map is X·v₁, v₁ the covariance XᵀX's top eigenvector
//! (the first right singular vector of X), by power iteration; its sign is flipped when
//! |min| > |max| (Seg-Eigen-CAM's rule: an SVD's direction has no sign, and pytorch-grad-cam's
//! plain EigenCAM leaves it to LAPACK), then ReLU. Where |min| and |max| tie within `TIE` (a
//! block of two positions, whose centred projection is ±a; a map symmetric about 0) nothing
//! is flipped: v₁'s sign from the power iteration decides, not rounding.
//! GPU launchers and CPU reference side by side.

use super::methods::{Explainer, ImageStrides, Method};
use crate::error::{Error, Result};
use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d},
    words,
};

crate::wgsl_params! {
    /// shaders/cam_eigen.wgsl's `Params`
    pub struct CamEigenParams for "cam_eigen" {
        c: u32, hw: u32, map_off: u32, p_from: u32, p_to: u32, steps: u32, aux_off: u32, k_off: u32,
        sstride: u32, mstride: u32, astride: u32, _p: u32,
    }
}

/// The matrix X whose first principal component makes the map: EigenCAM's and EigenGradCAM's
/// own, and under `--eigen-smooth` each method's weighted activations, as pytorch-grad-cam
/// projects them (its `get_cam_image` with `eigen_smooth=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A (EigenCAM)
    Act,
    /// g ⊙ A (EigenGradCAM; HiResCAM smoothed)
    GradAct,
    /// w_k·A, w the method's channel weights (any channel method, Score-CAM, smoothed)
    Weighted,
    /// ReLU(g ⊙ A) (Grad-CAM element-wise smoothed)
    RectifiedProduct,
    /// ReLU(g) ⊙ A (LayerCAM smoothed)
    RectifiedGrad,
    /// ReLU(g)/(max(max g, 0) + 1e-8) ⊙ A (the official LayerCAM smoothed)
    RectifiedGradScaled,
}

impl Input {
    /// What the eigen methods project, and what `--eigen-smooth` projects for any other.
    pub fn smoothing(method: Method) -> Input {
        match method {
            Method::EigenCam | Method::KpcaCam => Input::Act,
            Method::EigenGradCam | Method::HiResCam => Input::GradAct,
            Method::GradCamElementwise => Input::RectifiedProduct,
            Method::LayerCam => Input::RectifiedGrad,
            Method::LayerCamOfficial => Input::RectifiedGradScaled,
            _ => Input::Weighted,
        }
    }

    /// shaders/cam_eigen.wgsl's INPUT
    fn code(self) -> u32 {
        self as u32
    }

    fn uses_grad(self) -> bool {
        !matches!(self, Input::Act | Input::Weighted)
    }
}

/// The most channels the power iteration holds in a workgroup (shaders/cam_eigen.wgsl's
/// MAX_C): EfficientNet-B7's widest block has 640.
pub const MAX_CHANNELS: usize = 1024;

pub struct EigenArgs<'a> {
    pub c: usize,
    pub hw: usize,
    /// the block output A: (C, HW)
    pub blk: &'a wgpu::Buffer,
    /// ∂score/∂A: (C, HW) (every input but A and w_k·A)
    pub grad: &'a wgpu::Buffer,
    /// what is projected
    pub input: Input,
    /// the channel weights at an offset (`Input::Weighted`), or max g at one
    /// (`Input::RectifiedGradScaled`)
    pub aux: Option<(&'a wgpu::Buffer, usize)>,
    /// means, covariance and v₁: `scratch_len(c)` floats, reused block after block
    pub scratch: &'a wgpu::Buffer,
    /// maps, written at `map_off`
    pub maps: &'a wgpu::Buffer,
    pub map_off: usize,
    /// a batch's images apart in `maps` and in `aux`'s channel weights, and in `scratch`
    /// (image z's max g: aux at its offset + z)
    pub strides: ImageStrides,
    pub scratch_stride: usize,
}

/// Floats of scratch a block of `c` channels needs: means, covariance, v₁ and a flag.
pub fn scratch_len(c: usize) -> usize {
    2 * c + c * c + 1
}

/// The power iteration's most steps, on both sides (`cpu::top_eigenvector`).
pub const MAX_ITERS: usize = 300;

/// The sign rule flips only when |min| > |max|·TIE (the shader's TIE): a tie within rounding
/// keeps v₁'s sign from the power iteration, on both sides.
pub const TIE: f64 = 1.0001;

/// Loop turns one invocation may take in one dispatch: lavapipe ends an invocation's loops
/// after 65,535 turns in all, silently, so every dispatch stays well under that.
const TURNS: usize = 60_000;

/// The shader's workgroup for the power iteration (WG) and its components per invocation.
const WG: usize = 256;

/// Positions per means/cov dispatch: four a turn.
fn chunk() -> usize {
    4 * (TURNS - 8)
}

/// Power steps per dispatch for `c` channels: the largest divisor of MAX_ITERS whose turns
/// fit in TURNS. A step's turns in one invocation: the component loop (MAX_C / WG), for each
/// of its components the row's c / 4 turns and the rest (< 4), the two sums over WG partials
/// four a turn; plus the loads and stores of v and the scan of S's diagonal around the steps.
fn power_steps(c: usize) -> usize {
    let step = MAX_CHANNELS / WG + c.div_ceil(WG) * (c / 4 + 3) + 2 * (WG / 4);
    // the loads and stores of v, and the scan of S's diagonal for its unit
    runs_of((TURNS - 2 * (MAX_CHANNELS / WG) - c) / step)
}

/// Power steps per dispatch when `fit` steps fit in one: the largest divisor of MAX_ITERS
/// not above it, so that the dispatches add up to MAX_ITERS steps.
fn runs_of(fit: usize) -> usize {
    (1..=MAX_ITERS.min(fit).max(1))
        .rev()
        .find(|s| MAX_ITERS.is_multiple_of(*s))
        .unwrap_or(1)
}

/// One dispatch of the map: entry, params, workgroups, flops, bindings (an auto layout holds
/// only what an entry uses).
type Step<'a> = (
    &'static str,
    CamEigenParams,
    [u32; 3],
    f64,
    Vec<(u32, Option<&'a wgpu::Buffer>)>,
);

/// The bindings an eigen map's dispatches use: X's (A, g, aux), scratch and the maps.
struct Bind<'a> {
    x: Vec<(u32, Option<&'a wgpu::Buffer>)>,
    scratch: (u32, Option<&'a wgpu::Buffer>),
    map: (u32, Option<&'a wgpu::Buffer>),
}

fn bindings<'a>(a: &EigenArgs<'a>) -> Bind<'a> {
    let grad = a.input.uses_grad().then_some(a.grad);
    Bind {
        x: vec![(1, Some(a.blk)), (2, grad), (5, a.aux.map(|x| x.0))],
        scratch: (3, Some(a.scratch)),
        map: (4, Some(a.maps)),
    }
}

fn params(a: &EigenArgs, (from, to): (usize, usize), steps: usize) -> CamEigenParams {
    CamEigenParams {
        c: a.c as u32,
        hw: a.hw as u32,
        map_off: a.map_off as u32,
        p_from: from as u32,
        p_to: to as u32,
        steps: steps as u32,
        aux_off: a.aux.map_or(0, |x| x.1) as u32,
        k_off: scratch_len(a.c) as u32,
        sstride: a.scratch_stride as u32,
        mstride: a.strides.maps as u32,
        astride: match a.input {
            Input::Weighted => a.strides.weights as u32,
            Input::RectifiedGradScaled => 1,
            _ => 0,
        },
        _p: 0,
    }
}

/// The per-channel means over positions, a dispatch per `chunk()` positions.
fn means<'a>(a: &EigenArgs<'a>, b: &Bind<'a>) -> Vec<Step<'a>> {
    let (c, hw) = (a.c, a.hw);
    let with_scratch = [b.x.clone(), vec![b.scratch]].concat();
    chunks(hw)
        .into_iter()
        .map(|r| {
            let groups = grid_1d((c as u32).div_ceil(64));
            let flops = (c * (r.1 - r.0)) as f64;
            (
                "means",
                params(a, r, 0),
                groups,
                flops,
                with_scratch.clone(),
            )
        })
        .collect()
}

fn chunks(hw: usize) -> Vec<(usize, usize)> {
    (0..hw.max(1))
        .step_by(chunk())
        .map(|from| (from, (from + chunk()).min(hw)))
        .collect()
}

/// Dispatch the steps, in order.
fn emit(
    gpu: &Gpu,
    label: &dyn Fn(&str) -> String,
    a: &EigenArgs,
    steps: Vec<Step>,
    d: &mut Vec<Dispatch>,
) {
    for (entry, p, groups, flops, bindings) in steps {
        let mut x = gpu.dispatch(&DispatchDesc {
            label: &label(entry),
            family: "cam",
            source: Some(Source::Table("cam_eigen")),
            entry,
            constants: &[("INPUT", a.input.code() as f64)],
            params: words(&p),
            bindings: &bindings,
            groups,
            ..Default::default()
        });
        x.flops = flops;
        d.push(x);
    }
}

/// The map of `a.input` at one block: means, covariance, power iteration, projection, sign and
/// ReLU. Means and covariance take a dispatch per `chunk()` positions, the power iteration
/// MAX_ITERS / `power_steps(c)` dispatches (those after it stopped return at once).
/// `label(what)` names each.
pub fn record(gpu: &Gpu, label: &dyn Fn(&str) -> String, a: &EigenArgs, d: &mut Vec<Dispatch>) {
    assert!(
        a.c <= MAX_CHANNELS,
        "{} channels: the eigen methods hold at most {MAX_CHANNELS}",
        a.c
    );
    let needs_aux = matches!(a.input, Input::Weighted | Input::RectifiedGradScaled);
    assert_eq!(a.aux.is_some(), needs_aux, "{:?}: aux", a.input);
    let (c, hw) = (a.c, a.hw);
    let b = bindings(a);
    let with_scratch = [b.x.clone(), vec![b.scratch]].concat();
    let mut steps = means(a, &b);
    for r in chunks(hw) {
        let groups = grid_1d(((c * c) as u32).div_ceil(64));
        let flops = 2.0 * (c * c * (r.1 - r.0)) as f64;
        steps.push(("cov", params(a, r, 0), groups, flops, with_scratch.clone()));
    }
    let run = power_steps(c);
    for _ in 0..MAX_ITERS / run {
        steps.push((
            "power",
            params(a, (0, 0), run),
            [1, 1, 1],
            0.0,
            vec![b.scratch],
        ));
    }
    let groups = grid_1d((hw as u32).div_ceil(64));
    let flops = 2.0 * (c * hw) as f64;
    let all = [with_scratch, vec![b.map]].concat();
    steps.push(("project", params(a, (0, 0), 0), groups, flops, all));
    steps.push((
        "sign",
        params(a, (0, 0), 0),
        [1, 1, 1],
        2.0 * hw as f64,
        vec![b.map],
    ));
    emit(gpu, label, a, steps, d);
}

/// The most positions kernel PCA takes (`kpcacam`): its n × n kernel matrix is held whole,
/// 64 MiB at 4,096.
pub const MAX_KPCA_POSITIONS: usize = 4096;

/// Whether KPCA-CAM takes a block of this size: at most `MAX_KPCA_POSITIONS` positions.
fn kpca_fits((h, w): (usize, usize)) -> bool {
    h * w <= MAX_KPCA_POSITIONS
}

/// KPCA-CAM holds a block's n × n kernel matrix whole, so it takes blocks of at most
/// `MAX_KPCA_POSITIONS` positions: a one-line error names the blocks that qualify at
/// this input size.
pub fn check_kpca(
    explainers: &[Explainer],
    blocks: &[usize],
    sizes: &[(usize, usize)],
    (h, w): (usize, usize),
) -> Result<()> {
    let most = MAX_KPCA_POSITIONS;
    if !explainers.iter().any(|e| e.method == Method::KpcaCam) {
        return Ok(());
    }
    let Some(&l) = blocks.iter().find(|&&l| !kpca_fits(sizes[l])) else {
        return Ok(());
    };
    let fits: Vec<usize> = (0..sizes.len()).filter(|&b| kpca_fits(sizes[b])).collect();
    let (bh, bw) = sizes[l];
    let fix = match (fits.first(), fits.last()) {
        (Some(a), Some(b)) => {
            format!("use --blocks {a}-{b} (the blocks of at most {most} positions at this size)")
        }
        _ => "use a smaller photo".into(),
    };
    Err(Error::Input(format!(
        "kpcacam holds a block's positions² kernel matrix, at most {most} positions: block {l} is {bh}×{bw} = {} at this {h}×{w} input; {fix}",
        bh * bw
    )))
}

/// Of `blocks`, those KPCA-CAM takes at these block `sizes` (at most `MAX_KPCA_POSITIONS`
/// positions); all of them when none fits, for `check_kpca` to say so.
pub fn kpca_blocks(blocks: &[usize], sizes: &[(usize, usize)]) -> Vec<usize> {
    let fit: Vec<usize> = (blocks.iter().copied())
        .filter(|&l| kpca_fits(sizes[l]))
        .collect();
    match fit.is_empty() {
        true => blocks.to_vec(),
        false => fit,
    }
}

/// Floats of scratch KPCA-CAM needs at a block of `c` channels and `n` positions: the eigen
/// layout (the means), then r, t and the flag, v, K·v and K.
pub fn kpca_scratch_len(c: usize, n: usize) -> usize {
    scratch_len(c) + 3 * n + 2 + n * n
}

/// Power steps per `kpower` dispatch for `n` positions: the largest divisor of MAX_ITERS whose
/// turns fit in TURNS. A step's turns in one invocation: its rows (n / WG) of n / 4 + 3 turns,
/// the update of its rows, the two sums over WG partials four a turn.
fn kpca_steps(n: usize) -> usize {
    let rows = n.div_ceil(WG);
    let step = rows * (n / 4 + 4) + 2 * (WG / 4);
    runs_of(TURNS / step)
}

/// KPCA-CAM at one block (`a.input` is A; scratch `kpca_scratch_len` long): means, the
/// sigmoid kernel matrix, its centring, the power iteration on it, v₁·√λ, sign and ReLU
/// (shaders/cam_eigen.wgsl's header).
pub fn record_kpca(
    gpu: &Gpu,
    label: &dyn Fn(&str) -> String,
    a: &EigenArgs,
    d: &mut Vec<Dispatch>,
) {
    let (c, n) = (a.c, a.hw);
    assert!(
        n <= MAX_KPCA_POSITIONS,
        "{n} positions: kpcacam holds at most {MAX_KPCA_POSITIONS}"
    );
    assert_eq!(a.input, Input::Act, "kernel PCA of A");
    let b = bindings(a);
    let with_scratch = [b.x.clone(), vec![b.scratch]].concat();
    let mut steps = means(a, &b);
    let (entries, rows) = (
        grid_1d(((n * n) as u32).div_ceil(64)),
        grid_1d((n as u32).div_ceil(64)),
    );
    let p0 = params(a, (0, 0), 0);
    let nn = (n * n) as f64;
    steps.push(("gram", p0, entries, 2.0 * c as f64 * nn, with_scratch));
    steps.push(("krows", p0, rows, nn, vec![b.scratch]));
    steps.push(("ktotal", p0, [1, 1, 1], n as f64, vec![b.scratch]));
    steps.push(("kcenter", p0, entries, 3.0 * nn, vec![b.scratch]));
    let run = kpca_steps(n);
    for _ in 0..MAX_ITERS / run {
        let p = params(a, (0, 0), run);
        steps.push((
            "kpower",
            p,
            [1, 1, 1],
            2.0 * nn * run as f64,
            vec![b.scratch],
        ));
    }
    steps.push(("kproject", p0, [1, 1, 1], 2.0 * nn, vec![b.scratch, b.map]));
    steps.push(("sign", p0, [1, 1, 1], 2.0 * n as f64, vec![b.map]));
    emit(gpu, label, a, steps, d);
}

pub mod cpu {
    use super::{Input, MAX_ITERS, TIE};

    /// shaders/cam_eigen.wgsl's stopping threshold
    const STOP: f64 = 1e-6;

    /// X[k, p] in f64, as the shader's `x`: `aux` holds the channel weights
    /// (`Input::Weighted`) or max g (`Input::RectifiedGradScaled`), else is empty.
    pub fn input(input: Input, a: &[f32], g: &[f32], aux: &[f32], c: usize, hw: usize) -> Vec<f64> {
        let scale = match input {
            Input::RectifiedGradScaled => 1.0 / (aux[0].max(0.0) + 1e-8),
            _ => 1.0,
        };
        (0..c * hw)
            .map(|i| {
                let (a, g) = (a[i], g.get(i).copied().unwrap_or(0.0));
                (match input {
                    Input::Act => a,
                    Input::GradAct => g * a,
                    Input::Weighted => aux[i / hw] * a,
                    Input::RectifiedProduct => (g * a).max(0.0),
                    Input::RectifiedGrad => g.max(0.0) * a,
                    Input::RectifiedGradScaled => g.max(0.0) * scale * a,
                }) as f64
            })
            .collect()
    }

    /// The map of `input` (see `input`): X centred, its covariance, v₁ by the shader's power
    /// iteration (its start, its stopping rule, its step limit), the projection, the sign rule
    /// and ReLU. The same iteration on both sides: where two eigenvalues nearly tie, v₁ is
    /// ill-conditioned and a converged f64 vector and the shader's f32 one would part ways.
    pub fn map(input: Input, a: &[f32], g: &[f32], aux: &[f32], c: usize, hw: usize) -> Vec<f32> {
        project(&self::input(input, a, g, aux, c, hw), c, hw)
    }

    /// The first principal component of X (C, HW) as a map: centred, projected, signed, ReLU.
    pub fn project(x: &[f64], c: usize, hw: usize) -> Vec<f32> {
        let means: Vec<f64> = (0..c)
            .map(|k| x[k * hw..(k + 1) * hw].iter().sum::<f64>() / hw as f64)
            .collect();
        let xc: Vec<f64> = (0..c * hw).map(|i| x[i] - means[i / hw]).collect();
        let mut cov = vec![0f64; c * c];
        for k in 0..c {
            for q in k..c {
                let s: f64 = (0..hw).map(|p| xc[k * hw + p] * xc[q * hw + p]).sum();
                cov[k * c + q] = s;
                cov[q * c + k] = s;
            }
        }
        let v = top_eigenvector(&cov, c);
        let proj: Vec<f64> = (0..hw)
            .map(|p| (0..c).map(|k| xc[k * hw + p] * v[k]).sum())
            .collect();
        signed_relu(&proj)
    }

    /// The map, flipped when |min| > |max| (Seg-Eigen-CAM's rule; scikit-learn's svd_flip for
    /// kernel PCA) by more than `TIE`, then ReLU.
    fn signed_relu(proj: &[f64]) -> Vec<f32> {
        let (mn, mx) = proj
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let flip = mn.abs() > mx.abs() * TIE;
        proj.iter()
            .map(|&v| (if flip { -v } else { v }).max(0.0) as f32)
            .collect()
    }

    /// KPCA-CAM's map of A (c, n) in f64: scikit-learn's KernelPCA(n_components=1,
    /// kernel="sigmoid") with γ = 1/c and coef0 = 1 on the positions' centred activations: the
    /// kernel matrix, centred (KernelCenterer), its top eigenvector by the shader's power
    /// iteration, scaled by √max(λ, 0); the sign rule, ReLU.
    pub fn kpca_map(a: &[f32], c: usize, n: usize) -> Vec<f32> {
        let x = self::input(Input::Act, a, &[], &[], c, n);
        let means: Vec<f64> = (0..c)
            .map(|k| x[k * n..(k + 1) * n].iter().sum::<f64>() / n as f64)
            .collect();
        let xc = |k: usize, p: usize| x[k * n + p] - means[k];
        let gamma = 1.0 / c as f64;
        let mut km = vec![0f64; n * n];
        for p in 0..n {
            for q in p..n {
                let s: f64 = (0..c).map(|k| xc(k, p) * xc(k, q)).sum();
                let v = (gamma * s + 1.0).tanh();
                km[p * n + q] = v;
                km[q * n + p] = v;
            }
        }
        let r: Vec<f64> = (0..n)
            .map(|p| km[p * n..(p + 1) * n].iter().sum::<f64>() / n as f64)
            .collect();
        let t = r.iter().sum::<f64>() / n as f64;
        for (i, v) in km.iter_mut().enumerate() {
            *v += t - r[i / n] - r[i % n];
        }
        let v = top_eigenvector(&km, n);
        let lambda: f64 = (0..n)
            .map(|p| v[p] * (0..n).map(|q| km[p * n + q] * v[q]).sum::<f64>())
            .sum();
        let scale = lambda.max(0.0).sqrt();
        signed_relu(&v.iter().map(|x| x * scale).collect::<Vec<_>>())
    }

    /// The top eigenvector of the symmetric `s` (c × c), unit length, by power iteration as
    /// the shader runs it: until no component moves by more than 1e-6, at most 300 steps.
    pub fn top_eigenvector(s: &[f64], c: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..c)
            .map(|k| 1.0 + 0.5 * (k as f32 * 1.7).sin() as f64)
            .collect();
        for _ in 0..MAX_ITERS {
            let w: Vec<f64> = (0..c)
                .map(|k| (0..c).map(|q| s[k * c + q] * v[q]).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            let moved = w
                .iter()
                .zip(&v)
                .map(|(a, b)| (a / norm - b).abs())
                .fold(0.0, f64::max);
            v = w.iter().map(|x| x / norm).collect();
            if moved <= STOP {
                break;
            }
        }
        v
    }
}
