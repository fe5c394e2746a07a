//! AblationCAM: the trained Lite0 on the coffee photo against pytorch-grad-cam 1.5.7's own
//! class (tests/golden/make_ablation.py), for the probability at blocks 5, 10 and 15 and the
//! logit at 15. Its masked passes against the CPU model: tests/masked.rs.

use crate::common::{check, shared_gpu};
use crate::model::{golden, lite0_coffee};
use combicam_gpu::app::engine::Engine;
use combicam_gpu::app::explain::run_one;
use combicam_gpu::app::setup::{self, ExplainChoice};
use combicam_gpu::ops::Tolerance;

#[test]
fn ablation_maps_of_the_trained_lite0_match_pytorch_grad_cam() {
    let (gd, meta) = golden("ablation_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let mut engine = Engine::new(shared_gpu().clone(), wts).unwrap();
    for (score, blocks, suffix) in [("prob", "5,10,15", ""), ("logit", "15", ".logit")] {
        let choice = ExplainChoice {
            methods: Some("ablationcam".into()),
            blocks: Some(blocks.into()),
            score: Some(score.into()),
            ..Default::default()
        };
        let o = setup::explain_options(&engine.model.weights, &choice).unwrap();
        let out = run_one(&mut engine, &p, &o).unwrap().out;
        assert_eq!(out.target.to_string(), meta["target"]);
        let e = &out.explainers[0];
        for &l in &o.score_blocks {
            let name = format!("ablationcam.{l:02}{suffix}");
            let (shape, want) = &gd[&name];
            let got = e.maps[l].as_ref().expect("a selected block has a map");
            let peak = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            // the contract, 1e-3 of the peak; measured on lavapipe, 2026-12-03: see the
            // printed max errors
            check(
                &format!("lite0 coffee {name}"),
                got,
                want,
                shape,
                Tolerance::new(0.0, 1e-3 * peak),
            );
        }
    }
}

/// At a score of exactly 0 (a target whose probability underflows, a logit of 0) the weights
/// (y − y_k)/y would all be ±inf or NaN; they are y − y_k there, finite, in the direction of
/// the y → 0⁺ limit. Elsewhere they are the quotient, bit for bit.
#[test]
fn ablation_weights_stay_finite_at_a_zero_score() {
    use combicam_gpu::app::scorecam::cpu::ablation_weights;
    let ablated = [0.25f32, -0.5, 0.0, 1e-30];
    let w = ablation_weights(&ablated, 0.0);
    assert_eq!(w, vec![-0.25, 0.5, 0.0, -1e-30], "weights at y = 0");
    let y = -0.75f32;
    let w = ablation_weights(&ablated, y);
    let want: Vec<f32> = ablated.iter().map(|&yk| (y - yk) / y).collect();
    assert_eq!(w, want, "weights at y = {y}");
    println!(
        "ablation weights at y = 0: {:?}",
        ablation_weights(&ablated, 0.0)
    );
}
