//! ShapleyCAM: the trained Lite0 on the coffee photo against pytorch-grad-cam 1.5.7's own
//! `ShapleyCAM` at the last block (tests/golden/make_shapley.py), for the probability and the
//! logit. The head's Hessian-vector product along A is checked against finite differences and
//! the CPU model in tests/model.rs.

use crate::common::{check, shared_gpu};
use crate::model::{golden, lite0_coffee};
use combicam_gpu::app::engine::Engine;
use combicam_gpu::cam::methods::{Explainer, Method};
use combicam_gpu::model::plan::{PlanOptions, Score};
use combicam_gpu::ops::Tolerance;

#[test]
fn shapleycam_of_the_trained_lite0_matches_pytorch_grad_cam() {
    let (gd, meta) = golden("shapley_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let (h, w) = (p.height, p.width);
    let mut engine = Engine::new(shared_gpu().clone(), wts).unwrap();
    let opts = PlanOptions {
        backward: true,
        blocks: vec![15],
        explainers: vec![Explainer::of(Method::ShapleyCam)],
        masked: 0,
        eigen_smooth: false,
        images: 1,
    };
    for (score, name) in [
        (Score::Prob, "shapleycam.15"),
        (Score::Logit, "shapleycam.15.logit"),
    ] {
        let o = engine.run(&p.tensor, h, w, &opts, None, score).unwrap();
        assert_eq!(o.target.to_string(), meta["target"]);
        let (shape, want) = &gd[name];
        let peak = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        // the contract: within 1e-3 of the map's peak; measured on lavapipe, 2026-12-03:
        // 2.3e-6 of the peak (probability), 7.1e-7 (logit)
        check(
            &format!("lite0 coffee {name}"),
            o.explainers[0].maps[15].as_ref().unwrap(),
            want,
            shape,
            Tolerance::new(0.0, 1e-3 * peak),
        );
    }
    // the other scores are refused with the fix
    let e = engine
        .run(&p.tensor, h, w, &opts, None, Score::Region(100.0))
        .unwrap_err();
    assert!(e.to_string().contains("shapleycam"), "{e}");
}
