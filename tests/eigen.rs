//! EigenCAM and EigenGradCAM: the kernels against their CPU reference on awkward shapes, and
//! the trained Lite0 on the coffee photo against pytorch-grad-cam 1.5.7's own classes
//! (tests/golden/make_eigen.py).

use crate::common::{check, gpu, rand, read, up, zeros};
use crate::model::{check_block_maps, golden, lite0_coffee};
use combicam_gpu::cam::eigen::{self, EigenArgs};
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

/// The method's map of the block output `blk` (and its gradient `grad`) of (c, hw), recorded
/// by `eigen::record` and run: a maps buffer of `map_off` + hw floats, all of it read back.
fn gpu_map(
    m: Method,
    (blk, grad): (&wgpu::Buffer, &wgpu::Buffer),
    (c, hw): (usize, usize),
    map_off: usize,
) -> Vec<f32> {
    let g = gpu();
    let (scratch, maps) = (zeros(eigen::scratch_len(c)), zeros(map_off + hw));
    let args = EigenArgs {
        c,
        hw,
        blk,
        grad,
        scratch: &scratch.buf,
        maps: &maps.buf,
        map_off,
    };
    let mut d = Vec::new();
    eigen::record(g, &|w| format!("test.{}.{w}", m.name()), m, &args, &mut d);
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
            let got = gpu_map(m, (&ab.buf, &gb.buf), (c, hw), 0);
            let want = eigen::cpu::map(m, &a, &gr, c, hw);
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
            let got = gpu_map(m, (&ab.buf, &gb.buf), (c, hw), 9);
            let want = eigen::cpu::map(m, &a, &gr, c, hw);
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
    };
    let plan = Plan::new(g, &m, h, w, opts).unwrap();
    let o = plan.run(g, &p.tensor, None, Score::Prob).unwrap();
    assert_eq!(o.target.to_string(), meta["target"]);
    // the contract: within 1e-3 of the map's peak. Measured on lavapipe, 2026-12-03
    // (pytorch-grad-cam's f32 SVD against our f32 power iteration): eigencam 4.3e-6 of the
    // peak at worst, eigengradcam 4.4e-4 (block 5)
    check_block_maps("lite0 coffee", &o, &blocks, &gd);
}
