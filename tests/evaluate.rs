//! Score-CAM and the faithfulness metrics against the PyTorch golden files:
//! - tests/golden/make_scorecam_metrics.py: the random-weight visloc B0 at 67×45. Its output
//!   hardly depends on the input (a masked copy moves p_c by ~3e-6 relative), so this file
//!   checks the formulas and the wiring (Score-CAM's weighting and fusion, the blur, the
//!   ranking, the steps, the AUC), not that the masks have the right effect;
//! - the masks' effect is checked bit for bit against single passes in `masked.rs`, and
//!   against PyTorch on the trained Lite0 below.

use crate::common::{check, gpu};
use crate::model::golden;
use combicam_gpu::app::engine::Engine;
use combicam_gpu::app::eval;
use combicam_gpu::app::scorecam;
use combicam_gpu::cam::methods::{Explainer, Method};
use combicam_gpu::model::detweights;
use combicam_gpu::model::plan::{PlanOptions, Score};
use combicam_gpu::ops::Tolerance;

const FILE: &str = "scorecam_metrics_b0.safetensors";
const H: usize = 67;
const W: usize = 45;

fn engine() -> Engine {
    Engine::new(
        crate::common::shared_gpu().clone(),
        combicam_gpu::app::check::test_network("b0").unwrap(),
    )
    .unwrap()
}

/// Both Score-CAMs at block `l` of the image the plan last ran, with their names; each
/// block map checked against the golden `{name}.{l}` (`label` prefixes the name printed).
fn both_score_cams(
    plan: &combicam_gpu::model::plan::Plan,
    l: usize,
    target: usize,
    gd: &crate::model::Golden,
    label: &str,
) -> Vec<(&'static str, combicam_gpu::model::plan::ExplainerOutput)> {
    let g = gpu();
    [
        (Method::ScoreCam, "scorecam"),
        (Method::ScoreCamOfficial, "scorecam-official"),
    ]
    .into_iter()
    .map(|(m, name)| {
        let out = scorecam::explain(
            g,
            plan,
            Explainer::of(m),
            &[l],
            (target, Score::Prob),
            &mut |_| {},
        )
        .unwrap()
        .remove(0);
        let (shape, want) = &gd[&format!("{name}.{l}")];
        // every masked forward pass within float32 rounding of PyTorch's
        check(
            &format!("{label}{name}.{l}"),
            out.maps[l].as_ref().unwrap(),
            want,
            shape,
            // lavapipe: max|diff| 1.2e-4, 2.1% of the former 1e-3/1e-4: ≈ 10% of this
            Tolerance::new(2e-4, 2e-5).scaled(want),
        );
        (name, out)
    })
    .collect()
}

#[test]
fn scorecam_matches_pytorch_at_the_last_block() {
    let (gd, meta) = golden(FILE);
    let x = detweights::input(H, W);
    check(
        "input",
        &x,
        &gd["input"].1,
        &[3, H, W],
        // the same formula on both sides: bit-exact
        Tolerance::new(0.0, 0.0),
    );
    let target: usize = meta["target"].parse().unwrap();
    let mut e = engine();
    let opts = PlanOptions::forward(16);
    let g = gpu();
    let plan = e.plan(H, W, &opts).unwrap();
    let o = plan.run(g, &x, None, Score::Prob).unwrap();
    assert_eq!(o.argmax, target, "the top cell differs from PyTorch's");
    let l = 15;
    for (name, out) in both_score_cams(plan, l, target, &gd, "") {
        let (_, fused) = &gd[&format!("{name}.fused")];
        check(
            &format!("{name}.fused"),
            &out.fused,
            fused,
            &[H, W],
            // lavapipe: max|diff| 6.6e-6, 0.47% of the former 1e-3/1e-3: ≈ 9% of this
            Tolerance::new(5e-5, 5e-5),
        );
    }
}

#[test]
fn gaussian_blur_matches_torchvision() {
    let (gd, _) = golden(FILE);
    let x = &gd["input"].1;
    let got = eval::gaussian_blur(x, H, W, 11, 5.0);
    check(
        "blurred",
        &got,
        &gd["blurred"].1,
        &[3, H, W],
        // lavapipe: max|diff| 1.2e-7, 5.1% of the former 1e-5/1e-6: ≈ 10% of this
        Tolerance::new(5e-6, 5e-7),
    );
}

#[test]
fn the_metrics_protocol_matches_pytorch() {
    let (gd, meta) = golden(FILE);
    let x = detweights::input(H, W);
    let target: usize = meta["target"].parse().unwrap();
    let steps: usize = meta["steps"].parse().unwrap();
    let y = gd["probs"].1[target];
    let mut e = engine();
    for name in ["combicam", "gradcam@15"] {
        // the same S as PyTorch's, so that the ranking is the same: the protocol alone
        let s = &gd[&format!("S.{name}")].1;
        let m = eval::metrics(
            &mut e,
            &x,
            (H, W),
            s,
            (target, y),
            &eval::Protocol {
                steps,
                batch: 5,
                road_noise: None,
            },
            &mut |_| {},
        )
        .unwrap();
        let want_del = &gd[&format!("deletion.{name}")].1;
        let want_ins = &gd[&format!("insertion.{name}")].1;
        // lavapipe: max|diff| 6.5e-9, 0.39% of the former 1e-4/1e-6: ≈ 8% of this
        let tol = Tolerance::new(5e-6, 5e-8);
        check(
            &format!("deletion.{name}"),
            &m.deletion,
            want_del,
            &[steps + 1],
            tol,
        );
        check(
            &format!("insertion.{name}"),
            &m.insertion,
            want_ins,
            &[steps + 1],
            tol,
        );
        let want = &gd[&format!("metrics.{name}")].1;
        let got = [
            m.deletion_auc as f32,
            m.insertion_auc as f32,
            m.average_drop as f32,
            m.increase as u8 as f32,
        ];
        // the Increase flag of this model is decided by float32 rounding (|O − Y| ~ 1e-7·Y)
        check(
            &format!("metrics.{name}"),
            &got[..2],
            &want[..2],
            &[2],
            // the areas are means of the curves above, so within the curves' tolerance
            // (lavapipe: max|diff| 1.4e-9, 2% of it, either kernel shape)
            tol,
        );
        // the Average Drop, 100·max(0, Y − O)/Y, moves by 100·e for a relative error e in O:
        // O is within float32 rounding of Y here, so PyTorch's 0 is ours within 100 times the
        // masked forward's rounding (the GPU-shaped kernels on lavapipe: 4.97e-5, O 5e-7 below
        // Y relative, 50% of this; CPU-shaped: 7.1e-6; 1e-4 is a relative error of 1e-6 in O,
        // the curves' own order)
        check(
            &format!("average-drop.{name}"),
            &got[2..3],
            &want[2..3],
            &[1],
            Tolerance::new(0.0, 1e-4),
        );

        // and end to end: our own S (explain), our ranking; within 2% per metric
        let spec = eval::parse_spec(name).unwrap();
        let ours = eval::saliency(&mut e, &spec, &x, (H, W), target, 5, &mut |_| {}).unwrap();
        check(
            &format!("S.{name}"),
            &ours,
            s,
            &[H, W],
            // lavapipe: max|diff| 5.3e-6, 0.21% of the former 2e-3/2e-3: ≈ 10% of this
            Tolerance::new(4e-5, 4e-5),
        );
        let m2 = eval::metrics(
            &mut e,
            &x,
            (H, W),
            &ours,
            (target, y),
            &eval::Protocol {
                steps,
                batch: 5,
                road_noise: None,
            },
            &mut |_| {},
        )
        .unwrap();
        let rel = |a: f64, b: f32| (a - b as f64).abs() / (b as f64).abs().max(1e-12);
        // within 2%, or (near zero) within rounding: 1e-6 of an AUC, 1e-3 of a percent
        for (what, got, want, floor) in [
            ("deletion AUC", m2.deletion_auc, want[0], 1e-6),
            ("insertion AUC", m2.insertion_auc, want[1], 1e-6),
            ("average drop %", m2.average_drop, want[2], 1e-3),
        ] {
            let r = rel(got, want);
            println!("{name} end to end: {what} {got:.6} against {want:.6} (relative {r:.2e})");
            assert!(
                r < 0.02 || (got - want as f64).abs() < floor,
                "{name}: {what} {got} against PyTorch's {want}"
            );
        }
    }
}

/// `--explainers all`: every method of the table once, with Combi-CAM, classic Grad-CAM and
/// the random floor; `all` mixed with items it holds adds nothing twice.
#[test]
fn all_explainers_cover_the_method_table() {
    use combicam_gpu::cam::methods::TABLE;
    let specs = eval::parse_specs("all, random ,combicam").unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    for row in TABLE {
        let covered = specs.iter().any(|s| {
            matches!(s.source, eval::Source::Cam { explainer, .. } if explainer.method == row.method)
        });
        assert!(covered, "{} missing from {names:?}", row.name);
    }
    for n in ["combicam", "gradcam@last", "random", "fem", "scorecam"] {
        assert_eq!(
            names.iter().filter(|&&x| x == n).count(),
            1,
            "{n} in {names:?}"
        );
    }
    assert_eq!(names.len(), TABLE.len() + 2, "{names:?}");
    assert!(eval::parse_specs("all,bogus").is_err());
}

#[test]
fn explainer_specs_parse_and_bad_ones_say_how() {
    let s = eval::parse_spec("layercam@0-3:max").unwrap();
    assert_eq!(s.name, "layercam@0-3:max");
    let s = eval::parse_spec("combicam").unwrap();
    assert!(
        matches!(s.source, eval::Source::Cam { explainer, blocks: None } if explainer == Explainer::COMBICAM)
    );
    assert!(matches!(
        eval::parse_spec("random:7").unwrap().source,
        eval::Source::Random { seed: 7 }
    ));
    for bad in ["gradcam@", "bogus", "gradcam:median", "random:x"] {
        let e = eval::parse_spec(bad);
        let msg = match e {
            Err(e) => e.to_string(),
            Ok(s) => {
                // gradcam@ parses; its blocks are refused when used
                assert_eq!(bad, "gradcam@", "{s:?}");
                continue;
            }
        };
        assert!(msg.contains("METHOD[@BLOCKS][:FUSION]"), "{msg}");
    }
    // counts and the AUC's trapezoid rule
    assert_eq!(eval::counts(4, 10), [0, 2, 5, 7, 10]);
    assert!((eval::auc(&[1.0, 0.5, 0.0]) - 0.5).abs() < 1e-12);
    assert_eq!(eval::average_drop(0.5, 0.25), (50.0, false));
    assert_eq!(eval::average_drop(0.5, 0.75), (0.0, true));
}

/// The trained Lite0 on the coffee photo at 112×168 (tests/golden/make_metrics_lite0.py):
/// here the masks matter (the curves span 0 … Y).
#[test]
fn lite0_scorecam_and_metrics_match_pytorch_on_a_photo() {
    const FILE: &str = "metrics_lite0_coffee.safetensors";
    let (gd, meta) = golden(FILE);
    let (h, w) = (112, 168);
    let x = gd["input"].1.clone();
    let target: usize = meta["target"].parse().unwrap();
    let steps: usize = meta["steps"].parse().unwrap();
    let y = gd["probs"].1[target];
    let g = gpu();
    let mut e = Engine::new(
        crate::common::shared_gpu().clone(),
        crate::model::lite0_checkpoint(),
    )
    .unwrap();
    let opts = PlanOptions::forward(16);
    let plan = e.plan(h, w, &opts).unwrap();
    let o = plan.run(g, &x, None, Score::Prob).unwrap();
    assert_eq!(o.argmax, target, "top class");
    check(
        "probs",
        &o.probs,
        &gd["probs"].1,
        &[1000],
        // lavapipe: max|diff| 1.2e-7, 2.0% of the former 1e-4/1e-6: ≈ 10% of this
        Tolerance::new(2e-5, 2e-7),
    );
    let l = 15;
    for (name, out) in both_score_cams(plan, l, target, &gd, "lite0 ") {
        let s = &gd[&format!("S.{name}@15")].1;
        check(
            &format!("lite0 S.{name}@15"),
            &out.fused,
            s,
            &[h, w],
            // lavapipe: max|diff| 3.9e-6, 0.33% of the former 1e-3/1e-3: ≈ 7% of this
            Tolerance::new(5e-5, 5e-5),
        );
    }
    for name in [
        "combicam",
        "gradcam@15",
        "scorecam@15",
        "scorecam-official@15",
    ] {
        // PyTorch's S: Score-CAM's maps have exact ties at step boundaries, where a ranking
        // from an S equal to float32 rounding could change a step
        let s = &gd[&format!("S.{name}")].1;
        let m = eval::metrics(
            &mut e,
            &x,
            (h, w),
            s,
            (target, y),
            &eval::Protocol {
                steps,
                batch: 8,
                road_noise: None,
            },
            &mut |_| {},
        )
        .unwrap();
        // lavapipe: max|diff| 4.3e-6, 2.6% of the former 1e-4/1e-4: ≈ 13% of this
        let tol = Tolerance::new(2e-5, 2e-5);
        check(
            &format!("lite0 deletion.{name}"),
            &m.deletion,
            &gd[&format!("deletion.{name}")].1,
            &[steps + 1],
            tol,
        );
        check(
            &format!("lite0 insertion.{name}"),
            &m.insertion,
            &gd[&format!("insertion.{name}")].1,
            &[steps + 1],
            tol,
        );
        let want = &gd[&format!("metrics.{name}")].1;
        let got = [
            m.deletion_auc as f32,
            m.insertion_auc as f32,
            m.average_drop as f32,
        ];
        check(
            &format!("lite0 metrics.{name}"),
            &got,
            &want[..3],
            &[3],
            // lavapipe: max|diff| 3.6e-5, 0.36% of the former 1e-3/1e-4: ≈ 7% of this
            Tolerance::new(5e-5, 5e-6),
        );
        assert_eq!(m.increase, want[3] > 0.5, "{name}: Increase");
    }
    // end to end for the gradient explainers: our own S and ranking, within 2% per metric
    for name in ["combicam", "gradcam@15"] {
        let spec = eval::parse_spec(name).unwrap();
        let s = eval::saliency(&mut e, &spec, &x, (h, w), target, 8, &mut |_| {}).unwrap();
        check(
            &format!("lite0 S.{name} (ours)"),
            &s,
            &gd[&format!("S.{name}")].1,
            &[h, w],
            // lavapipe: max|diff| 4.3e-6, 1.1% of the former 1e-3/1e-4: ≈ 11% of this
            Tolerance::new(1e-4, 1e-5),
        );
        let m = eval::metrics(
            &mut e,
            &x,
            (h, w),
            &s,
            (target, y),
            &eval::Protocol {
                steps,
                batch: 8,
                road_noise: None,
            },
            &mut |_| {},
        )
        .unwrap();
        let want = &gd[&format!("metrics.{name}")].1;
        for (what, got, want) in [
            ("deletion AUC", m.deletion_auc, want[0]),
            ("insertion AUC", m.insertion_auc, want[1]),
            ("average drop %", m.average_drop, want[2]),
        ] {
            let r = (got - want as f64).abs() / (want as f64).abs().max(1e-12);
            println!(
                "lite0 {name} end to end: {what} {got:.6} against PyTorch's {want:.6} (relative {r:.2e})"
            );
            assert!(
                r < 0.02 || (got - want as f64).abs() < 1e-3,
                "{name}: {what} {got} against {want}"
            );
        }
        assert_eq!(m.increase, want[3] > 0.5, "{name}: Increase");
    }
}
