//! Every WGSL kernel against its plain-Rust reference on awkward shapes: odd sizes, channel
//! counts not a multiple of 4, stride 2, k = 3 and 5, sizes not a multiple of the workgroup.

use crate::common::{check, gpu, rand, read, up, zeros};
use combicam_gpu::gpu::{Dispatch, GpuBuf};
use combicam_gpu::model::config::PadRule;
use combicam_gpu::ops::{Act, Tolerance, conv, depthwise, head, reduce, se};
use combicam_gpu::ops::{
    conv::ConvArgs,
    conv::ConvShape,
    depthwise::{DwBackward, DwForward, DwShape, SeIn},
    gemm::GemmWeights,
    head::{Chunk, LinearArgs, LinearBackwardArgs},
    reduce::PoolBackward,
    reduce::{Reduce, RowsArgs},
    se::{SeBackward, SeForward, SeWeights},
    se::{SeBuffers, SeShape},
};

pub(crate) fn tol_for(want: &[f32]) -> Tolerance {
    Tolerance::KERNEL.scaled(want)
}

fn pad_rule(tf_same: bool) -> PadRule {
    if tf_same {
        PadRule::TfSame
    } else {
        PadRule::Symmetric
    }
}

/// The activation a case runs with: both families' in turn (inputs span ReLU6's clip at 6).
pub(crate) fn act_of(i: usize) -> Act {
    if i.is_multiple_of(2) {
        Act::Silu
    } else {
        Act::Relu6
    }
}

#[test]
fn stem_conv_matches_reference() {
    let g = gpu();
    // tf: TF "SAME" padding, asymmetric where the total is odd (30 rows, k3 s2: 0 above, 1 below)
    for (i, &(cin, h, w, cout, k, s, tf)) in [
        (3, 17, 23, 5, 3, 2, false),
        (3, 9, 8, 7, 3, 1, false),
        (2, 11, 13, 3, 5, 2, false),
        (3, 30, 41, 13, 3, 2, false),
        (3, 30, 41, 13, 3, 2, true),
        (2, 14, 13, 3, 5, 2, true),
    ]
    .iter()
    .enumerate()
    {
        let sh = ConvShape::new((cin, h, w), cout, k, s, pad_rule(tf));
        let (oh, ow) = sh.out();
        let act = act_of(i);
        let x = rand(cin * h * w, 10 + i as u64, -2.0, 2.0);
        let wt = rand(cout * cin * k * k, 20 + i as u64, -1.0, 1.0);
        let b = rand(cout, 30 + i as u64, -1.0, 1.0);
        let wb = conv::upload_weights(g, "test.conv.w", (cout, cin, k), &wt).unwrap();
        let (xb, bb, yb) = (up(&x), up(&b), zeros(cout * oh * ow));
        g.run_now(&[&conv::conv(
            g,
            "test.conv",
            &ConvArgs {
                s: sh,
                act: Some(act),
                x: &xb.buf,
                wt: &wb,
                bias: &bb.buf,
                y: &yb.buf,
            },
        )])
        .unwrap();
        let want = conv::cpu::conv(sh, Some(act), &x, &wt, &b);
        check(
            &format!("conv{k}s{s}{}.{act:?}", if tf { "tf" } else { "" }),
            &read(&yb),
            &want,
            &[cout, oh, ow],
            tol_for(&want),
        );
    }
}

#[test]
fn depthwise_forward_and_backward_match_reference() {
    let g = gpu();
    // the last four: TF "SAME" padding, one more zero row/column after the image than before
    // where the total is odd (14 rows k5 s2: 1 above, 2 below; 8 rows k3 s2: 0 above, 1 below)
    let cases = [
        (7, 13, 9, 3, 1, true, true, false),
        (5, 15, 11, 5, 2, true, false, false),
        (3, 8, 10, 3, 2, false, false, false),
        (6, 7, 7, 5, 1, false, true, false),
        (9, 30, 41, 3, 2, true, false, false),
        (5, 14, 10, 5, 2, true, false, true),
        (7, 13, 9, 3, 1, true, true, true),
        (4, 21, 16, 5, 2, true, false, true),
        (3, 8, 10, 3, 2, false, false, true),
        // pad_l 1 at stride 2: the backward's strips start a column left of the image, and
        // 16 + 1 columns need a third strip
        (4, 9, 16, 3, 2, true, true, false),
        // output rows past two bands of 16 (the CPU-shaped kernels' band) and of 8
        (3, 37, 12, 5, 1, true, false, false),
        (4, 41, 9, 3, 2, false, true, true),
    ];
    for (i, &(c, h, w, k, s, in_act, res, tf)) in cases.iter().enumerate() {
        let act = act_of(i);
        let sh = DwShape::new(c, h, w, k, s, pad_rule(tf));
        let s_tf = if tf { "tf" } else { "" };
        let (oh, ow) = sh.out();
        let seed = 50 + 10 * i as u64;
        let x = rand(c * h * w, seed, -8.0, 8.0);
        let wt = rand(c * k * k, seed + 1, -1.0, 1.0);
        let b = rand(c, seed + 2, -1.0, 1.0);
        let dy = rand(c * oh * ow, seed + 3, -1.0, 1.0);
        let r = rand(c * h * w, seed + 4, -1.0, 1.0);
        let (xb, bb, yb) = (up(&x), up(&b), zeros(c * oh * ow));
        let wb = depthwise::upload_weights(g, "test.dw.w", (c, k), &wt).unwrap();
        let parts = depthwise::pool_parts(g, &sh);
        let pb = zeros(c * parts);
        g.run_now(&[&depthwise::forward(
            g,
            "test.dw",
            &DwForward {
                s: sh,
                act,
                in_act,
                x: &xb.buf,
                wt: &wb,
                bias: &bb.buf,
                out: &yb.buf,
                pool: Some(&pb.buf),
            },
        )])
        .unwrap();
        let want = depthwise::cpu::forward(sh, in_act.then_some(act), &x, &wt, &b);
        check(
            &format!("dw{k}s{s}{s_tf}.{act:?}.fwd"),
            &read(&yb),
            &want,
            &[c, oh, ow],
            tol_for(&want),
        );
        // the SE pool's partial sums: per channel they add up to Σ act(out)
        let got: Vec<f32> = read(&pb).chunks(parts).map(|p| p.iter().sum()).collect();
        let pool: Vec<f32> = want
            .chunks(oh * ow)
            .map(|p| p.iter().map(|&v| act.apply(v)).sum())
            .collect();
        check(
            &format!("dw{k}s{s}{s_tf}.{act:?}.pool"),
            &got,
            &pool,
            &[c],
            tol_for(&pool),
        );

        let (dyb, rb, dxb) = (up(&dy), up(&r), zeros(c * h * w));
        let d = depthwise::backward(
            g,
            "test.dw.bwd",
            &DwBackward {
                s: sh,
                act,
                dy: &dyb.buf,
                wt: &wb,
                zin: in_act.then_some(&xb.buf),
                res: res.then_some(&rb.buf),
                se_in: None,
                dx: &dxb.buf,
            },
        );
        g.run_now(&[&d]).unwrap();
        let want = depthwise::cpu::backward(
            sh,
            &dy,
            &wt,
            in_act.then_some((act, &x[..])),
            res.then_some(&r[..]),
        );
        check(
            &format!("dw{k}s{s}{s_tf}.{act:?}.bwd"),
            &read(&dxb),
            &want,
            &[c, h, w],
            tol_for(&want),
        );
        se_in_backward(&sh, act, seed, (&dy, &wt));
    }
}

/// The depthwise backward reading dy through the squeeze-excite's backward (SE_IN) against
/// the reference applied as two passes: `se::cpu::apply_backward`, then the depthwise
/// backward. SiLU with a random scale and pooled gradient; ReLU6 with ones and zeros, as a
/// block without SE (Lite) runs it, its pre-activations straddling both kinks.
fn se_in_backward(sh: &DwShape, act: Act, seed: u64, (dy, wt): (&[f32], &[f32])) {
    let g = gpu();
    let (c, (oh, ow)) = (sh.c, sh.out());
    // dm of the order of HW, so that dm/HW weighs like dy
    let hw = (oh * ow) as f32;
    let (s, dm) = match act {
        Act::Silu => (rand(c, seed + 5, 0.0, 1.0), rand(c, seed + 6, -hw, hw)),
        _ => (vec![1.0; c], vec![0.0; c]),
    };
    let zd = rand(c * oh * ow, seed + 7, -8.0, 8.0);
    let (sb, dmb, zdb) = (up(&s), up(&dm), up(&zd));
    let (dyb, dxb) = (up(dy), zeros(c * sh.h * sh.w));
    let wb = depthwise::upload_weights(g, "test.dw.w", (c, sh.k), wt).unwrap();
    let d = depthwise::backward(
        g,
        "test.dw.bwd.se_in",
        &DwBackward {
            s: *sh,
            act,
            dy: &dyb.buf,
            wt: &wb,
            zin: None,
            res: None,
            se_in: Some(SeIn {
                s: &sb.buf,
                dm: &dmb.buf,
                zd: &zdb.buf,
            }),
            dx: &dxb.buf,
        },
    );
    g.run_now(&[&d]).unwrap();
    let se = SeShape {
        cmid: c,
        cse: 1,
        hw: oh * ow,
    };
    let dy2 = se::cpu::apply_backward(act, se, &s, &dm, dy, &zd);
    let want = depthwise::cpu::backward(*sh, &dy2, wt, None, None);
    check(
        &format!(
            "dw{}s{}p{}{}.{act:?}.bwd.se_in",
            sh.k, sh.stride, sh.pad_t, sh.pad_l
        ),
        &read(&dxb),
        &want,
        &[c, sh.h, sh.w],
        tol_for(&want),
    );
}

#[test]
fn reductions_match_reference() {
    let g = gpu();
    let (rows, len) = (5, 301);
    let x = rand(rows * len, 7, -3.0, 3.0);
    let y = rand(rows * len, 8, -3.0, 3.0);
    let (xb, _yb) = (up(&x), up(&y));
    // rows around the 8 rows a workgroup takes; a row shorter than its 8 lanes
    for &(rows, len) in &[(5, 301), (13, 3), (19, 1000)] {
        let x = rand(rows * len, 7, -8.0, 8.0);
        let y = rand(rows * len, 8, -8.0, 8.0);
        let (xb, yb) = (up(&x), up(&y));
        for mode in [
            Reduce::Mean,
            Reduce::MeanAct(Act::Silu),
            Reduce::MeanAct(Act::Relu6),
            Reduce::DotAct(Act::Silu),
            Reduce::DotAct(Act::Relu6),
            Reduce::MaxAbs,
            Reduce::Max,
        ] {
            let out = zeros(rows + 3);
            let d = reduce::rows(
                g,
                "test.reduce",
                mode,
                &RowsArgs {
                    rows,
                    len,
                    in_off: 0,
                    out_off: 3,
                    x: &xb.buf,
                    y: matches!(mode, Reduce::DotAct(_)).then_some(&yb.buf),
                    out: &out.buf,
                },
            );
            g.run_now(&[&d]).unwrap();
            let want = reduce::cpu::rows(mode, &x, Some(&y), rows, len);
            check(
                &format!("reduce.{mode:?}.{rows}x{len}"),
                &read(&out)[3..],
                &want,
                &[rows],
                tol_for(&want),
            );
        }
    }
    // rows longer than 8 lanes × 65,535 turns (lavapipe ends an invocation's loops after
    // 65,535 turns in all): a block's whole gradient, C·h·w, for the official LayerCAM's max.
    // The largest element sits near each row's end, where a cut-short loop never gets
    for mode in [Reduce::Max, Reduce::MaxAbs, Reduce::Mean] {
        let (rows, len) = (2, 1_200_007);
        let mut x = rand(rows * len, 11, -1.0, 1.0);
        for r in 0..rows {
            x[r * len + len - 5] = if mode == Reduce::MaxAbs { -50.0 } else { 50.0 };
        }
        let (xb, out) = (up(&x), zeros(rows));
        let d = reduce::rows(
            g,
            "test.reduce.long",
            mode,
            &RowsArgs {
                rows,
                len,
                in_off: 0,
                out_off: 0,
                x: &xb.buf,
                y: None,
                out: &out.buf,
            },
        );
        g.run_now(&[&d]).unwrap();
        let want = reduce::cpu::rows(mode, &x, None, rows, len);
        // the mean of 1.2 million terms in eight lanes against one running sum: measured on
        // lavapipe, 2026-12-03, 2.2e-8 off a mean of 5e-4 (22% of this); the maxima exact.
        // Before the four-a-turn loop the max came out 1.0 instead of 50: the loop stopped
        // at 524,280 elements
        check(
            &format!("reduce.{mode:?}.{rows}x{len}"),
            &read(&out),
            &want,
            &[rows],
            Tolerance::new(1e-4, 5e-8),
        );
    }
    // in_off: one row taken from the middle
    let out = zeros(1);
    g.run_now(&[&reduce::rows(
        g,
        "test.reduce.off",
        Reduce::Max,
        &RowsArgs {
            rows: 1,
            len: 17,
            in_off: 40,
            out_off: 0,
            x: &xb.buf,
            y: None,
            out: &out.buf,
        },
    )])
    .unwrap();
    let want = reduce::cpu::rows(Reduce::Max, &x[40..57], None, 1, 17);
    check("reduce.offset", &read(&out), &want, &[1], Tolerance::KERNEL);
    let gsum = rand(rows, 9, -1.0, 1.0);
    let wide = rand(rows * len, 10, -8.0, 8.0);
    let wb = up(&wide);
    for act in [Act::Silu, Act::Relu6] {
        let (gb, ob) = (up(&gsum), zeros(rows * len));
        g.run_now(&[&reduce::pool_backward(
            g,
            "test.pool.bwd",
            &PoolBackward {
                act,
                rows,
                len,
                z: &wb.buf,
                g: &gb.buf,
                out: &ob.buf,
            },
        )])
        .unwrap();
        let want = reduce::cpu::pool_backward(act, &wide, &gsum, rows, len);
        check(
            &format!("pool.bwd.{act:?}"),
            &read(&ob),
            &want,
            &[rows, len],
            tol_for(&want),
        );
    }
}

#[test]
fn squeeze_excite_matches_reference() {
    let g = gpu();
    // partial sums per channel: fewer than, not a multiple of, and more than the eight
    // interleaved sums the squeeze keeps; past 64, several lanes a channel (with 256
    // invocations: 8 at 21 channels, 2 at 70, 4 at 40 channels of 500, 1 at 1,100 channels of
    // 70; with 1,024, as on GPUs: 32, 8, 16 and 1), with counts not a multiple of the
    // channels a turn; C_mid past the dot products' eight terms a turn on 32 lanes (300) and
    // past a workgroup of 1,024 (1,100), C_SE past one turn of rows (40: 32 rows a turn with
    // 1,024 invocations, 8 with 256) and of eight terms (13, 9)
    for (i, &(cmid, cse, hw, parts)) in [
        (30, 3, 17, 13),
        (300, 13, 5, 1),
        (7, 1, 1, 70),
        (21, 9, 3, 1500),
        (70, 9, 3, 1100),
        (40, 5, 2, 500),
        (1100, 40, 2, 70),
    ]
    .iter()
    .enumerate()
    {
        let seed = 500 + 10 * i as u64;
        let w_r = rand(cse * cmid, seed, -0.5, 0.5);
        let b_r = rand(cse, seed + 1, -0.5, 0.5);
        let w_x = rand(cmid * cse, seed + 2, -0.5, 0.5);
        let b_x = rand(cmid, seed + 3, -0.5, 0.5);
        let part = rand(cmid * parts, seed + 4, -1.0, 1.0);
        // the backward's ds, as partial sums (the projection GEMM's `Dot`)
        let ds_part = rand(cmid * parts, seed + 5, -1.0, 1.0);
        let sh = SeShape { cmid, cse, hw };
        let bufs = [&part, &ds_part].map(|v| up(v));
        let ws = [&w_r[..], &b_r, &w_x, &b_x];
        let seb = SeBuffers::upload(g, "test.se", (cmid, cse), ws).unwrap();
        let w = seb.weights();
        // m and dm hold C_mid rounded up to 4 (se.wgsl reads them in vec4s)
        let c4 = se::vec_len(cmid);
        let (mb, rb, sb, dmb, dsb) = (zeros(c4), zeros(cse), zeros(cmid), zeros(c4), zeros(cmid));
        let fwd = [&bufs[0], &mb, &rb, &sb];
        let ds = se_passes(&w, (sh, parts), fwd, Some([&bufs[1], &dsb, &dmb]));
        g.run_now(&ds.iter().collect::<Vec<_>>()).unwrap();
        let m = se::cpu::squeeze(&part, parts, hw);
        check(
            &format!("se.m ({parts} parts)"),
            &read(&mb)[..cmid],
            &m,
            &[cmid],
            tol_for(&m),
        );
        let lanes = se::dot_order(g);
        let (r, s) = se::cpu::forward((sh, lanes), &w_r, &b_r, &w_x, &b_x, &m);
        check("se.r", &read(&rb), &r, &[cse], tol_for(&r));
        check("se.s", &read(&sb), &s, &[cmid], tol_for(&s));
        let ds: Vec<f32> = ds_part.chunks(parts).map(|c| c.iter().sum()).collect();
        check("se.ds", &read(&dsb), &ds, &[cmid], tol_for(&ds));
        // dm from the kernel's own r, s and ds (each checked above), so that the check sees
        // the dot products alone: a long one of terms of both signs (C_mid = 1,100) turns
        // the last-bit differences of its inputs into larger ones, more so the fewer lanes
        // add it
        let (r, s, ds) = (read(&rb), read(&sb), read(&dsb));
        let dm = se::cpu::backward((sh, lanes), &w_r, &w_x, &r, &s, &ds);
        check("se.dm", &read(&dmb)[..cmid], &dm, &[cmid], tol_for(&dm));
    }
}

/// The SE's forward from the partial sums `fwd[0]` to m, r and s (`fwd[1..]`), then with
/// `bwd` its backward from the partial sums `bwd[0]` to ds and dm, as the plan records them.
pub(crate) fn se_passes(
    w: &SeWeights,
    (sh, parts): (SeShape, usize),
    [part, m, r, s]: [&GpuBuf; 4],
    bwd: Option<[&GpuBuf; 3]>,
) -> Vec<Dispatch> {
    let g = gpu();
    let (r, s) = (&r.buf, &s.buf);
    let f = SeForward {
        sh,
        w,
        part: &part.buf,
        parts,
        m: &m.buf,
        r,
        s,
    };
    let mut ds = vec![se::forward(g, "test.se", &f)];
    if let Some([part, dsb, dm]) = bwd {
        let b = SeBackward {
            sh,
            w,
            r,
            s,
            part: &part.buf,
            parts,
            ds: &dsb.buf,
            dm: &dm.buf,
        };
        ds.push(se::backward(g, "test.se.bwd", &b));
    }
    ds
}

/// The classifier's rows (N, k) as the head holds them: one weight texture per chunk of rows.
fn upload_chunks(w: &[f32], chunks: &[(usize, usize)], k: usize) -> Vec<GemmWeights> {
    chunks
        .iter()
        .map(|&(r0, rows)| {
            GemmWeights::upload(gpu(), "test.fc", &w[r0 * k..(r0 + rows) * k], rows, k).unwrap()
        })
        .collect()
}

/// The classifier as the head records it: one `head::linear` per chunk of rows (`wbufs[c]`
/// holds rows `chunks[c]`), from features f to logits.
pub(crate) fn linear_chunks(
    wbufs: &[GemmWeights],
    chunks: &[(usize, usize)],
    (n, k): (usize, usize),
    (f, bias, logits): (&GpuBuf, &GpuBuf, &GpuBuf),
) -> Vec<Dispatch> {
    let g = gpu();
    (wbufs.iter().zip(chunks))
        .map(|(w, &(row0, rows))| {
            let chunk = Chunk { w, row0, rows, k };
            let (f, bias, logits) = (&f.buf, &bias.buf, &logits.buf);
            head::linear(
                g,
                "test.linear",
                &LinearArgs {
                    chunk,
                    n,
                    f,
                    bias,
                    logits,
                },
            )
        })
        .collect()
}

/// The classifier over rows longer than the GPU kernel's 32 lanes take in one turn (1,030
/// features: 258 texels, the last half past K), in two chunks of rows not a multiple of 8
#[test]
fn head_linear_matches_reference_over_long_rows() {
    let g = gpu();
    let (n, k) = (301, 1030);
    let w = rand(n * k, 910, -1.0, 1.0);
    let f = rand(k, 911, 0.0, 1.0);
    let b = rand(n, 912, -0.5, 0.5);
    let chunks = [(0usize, 203usize), (203, 98)];
    let (fb, bb, lb) = (up(&f), up(&b), zeros(n));
    let wbufs = upload_chunks(&w, &chunks, k);
    let ds = linear_chunks(&wbufs, &chunks, (n, k), (&fb, &bb, &lb));
    g.run_now(&ds.iter().collect::<Vec<_>>()).unwrap();
    let logits = head::cpu::linear(&w, &f, &b, n, k);
    check(
        "linear (K 1,030)",
        &read(&lb),
        &logits,
        &[n],
        tol_for(&logits),
    );
}

#[test]
fn head_matches_reference_across_chunks() {
    let g = gpu();
    let (n, k) = (1000, 37);
    let w = rand(n * k, 900, -1.0, 1.0);
    let f = rand(k, 901, 0.0, 1.0);
    let b = rand(n, 902, -0.5, 0.5);
    // three chunks of rows, as a small texture limit would force; 1000 rows is not a
    // multiple of the 8 rows an invocation takes
    let chunks = [(0usize, 512usize), (512, 256), (768, 232)];
    let (fb, bb, lb, pb, ib, gb) = (up(&f), up(&b), zeros(n), zeros(n), zeros(4), zeros(n));
    let wbufs = upload_chunks(&w, &chunks, k);
    let nsegs: usize = chunks.iter().map(|c| c.1.div_ceil(head::SEG_ROWS)).sum();
    let (partb, dfb) = (zeros(nsegs * k), zeros(k));
    let mut ds = linear_chunks(&wbufs, &chunks, (n, k), (&fb, &bb, &lb));
    ds.push(head::softmax(
        g,
        "test.softmax",
        n,
        &lb.buf,
        &pb.buf,
        &ib.buf,
    ));
    ds.push(head::dlogits(
        g,
        "test.dlogits",
        &head::DlogitsArgs {
            n,
            logits: &lb.buf,
            probs: &pb.buf,
            info: &ib.buf,
            region: None,
            g: &gb.buf,
        },
    ));
    let mut seg0 = 0;
    for (c, &(r0, rows)) in chunks.iter().enumerate() {
        ds.push(head::linear_backward(
            g,
            "test.linear.bwd",
            &LinearBackwardArgs {
                chunk: Chunk {
                    w: &wbufs[c],
                    row0: r0,
                    rows,
                    k,
                },
                seg0,
                nsegs,
                n,
                g: &gb.buf,
                partial: &partb.buf,
            },
        ));
        seg0 += rows.div_ceil(head::SEG_ROWS);
    }
    ds.push(head::sum_partials(
        g, "test.sum", k, nsegs, &partb.buf, &dfb.buf,
    ));
    g.queue
        .write_buffer(&ib.buf, 0, bytemuck::cast_slice(&[u32::MAX, 0, 0, 0]));
    g.run_now(&ds.iter().collect::<Vec<_>>()).unwrap();
    let logits = head::cpu::linear(&w, &f, &b, n, k);
    check("linear", &read(&lb), &logits, &[n], tol_for(&logits));
    let (probs, arg) = head::cpu::softmax(&logits);
    check("softmax", &read(&pb), &probs, &[n], tol_for(&probs));
    let info: Vec<u32> = read(&ib).iter().map(|v| v.to_bits()).collect();
    assert_eq!(
        (info[2] as usize, info[3] as usize),
        (arg, arg),
        "target and argmax"
    );
    let gr = head::cpu::dlogits(&probs, arg, false);
    check("dlogits", &read(&gb), &gr, &[n], tol_for(&gr));
    let df = head::cpu::linear_backward(&w, &gr, n, k);
    check("linear.bwd", &read(&dfb), &df, &[k], tol_for(&df));

    // an explicit target, and the logit score
    g.queue
        .write_buffer(&ib.buf, 0, bytemuck::cast_slice(&[17u32, 1, 0, 0]));
    g.run_now(&ds.iter().collect::<Vec<_>>()).unwrap();
    let info: Vec<u32> = read(&ib).iter().map(|v| v.to_bits()).collect();
    assert_eq!(info[2], 17);
    let gr = head::cpu::dlogits(&probs, 17, true);
    check("dlogits.logit", &read(&gb), &gr, &[n], Tolerance::KERNEL);
}

/// `n` cell centres over the globe (latitude, longitude in radians, as the head holds them)
/// from `seed`, and which lie within `km` of cell `target`'s: more than 5, fewer than half.
pub(crate) fn region_cells(n: usize, seed: u64, target: usize, km: f32) -> (Vec<f32>, Vec<bool>) {
    let deg =
        |s: u64, r: f32| -> Vec<f64> { rand(n, s, -r, r).iter().map(|&v| v as f64).collect() };
    let (lat, lon) = (deg(seed, 80.0), deg(seed + 1, 180.0));
    let inside: Vec<bool> = (0..n)
        .map(|i| {
            combicam_gpu::model::geo::haversine_km(lat[target], lon[target], lat[i], lon[i])
                <= km as f64
        })
        .collect();
    let count = inside.iter().filter(|&&b| b).count();
    assert!(count > 5 && count < n / 2, "{count} cells inside");
    let cells = (lat.iter().zip(&lon))
        .flat_map(|(a, o)| [a.to_radians() as f32, o.to_radians() as f32])
        .collect();
    (cells, inside)
}

#[test]
fn region_score_gradient_matches_reference() {
    // 1000 cells spread over the globe, probabilities summing to 1, target 17, radius 3000 km
    let g = gpu();
    let n = 1000;
    let raw = rand(n, 3002, 0.0, 1.0);
    let total: f32 = raw.iter().sum();
    let probs: Vec<f32> = raw.iter().map(|v| v / total).collect();
    let (target, km) = (17usize, 3000f32);
    let (cells, inside) = region_cells(n, 3000, target, km);
    let info = [
        u32::MAX,
        2,
        target as u32,
        target as u32,
        km.to_bits(),
        0,
        0,
        0,
    ];
    let (pb, cb, mass, gb) = (up(&probs), up(&cells), zeros(1), zeros(n));
    let lb = zeros(n);
    let ib = g.upload_u32("info", &info).unwrap();
    let r = head::Region {
        cells: &cb.buf,
        mass: &mass.buf,
    };
    g.run_now(&[
        &head::region_mass(g, "test.region", n, &pb.buf, &ib.buf, &r),
        &head::dlogits(
            g,
            "test.dlogits.region",
            &head::DlogitsArgs {
                n,
                logits: &lb.buf,
                probs: &pb.buf,
                info: &ib.buf,
                region: Some(&r),
                g: &gb.buf,
            },
        ),
    ])
    .unwrap();
    let want_mass: f32 = probs
        .iter()
        .zip(&inside)
        .filter(|p| *p.1)
        .map(|p| p.0)
        .sum();
    check(
        "region.mass",
        &read(&mass),
        &[want_mass],
        &[1],
        tol_for(&[want_mass]),
    );
    let want = head::cpu::dlogits_region(&probs, &inside);
    check("region.dlogits", &read(&gb), &want, &[n], tol_for(&want));
}

#[test]
fn finer_score_gradient_matches_reference() {
    // FinerCAM's score: the comparison classes picked on the GPU and ∂F/∂logits, against the
    // f64 reference, for several class counts and comparison counts (n not a multiple of the
    // 256 invocations; the target neither first nor last)
    let g = gpu();
    for (case, &(n, target, k)) in [(1001usize, 17usize, 3u32), (4099, 4098, 1), (300, 0, 7)]
        .iter()
        .enumerate()
    {
        let logits = rand(n, 3100 + case as u64, -4.0, 4.0);
        let (probs, _) = head::cpu::softmax(&logits);
        let mut info = [0u32; head::INFO_WORDS];
        (info[1], info[2], info[4], info[7]) = (3, target as u32, k, k);
        let (lb, pb, gb) = (up(&logits), up(&probs), zeros(n));
        let ib = g.upload_u32("info", &info).unwrap();
        let args = head::DlogitsArgs {
            n,
            logits: &lb.buf,
            probs: &pb.buf,
            info: &ib.buf,
            region: None,
            g: &gb.buf,
        };
        g.run_now(&[
            &head::finer_pick(g, "test.finer", n, &lb.buf, &pb.buf, &ib.buf),
            &head::dlogits(g, "test.dlogits.finer", &args),
        ])
        .unwrap();
        // info is u32: its words come back as f32 bit patterns
        let picked: Vec<u32> = read(&ib)[8..8 + k as usize]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let want: Vec<u32> = head::cpu::finer_classes(&logits, target, k as usize)
            .iter()
            .map(|&j| j as u32)
            .collect();
        assert_eq!(picked, want, "case {case}: comparison classes");
        let want = head::cpu::dlogits_finer(&logits, &probs, target, k as usize);
        // measured: 6e-8 of the largest |∂F/∂y| at worst (f32 sums against f64)
        check("finer.dlogits", &read(&gb), &want, &[n], tol_for(&want));
    }
}
