//! A plan of several images at once (`PlanOptions::images`, what `--aug-smooth` runs its six
//! augmented inputs through): the forward, the backward and the CAM phase over a batch give
//! every image, bit for bit, what a plan of one image gives it for the same target, for every
//! method a plan computes (all but the masked passes of Score-CAM and AblationCAM) and every
//! fusion rule; and options it cannot batch are refused.

use crate::common::{first_bit_difference, gpu};
use combicam_gpu::app::augment;
use combicam_gpu::cam::methods::{Explainer, Fusion, METHODS, Method};
use combicam_gpu::model::detweights;
use combicam_gpu::model::efficientnet::ModelGpu;
use combicam_gpu::model::plan::{Output, Plan, PlanOptions, Score};

/// Images per plan: not the six of `--aug-smooth`, so that no stride happens to fit it.
const IMAGES: usize = 3;

/// Every method a batch takes, with its default fusion, then Grad-CAM under every other rule
/// (the sums of groups of one size, and the rules that normalise each map first).
fn batchable(nb: usize) -> PlanOptions {
    let mut explainers = vec![Explainer::COMBICAM];
    // the official Grad-CAM++ and ShapleyCAM take the last block alone (`last_block`)
    for &m in METHODS.iter().skip(1) {
        if m.hvp_direction().is_none() {
            explainers.push(Explainer::of(m));
        }
    }
    for fusion in [
        Fusion::Mean,
        Fusion::MeanNormalised,
        Fusion::Max,
        Fusion::Product,
    ] {
        explainers.push(Explainer {
            method: Method::GradCam,
            fusion,
        });
    }
    let mut o = PlanOptions {
        backward: true,
        blocks: (0..nb).collect(),
        explainers,
        masked: 0,
        eigen_smooth: false,
        images: IMAGES,
    };
    let base = o.clone();
    o.explainers.retain(|e| {
        let one = PlanOptions {
            explainers: vec![*e],
            ..base.clone()
        };
        one.batches_images()
    });
    o
}

/// The methods of the head's Hessian-vector product at the last block, beside Combi-CAM.
fn last_block(nb: usize) -> PlanOptions {
    let mut explainers = vec![Explainer::COMBICAM];
    explainers.extend([Method::GradCamPPOfficial, Method::ShapleyCam].map(Explainer::of));
    PlanOptions {
        blocks: vec![nb - 1],
        explainers,
        ..batchable(nb)
    }
}

/// Every value two outputs hold, bit for bit.
fn assert_same(what: &str, a: &Output, b: &Output) {
    assert_eq!(
        (a.target, a.explainers.len()),
        (b.target, b.explainers.len())
    );
    let mut pairs: Vec<(String, &[f32], &[f32])> = vec![
        ("probs".into(), &a.probs, &b.probs),
        ("logits".into(), &a.logits, &b.logits),
        ("act_maxabs".into(), &a.act_maxabs, &b.act_maxabs),
    ];
    for (x, y) in a.explainers.iter().zip(&b.explainers) {
        let name = x.explainer.fused_name();
        pairs.push((format!("{name} fused"), &x.fused, &y.fused));
        for (l, (p, q)) in x.maps.iter().zip(&y.maps).enumerate() {
            if let (Some(p), Some(q)) = (p, q) {
                pairs.push((format!("{name} map {l}"), p, q));
            }
        }
        let stats = |o: &Vec<Option<f32>>| o.iter().flatten().copied().collect::<Vec<f32>>();
        let (sx, sy) = (
            [stats(&x.map_max), stats(&x.map_mean)].concat(),
            [stats(&y.map_max), stats(&y.map_mean)].concat(),
        );
        assert_eq!(sx.len(), sy.len(), "{what}: {name} statistics");
        if let Some(i) = first_bit_difference(&sx, &sy) {
            panic!(
                "{what}: {name} statistic {i}: {} batched, {} alone (tolerance: bit-exact)",
                sx[i], sy[i]
            );
        }
        assert_eq!(x.fused_range, y.fused_range, "{what}: {name} range");
    }
    for (name, p, q) in &pairs {
        assert_eq!(p.len(), q.len(), "{what}: {name} lengths differ");
        if let Some(i) = first_bit_difference(p, q) {
            panic!(
                "{what}: {name}[{i}] is {} batched but {} alone (tolerance: bit-exact)",
                p[i], q[i]
            );
        }
    }
    println!(
        "{what}: bit-identical to a plan of one image ({} arrays)",
        pairs.len()
    );
}

/// `opts`' plan of IMAGES images against a plan of one, image by image, on `arch` at `h`×`w`.
fn check_images(
    arch: &str,
    (h, w): (usize, usize),
    score: Score,
    opts: &dyn Fn(usize) -> PlanOptions,
) {
    let g = gpu();
    let net = combicam_gpu::app::check::test_network(arch).unwrap();
    let nb = net.cfg.blocks.len();
    let m = ModelGpu::upload(g, net).unwrap();
    let opts = opts(nb);
    assert!(opts.batches_images(), "{arch}: {:?}", opts.explainers);
    let x = detweights::input(h, w);
    // the photo, flipped and dimmed, brightened: three images, each unlike the others
    let augs = [(false, 1.0), (true, 0.9), (false, 1.1)];
    let inputs: Vec<f32> = (augs.iter())
        .flat_map(|&aug| augment::input(&x, w, aug))
        .collect();
    let plan = Plan::new(g, &m, h, w, opts.clone()).unwrap();
    let got = plan.run_images(g, &inputs, None, score).unwrap();
    assert_eq!(got.len(), IMAGES);
    drop(plan);
    let one = PlanOptions { images: 1, ..opts };
    let alone = Plan::new(g, &m, h, w, one).unwrap();
    let n = 3 * h * w;
    for (z, out) in got.iter().enumerate() {
        let input = &inputs[z * n..(z + 1) * n];
        // every image explains image 0's target
        let want = alone.run(g, input, Some(got[0].target), score).unwrap();
        assert_same(&format!("{arch} {h}×{w} {score:?} image {z}"), out, &want);
    }
}

#[test]
fn a_plan_of_several_images_gives_each_what_a_plan_of_one_gives() {
    // visloc B0 (SE, SiLU, cell centres for the region score), Lite0 (no SE, ReLU6), tf_b0
    // (TF SAME padding); odd sizes; every method at every block, then the official
    // Grad-CAM++ and ShapleyCAM at the last (the head's Hessian-vector product)
    check_images("b0", (45, 67), Score::Region(2500.0), &batchable);
    check_images("lite0", (61, 38), Score::Prob, &batchable);
    check_images("tf_b0", (44, 70), Score::Logit, &batchable);
    check_images("b0", (45, 67), Score::Prob, &last_block);
    check_images("lite0", (61, 38), Score::Prob, &last_block);
    // --eigen-smooth: every method's weighted activations projected, the official LayerCAM's
    // scale (max g) and the channel methods' weights read per image
    let smooth = |nb: usize| {
        let mut o = PlanOptions {
            eigen_smooth: true,
            ..batchable(nb)
        };
        // FullGrad's maps are sums of normalised terms, which it does not smooth
        o.explainers.retain(|e| e.method != Method::FullGrad);
        o
    };
    check_images("b0", (45, 67), Score::Prob, &smooth);
    // FinerCAM's own score: each image's comparison classes picked from its own logits
    let finer = |nb: usize| PlanOptions {
        explainers: vec![Explainer::of(Method::FinerCam)],
        ..batchable(nb)
    };
    check_images("lite0", (61, 38), Score::Finer(3), &finer);
    check_images("b0", (45, 67), Score::Finer(32), &finer);
}

#[test]
fn a_plan_of_several_images_refuses_what_its_kernels_cannot_batch() {
    let g = gpu();
    let net = combicam_gpu::app::check::test_network("b0").unwrap();
    let nb = net.cfg.blocks.len();
    let m = ModelGpu::upload(g, net).unwrap();
    for (what, opts) in [
        (
            "scorecam",
            PlanOptions {
                explainers: vec![Explainer::of(Method::ScoreCam)],
                ..batchable(nb)
            },
        ),
        (
            "masked copies",
            PlanOptions {
                masked: 4,
                ..batchable(nb)
            },
        ),
    ] {
        assert!(!opts.batches_images(), "{what}");
        let e = Plan::new(g, &m, 33, 47, opts)
            .err()
            .expect(what)
            .to_string();
        assert!(e.contains("images at once"), "{what}: {e}");
        println!("{what}: refused: {e}");
    }
}

#[test]
fn six_images_fit_a_cpu_adapter_at_photo_sizes_not_at_four_times_b4s() {
    // what `--aug-smooth` batches on a CPU adapter (`Plan::images_fit`: six forwards and half
    // again within 2 GiB), at the sizes the README names: B4's plan of six at 300×450 holds
    // 1.59 GB (a plan of one 0.26 GB)
    let g = gpu();
    let mut sizes = vec![("lite0", (224, 336), true), ("b4", (300, 450), true)];
    if g.host_memory() {
        sizes.push(("b4", (600, 900), false));
    } else {
        // a GPU's own memory is not budgeted (wgpu does not tell its size): only the
        // adapter's binding and texture limits refuse a batch there (an H100, 2026-12-06)
        println!(
            "the adapter's memory is its own: the 600×900 half of this test holds on adapters \
             whose memory is the host's"
        );
    }
    for (arch, (h, w), fits) in sizes {
        let m = ModelGpu::upload(g, combicam_gpu::app::check::test_network(arch).unwrap());
        let got = Plan::images_fit(g, &m.unwrap(), h, w, augment::RUNS.len());
        println!("{arch} {h}×{w}: six images fit: {got}");
        assert_eq!(got, fits, "{arch} {h}×{w}");
    }
}
