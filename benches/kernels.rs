//! Kernel benchmarks at the shapes EfficientNet-B4 runs at 300×450: GPU time per dispatch
//! (timestamps where the adapter has them, else wall clock), GFLOP/s and GB/s, adapter named.
//! Run: `cargo bench --bench kernels`. End to end: `combicam-gpu bench`.

use std::time::Instant;

use combicam_gpu::gpu::{Dispatch, Gpu, GpuBuf};
use combicam_gpu::ops::{
    depthwise,
    depthwise::DwShape,
    gemm,
    gemm::{GemmArgs, GemmWeights, InMode, XPack},
    reduce,
    reduce::{Reduce, RowsArgs},
};

fn buf(g: &Gpu, n: usize) -> GpuBuf {
    g.upload(
        "bench",
        &(0..n)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

fn report(g: &Gpu, name: &str, d: &Dispatch, iters: usize) {
    report_all(g, name, &[d], iters)
}

/// Several dispatches timed as one submission (a GEMM with its packing step), by the wall
/// clock: lavapipe's timestamps read near zero for passes that follow a texture-sampling
/// pass in a fresh submission, so this bench does not rely on them.
fn report_all(g: &Gpu, name: &str, ds: &[&Dispatch], iters: usize) {
    g.run_now(ds).unwrap(); // warm-up
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let t0 = Instant::now();
            g.run_now(ds).unwrap();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    g.check_errors(name).expect("kernel bench");
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let s = t[t.len() / 2];
    println!(
        "{name:<40} {:>9.3} ms {:>8.2} GFLOP/s {:>8.2} GB/s",
        s * 1e3,
        ds.iter().map(|d| d.flops).sum::<f64>() / s / 1e9,
        ds.iter().map(|d| d.bytes).sum::<f64>() / s / 1e9
    );
}

fn main() {
    let g = Gpu::new(None)
        .expect("needs a GPU adapter; without a GPU: apt-get install mesa-vulkan-drivers");
    println!(
        "adapter: {} (driver {} {}); timing: wall clock, one submission per kernel",
        g.adapter.line(),
        g.adapter.driver,
        g.adapter.driver_info,
    );
    let iters = 5;
    // 1×1 convs: block 2 expand (24→144 at 150×225), block 5 project (192→32 at 75×113), head (448→1792 at 10×15)
    for (name, m, k, p, mode) in [
        ("gemm expand 24→144 @150×225", 144, 24, 33750, InMode::Plain),
        (
            "gemm project 192→32 @75×113 (SE fused)",
            32,
            192,
            8475,
            InMode::SiluScaled,
        ),
        ("gemm expand 160→960 @19×29", 960, 160, 551, InMode::Plain),
        ("gemm head 448→1792 @10×15", 1792, 448, 150, InMode::Plain),
    ] {
        let (a, x, b, s, y) = (
            GemmWeights::upload(&g, name, &vec![0.01f32; m * k], m, k).unwrap(),
            buf(&g, k * p),
            buf(&g, m),
            buf(&g, k),
            buf(&g, m * p),
        );
        let pack = XPack::new(&g, "pack", XPack::texels_for(k, p)).unwrap();
        let ds = gemm::gemm(
            &g,
            name,
            &GemmArgs {
                m,
                k,
                p,
                a: &a,
                x: &x.buf,
                bias: Some(&b.buf),
                scale: (mode == InMode::SiluScaled).then_some(&s.buf),
                res: None,
                y: &y.buf,
                mode,
                pack: Some(&pack),
            },
        );
        report_all(&g, name, &ds.iter().collect::<Vec<_>>(), iters);
    }
    for (name, c, h, w, k, s) in [
        ("depthwise k3 s2 144ch 150×225", 144, 150, 225, 3, 2),
        ("depthwise k5 s1 336ch 38×57", 336, 38, 57, 5, 1),
    ] {
        let sh = DwShape {
            c,
            h,
            w,
            k,
            stride: s,
            pad: (k - 1) / 2,
        };
        let (oh, ow) = sh.out();
        let (x, wt, b, y, dx) = (
            buf(&g, c * h * w),
            buf(&g, c * k * k),
            buf(&g, c),
            buf(&g, c * oh * ow),
            buf(&g, c * h * w),
        );
        report(
            &g,
            &format!("{name} fwd"),
            &depthwise::forward(&g, name, sh, true, &x.buf, &wt.buf, &b.buf, &y.buf),
            iters,
        );
        report(
            &g,
            &format!("{name} bwd"),
            &depthwise::backward(
                &g,
                name,
                sh,
                true,
                &y.buf,
                &wt.buf,
                Some(&x.buf),
                None,
                &dx.buf,
            ),
            iters,
        );
    }
    let (x, o) = (buf(&g, 144 * 8475), buf(&g, 144));
    report(
        &g,
        "reduce mean-silu 144×8475",
        &reduce::rows(
            &g,
            "pool",
            Reduce::MeanSilu,
            &RowsArgs {
                rows: 144,
                len: 8475,
                in_off: 0,
                out_off: 0,
                x: &x.buf,
                y: None,
                out: &o.buf,
            },
        ),
        iters,
    );
}
