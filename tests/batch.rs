//! The forward kernels over a batch of images (workgroup z = the image, the images one after
//! another in each buffer): every image of the batch against the CPU reference run on that
//! image alone, on awkward shapes. The masked passes of Score-CAM and the metrics run the
//! forward this way (`Dispatch::record_batch`). The GEMM's batch is checked in
//! `gemm::gemm_matches_reference`, every case over two images.

use crate::common::{check, gpu, rand, read, up, zeros};
use combicam_gpu::gpu::Dispatch;
use combicam_gpu::model::config::PadRule;
use combicam_gpu::ops::{Act, Tolerance, conv, depthwise, head, reduce, se};
use combicam_gpu::ops::{
    conv::{ConvArgs, ConvShape},
    depthwise::{DwForward, DwShape},
    gemm::GemmWeights,
    reduce::{Reduce, RowsArgs},
    se::{SeBuffers, SeShape},
};

/// Images per batch: not a power of two.
pub(crate) const B: usize = 3;

pub(crate) fn tol(want: &[f32]) -> Tolerance {
    Tolerance::KERNEL.scaled(want)
}

/// Run `ds` over the batch, then compare image i's `len` values at `off + i·stride` of `got`
/// with `want(i)`.
pub(crate) fn per_image(
    name: &str,
    ds: &[&Dispatch],
    got: &combicam_gpu::gpu::GpuBuf,
    (off, len, stride): (usize, usize, usize),
    shape: &[usize],
    want: &dyn Fn(usize) -> Vec<f32>,
) {
    gpu().run_now_batched(ds, B as u32).unwrap();
    let all = read(got);
    for i in 0..B {
        let w = want(i);
        let start = off + i * stride;
        check(
            &format!("{name} image {i}"),
            &all[start..start + len],
            &w,
            shape,
            tol(&w),
        );
    }
}

/// `n` values per image for the whole batch, each image with its own seed.
pub(crate) fn images(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    (0..B as u64)
        .flat_map(|i| rand(n, seed + 1000 * i, lo, hi))
        .collect()
}

pub(crate) fn slice(v: &[f32], n: usize, i: usize) -> &[f32] {
    &v[i * n..(i + 1) * n]
}

#[test]
fn batched_stem_conv_matches_reference_per_image() {
    let g = gpu();
    for (i, &(cin, h, w, cout, k, s, rule)) in [
        (3, 17, 23, 5, 3, 2, PadRule::Symmetric),
        (2, 14, 13, 3, 5, 2, PadRule::TfSame),
    ]
    .iter()
    .enumerate()
    {
        let sh = ConvShape::new((cin, h, w), cout, k, s, rule);
        let (oh, ow) = sh.out();
        let (nx, ny) = (cin * h * w, cout * oh * ow);
        let x = images(nx, 10 + i as u64, -2.0, 2.0);
        let wt = rand(cout * cin * k * k, 20 + i as u64, -1.0, 1.0);
        let b = rand(cout, 30 + i as u64, -1.0, 1.0);
        let wb = conv::upload_weights(g, "test.conv.w", (cout, cin, k), &wt).unwrap();
        let (xb, bb, yb) = (up(&x), up(&b), zeros(B * ny));
        let d = conv::conv(
            g,
            "test.conv",
            &ConvArgs {
                s: sh,
                act: Some(Act::Silu),
                x: &xb.buf,
                wt: &wb,
                bias: &bb.buf,
                y: &yb.buf,
            },
        );
        per_image(
            &format!("conv{k}s{s}"),
            &[&d],
            &yb,
            (0, ny, ny),
            &[cout, oh, ow],
            &|i| conv::cpu::conv(sh, Some(Act::Silu), slice(&x, nx, i), &wt, &b),
        );
    }
}

#[test]
fn batched_depthwise_and_squeeze_match_reference_per_image() {
    let g = gpu();
    for (i, &(c, h, w, k, s, rule)) in [
        (7, 13, 9, 3, 1, PadRule::Symmetric),
        (4, 21, 16, 5, 2, PadRule::TfSame),
    ]
    .iter()
    .enumerate()
    {
        let act = if i == 0 { Act::Silu } else { Act::Relu6 };
        let sh = DwShape::new(c, h, w, k, s, rule);
        let (oh, ow) = sh.out();
        let (nx, ny) = (c * h * w, c * oh * ow);
        let x = images(nx, 50 + i as u64, -8.0, 8.0);
        let wt = rand(c * k * k, 60 + i as u64, -1.0, 1.0);
        let b = rand(c, 70 + i as u64, -1.0, 1.0);
        let parts = depthwise::pool_parts(g, &sh);
        let (xb, bb, yb, pb) = (up(&x), up(&b), zeros(B * ny), zeros(B * c * parts));
        let wb = depthwise::upload_weights(g, "test.dw.w", (c, k), &wt).unwrap();
        // the depthwise conv writing the SE pool's partial sums, then their mean per channel,
        // as `Rec::block_forward` records them
        let pooled = zeros(3 + B * c);
        let ds = [
            depthwise::forward(
                g,
                "test.dw",
                &DwForward {
                    s: sh,
                    act,
                    in_act: true,
                    x: &xb.buf,
                    wt: &wb,
                    bias: &bb.buf,
                    out: &yb.buf,
                    pool: Some(&pb.buf),
                },
            ),
            reduce::rows_scaled(
                g,
                "test.se_pool",
                Reduce::Mean,
                &RowsArgs {
                    rows: c,
                    len: parts,
                    in_off: 0,
                    out_off: 3,
                    x: &pb.buf,
                    y: None,
                    out: &pooled.buf,
                },
                1.0 / (oh * ow) as f32,
            ),
        ];
        let want = |i: usize| depthwise::cpu::forward(sh, Some(act), slice(&x, nx, i), &wt, &b);
        let name = format!("dw{k}s{s}");
        per_image(
            &name,
            &[&ds[0], &ds[1]],
            &yb,
            (0, ny, ny),
            &[c, oh, ow],
            &want,
        );
        let pool = |i: usize| -> Vec<f32> {
            want(i)
                .chunks(oh * ow)
                .map(|p| p.iter().map(|&v| act.apply(v)).sum::<f32>() / (oh * ow) as f32)
                .collect()
        };
        let all = read(&pooled);
        for i in 0..B {
            let w = pool(i);
            let got = &all[3 + i * c..3 + (i + 1) * c];
            check(&format!("{name}.se_pool image {i}"), got, &w, &[c], tol(&w));
        }
    }
    // the squeeze and excitation per image, from 11 partial sums per channel
    let (cmid, cse, parts) = (30, 3, 11);
    let sh = SeShape { cmid, cse, hw: 17 };
    let ws = [cse * cmid, cse, cmid * cse, cmid].map(|n| rand(n, 500 + n as u64, -0.5, 0.5));
    let part = images(cmid * parts, 510, -1.0, 1.0);
    let m: Vec<f32> = (0..B)
        .flat_map(|i| se::cpu::squeeze(slice(&part, cmid * parts, i), parts, 17))
        .collect();
    let bufs = SeBuffers::upload(g, "test.se", (cmid, cse), ws.each_ref().map(|v| &v[..])).unwrap();
    let w = bufs.weights();
    // m holds C_mid rounded up to 4 an image
    let c4 = se::vec_len(cmid);
    let (pb, mb, rb, sb) = (up(&part), zeros(B * c4), zeros(B * cse), zeros(B * cmid));
    let d = crate::ops::se_passes(&w, (sh, parts), [&pb, &mb, &rb, &sb], None).remove(0);
    let lanes = se::dot_order(g);
    let want = |i: usize| {
        se::cpu::forward(
            (sh, lanes),
            &ws[0],
            &ws[1],
            &ws[2],
            &ws[3],
            slice(&m, cmid, i),
        )
    };
    per_image("se.s", &[&d], &sb, (0, cmid, cmid), &[cmid], &|i| want(i).1);
    let all = read(&mb);
    for i in 0..B {
        let w = slice(&m, cmid, i);
        check(
            &format!("se.m image {i}"),
            &all[i * c4..i * c4 + cmid],
            w,
            &[cmid],
            tol(w),
        );
    }
    let all = read(&rb);
    for i in 0..B {
        let r = want(i).0;
        check(
            &format!("se.r image {i}"),
            &all[i * cse..(i + 1) * cse],
            &r,
            &[cse],
            tol(&r),
        );
    }
}

#[test]
fn batched_head_matches_reference_per_image() {
    let g = gpu();
    let (n, k, len) = (1000, 37, 13);
    // the head's pool of act(z) over 13 positions, the classifier in three chunks, softmax
    let z = images(k * len, 890, -4.0, 4.0);
    let w = rand(n * k, 900, -1.0, 1.0);
    let b = rand(n, 902, -0.5, 0.5);
    let chunks = [(0usize, 512usize), (512, 256), (768, 232)];
    let (zb, fb, bb) = (up(&z), zeros(B * k), up(&b));
    let (lb, pb, ib) = (zeros(B * n), zeros(B * n), zeros(8));
    let wbufs: Vec<_> = chunks
        .iter()
        .map(|&(r0, rows)| {
            GemmWeights::upload(g, "test.fc", &w[r0 * k..(r0 + rows) * k], rows, k).unwrap()
        })
        .collect();
    let act = Act::Silu;
    let mut ds = vec![reduce::rows(
        g,
        "test.pool",
        Reduce::MeanAct(act),
        &RowsArgs {
            rows: k,
            len,
            in_off: 0,
            out_off: 0,
            x: &zb.buf,
            y: None,
            out: &fb.buf,
        },
    )];
    ds.extend(crate::ops::linear_chunks(
        &wbufs,
        &chunks,
        (n, k),
        (&fb, &bb, &lb),
    ));
    ds.push(head::softmax(
        g,
        "test.softmax",
        n,
        &lb.buf,
        &pb.buf,
        &ib.buf,
    ));
    g.queue
        .write_buffer(&ib.buf, 0, bytemuck::cast_slice(&[u32::MAX, 0, 0, 0]));
    let logits = |i: usize| {
        let f = reduce::cpu::rows(Reduce::MeanAct(act), slice(&z, k * len, i), None, k, len);
        head::cpu::linear(&w, &f, &b, n, k)
    };
    let refs: Vec<&Dispatch> = ds.iter().collect();
    per_image("linear", &refs, &lb, (0, n, n), &[n], &logits);
    let probs = read(&pb);
    for i in 0..B {
        let (p, _) = head::cpu::softmax(&logits(i));
        check(
            &format!("softmax image {i}"),
            slice(&probs, n, i),
            &p,
            &[n],
            tol(&p),
        );
    }
    // only image 0 tells the target and the argmax
    let info: Vec<u32> = read(&ib).iter().map(|v| v.to_bits()).collect();
    let (_, arg0) = head::cpu::softmax(&logits(0));
    assert_eq!(
        (info[2] as usize, info[3] as usize),
        (arg0, arg0),
        "image 0's argmax"
    );
}
