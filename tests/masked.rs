//! Masked copies: each masking kernel against its CPU reference on awkward shapes, the
//! masked passes of a plan (several copies per submission) against one ordinary pass per copy,
//! and AblationCAM's copies of a block output against the CPU model run on from the next block.

use crate::common::{check, gpu, rand, read, up, zeros};
use combicam_gpu::model::detweights;
use combicam_gpu::model::efficientnet::ModelGpu;
use combicam_gpu::model::plan::Masks;
use combicam_gpu::model::plan::{Plan, PlanOptions, Score};
use combicam_gpu::ops::Tolerance;
use combicam_gpu::ops::masked::{self, JOB_HEADER, MaskBufs, cpu};

/// Ranks of a map with ties (values on a coarse grid), as the metrics make them.
fn tied_map(n: usize, seed: u64) -> Vec<f32> {
    rand(n, seed, 0.0, 1.0)
        .into_iter()
        .map(|v| (v * 8.0).floor() / 8.0)
        .collect()
}

/// The b0 test network on the GPU, and the awkward input size the plan tests run it at.
fn b0_37x29() -> (ModelGpu, (usize, usize)) {
    let net = combicam_gpu::app::check::test_network("b0").unwrap();
    (ModelGpu::upload(gpu(), net).unwrap(), (37, 29))
}

#[test]
fn ranks_sort_descending_with_ties_by_raster_index() {
    let s = [0.5, 1.0, 0.5, 0.0, 1.0];
    assert_eq!(cpu::ranks(&s), [2, 0, 3, 4, 1]);
}

#[test]
fn masking_kernels_match_the_cpu_reference() {
    let g = gpu();
    // a 7-channel 3×5 block up to 13×17 (neither a multiple of the workgroup), and 2×1 to 9×11
    for (c, bh, bw, h, w) in [(7, 3, 5, 13, 17), (5, 2, 1, 9, 11)] {
        let hw = h * w;
        let x0 = rand(3 * hw, 1, -2.0, 2.0);
        let acts = rand(c * bh * bw, 2, -1.0, 3.0);
        let s = tied_map(hw, 3);
        let rank: Vec<u32> = cpu::ranks(&s);
        let blurred = rand(3 * hw, 4, -1.0, 1.0);
        let counts = [0usize, 1, hw / 3, hw - 1, hw];
        let (bx0, binput, bacts, bmm) = (up(&x0), zeros(3 * hw), up(&acts), zeros(2 * c));
        let brank = g.upload_u32("rank", &rank).unwrap();
        let bother = up(&blurred);
        let bmap = up(&s);
        let (logits, probs, scores) = (zeros(4), zeros(4), zeros(2 * 8));
        let mut job = vec![0u32, c as u32, bh as u32, bw as u32];
        job.extend((0..c as u32).rev());
        job.resize(JOB_HEADER + 8, 0);
        let bjob = g.upload_u32("job", &job).unwrap();
        let b = MaskBufs {
            x0: &bx0.buf,
            input: &binput.buf,
            job: &bjob.buf,
            acts: &bacts.buf,
            mm: &bmm.buf,
            rank: &brank.buf,
            other: &bother.buf,
            logits: &logits.buf,
            probs: &probs.buf,
            scores: &scores.buf,
        };
        g.run_now(&[&masked::up_minmax(g, "up", &b, h, w, c + 3)])
            .unwrap();
        let mm = cpu::up_minmax(&acts, c, bh, bw, h, w);
        check(
            "up_minmax",
            &read(&bmm),
            &mm,
            &[c, 2],
            // lavapipe: bit-exact (0 of this); float32 headroom for other adapters
            Tolerance::new(1e-6, 1e-7),
        );
        // every copy of a batch at once (workgroup z = copy): copy n masks with job[4 + n]
        let copies = counts.len();
        let batch_in = zeros(3 * hw * copies);
        let bb = MaskBufs {
            input: &batch_in.buf,
            ..b
        };
        let copy_of = |all: &[f32], n: usize| all[n * 3 * hw..(n + 1) * 3 * hw].to_vec();
        for normalise in [true, false] {
            g.run_now_batched(
                &[&masked::mask_cam(g, "cam", &bb, h, w, normalise)],
                copies as u32,
            )
            .unwrap();
            let got = read(&batch_in);
            for n in 0..copies {
                let k = c - 1 - n;
                let want = cpu::mask_cam(
                    &x0,
                    &acts,
                    normalise.then_some(&mm[..]),
                    k,
                    (bh, bw),
                    (h, w),
                );
                let name = format!("mask_cam copy {n} k={k} normalise={normalise}");
                check(
                    &name,
                    &copy_of(&got, n),
                    &want,
                    &[3, h, w],
                    // lavapipe: max|diff| 4.8e-7, 19% of this
                    Tolerance::new(1e-6, 1e-6),
                );
            }
        }
        for (copy, &count) in counts.iter().enumerate() {
            job[JOB_HEADER + copy] = count as u32;
        }
        g.queue
            .write_buffer(&bjob.buf, 0, bytemuck::cast_slice(&job));
        for insertion in [false, true] {
            g.run_now_batched(
                &[&masked::mask_rank(g, "rank", &bb, h, w, insertion)],
                copies as u32,
            )
            .unwrap();
            let got = read(&batch_in);
            for (n, &count) in counts.iter().enumerate() {
                let want = cpu::mask_rank(&x0, insertion.then_some(&blurred[..]), &rank, count);
                let name = format!("mask_rank copy {n}: {count} insertion={insertion}");
                check(
                    &name,
                    &copy_of(&got, n),
                    &want,
                    &[3, h, w],
                    // a copy or a select: bit-exact
                    Tolerance::new(0.0, 0.0),
                );
            }
        }
        let bm = MaskBufs {
            other: &bmap.buf,
            ..b
        };
        g.run_now(&[&masked::mask_map(g, "map", &bm, h, w)])
            .unwrap();
        check(
            "mask_map",
            &read(&binput),
            &cpu::mask_map(&x0, &s),
            &[3, h, w],
            // a product of two floats: bit-exact
            Tolerance::new(0.0, 0.0),
        );
    }
}

#[test]
fn masked_passes_equal_one_ordinary_pass_per_copy() {
    let g = gpu();
    let (m, (h, w)) = b0_37x29();
    // 3 copies per submission: 7 copies take 3 submissions, the last one short
    let opts = |masked| PlanOptions::forward(masked);
    let plan = Plan::new(g, &m, h, w, opts(3)).unwrap();
    let single = Plan::new(g, &m, h, w, opts(0)).unwrap();
    let x = detweights::input(h, w);
    let o = plan.run(g, &x, None, Score::Prob).unwrap();
    let t = o.argmax;
    let s = tied_map(h * w, 9);
    let rank = cpu::ranks(&s);
    let blurred: Vec<f32> = x.iter().map(|v| v * 0.25).collect();
    let counts = [0, 1, 50, 300, 700, 1000, h * w];
    let one = |input: &[f32]| {
        let o = single.run(g, input, Some(t), Score::Prob).unwrap();
        (o.logits[t], o.probs[t])
    };
    let mut done = Vec::new();
    let got = plan
        .run_masked(
            g,
            &Masks::Deletion {
                rank: &rank,
                counts: &counts,
            },
            t,
            &mut |n| done.push(n),
        )
        .unwrap();
    assert_eq!(done, [3, 6, 7], "progress after each submission");
    let want: Vec<_> = counts
        .iter()
        .map(|&k| one(&cpu::mask_rank(&x, None, &rank, k)))
        .collect();
    assert_eq!(
        got, want,
        "deletion: masked passes against single passes (bit-exact)"
    );
    let masks = Masks::Insertion {
        rank: &rank,
        blurred: &blurred,
        counts: &counts,
    };
    let got = plan.run_masked(g, &masks, t, &mut |_| {}).unwrap();
    let want: Vec<_> = counts
        .iter()
        .map(|&k| one(&cpu::mask_rank(&x, Some(&blurred), &rank, k)))
        .collect();
    assert_eq!(
        got, want,
        "insertion: masked passes against single passes (bit-exact)"
    );
    let got = plan
        .run_masked(g, &Masks::Map { map: &s }, t, &mut |_| {})
        .unwrap();
    assert_eq!(got, [one(&cpu::mask_map(&x, &s))], "x·S");
    // Score-CAM's masks at block 4: the block's activations come from the original image, even
    // after the passes above left other activations in the plan's buffers
    let l = 4;
    let (bh, bw) = plan.sizes[l];
    let acts = g.read(&single.outs[l]).unwrap(); // `single` last ran x·S: run x again
    let _ = acts;
    single.run(g, &x, Some(t), Score::Prob).unwrap();
    let acts = g.read(&single.outs[l]).unwrap();
    let c = acts.len() / (bh * bw);
    let mm = cpu::up_minmax(&acts, c, bh, bw, h, w);
    for normalise in [true, false] {
        let masks = Masks::Cam {
            block: l,
            channels: 2..c.min(9),
            normalise,
        };
        let got = plan.run_masked(g, &masks, t, &mut |_| {}).unwrap();
        for (i, k) in (2..c.min(9)).enumerate() {
            let input = cpu::mask_cam(&x, &acts, normalise.then_some(&mm[..]), k, (bh, bw), (h, w));
            let (lw, pw) = one(&input);
            let name = format!("score-cam copy k={k} normalise={normalise}");
            check(
                &name,
                &[got[i].0, got[i].1],
                &[lw, pw],
                &[2],
                // lavapipe: max|diff| 8.3e-7, 0.66% of the former 1e-4/1e-6: ≈ 13% of this
                Tolerance::new(5e-6, 5e-8),
            );
        }
    }
}

#[test]
fn a_batch_costs_what_bytes_per_copy_says_and_the_default_fits_the_budget() {
    let g = gpu();
    let m = ModelGpu::upload(g, combicam_gpu::app::check::test_network("b0").unwrap()).unwrap();
    let (h, w) = (224, 200);
    // each image a batch adds is the forward footprint the batch choice counts
    let bytes = |n| {
        Plan::new(g, &m, h, w, PlanOptions::forward(n))
            .unwrap()
            .bytes
    };
    let per = Plan::bytes_per_copy(g, &m, h, w);
    let grown = bytes(3) - bytes(2);
    let rel = (grown as f64 - per as f64).abs() / per as f64;
    println!("one more copy: {grown} bytes, bytes_per_copy {per} ({rel:.1e} apart)");
    assert!(
        rel < 0.01,
        "one more copy took {grown} bytes, bytes_per_copy says {per}"
    );
    let plan = Plan::new(g, &m, h, w, PlanOptions::forward(5)).unwrap();
    assert_eq!(plan.masked_copies(), 5, "5 small copies fit");
    // the default that explain and evaluate ask for is default_batch at the plan's size
    let auto = Plan::new(g, &m, h, w, PlanOptions::forward(PlanOptions::AUTO_BATCH)).unwrap();
    assert_eq!(
        auto.masked_copies(),
        Plan::default_batch(g, &m, h, w),
        "AUTO_BATCH"
    );
    // the default: 4 on a CPU adapter (32 on a GPU) while they fit in the budget, fewer
    // beyond it (or past the adapter's binding limit), never 0
    let budget = combicam_gpu::model::plan::BATCH_BUDGET;
    let want = if g.is_cpu() { 4 } else { 32 };
    for (h, w) in [(300, 450), (900, 1350), (1500, 2250)] {
        let n = Plan::default_batch(g, &m, h, w);
        let per = Plan::bytes_per_copy(g, &m, h, w);
        let fits = (budget / per).max(1) as usize;
        println!(
            "B0 at {h}×{w}: {per} bytes per copy, {fits} fit in the budget, default batch {n}"
        );
        assert!(
            (1..=want.min(fits)).contains(&n),
            "default batch {n} at {h}×{w}"
        );
    }
    // where neither the budget nor a limit binds, what the adapter kind asks for: at 100×150
    // (at 300×450 the 32 copies of the GPU-shaped kernels pass lavapipe's 128 MiB binding
    // limit: 10 fit)
    let fits = (budget / Plan::bytes_per_copy(g, &m, 100, 150)) as usize;
    assert_eq!(Plan::default_batch(g, &m, 100, 150), want.min(fits));
}

#[test]
fn ablated_block_outputs_run_on_as_the_cpu_model_does() {
    let g = gpu();
    let (m, (h, w)) = b0_37x29();
    // 3 copies per submission: a block's C + 1 copies take several, the last one short
    let plan = Plan::new(g, &m, h, w, PlanOptions::forward(3)).unwrap();
    let x = detweights::input(h, w);
    let o = plan.run(g, &x, None, Score::Prob).unwrap();
    let t = o.argmax;
    let nb = plan.sizes.len();
    // block 3 (the forward resumes inside the network) and the last (the head alone); the
    // copies after channel C - 1 are the unablated output, whose score is the photo's
    for l in [3, nb - 1] {
        // the photo's own outputs again (the masked passes write over them)
        plan.run(g, &x, Some(t), Score::Prob).unwrap();
        let acts = g.read(&plan.outs[l]).unwrap();
        let (bh, bw) = plan.sizes[l];
        let c = acts.len() / (bh * bw);
        let ks: Vec<usize> = (0..c.min(5)).chain([c]).collect();
        let mut got = Vec::new();
        for &k in &ks {
            let masks = Masks::Ablation {
                block: l,
                channels: k..k + 1,
            };
            got.extend(plan.run_masked(g, &masks, t, &mut |_| {}).unwrap());
        }
        // the batched path too: channels 0..C + 1 at once
        let all = Masks::Ablation {
            block: l,
            channels: 0..c + 1,
        };
        let batched = plan.run_masked(g, &all, t, &mut |_| {}).unwrap();
        assert_eq!(batched.len(), c + 1);
        for (i, &k) in ks.iter().enumerate() {
            assert_eq!(
                batched[k], got[i],
                "block {l} channel {k}: batched against alone"
            );
            let y = combicam_gpu::model::cpu::forward_from(
                &m.weights,
                l + 1,
                &cpu::ablate(&acts, c, k),
                &plan.sizes,
                (h, w),
            );
            let (p, _) = combicam_gpu::ops::head::cpu::softmax(&y);
            check(
                &format!("ablation block {l} channel {k}"),
                &[got[i].0, got[i].1],
                &[y[t], p[t]],
                &[2],
                // lavapipe, 2026-12-03: max|diff| 1.9e-6 on values near 1.25, 30% of this
                Tolerance::new(5e-6, 5e-8),
            );
        }
        assert_eq!(
            batched[c],
            (o.logits[t], o.probs[t]),
            "block {l}: the unablated copy"
        );
    }
}

#[test]
fn copies_of_several_originals_equal_each_original_alone() {
    // --aug-smooth's Score-CAM and AblationCAM: the copies of six originals mixed in the
    // batches give each original what its copies alone give, bit for bit, and each
    // original's block outputs
    let g = gpu();
    let (m, (h, w)) = b0_37x29();
    // 4 copies per submission: an original's copies straddle the batches
    let plan = Plan::new(g, &m, h, w, PlanOptions::forward(4)).unwrap();
    assert_eq!(plan.masked_originals_held(), 6, "six small originals fit");
    let x = detweights::input(h, w);
    let t = plan.run(g, &x, None, Score::Prob).unwrap().argmax;
    let augs = &combicam_gpu::app::augment::RUNS;
    let originals: Vec<Vec<f32>> = augs
        .iter()
        .map(|&a| combicam_gpu::app::augment::input(&x, w, a))
        .collect();
    let all = originals.concat();
    let l = 4;
    let (bh, bw) = plan.sizes[l];
    let c = plan.outs[l].len / (bh * bw);
    let cases = [
        Masks::Cam {
            block: l,
            channels: 1..c.min(8),
            normalise: true,
        },
        Masks::Cam {
            block: l,
            channels: 0..c.min(5),
            normalise: false,
        },
        Masks::Ablation {
            block: l,
            channels: c - 2..c + 1,
        },
    ];
    for masks in &cases {
        plan.set_masked_originals(g, &all).unwrap();
        let mut done = Vec::new();
        let got = plan.run_masked(g, masks, t, &mut |n| done.push(n)).unwrap();
        let got_acts = plan.masked_block_outputs(g, l).unwrap();
        assert_eq!(done.last().copied(), Some(got.len()), "progress to the end");
        let each = got.len() / augs.len();
        assert_eq!(
            got_acts.len(),
            augs.len() * c * bh * bw,
            "every original's block output"
        );
        for (z, x_z) in originals.iter().enumerate() {
            plan.set_masked_originals(g, x_z).unwrap();
            let want = plan.run_masked(g, masks, t, &mut |_| {}).unwrap();
            let acts = plan.masked_block_outputs(g, l).unwrap();
            let kind = match masks {
                Masks::Ablation { .. } => "ablation",
                _ => "score-cam",
            };
            assert_eq!(
                &got[z * each..(z + 1) * each],
                &want[..],
                "{kind}: original {z}'s copies mixed against alone (bit-exact)"
            );
            assert_eq!(
                &got_acts[z * acts.len()..(z + 1) * acts.len()],
                &acts[..],
                "original {z}'s block {l} output"
            );
        }
        println!(
            "{} copies of six originals: bit-exact to each alone",
            got.len()
        );
    }
    // the plan's own image is the only original again after a run
    plan.run(g, &x, Some(t), Score::Prob).unwrap();
    let one = plan.run_masked(g, &cases[0], t, &mut |_| {}).unwrap();
    plan.set_masked_originals(g, &x).unwrap();
    assert_eq!(one, plan.run_masked(g, &cases[0], t, &mut |_| {}).unwrap());
    // more originals than the plan holds, or a partial one: a one-line error
    let seven = [all.as_slice(), x.as_slice()].concat();
    let e = plan
        .set_masked_originals(g, &seven)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("7 originals at once are more than this plan holds (6)"),
        "{e}"
    );
    let e = plan
        .set_masked_originals(g, &x[1..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not whole inputs"), "{e}");
}

#[test]
fn mask_cam_and_ablate_take_the_original_each_copy_names() {
    // two originals (x0 and acts one after another), copies naming either (`copy_value`)
    let g = gpu();
    let (c, bh, bw, h, w) = (5, 3, 2, 11, 7);
    let (hw, len) = (h * w, c * bh * bw);
    let x0 = rand(2 * 3 * hw, 21, -2.0, 2.0);
    let acts = rand(2 * len, 22, -1.0, 3.0);
    let (bx0, bacts, bmm) = (up(&x0), up(&acts), zeros(2 * 2 * c));
    let (logits, probs, scores) = (zeros(4), zeros(4), zeros(8));
    let copies = [(1, 3), (0, 4), (1, 0)];
    let value = |(z, k): (usize, usize)| masked::copy_value(z, k).unwrap();
    // up_minmax over both originals' channels: job[1] = 2·C
    let mut job = vec![0u32, 2 * c as u32, bh as u32, bw as u32];
    job.resize(JOB_HEADER + 3, 0);
    let bjob = g.upload_u32("job", &job).unwrap();
    let batch_in = zeros(3 * hw * copies.len());
    let b = MaskBufs {
        x0: &bx0.buf,
        input: &batch_in.buf,
        job: &bjob.buf,
        acts: &bacts.buf,
        mm: &bmm.buf,
        rank: &bacts.buf,
        other: &bacts.buf,
        logits: &logits.buf,
        probs: &probs.buf,
        scores: &scores.buf,
    };
    g.run_now(&[&masked::up_minmax(g, "up", &b, h, w, 2 * c)])
        .unwrap();
    let mm = cpu::up_minmax(&acts, 2 * c, bh, bw, h, w);
    // lavapipe: bit-exact, as for one original
    check(
        "up_minmax, two originals",
        &read(&bmm),
        &mm,
        &[2 * c, 2],
        Tolerance::new(1e-6, 1e-7),
    );
    job[1] = c as u32;
    for (i, &copy) in copies.iter().enumerate() {
        job[JOB_HEADER + i] = value(copy);
    }
    g.queue
        .write_buffer(&bjob.buf, 0, bytemuck::cast_slice(&job));
    g.run_now_batched(&[&masked::mask_cam(g, "cam", &b, h, w, true)], 3)
        .unwrap();
    let got = read(&batch_in);
    for (n, &(z, k)) in copies.iter().enumerate() {
        let x_z = &x0[z * 3 * hw..(z + 1) * 3 * hw];
        let a_z = &acts[z * len..(z + 1) * len];
        let mm_z = &mm[z * 2 * c..(z + 1) * 2 * c];
        let want = cpu::mask_cam(x_z, a_z, Some(mm_z), k, (bh, bw), (h, w));
        check(
            &format!("mask_cam copy {n}: original {z}, channel {k}"),
            &got[n * 3 * hw..(n + 1) * 3 * hw],
            &want,
            &[3, h, w],
            // as for one original (lavapipe: max|diff| 4.8e-7)
            Tolerance::new(1e-6, 1e-6),
        );
    }
    let ablated = [(1, 2), (0, c), (1, c)];
    for (i, &copy) in ablated.iter().enumerate() {
        job[JOB_HEADER + i] = value(copy);
    }
    g.queue
        .write_buffer(&bjob.buf, 0, bytemuck::cast_slice(&job));
    let out = zeros(3 * len);
    g.run_now_batched(&[&masked::ablate(g, "ablate", &b, &out.buf, len)], 3)
        .unwrap();
    let got = read(&out);
    for (n, &(z, k)) in ablated.iter().enumerate() {
        let want = cpu::ablate(&acts[z * len..(z + 1) * len], c, k);
        let name = format!("ablate copy {n}: original {z}, channel {k}");
        // a copy or a 0: bit-exact
        check(
            &name,
            &got[n * len..(n + 1) * len],
            &want,
            &[c, bh, bw],
            Tolerance::new(0.0, 0.0),
        );
    }
    assert_eq!(masked::copy_value(0, 65_536), None, "past 65,535 channels");
}
