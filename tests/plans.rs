//! Plans that do not multiply: a plan recorded again for another size from the previous
//! plan's memory gives bit-for-bit what a fresh plan gives, and holds no more than the
//! largest size needs.

use crate::common::gpu;
use combicam_gpu::app::engine::Engine;
use combicam_gpu::cam::methods::{Explainer, METHODS};
use combicam_gpu::model::detweights;
use combicam_gpu::model::efficientnet::ModelGpu;
use combicam_gpu::model::plan::{Output, Plan, PlanOptions, Score};

fn options(nb: usize) -> PlanOptions {
    let mut explainers = vec![Explainer::COMBICAM];
    explainers.extend(METHODS.iter().skip(1).map(|&m| Explainer::of(m)));
    PlanOptions {
        backward: true,
        blocks: (0..nb).collect(),
        explainers,
        masked: 0,
        eigen_smooth: false,
        images: 1,
    }
}

/// Every value of two outputs, bit for bit.
fn assert_same(what: &str, a: &Output, b: &Output) {
    let pairs: Vec<(&str, &[f32], &[f32])> = [
        ("probs", &a.probs[..], &b.probs[..]),
        ("logits", &a.logits[..], &b.logits[..]),
        ("act_maxabs", &a.act_maxabs[..], &b.act_maxabs[..]),
    ]
    .into_iter()
    .chain(a.explainers.iter().zip(&b.explainers).flat_map(|(x, y)| {
        let maps =
            x.maps.iter().zip(&y.maps).filter_map(|(p, q)| {
                Some(("map", p.as_deref()?, q.as_deref().expect("same blocks")))
            });
        std::iter::once(("fused", &x.fused[..], &y.fused[..])).chain(maps)
    }))
    .collect();
    assert_eq!(a.explainers.len(), b.explainers.len());
    for (name, p, q) in pairs {
        assert_eq!(p.len(), q.len(), "{what}: {name} lengths differ");
        if let Some(i) = crate::common::first_bit_difference(p, q) {
            panic!(
                "{what}: {name}[{i}] is {} from a recycled plan but {} from a fresh one (tolerance: bit-exact)",
                p[i], q[i]
            );
        }
    }
    println!(
        "{what}: bit-identical to a fresh plan ({} explainers)",
        a.explainers.len()
    );
}

#[test]
fn a_plan_recorded_from_another_sizes_memory_equals_a_fresh_plan() {
    let g = gpu();
    // tf_b0: TF SAME padding changes with the size's parity, so some pipelines change too
    for arch in ["b0", "tf_b0"] {
        let net = combicam_gpu::app::check::test_network(arch).unwrap();
        let nb = net.cfg.blocks.len();
        let m = ModelGpu::upload(g, net).unwrap();
        // wide then tall then wide again: some buffers grow, others are larger than needed
        // and hold the previous size's values, which must not leak into the next
        let sizes = [(45, 67), (61, 38), (44, 70), (45, 67)];
        let mut old = None;
        let mut biggest = 0;
        for (i, &(h, w)) in sizes.iter().enumerate() {
            let x = detweights::input(h, w);
            let fresh = Plan::new(g, &m, h, w, options(nb)).unwrap();
            let want = fresh.run(g, &x, None, Score::Prob).unwrap();
            drop(fresh);
            let plan =
                Plan::build(g, &m, h, w, options(nb), old.take().unwrap_or_default()).unwrap();
            let got = plan.run(g, &x, None, Score::Prob).unwrap();
            assert_same(&format!("{arch} {h}×{w} (plan {i})"), &got, &want);
            let r = plan.recycled;
            println!("  {r:?}, {} bytes", plan.bytes);
            if i > 0 {
                assert!(
                    r.bind_groups_kept > r.bind_groups_made,
                    "{arch} {h}×{w}: most bind groups should be taken back: {r:?}"
                );
            }
            if i == 3 {
                // every size has been seen: nothing new is made and the memory stays put
                assert_eq!(r.buffers_made, 0, "{arch}: {r:?}");
                assert_eq!(
                    plan.bytes, biggest,
                    "{arch}: memory changed at a known size"
                );
            }
            biggest = biggest.max(plan.bytes);
            old = Some(plan.into_recycler());
        }
    }
}

#[test]
fn engine_memory_does_not_grow_with_the_number_of_sizes() {
    let g = gpu();
    let net = combicam_gpu::app::check::test_network("b0").unwrap();
    let nb = net.cfg.blocks.len();
    let mut e = Engine::new(crate::common::shared_gpu().clone(), net).unwrap();
    let opts = options(nb);
    let mut held = Vec::new();
    // 12 distinct sizes, growing like a folder of ever wider photos
    for w in (40..64).step_by(2) {
        let x = detweights::input(32, w);
        e.run(&x, 32, w, &opts, None, Score::Prob).unwrap();
        held.push(e.gpu_bytes());
    }
    // what a fresh plan at the widest size holds: memory may follow the largest input, with
    // the headroom of a grown buffer (25%), but not the number of sizes
    let widest = Plan::new(g, &e.model, 32, 62, opts.clone()).unwrap().bytes as f64;
    let plans = e.gpu_bytes() - e.model.bytes;
    println!(
        "plan memory after 12 sizes: {plans} bytes, a fresh plan at the widest: {widest} bytes; engine over the run: {held:?}"
    );
    assert!(
        plans as f64 <= widest * 1.25,
        "after 12 sizes the plans hold {plans} bytes, over 1.25× the {widest} of one plan at the largest size"
    );
}

#[test]
fn capacity_is_exact_first_then_grows_with_headroom_under_the_limit() {
    use combicam_gpu::gpu::recycle::capacity;
    assert_eq!(capacity(100, None, 1 << 20), 100);
    assert_eq!(capacity(1000, Some(960), 1 << 20), 1200);
    assert_eq!(capacity(2000, Some(960), 1 << 20), 2000);
    // never past the adapter's limit, unless the need itself is (the plan then refuses it)
    assert_eq!(capacity(1000, Some(960), 1024), 1024);
    assert_eq!(capacity(2000, Some(960), 1024), 2000);
}
