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

#[test]
fn aug_smoothed_score_cams_average_each_augmented_runs_maps() {
    // Score-CAM and AblationCAM beside a gradient method under --aug-smooth (their six
    // originals' copies mixed in the batches, the gradient method through a plan of six)
    // against each augmented input's Score-CAM alone, averaged: bit for bit, and in the order
    // asked for; Score-CAM alone takes the same maps
    use combicam_gpu::app::scorecam;
    use combicam_gpu::model::detweights;
    use combicam_gpu::model::plan::{Plan, PlanOptions, Score};
    use combicam_gpu::preprocess::Preprocessed;
    let g = shared_gpu();
    let wts = combicam_gpu::app::check::test_network("b0").unwrap();
    let mut engine = Engine::new(g.clone(), wts).unwrap();
    let (h, w) = (37, 29);
    let pre = Preprocessed {
        tensor: detweights::input(h, w),
        height: h,
        width: w,
    };
    let l = 4;
    let weights = combicam_gpu::app::check::test_network("b0").unwrap();
    let options = |methods: &str| {
        let choice = ExplainChoice {
            methods: Some(methods.into()),
            blocks: Some(l.to_string()),
            ..Default::default()
        };
        let o = setup::explain_options(&weights, &choice).unwrap();
        combicam_gpu::app::record::ExplainOptions {
            aug_smooth: true,
            ..o
        }
    };
    let (mixed, alone) = (options("gradcam,scorecam,ablationcam"), options("scorecam"));
    let got = run_one(&mut engine, &pre, &mixed).unwrap().out;
    let names: Vec<&str> = (got.explainers.iter())
        .map(|e| e.explainer.method.name())
        .collect();
    assert_eq!(
        names,
        ["gradcam", "scorecam", "ablationcam"],
        "the order asked for"
    );
    let t = got.target;
    // each augmented input's Score-CAM and AblationCAM alone, then averaged
    let plan = Plan::new(g, &engine.model, h, w, PlanOptions::forward(3)).unwrap();
    for (i, e) in got.explainers[1..].iter().enumerate() {
        let runs = (augment::RUNS.iter()).map(|&aug| {
            let x = augment::input(&pre.tensor, w, aug);
            plan.set_masked_originals(g, &x).unwrap();
            let one = scorecam::explain(g, &plan, e.explainer, &[l], (t, Score::Prob), &mut |_| {});
            one.unwrap().remove(0)
        });
        let want = augment::average_one(runs.collect(), &got.map_sizes, w);
        let name = e.explainer.method.name();
        assert_eq!(
            e.maps[l], want.maps[l],
            "{name}.{l:02}: the six runs' mean, bit for bit"
        );
        assert_eq!(e.fused, want.fused, "{name}: the fused map");
        if i == 0 {
            let only = run_one(&mut engine, &pre, &alone).unwrap().out;
            assert_eq!(only.target, t);
            assert_eq!(
                only.explainers[0].maps[l], want.maps[l],
                "Score-CAM asked for alone"
            );
        }
    }
    // the gradient method as with no masked method beside it
    let grads = run_one(&mut engine, &pre, &options("gradcam")).unwrap().out;
    assert_eq!(
        grads.explainers[0].fused, got.explainers[0].fused,
        "gradcam's fused map"
    );
    assert!(got.masked_seconds > 0.0 && got.gpu_seconds >= got.masked_seconds);
    println!("scorecam and ablationcam at block {l}: the six runs' mean, bit for bit");
}
