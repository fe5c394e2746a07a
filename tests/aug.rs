//! `--aug-smooth`: the augmented inputs, and the trained Lite0 on the coffee photo against
//! pytorch-grad-cam 1.5.7's own `aug_smooth=True` (tests/golden/make_aug.py).

use crate::common::{check, shared_gpu};
use crate::model::{golden, lite0_coffee};
use combicam_gpu::app::augment;
use combicam_gpu::app::engine::Engine;
use combicam_gpu::app::explain::run_one;
use combicam_gpu::app::setup::{self, ExplainChoice};
use combicam_gpu::ops::Tolerance;

#[test]
fn augmented_inputs_are_flipped_and_scaled() {
    // (C, H, W) = (2, 2, 3)
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    assert_eq!(augment::input(&x, 3, (false, 1.0)), x);
    let y = augment::input(&x, 3, (true, 0.5));
    let want = [1.0, 0.5, 0.0, 2.5, 2.0, 1.5, 4.0, 3.5, 3.0, 5.5, 5.0, 4.5];
    assert_eq!(y, want);
    // the runs: every flip × factor pair once, the unaugmented one first
    assert_eq!(augment::RUNS[0], (false, 1.0));
    for flip in [false, true] {
        for f in [0.9, 1.0, 1.1] {
            assert_eq!(augment::RUNS.iter().filter(|r| **r == (flip, f)).count(), 1);
        }
    }
}

#[test]
fn aug_smoothed_maps_of_the_trained_lite0_match_pytorch_grad_cam() {
    let (gd, meta) = golden("aug_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let mut engine = Engine::new(shared_gpu().clone(), wts).unwrap();
    for l in [10, 15] {
        // one block, each map min-max normalised before the fusion: pytorch-grad-cam's own
        // aggregation of one target layer
        let choice = ExplainChoice {
            methods: Some("gradcam,hirescam".into()),
            fusion: Some("mean-normalised".into()),
            blocks: Some(l.to_string()),
            ..Default::default()
        };
        let o = setup::explain_options(&engine.model.weights, &choice).unwrap();
        let o = combicam_gpu::app::record::ExplainOptions {
            aug_smooth: true,
            ..o
        };
        let ex = run_one(&mut engine, &p, &o).unwrap();
        // each block is a new plan of six, made for this run: its build is what it reports
        assert!(ex.plan_build_s > 0.0, "block {l}: the plan's build time");
        let out = ex.out;
        assert_eq!(out.target.to_string(), meta["target"]);
        for e in &out.explainers {
            let name = format!("{}.{l:02}", e.explainer.method.name());
            let (shape, want) = &gd[&name];
            // the contract, 1e-3 of the peak (1); measured on lavapipe, 2026-12-03: see the
            // printed max errors
            check(
                &format!("lite0 coffee, aug-smooth {name}"),
                &e.fused,
                want,
                shape,
                Tolerance::new(0.0, 1e-3),
            );
        }
    }
}
