//! EigenCAM, EigenGradCAM, KPCA-CAM and `--eigen-smooth`: the kernels against their CPU
//! reference on awkward shapes, and the trained Lite0 on the coffee photo against
//! pytorch-grad-cam 1.5.7's own classes (tests/golden/make_eigen.py, make_kpca.py,
//! make_smooth.py).

use crate::common::{check, gpu, rand, read, up, zeros};
use crate::model::{check_block_maps, golden, lite0_coffee};
use combicam_gpu::cam::eigen::{self, EigenArgs, Input};
use combicam_gpu::cam::methods::{Explainer, Fusion, Method};
use combicam_gpu::model::efficientnet::ModelGpu;
use combicam_gpu::model::plan::{Plan, PlanOptions, Score};
use combicam_gpu::ops::Tolerance;

const EIGEN: [Method; 2] = [Method::EigenCam, Method::EigenGradCam];

/// A block output with one dominant direction across channels (so that v₁ is well separated,
/// as in a real block), plus noise; a gradient of both signs with exact zeros.
fn block(c: usize, hw: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let dir = rand(c, seed, -1.0, 1.0);
    let field = rand(hw, seed + 1, 0.0, 3.0);
    let noise = rand(c * hw, seed + 2, -0.3, 0.3);
    let a: Vec<f32> = (0..c * hw)
        .map(|i| dir[i / hw] * field[i % hw] + noise[i])
        .collect();
    let mut g = rand(c * hw, seed + 3, -1.0, 1.0);
    for v in g.iter_mut().step_by(7) {
        *v = 0.0;
    }
    (a, g)
}

/// Two directions of nearly equal strength (λ2/λ1 ≈ 0.98): the power iteration runs its
/// whole course, hundreds of steps, as on tf_b0's last block (`check`).
fn tied_block(c: usize, hw: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let (d1, d2) = (rand(c, seed, -1.0, 1.0), rand(c, seed + 1, -1.0, 1.0));
    let (f1, f2) = (rand(hw, seed + 2, -1.0, 1.0), rand(hw, seed + 3, -1.0, 1.0));
    let noise = rand(c * hw, seed + 4, -0.01, 0.01);
    let a: Vec<f32> = (0..c * hw)
        .map(|i| d1[i / hw] * f1[i % hw] + 0.99 * d2[i / hw] * f2[i % hw] + noise[i])
        .collect();
    let g = rand(c * hw, seed + 5, 0.5, 1.0);
    (a, g)
}

/// The map of `input` of the block output `blk` (and its gradient `grad`) of (c, hw), recorded
/// by `eigen::record` and run: a maps buffer of `map_off` + hw floats, all of it read back.
/// `aux`: the channel weights or max g, uploaded behind `aux_off` floats of padding.
fn gpu_map(
    input: Input,
    (blk, grad, aux): (&wgpu::Buffer, &wgpu::Buffer, Option<&[f32]>),
    (c, hw): (usize, usize),
    map_off: usize,
) -> Vec<f32> {
    let g = gpu();
    let (scratch, maps) = (zeros(eigen::scratch_len(c)), zeros(map_off + hw));
    let aux_off = 5;
    let aux = aux.map(|x| up(&[vec![-7.0; aux_off], x.to_vec()].concat()));
    let args = EigenArgs {
        c,
        hw,
        blk,
        grad,
        input,
        aux: aux.as_ref().map(|b| (&b.buf, aux_off)),
        scratch: &scratch.buf,
        maps: &maps.buf,
        map_off,
        strides: Default::default(),
        scratch_stride: 0,
    };
    let mut d = Vec::new();
    eigen::record(g, &|w| format!("test.{input:?}.{w}"), &args, &mut d);
    g.run_now(&d.iter().collect::<Vec<_>>()).unwrap();
    read(&maps)
}

#[test]
fn eigen_maps_match_their_reference_when_the_top_eigenvalues_nearly_tie() {
    // 1,000 channels: the power iteration in six dispatches of 50 steps (lavapipe's 65,535
    // loop turns per invocation would end a single one after ~56 steps, silently)
    for &(c, hw) in &[(320, 4), (300, 9), (41, 17), (1000, 5)] {
        let (a, gr) = tied_block(c, hw, 9000 + c as u64);
        let (ab, gb) = (up(&a), up(&gr));
        for m in EIGEN {
            let input = Input::smoothing(m);
            let got = gpu_map(input, (&ab.buf, &gb.buf, None), (c, hw), 0);
            let want = eigen::cpu::map(input, &a, &gr, &[], c, hw);
            // the same iteration in f32 and in f64, over a slow rotation: measured on
            // lavapipe, 2026-12-03, see the printed max error
            let peak = want.iter().fold(1e-30f32, |a, v| a.max(*v));
            check(
                &format!("tied {}.{c}x{hw}", m.name()),
                &got,
                &want,
                &[hw],
                Tolerance::new(0.0, 1e-3 * peak),
            );
        }
    }
}

#[test]
fn eigen_maps_match_their_reference() {
    // odd channel counts, a 1×1 map (nothing to centre: the map is 0), more positions than a
    // workgroup, more channels than the power iteration's 256 invocations, and 500,001
    // positions: the means and the covariance in three dispatches each (in one, lavapipe would
    // end the sums after 65,535 turns of their loops, silently)
    for (i, &(c, hw)) in [
        (11, 35),
        (13, 1),
        (70, 63),
        (9, 257),
        (300, 20),
        (3, 500_001),
    ]
    .iter()
    .enumerate()
    {
        let (a, gr) = block(c, hw, 7000 + 10 * i as u64);
        let (ab, gb) = (up(&a), up(&gr));
        for m in EIGEN {
            let input = Input::smoothing(m);
            let got = gpu_map(input, (&ab.buf, &gb.buf, None), (c, hw), 9);
            let want = eigen::cpu::map(input, &a, &gr, &[], c, hw);
            assert!(got[..9].iter().all(|&v| v == 0.0), "wrote before its map");
            // f32 covariance and power iteration against f64 throughout: measured on lavapipe,
            // 2026-12-03, 1.2e-5 of the peak at worst (eigengradcam, 70×63); over 500,001
            // positions the f32 sums drift more, 1.1e-4 of the peak (eigengradcam; a sum cut
            // short after 65,535 turns would be off by most of itself)
            let rel = if hw > 100_000 { 3e-4 } else { 2e-5 };
            let tol = Tolerance::new(0.0, rel * want.iter().fold(1e-30f32, |a, v| a.max(*v)));
            check(
                &format!("{}.{c}x{hw}", m.name()),
                &got[9..],
                &want,
                &[hw],
                tol,
            );
            if hw > 1 {
                assert!(want.iter().any(|&v| v > 0.0), "{}: an empty map", m.name());
            }
        }
    }
}

#[test]
fn smoothed_inputs_match_their_reference() {
    // every input `--eigen-smooth` projects: w_k·A (weights read at an offset, of both signs),
    // ReLU(g ⊙ A), ReLU(g) ⊙ A and its scaled form (max g read at an offset); odd channel
    // counts, a single position, more positions than a workgroup
    let inputs = [
        Input::Weighted,
        Input::RectifiedProduct,
        Input::RectifiedGrad,
        Input::RectifiedGradScaled,
    ];
    for (i, &(c, hw)) in [(11, 35), (13, 1), (70, 63), (5, 301)].iter().enumerate() {
        let (a, gr) = block(c, hw, 8100 + 10 * i as u64);
        let (ab, gb) = (up(&a), up(&gr));
        for input in inputs {
            let aux = match input {
                Input::Weighted => rand(c, 8200 + i as u64, -1.0, 2.0),
                Input::RectifiedGradScaled => vec![gr.iter().fold(f32::MIN, |m, &v| m.max(v))],
                _ => vec![],
            };
            let given = (!aux.is_empty()).then_some(&aux[..]);
            let got = gpu_map(input, (&ab.buf, &gb.buf, given), (c, hw), 3);
            let want = eigen::cpu::map(input, &a, &gr, &aux, c, hw);
            assert!(got[..3].iter().all(|&v| v == 0.0), "wrote before its map");
            // f32 against f64: measured on lavapipe, 2026-12-03, 5.1e-7 of the peak at worst
            // (RectifiedGrad, 5×301)
            let peak = want.iter().fold(1e-30f32, |a, v| a.max(*v));
            check(
                &format!("{input:?}.{c}x{hw}"),
                &got[3..],
                &want,
                &[hw],
                Tolerance::new(0.0, 2e-6 * peak),
            );
            if hw > 1 {
                assert!(want.iter().any(|&v| v > 0.0), "{input:?}: an empty map");
            }
        }
    }
}

#[test]
fn smoothed_maps_of_the_trained_lite0_match_pytorch_grad_cam() {
    let g = gpu();
    let (gd, meta) = golden("smooth_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let m = ModelGpu::upload(g, wts).unwrap();
    let blocks = vec![5, 10, 15];
    let methods = [
        Method::GradCam,
        Method::GradCamPP,
        Method::XGradCam,
        Method::HiResCam,
        Method::GradCamElementwise,
        Method::LayerCam,
        Method::Fem,
    ];
    let opts = PlanOptions {
        backward: true,
        blocks: blocks.clone(),
        explainers: methods.iter().map(|&m| Explainer::of(m)).collect(),
        masked: 0,
        eigen_smooth: true,
        images: 1,
    };
    let plan = Plan::new(g, &m, p.height, p.width, opts).unwrap();
    let o = plan.run(g, &p.tensor, None, Score::Prob).unwrap();
    assert_eq!(o.target.to_string(), meta["target"]);
    // the contract: within 1e-3 of the map's peak (pytorch-grad-cam's f32 SVD against our f32
    // power iteration); measured on lavapipe, 2026-12-03: see the printed max errors
    check_block_maps("lite0 coffee, eigen-smooth", &o, &blocks, &gd);
}

#[test]
fn eigen_maps_of_the_trained_lite0_match_pytorch_grad_cam() {
    let g = gpu();
    let (gd, meta) = golden("eigen_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let (h, w) = (p.height, p.width);
    let m = ModelGpu::upload(g, wts).unwrap();
    let blocks = vec![5, 10, 15];
    let explainers: Vec<Explainer> = EIGEN
        .iter()
        .map(|&method| Explainer {
            method,
            fusion: Fusion::Sum,
        })
        .collect();
    let opts = PlanOptions {
        backward: true,
        blocks: blocks.clone(),
        explainers,
        masked: 0,
        eigen_smooth: false,
        images: 1,
    };
    let plan = Plan::new(g, &m, h, w, opts).unwrap();
    let o = plan.run(g, &p.tensor, None, Score::Prob).unwrap();
    assert_eq!(o.target.to_string(), meta["target"]);
    // the contract: within 1e-3 of the map's peak. Measured on lavapipe, 2026-12-03
    // (pytorch-grad-cam's f32 SVD against our f32 power iteration): eigencam 4.3e-6 of the
    // peak at worst, eigengradcam 4.4e-4 (block 5)
    check_block_maps("lite0 coffee", &o, &blocks, &gd);
}

/// KPCA-CAM's map of the block output `blk` (c, n), recorded by `eigen::record_kpca` and run;
/// the maps buffer holds `map_off` floats before it.
fn gpu_kpca(blk: &wgpu::Buffer, (c, n): (usize, usize), map_off: usize) -> Vec<f32> {
    let g = gpu();
    let (scratch, maps) = (zeros(eigen::kpca_scratch_len(c, n)), zeros(map_off + n));
    let args = EigenArgs {
        c,
        hw: n,
        blk,
        grad: blk,
        input: Input::Act,
        aux: None,
        scratch: &scratch.buf,
        maps: &maps.buf,
        map_off,
        strides: Default::default(),
        scratch_stride: 0,
    };
    let mut d = Vec::new();
    eigen::record_kpca(g, &|w| format!("test.kpca.{w}"), &args, &mut d);
    g.run_now(&d.iter().collect::<Vec<_>>()).unwrap();
    read(&maps)[map_off..].to_vec()
}

#[test]
fn kpca_maps_match_their_reference() {
    // odd channel and position counts, one position, more positions than the power
    // iteration's 256 invocations (several rows each), and 2,100 and 4,096 positions (the
    // most): the power iteration in runs of a few steps per dispatch (lavapipe's 65,535 loop
    // turns)
    for (i, &(c, n)) in [(11, 35), (13, 1), (70, 63), (5, 301), (2, 2100), (3, 4096)]
        .iter()
        .enumerate()
    {
        let (a, _) = block(c, n, 8500 + 10 * i as u64);
        let got = gpu_kpca(&up(&a).buf, (c, n), 7);
        let want = eigen::cpu::kpca_map(&a, c, n);
        // f32 against f64: measured on lavapipe, 2026-12-03, 2.5e-6 of the peak at worst
        // (3×4096)
        let peak = want.iter().fold(1e-30f32, |a, v| a.max(*v));
        check(
            &format!("kpcacam.{c}x{n}"),
            &got,
            &want,
            &[n],
            Tolerance::new(0.0, 1e-5 * peak),
        );
        if n > 1 {
            assert!(
                want.iter().any(|&v| v > 0.0),
                "kpcacam {c}x{n}: an empty map"
            );
        }
    }
}

#[test]
fn kpca_maps_of_the_trained_lite0_match_pytorch_grad_cam() {
    let g = gpu();
    let (gd, meta) = golden("kpca_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let m = ModelGpu::upload(g, wts).unwrap();
    let blocks = vec![3, 5, 10, 15];
    let opts = |blocks: Vec<usize>| PlanOptions {
        backward: true,
        blocks,
        explainers: vec![Explainer::of(Method::KpcaCam)],
        masked: 0,
        eigen_smooth: false,
        images: 1,
    };
    let plan = Plan::new(g, &m, p.height, p.width, opts(blocks.clone())).unwrap();
    let o = plan.run(g, &p.tensor, None, Score::Prob).unwrap();
    assert_eq!(o.target.to_string(), meta["target"]);
    // the contract, 1e-3 of the peak (scikit-learn's f32 ARPACK against our f32 power
    // iteration); measured on lavapipe, 2026-12-03: see the printed max errors
    check_block_maps("lite0 coffee", &o, &blocks, &gd);
    // block 2 is 56×84 = 4,704 positions at this size: a one-line error naming the blocks that fit
    let e = Plan::new(g, &m, p.height, p.width, opts(vec![2, 15]))
        .err()
        .expect("block 2 is too large for kpcacam")
        .to_string();
    assert!(
        e.contains("block 2 is 56×84") && e.contains("--blocks 3-15") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn kpcacam_alone_takes_the_blocks_that_fit_unless_blocks_are_given_in_explain_and_evaluate() {
    use combicam_gpu::app::engine::Engine;
    use combicam_gpu::app::explain::run_one;
    use combicam_gpu::app::setup::{self, ExplainChoice};
    let (_, meta) = golden("kpca_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let mut engine = Engine::new(crate::common::shared_gpu().clone(), wts).unwrap();
    let choice = |methods: &str, blocks: Option<&str>| ExplainChoice {
        methods: Some(methods.into()),
        blocks: blocks.map(str::to_string),
        ..Default::default()
    };
    // alone and without --blocks: the blocks of at most 4,096 positions at 224×336, 3-15
    let o = setup::explain_options(&engine.model.weights, &choice("kpcacam", None)).unwrap();
    let out = run_one(&mut engine, &p, &o).unwrap().out;
    let mapped: Vec<usize> = (0..16).filter(|&l| out.maps[l].is_some()).collect();
    assert_eq!(mapped, (3..16).collect::<Vec<_>>());
    // with other methods, or blocks given, the blocks stay as asked: the one-line error
    for (methods, blocks) in [("kpcacam,gradcam", None), ("kpcacam", Some("0-15"))] {
        let o = setup::explain_options(&engine.model.weights, &choice(methods, blocks)).unwrap();
        let e = run_one(&mut engine, &p, &o).err().unwrap().to_string();
        assert!(e.contains("--blocks 3-15") && !e.contains('\n'), "{e}");
    }
    // evaluate's `kpcacam` (no @BLOCKS) is `kpcacam@3-15` here, bit for bit
    use combicam_gpu::app::eval;
    let (x, size, t) = (&p.tensor, (p.height, p.width), out.target);
    let mut s = |name: &str| {
        let spec = eval::parse_spec(name).unwrap();
        eval::saliency(&mut engine, &spec, x, size, t, 1, &mut |_| {}).unwrap()
    };
    assert_eq!(s("kpcacam"), s("kpcacam@3-15"));
}

#[test]
fn eigen_maps_of_tiny_blocks_scale_exactly() {
    // g ⊙ A of 1e-11 (B0 at 16×16 with random weights) made S of 1e-21 and (S·v)² of 1e-42,
    // which an H100 (2026-12-06), flushing subnormals to zero, summed into a norm 2% off: the
    // map moved by 2.2e-2 of its peak. The power iteration now takes S·v in units of a power
    // of two near S's largest diagonal entry, so scaling the block by a power of two scales the
    // map exactly, here by 2⁻⁴⁰ (S·v of 1e-24, whose squares underflow even where subnormals
    // are kept: without the unit, lavapipe's map was 3.5e-2 of its peak off)
    let scale = (-40f32).exp2();
    for &(c, hw) in &[(16, 64), (41, 17), (300, 9)] {
        let (a, gr) = block(c, hw, 9100 + c as u64);
        let tiny: Vec<f32> = a.iter().map(|v| v * scale).collect();
        let (ab, tb, gb) = (up(&a), up(&tiny), up(&gr));
        for m in EIGEN {
            let input = Input::smoothing(m);
            let want: Vec<f32> = gpu_map(input, (&ab.buf, &gb.buf, None), (c, hw), 0)
                .iter()
                .map(|v| v * scale)
                .collect();
            assert!(want.iter().any(|&v| v > 0.0), "{}: an empty map", m.name());
            let got = gpu_map(input, (&tb.buf, &gb.buf, None), (c, hw), 0);
            // exact on lavapipe; a GPU's own rounding of the means' division by HW may differ
            // in the last place at the two scales
            let peak = want.iter().fold(0f32, |a, v| a.max(*v));
            check(
                &format!("tiny {}.{c}x{hw}", m.name()),
                &got,
                &want,
                &[hw],
                Tolerance::new(0.0, 1e-5 * peak),
            );
        }
    }
}
