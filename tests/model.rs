//! The whole model: the GPU plan against the CPU model block by block (B0), both against
//! PyTorch golden files (B0 and B4 visloc, timm B0), and the CPU backward against finite
//! differences.

use crate::common::{check, gpu};
use combicam_gpu::cam::methods::{Explainer, Method};
use combicam_gpu::gpu::Gpu;
use combicam_gpu::model::config::{Family, efficientnet};
use combicam_gpu::model::efficientnet::ModelGpu;
use combicam_gpu::model::plan::{Output, Plan, PlanOptions, Score};
use combicam_gpu::model::weights::{self, Layout, Weights};
use combicam_gpu::model::{cpu, detweights};
use combicam_gpu::ops::Tolerance;
use combicam_gpu::ops::tolerance::{map_tolerance, peak};
use std::collections::HashMap;
use std::path::Path;

pub type Golden = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// A golden file's tensors as f32 (U8 pixel arrays included) and its metadata.
pub fn golden(name: &str) -> (Golden, HashMap<String, String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut out = HashMap::new();
    for (k, t) in st.tensors() {
        let data: Vec<f32> = match t.dtype() {
            safetensors::Dtype::U8 => t.data().iter().map(|&v| v as f32).collect(),
            safetensors::Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            other => panic!("{name}: tensor {k} has dtype {other:?}"),
        };
        out.insert(k, (t.shape().to_vec(), data));
    }
    (out, meta.metadata().clone().unwrap_or_default())
}

/// The trained Lite0 and tests/photos/coffee.png preprocessed as it says, checked against the
/// size a golden file's metadata gives (the goldens of tests/golden/lite0_coffee.py).
pub fn lite0_coffee(
    meta: &HashMap<String, String>,
) -> (Weights, combicam_gpu::preprocess::Preprocessed) {
    let wts = lite0_checkpoint();
    let photo = combicam_gpu::preprocess::load_image(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos/coffee.png"),
    )
    .unwrap();
    let p = combicam_gpu::preprocess::preprocess_with(&photo, &wts.preprocessing).unwrap();
    assert_eq!(
        (p.height.to_string(), p.width.to_string()),
        (meta["height"].clone(), meta["width"].clone())
    );
    (wts, p)
}

/// The coffee's maps before this block move with float32 rounding: PyTorch's own float32
/// Lite0, its input perturbed by one ulp (six draws, tests/golden/perturb_photos.py), moves
/// the Grad-CAM maps of blocks 0–8 by up to 1.7e-3 of their peak and those of blocks 9–15 by
/// at most 6.3e-6, as a ReLU6 input of block 9 within rounding of a kink would (as
/// chelsea's at block 13). lavapipe lands within 2.5e-4 of PyTorch there; an H100
/// (2026-12-06) 1.5e-3 at block 2 and 1.8e-3 at block 5. Those maps are held to 5e-3.
pub const COFFEE_KINK: usize = 9;

/// The share of its peak a photo's block-`l` map is held to against PyTorch: 5e-3 before the
/// photo's ReLU6 kink (`COFFEE_KINK`, chelsea's 13), 1e-3 (the contract) from it on.
pub fn photo_map_rel(l: usize, kink: usize) -> f32 {
    if l < kink { 5e-3 } else { 1e-3 }
}

/// Every explainer's map at each of `blocks` of the coffee against the golden `<method>.NN`,
/// within 1e-3 of the golden map's peak (the contract for maps against pytorch-grad-cam),
/// 5e-3 before `COFFEE_KINK`.
pub fn check_block_maps(what: &str, o: &Output, blocks: &[usize], gd: &Golden) {
    for e in &o.explainers {
        for &l in blocks {
            let name = format!("{}.{l:02}", e.explainer.method.name());
            let (shape, want) = &gd[&name];
            let got = e.maps[l].as_ref().expect("a selected block has a map");
            let peak = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            // XGrad-CAM's Σ A denominators nearly cancel on some channels
            // (`xgradcam_tolerance`): at Lite0's block 10 on the coffee the channel of the
            // largest weight has Σ|A|/|Σ A| ≈ 5,100, so activations that differ from
            // PyTorch's by ~1e-6 move its weight by ~0.5%. Measured 2026-12-03 under
            // --eigen-smooth, where that channel dominates the projection: 2.5e-3 of the peak
            // (PyTorch's own f32 map is 4e-5 from f64 on its own activations)
            let rel = match e.explainer.method {
                Method::XGradCam => 1e-2,
                _ => photo_map_rel(l, COFFEE_KINK),
            };
            check(
                &format!("{what} {name}"),
                got,
                want,
                shape,
                Tolerance::new(0.0, rel * peak),
            );
        }
    }
}

fn run_gpu(w: Weights, h: usize, wd: usize, inputs: &[&[f32]]) -> (ModelGpu, Plan, Vec<Output>) {
    let g = gpu();
    let nb = w.cfg.blocks.len();
    let m = ModelGpu::upload(g, w).unwrap();
    let plan = Plan::new(
        g,
        &m,
        h,
        wd,
        PlanOptions {
            backward: true,
            blocks: (0..nb).collect(),
            explainers: vec![Explainer::COMBICAM],
            masked: 0,
            eigen_smooth: false,
            images: 1,
        },
    )
    .unwrap();
    let outs = inputs
        .iter()
        .map(|x| plan.run(g, x, None, Score::Prob).unwrap())
        .collect();
    (m, plan, outs)
}

/// Model-level tolerance: rel 2e-3, abs 2e-4 of the tensor's peak.
fn model_tol(want: &[f32]) -> Tolerance {
    Tolerance::MODEL.scaled(want)
}

#[test]
fn b0_gpu_matches_cpu_model_block_by_block() {
    // the same comparison as `combicam-gpu check`: stem, every block output, features, probs,
    // target, every gradient, every map and combicam, after another image ran through the plan
    let net = combicam_gpu::app::check::test_network("b0").unwrap();
    let ok = combicam_gpu::app::check::run(gpu(), net, 67, 45).unwrap();
    assert!(
        ok,
        "the GPU plan and the CPU model disagree: see the mismatches printed above"
    );
}

#[test]
fn other_families_gpu_match_cpu_model_block_by_block() {
    // Lite0 (ReLU6, no SE) and timm's TF port of B0 (TF "SAME" at the actual
    // size), at odd sizes where the padding is asymmetric
    // and a 16×16 input, whose last blocks are 1×1: nearly flat fused maps must come out as
    // zeros on both sides, not as float32 noise stretched to [0, 1]
    for (arch, h, w) in [("lite0", 61, 47), ("tf_b0", 59, 45), ("b0", 16, 16)] {
        let net = combicam_gpu::app::check::test_network(arch).unwrap();
        let ok = combicam_gpu::app::check::run(gpu(), net, h, w).unwrap();
        assert!(
            ok,
            "{arch}: the GPU plan and the CPU model disagree (see above)"
        );
    }
}

#[test]
fn b0_gpu_shaped_kernels_match_cpu_model_too() {
    // the variants real GPUs get (workgroup-tiled GEMM, buffer-fed depthwise and SE), run here
    // on whatever adapter the tests have, through the same whole-model comparison
    let mut g = Gpu::new(None).expect("a GPU adapter (see common::gpu)");
    g.cpu = false;
    let net = combicam_gpu::app::check::test_network("b0").unwrap();
    let ok = combicam_gpu::app::check::run(&g, net, 67, 45).unwrap();
    assert!(ok, "GPU-shaped kernels disagree with the CPU model");
}

/// Compare a GPU run with a PyTorch golden file: every tensor it holds, by name.
fn compare_with_golden(file: &str, variant: usize, layout: Layout) {
    compare_with_golden_net(file, |n| weights::formula(variant, layout, n));
}

/// [`compare_with_golden`] with the network made by `net(num_classes)`.
fn compare_with_golden_net(file: &str, net: impl FnOnce(usize) -> Weights) {
    let g = gpu();
    let (gd, meta) = golden(file);
    let (shape, x) = gd["input"].clone();
    let (h, w) = (shape[1], shape[2]);
    let n: usize = meta["num_classes"].parse().unwrap();
    let wts = net(n);
    let nb = wts.cfg.blocks.len();
    let (_m, plan, outs) = run_gpu(wts, h, w, &[&x]);
    let o = &outs[0];
    println!(
        "{file}: {h}×{w}, {n} outputs, target {} (PyTorch {})",
        o.target, meta["target"]
    );
    assert_eq!(
        o.target.to_string(),
        meta["target"],
        "top class/cell differs from PyTorch"
    );
    let probs = &gd["probs"].1;
    check("probs", &o.probs, probs, &[n], model_tol(probs));
    check(
        "logits",
        &o.logits,
        &gd["logits"].1,
        &[n],
        model_tol(&gd["logits"].1),
    );
    if let Some((s, v)) = gd.get("features") {
        check(
            "features",
            &g.read(&plan.features).unwrap(),
            v,
            s,
            model_tol(v),
        );
    }
    if let Some((s, v)) = gd.get("stem") {
        check("stem", &g.read(&plan.stem).unwrap(), v, s, model_tol(v));
    }
    for l in 0..nb {
        if let Some((s, v)) = gd.get(&format!("block.{l:02}")) {
            check(
                &format!("block.{l:02}"),
                &g.read(&plan.outs[l]).unwrap(),
                v,
                s,
                model_tol(v),
            );
        }
    }
    for l in (0..nb).rev() {
        if let Some((s, v)) = gd.get(&format!("grad.{l:02}")) {
            check(
                &format!("grad.{l:02}"),
                &g.read(plan.grads[l].as_ref().unwrap()).unwrap(),
                v,
                s,
                model_tol(v),
            );
        }
    }
    if gd.contains_key("combicam") {
        let largest = (0..nb)
            .filter_map(|l| gd.get(&format!("gradcam.{l:02}")))
            .flat_map(|t| t.1.iter())
            .fold(0f32, |a, &v| a.max(v));
        let mut worst = 0f32;
        for l in 0..nb {
            let (s, v) = &gd[&format!("gradcam.{l:02}")];
            let c = crate::common::check(
                &format!("gradcam.{l:02}"),
                o.maps[l].as_ref().unwrap(),
                v,
                s,
                map_tolerance(v, largest),
            );
            let p = peak(v);
            if p > 0.0 {
                worst = worst.max(c / p);
            }
        }
        let (s, v) = &gd["combicam"];
        // lavapipe: max|diff| 6.7e-6 over the goldens, 0.66% of the former 1e-3: ≈ 13% of this
        check("combicam", &o.combicam, v, s, Tolerance::new(0.0, 5e-5));
        println!("worst map error (max|diff|/max|ref|): {worst:.2e}");
    }
}

#[test]
fn b0_visloc_matches_pytorch() {
    compare_with_golden("b0_visloc.safetensors", 0, Layout::Visloc);
}

#[test]
fn b4_visloc_matches_pytorch() {
    compare_with_golden("b4_visloc.safetensors", 4, Layout::Visloc);
}

#[test]
fn timm_b0_matches_pytorch() {
    compare_with_golden("timm_b0.safetensors", 0, Layout::Timm);
}

#[test]
fn lite0_matches_efficientnet_lite_pytorch() {
    // random weights, 89×71: ReLU6, no SE, TF "SAME" at the actual size (the package built
    // with image_size = (89, 71))
    compare_with_golden_net("lite0_random.safetensors", |n| {
        weights::formula_for(
            efficientnet(0, Family::Lite),
            Layout::EfficientnetPytorch,
            n,
        )
    });
}

#[test]
fn timm_tf_lite0_matches_pytorch() {
    // random weights, 95×69: timm's TF port of Lite0 — ReLU6, no SE, TF "SAME" at the actual
    // size (asymmetric in every stride-2 depthwise conv here), timm key names
    compare_with_golden_net("tf_lite0_random.safetensors", |n| {
        weights::formula_for(efficientnet(0, Family::Lite), Layout::Timm, n)
    });
}

#[test]
fn timm_tf_b0_matches_pytorch() {
    // random weights, 97×67: TF "SAME" padding at the actual size, BN eps 1e-3
    compare_with_golden_net("tf_b0_random.safetensors", |n| {
        weights::formula_for(efficientnet(0, Family::TimmTf), Layout::Timm, n)
    });
}

/// The built-in model: the trained Lite0 checkpoint as shipped.
pub fn lite0_checkpoint() -> Weights {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/efficientnet-lite0-57934424.pth");
    weights::load_file(&path).unwrap()
}

#[test]
fn trained_lite0_on_photos_matches_pytorch() {
    // The real network on real photos: decode and preprocess (bicubic, short side 224,
    // mean = std = 0.5) exactly as PyTorch did, the same top-5, every block's map within 1e-3
    // of its peak, and the maps point at the object.
    let g = gpu();
    let (gd, meta) = golden("lite0_photos.safetensors");
    let wts = lite0_checkpoint();
    assert_eq!(wts.cfg.family, Family::Lite);
    assert_eq!(wts.layout, Layout::EfficientnetPytorch);
    let pre = wts.preprocessing;
    let nb = wts.cfg.blocks.len();
    let m = ModelGpu::upload(g, wts).unwrap();
    // (photo, box the peak must fall in (x0, y0, x1, y1) in model-input pixels, which peak)
    let cases = [
        // the cat's face (eyes, nose, muzzle); the last block's classic Grad-CAM
        ("chelsea", (60, 30, 276, 223), "last"),
        // the cup with the espresso; Combi-CAM
        ("coffee", (95, 11, 230, 174), "combicam"),
    ];
    for (photo, bx, which) in cases {
        let img = combicam_gpu::preprocess::load_image(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/photos/{photo}.png")),
        )
        .unwrap();
        let p = combicam_gpu::preprocess::preprocess_with(&img, &pre).unwrap();
        let (h, w) = (p.height, p.width);
        assert_eq!(
            (h.to_string(), w.to_string()),
            (
                meta[&format!("{photo}.height")].clone(),
                meta[&format!("{photo}.width")].clone()
            )
        );
        // the resized pixels, bit for bit: the input is ((u8/255) − 0.5)/0.5 of them
        let (_, resized) = &gd[&format!("{photo}.resized")];
        let want: Vec<f32> = (0..3)
            .flat_map(|c| {
                resized
                    .iter()
                    .skip(c)
                    .step_by(3)
                    .map(|&v| (v / 255.0 - 0.5) / 0.5)
            })
            .collect();
        assert_eq!(
            p.tensor, want,
            "{photo}: preprocessing differs from torchvision"
        );
        let plan = Plan::new(
            g,
            &m,
            h,
            w,
            PlanOptions {
                backward: true,
                blocks: (0..nb).collect(),
                explainers: vec![Explainer::COMBICAM],
                masked: 0,
                eigen_smooth: false,
                images: 1,
            },
        )
        .unwrap();
        let o = plan.run(g, &p.tensor, None, Score::Prob).unwrap();
        let (_, probs) = &gd[&format!("{photo}.probs")];
        let mut top: Vec<usize> = (0..probs.len()).collect();
        top.sort_by(|&a, &b| o.probs[b].total_cmp(&o.probs[a]));
        let want_top: Vec<usize> = gd[&format!("{photo}.top5")]
            .1
            .iter()
            .map(|&v| v as usize)
            .collect();
        println!(
            "{photo}: top-5 {:?} (PyTorch {want_top:?}), p = {:.4}",
            &top[..5],
            o.probs[top[0]]
        );
        assert_eq!(
            &top[..5],
            &want_top[..],
            "{photo}: top-5 differs from PyTorch"
        );
        check(
            &format!("{photo}.probs"),
            &o.probs,
            probs,
            &[probs.len()],
            // lavapipe: max|diff| 6.6e-7, 6.6% of the former 1e-5: ≈ 13% of this
            Tolerance::new(0.0, 5e-6),
        );
        for l in 0..nb {
            let (s, v) = &gd[&format!("{photo}.gradcam.{l:02}")];
            let pk = peak(v);
            // ReLU6 passes no gradient at or beyond its kinks (0 and 6). On chelsea one input
            // of block 13 lies within float32 rounding of 0: PyTorch's float32 run has −8e-8,
            // its float64 run +2.0e-6, and we land on float64's side. That moves the gradient
            // of every block before 13 by 1e-3 to 4.1e-3 of its map's peak (measured; flipping
            // that one element in the float64 reference brings all within 1.6e-4), so those
            // blocks are held to 5e-3; every other map to 1e-3 (measured ≤ 2.5e-4 on coffee).
            // The coffee's blocks before 9 likewise (`COFFEE_KINK`: an H100 put block 2 at
            // 1.5e-3 of its peak; PyTorch itself moves 1.7e-3 under one ulp of input noise).
            // lavapipe: the worst map used 83% of its tolerance (chelsea's block 1)
            let kink = if photo == "chelsea" { 13 } else { COFFEE_KINK };
            let tol = photo_map_rel(l, kink);
            check(
                &format!("{photo}.gradcam.{l:02}"),
                o.maps[l].as_ref().unwrap(),
                v,
                s,
                Tolerance::new(0.0, tol * pk),
            );
        }
        let (s, v) = &gd[&format!("{photo}.combicam")];
        check(
            &format!("{photo}.combicam"),
            &o.combicam,
            v,
            s,
            // lavapipe: max|diff| 2.8e-4, 28% of this
            Tolerance::new(0.0, 1e-3),
        );
        // pointing game: where the chosen map peaks, in model-input pixels
        let (px, py) = if which == "combicam" {
            let i = argmax(&o.combicam);
            (i % w, i / w)
        } else {
            let (mh, mw) = o.map_sizes[nb - 1];
            let i = argmax(o.maps[nb - 1].as_ref().unwrap());
            let up = |c: usize, n: usize, big: usize| c * (big - 1) / (n - 1).max(1);
            (up(i % mw, mw, w), up(i / mw, mh, h))
        };
        println!("{photo}: {which} peak at (x {px}, y {py}), box {bx:?}");
        assert!(
            (bx.0..=bx.2).contains(&px) && (bx.1..=bx.3).contains(&py),
            "{photo}: the {which} peak ({px}, {py}) is outside the object's box {bx:?}"
        );
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
}

/// Central difference of `f` along `v` at step `t`, against the analytic `g·v`.
fn directional_check(what: &str, g: &[f32], f: impl Fn(&[f32]) -> f64, a: &[f32]) {
    let gmax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
    let v: Vec<f64> = g.iter().map(|&x| (x / gmax) as f64).collect();
    let want: f64 = g.iter().zip(&v).map(|(&a, &b)| a as f64 * b).sum();
    let t = 1e-3 * a.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let shifted = |sign: f64| {
        f(&a.iter()
            .zip(&v)
            .map(|(&x, &d)| (x as f64 + sign * t * d) as f32)
            .collect::<Vec<_>>())
    };
    let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * t);
    let err = (fd - want).abs() / want.abs();
    println!("{what:<10} backward g·v {want:+.6e}  finite difference {fd:+.6e}  rel err {err:.1e}");
    assert!(
        err < 1e-2,
        "{what}: backward {want} vs finite difference {fd}"
    );
}

#[test]
fn cpu_backward_matches_finite_differences() {
    // B0, 10 cells, a 24×20 input. Each block's backward against central differences of
    // u·block(A) for a random cotangent u; the head against the target logit and probability.
    let wts = weights::formula(0, Layout::Visloc, 10);
    let (h, w) = (24, 20);
    let x = detweights::input(h, w);
    let f = cpu::forward(&wts, &x, h, w);
    for l in [1usize, 2, 3, 6, 9, 14, 15] {
        let (ih, iw) = f.sizes[l - 1];
        let a = &f.blocks[l - 1].out;
        let u = crate::common::rand(f.blocks[l].out.len(), 77 + l as u64, -1.0, 1.0);
        let g = cpu::block_backward(&wts, l, &f.blocks[l], &u, ih, iw);
        let s = |inp: &[f32]| {
            cpu::block_forward(&wts, l, inp, ih, iw)
                .out
                .iter()
                .zip(&u)
                .map(|(&o, &c)| o as f64 * c as f64)
                .sum::<f64>()
        };
        directional_check(&format!("block.{l:02}"), &g, s, a);
    }
    let nb = wts.cfg.blocks.len();
    let a = &f.blocks[nb - 1].out;
    for logit in [true, false] {
        let grads = cpu::backward(&wts, &f, f.argmax, logit, nb - 1);
        let s = |inp: &[f32]| {
            let logits = cpu::forward_from(&wts, nb, inp, &f.sizes, (0, 0));
            if logit {
                logits[f.argmax] as f64
            } else {
                combicam_gpu::ops::head::cpu::softmax(&logits).0[f.argmax] as f64
            }
        };
        directional_check(
            if logit { "head.logit" } else { "head.prob" },
            grads[nb - 1].as_ref().unwrap(),
            s,
            a,
        );
    }
}

#[test]
fn region_score_matches_pytorch_autograd() {
    // ∂(Σ p over the cells within 2500 km of the top cell)/∂A_l for every block, against
    // PyTorch autograd of the same mass (make_region.py); the nearest cell centre is 42 km
    // from the boundary, so float32 haversine on the GPU picks the same 23 cells
    let g = gpu();
    let (gd, meta) = golden("region_b0.safetensors");
    let (shape, x) = gd["input"].clone();
    let (h, w) = (shape[1], shape[2]);
    let n: usize = meta["num_classes"].parse().unwrap();
    let km: f32 = meta["km"].parse().unwrap();
    let wts = weights::formula(0, Layout::Visloc, n);
    let nb = wts.cfg.blocks.len();
    let m = ModelGpu::upload(g, wts).unwrap();
    let plan = Plan::new(
        g,
        &m,
        h,
        w,
        PlanOptions {
            backward: true,
            blocks: (0..nb).collect(),
            explainers: vec![Explainer::COMBICAM],
            masked: 0,
            eigen_smooth: false,
            images: 1,
        },
    )
    .unwrap();
    let o = plan.run(g, &x, None, Score::Region(km)).unwrap();
    assert_eq!(o.target.to_string(), meta["target"]);
    check(
        "probs",
        &o.probs,
        &gd["probs"].1,
        &[n],
        model_tol(&gd["probs"].1),
    );
    for l in (0..nb).rev() {
        let (s, v) = &gd[&format!("grad.{l:02}")];
        check(
            &format!("region.grad.{l:02}"),
            &g.read(plan.grads[l].as_ref().unwrap()).unwrap(),
            v,
            s,
            model_tol(v),
        );
    }
    // the same run with the probability score differs: the score reached the backward
    let p = plan.run(g, &x, None, Score::Prob).unwrap();
    let d = p.maps[nb - 1].as_ref().unwrap();
    assert_ne!(d, o.maps[nb - 1].as_ref().unwrap());
}

/// Run B0 (the golden's network and input) with these explainers over `blocks`.
fn run_methods(
    gd: &Golden,
    meta: &HashMap<String, String>,
    explainers: Vec<Explainer>,
    blocks: Vec<usize>,
) -> Output {
    let g = gpu();
    let (shape, x) = gd["input"].clone();
    let n: usize = meta["num_classes"].parse().unwrap();
    let m = ModelGpu::upload(g, weights::formula(0, Layout::Visloc, n)).unwrap();
    let plan = Plan::new(
        g,
        &m,
        shape[1],
        shape[2],
        PlanOptions {
            backward: true,
            blocks,
            explainers,
            masked: 0,
            eigen_smooth: false,
            images: 1,
        },
    )
    .unwrap();
    plan.run(g, &x, None, Score::Prob).unwrap()
}

#[test]
fn every_method_matches_pytorch_at_every_block() {
    // methods_b0.safetensors: the Score-CAM formulas (README) computed independently in PyTorch (and cross-checked
    // against pytorch-grad-cam's own classes), B0 visloc, 67×45, every block. The tolerance
    // is 1e-4 of the map's peak, widened only where the map is ill-conditioned: κ (from the
    // golden) is how much float32 rounding the map amplifies, so 32·κ·2⁻²⁴ of the peak.
    use combicam_gpu::cam::methods::{Explainer, FUSIONS, Family, Fusion, METHODS, Method};
    let (gd, meta) = golden("methods_b0.safetensors");
    // the eigen methods and FinerCAM are held to pytorch-grad-cam's own classes on the
    // trained Lite0 instead (tests/eigen.rs, tests/finer.rs), and to their CPU reference on
    // B0 by `check`
    let explainers: Vec<Explainer> = METHODS
        .iter()
        .filter(|m| m.family() != Family::Eigen && **m != Method::FinerCam)
        .map(|&m| Explainer::of(m))
        .collect();
    let nb = 16;
    let o = run_methods(&gd, &meta, explainers, (0..nb).collect());
    assert_eq!(o.target.to_string(), meta["target"]);
    let (h, w) = (o.combicam.len() / gd["input"].0[2], gd["input"].0[2]);
    for eo in &o.explainers {
        let name = eo.explainer.method.name();
        let kappa = &gd[&format!("kappa.{name}")].1;
        let largest = (0..nb)
            .map(|l| peak(&gd[&format!("{name}.{l:02}")].1))
            .fold(0f32, f32::max);
        let mut worst = (0f32, 0usize);
        for l in 0..nb {
            let (s, v) = &gd[&format!("{name}.{l:02}")];
            let p = peak(v);
            let k = if kappa[l].is_finite() { kappa[l] } else { 0.0 };
            // all-zero maps must come out (nearly) zero: 1e-7 of the method's largest map
            // lavapipe: the worst map used 48% of this (xgradcam.15)
            let abs = (p * (1e-4f32).max(32.0 * k * f32::EPSILON / 2.0)).max(1e-7 * largest);
            let e = check(
                &format!("{name}.{l:02}"),
                eo.maps[l].as_ref().unwrap(),
                v,
                s,
                Tolerance::new(0.0, abs),
            );
            if p > 0.0 && e / p > worst.0 {
                worst = (e / p, l);
            }
        }
        // the fused map inherits the conditioning of the blocks that dominate it
        let k_eff = (0..nb)
            .filter(|&l| kappa[l].is_finite())
            .map(|l| kappa[l] * peak(&gd[&format!("{name}.{l:02}")].1) / largest)
            .fold(0f32, f32::max);
        let (s, v) = &gd[&eo.explainer.fused_name()];
        // lavapipe: the worst fused map used 12% of this (xgradcam.fused)
        let tol = (2e-4f32).max(8.0 * k_eff * f32::EPSILON / 2.0);
        check(
            &eo.explainer.fused_name(),
            &eo.fused,
            v,
            s,
            Tolerance::new(0.0, tol),
        );
        println!(
            "{name}: worst block map {:.1e} of its peak (block {})",
            worst.0, worst.1
        );
    }
    // Grad-CAM under every fusion rule, all 16 blocks and blocks 12–15 (the product of all 16
    // is flat: some blocks' maps are all zero)
    for (tag, blocks) in [
        ("", (0..nb).collect::<Vec<_>>()),
        ("blocks12-15.", (12..nb).collect()),
    ] {
        let ex: Vec<Explainer> = FUSIONS
            .iter()
            .map(|&f| Explainer {
                method: combicam_gpu::cam::methods::Method::GradCam,
                fusion: f,
            })
            .collect();
        let o = run_methods(&gd, &meta, ex, blocks);
        for eo in &o.explainers {
            let key = format!("{tag}{}", eo.explainer.fused_name());
            let (s, v) = &gd[&key];
            assert_eq!(s, &vec![h, w]);
            // lavapipe: max|diff| 1.6e-5, 8% of this
            check(&key, &eo.fused, v, s, Tolerance::new(0.0, 2e-4));
            if eo.explainer.fusion == Fusion::Product && tag.is_empty() {
                assert!(eo.fused.iter().all(|&x| x == 0.0), "flat product is zeros");
            }
        }
    }
}

#[test]
fn head_hvp_matches_finite_differences_and_the_gpu() {
    // h = H·t at the last block's output, along t = 1 (the official Grad-CAM++'s) and t = A
    // (ShapleyCAM's): the CPU reference against central differences of g along t, then both
    // methods' maps on the GPU (one plan, both products) against the CPU model
    use combicam_gpu::cam::methods::{Explainer, Method};
    use combicam_gpu::ops::hvp::Direction;
    let wts = weights::formula(0, Layout::Visloc, 50);
    let (h, w) = (45, 37);
    let x = detweights::input(h, w);
    let f = cpu::forward(&wts, &x, h, w);
    let nb = wts.cfg.blocks.len();
    let (lh, lw) = f.sizes[nb - 1];
    let a = &f.blocks[nb - 1].out;
    for dir in [Direction::Ones, Direction::Activations] {
        let hvp = cpu::head_hvp(&wts, a, (lh * lw, dir), f.argmax);
        let peak_a = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        // a step of 1% of A's peak along t (t = A: 1% of A)
        let (t, eps) = match dir {
            Direction::Ones => (vec![1.0; a.len()], 1e-2 * peak_a),
            Direction::Activations => (a.clone(), 1e-2),
        };
        let shifted = |s: f32| {
            let moved: Vec<f32> = a.iter().zip(&t).map(|(v, d)| v + s * eps * d).collect();
            cpu::head_grad(&wts, &moved, lh * lw, f.argmax)
        };
        let (gp, gm) = (shifted(1.0), shifted(-1.0));
        let fd: Vec<f32> = gp
            .iter()
            .zip(&gm)
            .map(|(p, m)| (p - m) / (2.0 * eps))
            .collect();
        let c = check(
            &format!("hvp {dir:?} vs finite differences"),
            &hvp,
            &fd,
            &[a.len()],
            // lavapipe: 7% of this for t = 1, 18% for t = A (the finite differences' own
            // truncation error included)
            Tolerance::new(0.0, 2e-3 * peak(&fd)),
        );
        println!(
            "hvp {dir:?}: max|h − fd| = {c:.3e} of peak {:.3e}",
            peak(&fd)
        );
    }
    // the GPU plan: the official Grad-CAM++ and ShapleyCAM at the last block
    let e = Explainer::of(Method::GradCamPPOfficial);
    let shapley = Explainer::of(Method::ShapleyCam);
    let g = gpu();
    let m = ModelGpu::upload(g, wts.clone()).unwrap();
    let plan = Plan::new(
        g,
        &m,
        h,
        w,
        PlanOptions {
            backward: true,
            blocks: vec![nb - 1],
            explainers: vec![e, shapley],
            masked: 0,
            eigen_smooth: false,
            images: 1,
        },
    )
    .unwrap();
    let o = plan.run(g, &x, None, Score::Prob).unwrap();
    let grads = cpu::backward(&wts, &f, f.argmax, false, nb - 1);
    let (maps, fused) = cpu::explain(&wts, &f, &grads, &[nb - 1], e, (h, w), false);
    let want = maps[nb - 1].as_ref().unwrap();
    check(
        "gradcampp-official.15",
        o.maps[nb - 1].as_ref().unwrap(),
        want,
        &[lh, lw],
        // lavapipe: max|diff| 2.3e-6, 5.6% of the former 1e-3: ≈ 11% of this
        Tolerance::new(0.0, 5e-4 * peak(want)),
    );
    let (smaps, _) = cpu::explain(&wts, &f, &grads, &[nb - 1], shapley, (h, w), false);
    let swant = smaps[nb - 1].as_ref().unwrap();
    check(
        "shapleycam.15",
        o.explainers[1].maps[nb - 1].as_ref().unwrap(),
        swant,
        &[lh, lw],
        // lavapipe, 2026-12-03: max|diff| 5.5e-7 of the peak, 0.1% of this
        Tolerance::new(0.0, 5e-4 * peak(swant)),
    );
    check(
        "gradcampp-official.fused",
        &o.combicam,
        &fused,
        &[h, w],
        // lavapipe: max|diff| 2.7e-6, 0.27% of the former 1e-3: ≈ 13% of this
        Tolerance::new(0.0, 2e-5),
    );
    // defined on the last block only, for the probability
    let bad = Plan::new(
        g,
        &m,
        h,
        w,
        PlanOptions {
            backward: true,
            blocks: vec![3, nb - 1],
            explainers: vec![e],
            masked: 0,
            eigen_smooth: false,
            images: 1,
        },
    );
    assert!(bad.err().unwrap().to_string().contains("last block only"));
    let e2 = plan
        .run(g, &x, None, Score::Logit)
        .err()
        .unwrap()
        .to_string();
    assert!(e2.contains("drop --score"), "{e2}");
}

#[test]
fn official_gradcampp_matches_pytorch() {
    // methods_b0: the official repository's Grad-CAM++ on the last block, h by PyTorch's
    // double backward. Its denominator 2g² + h·g nearly cancels on this network (PyTorch's
    // own float32 map is 3.9e-4 from float64; κ ≈ 535): 2e-3 of the peak.
    use combicam_gpu::cam::methods::{Explainer, Method};
    let (gd, meta) = golden("methods_b0.safetensors");
    let o = run_methods(
        &gd,
        &meta,
        vec![Explainer::of(Method::GradCamPPOfficial)],
        vec![15],
    );
    let (s, v) = &gd["gradcampp-official.15"];
    check(
        "gradcampp-official.15",
        o.maps[15].as_ref().unwrap(),
        v,
        s,
        // lavapipe: max|diff| 6.1e-8, 7.1% of the former 2e-3: ≈ 14% of this
        Tolerance::new(0.0, 1e-3 * peak(v)),
    );
    let (s, v) = &gd["gradcampp-official.fused"];
    check(
        "gradcampp-official.fused",
        &o.combicam,
        v,
        s,
        // lavapipe: max|diff| 4.5e-4, 22% of this
        Tolerance::new(0.0, 2e-3),
    );
}
