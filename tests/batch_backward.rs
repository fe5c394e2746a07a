//! The backward kernels over a batch of images (workgroup z = the image, the images one after
//! another in each buffer), as `batch` checks the forward's: every image of the batch against
//! the CPU reference run on that image alone, on awkward shapes. The depthwise data gradient
//! (through the SE and the activation, with the residual), the SE's backward, the head pool's
//! gradient, the score's gradient (probability, and region mass per image) and the classifier's
//! data gradient over three chunks of rows.

use crate::batch::{B, images, per_image, slice, tol};
use crate::common::{check, gpu, rand, read, up, zeros};
use combicam_gpu::model::config::PadRule;
use combicam_gpu::ops::head::{Chunk, DlogitsArgs, LinearBackwardArgs};
use combicam_gpu::ops::{Act, depthwise, head, reduce, se};
use combicam_gpu::ops::{
    depthwise::{DwBackward, DwShape, SeIn},
    gemm::GemmWeights,
    reduce::PoolBackward,
    se::{SeBuffers, SeShape},
};

/// `n` values an image, each image's padded with zeros to `stride` (the SE's dm: C rounded up
/// to 4 an image), and the unpadded values.
fn padded(n: usize, stride: usize, seed: u64, (lo, hi): (f32, f32)) -> (Vec<f32>, Vec<f32>) {
    let v = images(n, seed, lo, hi);
    let mut p = vec![0f32; B * stride];
    for i in 0..B {
        p[i * stride..i * stride + n].copy_from_slice(slice(&v, n, i));
    }
    (p, v)
}

#[test]
fn batched_depthwise_backward_matches_reference_per_image() {
    let g = gpu();
    // odd sizes, C not a multiple of 4; stride 1 with the expand's activation and the residual,
    // stride 2 with TF's asymmetric SAME padding and neither
    for (i, &(c, h, w, k, s, rule, act, with_zin)) in [
        (7, 13, 9, 3, 1, PadRule::Symmetric, Act::Silu, true),
        (6, 21, 16, 5, 2, PadRule::TfSame, Act::Relu6, false),
    ]
    .iter()
    .enumerate()
    {
        let seed = 1200 + 100 * i as u64;
        let sh = DwShape::new(c, h, w, k, s, rule);
        let (oh, ow) = sh.out();
        let (nx, ny) = (c * h * w, c * oh * ow);
        let dy = images(ny, seed, -1.0, 1.0);
        let wt = rand(c * k * k, seed + 1, -1.0, 1.0);
        let z = images(nx, seed + 2, -6.0, 6.0);
        let r = images(nx, seed + 3, -1.0, 1.0);
        let sc = images(c, seed + 4, 0.0, 1.0);
        // dm of the order of HW, so that dm/HW weighs like dy
        let hw = (oh * ow) as f32;
        let (dm_b, dm) = padded(c, se::vec_len(c), seed + 5, (-hw, hw));
        let zd = images(ny, seed + 6, -8.0, 8.0);
        let (dyb, zb, rb) = (up(&dy), up(&z), up(&r));
        let wb = depthwise::upload_weights(g, "test.dw.w", (c, k), &wt).unwrap();
        let (sb, dmb, zdb, dxb) = (up(&sc), up(&dm_b), up(&zd), zeros(B * nx));
        let d = depthwise::backward(
            g,
            "test.dw.bwd",
            &DwBackward {
                s: sh,
                act,
                dy: &dyb.buf,
                wt: &wb,
                zin: with_zin.then_some(&zb.buf),
                res: with_zin.then_some(&rb.buf),
                se_in: Some(SeIn {
                    s: &sb.buf,
                    dm: &dmb.buf,
                    zd: &zdb.buf,
                }),
                dx: &dxb.buf,
            },
        );
        let se_sh = SeShape {
            cmid: c,
            cse: 1,
            hw: oh * ow,
        };
        let want = |i: usize| {
            let (dy_i, zd_i) = (slice(&dy, ny, i), slice(&zd, ny, i));
            let dy2 =
                se::cpu::apply_backward(act, se_sh, slice(&sc, c, i), slice(&dm, c, i), dy_i, zd_i);
            let zin = with_zin.then(|| (act, slice(&z, nx, i)));
            let res = with_zin.then(|| slice(&r, nx, i));
            depthwise::cpu::backward(sh, &dy2, &wt, zin, res)
        };
        let name = format!("dw{k}s{s}.bwd");
        per_image(&name, &[&d], &dxb, (0, nx, nx), &[c, h, w], &want);
    }
}

#[test]
fn batched_squeeze_excite_backward_matches_reference_per_image() {
    let g = gpu();
    // few partial sums a channel, and many (several lanes a channel); C_mid past the dot
    // products' eight terms a turn
    for (i, &(cmid, cse, hw, parts)) in [(30, 3, 17, 13), (70, 9, 3, 1100)].iter().enumerate() {
        let seed = 1500 + 10 * i as u64;
        let ws = [cse * cmid, cse, cmid * cse, cmid]
            .iter()
            .enumerate()
            .map(|(j, &n)| rand(n, seed + j as u64, -0.5, 0.5))
            .collect::<Vec<_>>();
        let part = images(cmid * parts, seed + 4, -1.0, 1.0);
        let ds_part = images(cmid * parts, seed + 5, -1.0, 1.0);
        let sh = SeShape { cmid, cse, hw };
        let bufs = SeBuffers::upload(
            g,
            "test.se",
            (cmid, cse),
            [&ws[0][..], &ws[1][..], &ws[2][..], &ws[3][..]],
        );
        let w = bufs.unwrap();
        let w = w.weights();
        let c4 = se::vec_len(cmid);
        let (pb, dpb) = (up(&part), up(&ds_part));
        let (mb, rb, sb) = (zeros(B * c4), zeros(B * cse), zeros(B * cmid));
        let (dsb, dmb) = (zeros(B * cmid), zeros(B * c4));
        let fwd = [&pb, &mb, &rb, &sb];
        let ds = crate::ops::se_passes(&w, (sh, parts), fwd, Some([&dpb, &dsb, &dmb]));
        let ds_of = |i: usize| -> Vec<f32> {
            let p = slice(&ds_part, cmid * parts, i);
            p.chunks(parts).map(|c| c.iter().sum()).collect()
        };
        per_image(
            "se.ds",
            &[&ds[0], &ds[1]],
            &dsb,
            (0, cmid, cmid),
            &[cmid],
            &ds_of,
        );
        // dm from the kernel's own r, s and ds of the image (as `ops::squeeze_excite_...`)
        let (r, s, ds, dm) = (read(&rb), read(&sb), read(&dsb), read(&dmb));
        let lanes = se::dot_order(g);
        for i in 0..B {
            let (r_i, s_i) = (slice(&r, cse, i), slice(&s, cmid, i));
            let want =
                se::cpu::backward((sh, lanes), &ws[0], &ws[2], r_i, s_i, slice(&ds, cmid, i));
            let got = &dm[i * c4..i * c4 + cmid];
            check(&format!("se.dm image {i}"), got, &want, &[cmid], tol(&want));
        }
    }
}

#[test]
fn batched_head_backward_matches_reference_per_image() {
    let g = gpu();
    let (n, k, len) = (1000, 37, 13);
    let act = Act::Silu;
    // each image's probabilities (a softmax of its own logits), target 17 for all
    let logits = images(n, 1600, -3.0, 3.0);
    let probs: Vec<f32> = (0..B)
        .flat_map(|i| head::cpu::softmax(slice(&logits, n, i)).0)
        .collect();
    let w = rand(n * k, 1601, -1.0, 1.0);
    let chunks = [(0usize, 512usize), (512, 256), (768, 232)];
    let nsegs: usize = chunks.iter().map(|c| c.1.div_ceil(head::SEG_ROWS)).sum();
    let wbufs: Vec<_> = chunks
        .iter()
        .map(|&(r0, rows)| {
            GemmWeights::upload(g, "test.fc", &w[r0 * k..(r0 + rows) * k], rows, k).unwrap()
        })
        .collect();
    let (lb, pb, gb) = (up(&logits), up(&probs), zeros(B * n));
    let (partb, dfb) = (zeros(B * nsegs * k), zeros(B * k));
    let ib = g.upload_u32("info", &[17, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut ds = vec![head::dlogits(
        g,
        "test.dlogits",
        &DlogitsArgs {
            n,
            logits: &lb.buf,
            probs: &pb.buf,
            info: &ib.buf,
            region: None,
            g: &gb.buf,
        },
    )];
    let mut seg0 = 0;
    for (wb, &(row0, rows)) in wbufs.iter().zip(&chunks) {
        let chunk = Chunk {
            w: wb,
            row0,
            rows,
            k,
        };
        let (g_, partial) = (&gb.buf, &partb.buf);
        let a = LinearBackwardArgs {
            chunk,
            seg0,
            nsegs,
            n,
            g: g_,
            partial,
        };
        ds.push(head::linear_backward(g, "test.linear.bwd", &a));
        seg0 += rows.div_ceil(head::SEG_ROWS);
    }
    ds.push(head::sum_partials(
        g, "test.sum", k, nsegs, &partb.buf, &dfb.buf,
    ));
    // image 0's target (the softmax sets info[2] from it; here it is given)
    g.queue
        .write_buffer(&ib.buf, 0, bytemuck::cast_slice(&[17u32, 0, 17, 0]));
    let dlog = |i: usize| head::cpu::dlogits(slice(&probs, n, i), 17, false);
    let refs: Vec<_> = ds.iter().collect();
    per_image("dlogits", &refs, &gb, (0, n, n), &[n], &dlog);
    let df = read(&dfb);
    for i in 0..B {
        let want = head::cpu::linear_backward(&w, &dlog(i), n, k);
        check(
            &format!("linear.bwd image {i}"),
            slice(&df, k, i),
            &want,
            &[k],
            tol(&want),
        );
    }
    // the head pool's gradient: each image's act'(z) against its own features' gradient
    let z = images(k * len, 1602, -4.0, 4.0);
    let (zb, outb) = (up(&z), zeros(B * k * len));
    let d = reduce::pool_backward(
        g,
        "test.pool.bwd",
        &PoolBackward {
            act,
            rows: k,
            len,
            z: &zb.buf,
            g: &dfb.buf,
            out: &outb.buf,
        },
    );
    let pool = |i: usize| {
        let want_df = head::cpu::linear_backward(&w, &dlog(i), n, k);
        reduce::cpu::pool_backward(act, slice(&z, k * len, i), &want_df, k, len)
    };
    per_image(
        "pool.bwd",
        &[&d],
        &outb,
        (0, k * len, k * len),
        &[k, len],
        &pool,
    );
}

#[test]
fn batched_region_score_gradient_matches_reference_per_image() {
    // 300 cells over the globe, each image its own probabilities, target 11, radius 4000 km
    let g = gpu();
    let n = 300;
    let (target, km) = (11usize, 4000f32);
    let (cells, inside) = crate::ops::region_cells(n, 1700, target, km);
    let probs: Vec<f32> = (0..B)
        .flat_map(|i| head::cpu::softmax(&rand(n, 1710 + i as u64, -3.0, 3.0)).0)
        .collect();
    let t = target as u32;
    let ib = g.upload_u32("info", &[u32::MAX, 2, t, t, km.to_bits(), 0, 0, 0]);
    let ib = ib.unwrap();
    let (pb, cb, mass, gb, lb) = (up(&probs), up(&cells), zeros(B), zeros(B * n), zeros(B * n));
    let r = head::Region {
        cells: &cb.buf,
        mass: &mass.buf,
    };
    let ds = [
        head::region_mass(g, "test.region", n, &pb.buf, &ib.buf, &r),
        head::dlogits(
            g,
            "test.dlogits.region",
            &DlogitsArgs {
                n,
                logits: &lb.buf,
                probs: &pb.buf,
                info: &ib.buf,
                region: Some(&r),
                g: &gb.buf,
            },
        ),
    ];
    let want = |i: usize| head::cpu::dlogits_region(slice(&probs, n, i), &inside);
    per_image(
        "region.dlogits",
        &[&ds[0], &ds[1]],
        &gb,
        (0, n, n),
        &[n],
        &want,
    );
    let got = read(&mass);
    for i in 0..B {
        let p = slice(&probs, n, i);
        let m: f32 = (p.iter().zip(&inside)).filter(|q| *q.1).map(|q| q.0).sum();
        check(
            &format!("region.mass image {i}"),
            &got[i..i + 1],
            &[m],
            &[1],
            tol(&[m]),
        );
    }
}
