//! Kernel benchmarks, one or more per kernel family, at the shapes EfficientNet-B4 runs at
//! 300×450: time per kernel as `bench` takes it (GPU timestamps where trusted, else the wall
//! clock per submission), GFLOP/s and GB/s from each dispatch's exact work,
//! adapter named. Run: `cargo bench --bench kernels` (or `-- gemm depthwise` for the kernels
//! whose names contain those words). End to end: `cargo bench --bench explain`
//! or `combicam-gpu bench`.

use combicam_gpu::app::bench::{time_passes, timestamps_usable};
use combicam_gpu::cam::channel::{self, BlockParts, ChannelArgs, FromPartsArgs, PartsLayout};
use combicam_gpu::cam::elementwise::{self, ElementwiseArgs};
use combicam_gpu::cam::fusion::{self, FuseArgs, GroupBuffers, StatsArgs};
use combicam_gpu::cam::methods::{FUSIONS, Fusion, Method};
use combicam_gpu::gpu::{Dispatch, Gpu, GpuBuf};
use combicam_gpu::model::config::{self, PadRule};
use combicam_gpu::ops::{
    Act, conv,
    conv::ConvArgs,
    conv::ConvShape,
    depthwise,
    depthwise::{DwBackward, DwForward, DwShape, SeIn},
    gemm,
    gemm::{GemmArgs, GemmWeights, InMode, XPack},
    head,
    head::{Chunk, LinearArgs, LinearBackwardArgs},
    reduce,
    reduce::{Reduce, RowsArgs},
    se,
    se::{SeBackward, SeForward},
    se::{SeBuffers, SeShape},
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

/// Several dispatches timed as one pass (a GEMM with its packing step), the way `bench` times
/// a kernel family (`time_passes`: GPU timestamps where trusted, else the wall clock).
fn report_all(g: &Gpu, name: &str, ds: &[&Dispatch], iters: usize) {
    if !selected(name) {
        return;
    }
    let group = [ds.to_vec()];
    time_passes(g, &group).unwrap(); // warm-up
    let mut t: Vec<f64> = (0..iters)
        .map(|_| time_passes(g, &group).unwrap()[0])
        .collect();
    g.check_errors(name).expect("kernel bench");
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let s = t[t.len() / 2];
    println!(
        "{name:<46} {:>9.3} ms {:>8.2} GFLOP/s {:>8.2} GB/s",
        s * 1e3,
        ds.iter().map(|d| d.flops).sum::<f64>() / s / 1e9,
        ds.iter().map(|d| d.bytes).sum::<f64>() / s / 1e9
    );
}

/// Whether `name` is to be timed: every kernel, or those whose name contains one of the words
/// given after `--` (`cargo bench --bench kernels -- gemm depthwise`).
fn selected(name: &str) -> bool {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    words.is_empty() || words.iter().any(|w| name.contains(w.as_str()))
}

fn main() {
    let g = Gpu::new(None)
        .expect("needs a GPU adapter; without a GPU: apt-get install mesa-vulkan-drivers");
    println!(
        "adapter: {} (driver {} {}); timing: {}",
        g.adapter.line(),
        g.adapter.driver,
        g.adapter.driver_info,
        if timestamps_usable(&g) {
            "GPU timestamps"
        } else {
            "wall clock, one submission per kernel"
        }
    );
    let iters = 5;
    // 1×1 convs: block 2 expand (24→144 at 150×225), block 5 project (192→32 at 75×113), head
    // (448→1792 at 10×15), the long-K projections of the last stages; on GPUs in every GPU
    // kernel, the one `gemm` picks for the shape marked with *
    let variants = match gemm::Variant::for_adapter(&g) {
        gemm::Variant::RegsSubgroup => vec![gemm::Variant::Regs, gemm::Variant::RegsSubgroup],
        gemm::Variant::Regs => vec![gemm::Variant::Regs],
        _ if g.slim_wide => vec![
            gemm::Variant::Tiled,
            gemm::Variant::Slim,
            gemm::Variant::SlimWide,
        ],
        _ => vec![gemm::Variant::Tiled, gemm::Variant::Slim],
    };
    let se = InMode::ActScaled(Act::Silu);
    for (name, m, k, p, mode) in [
        ("gemm expand 24→144 @150×225", 144, 24, 33750, InMode::Plain),
        ("gemm project 192→32 @75×113 (SE)", 32, 192, 8475, se),
        // a repeated block's projection, as the explain runs it: with the residual
        (
            "gemm project 192→32 @75×113 (SE, residual)",
            32,
            192,
            8475,
            se,
        ),
        ("gemm expand 160→960 @19×29", 960, 160, 551, InMode::Plain),
        ("gemm project 960→160 @19×29 (SE)", 160, 960, 551, se),
        ("gemm project 1632→272 @10×15 (SE)", 272, 1632, 150, se),
        ("gemm project 2688→448 @10×15 (SE)", 448, 2688, 150, se),
        ("gemm head 448→1792 @10×15", 1792, 448, 150, InMode::Plain),
        // data gradients with a small K: a projection's (32→192) and an expansion's (144→24),
        // and the head's (1792→448)
        ("gemm dgrad 32→192 @75×113", 192, 32, 8475, InMode::Plain),
        ("gemm dgrad 144→24 @150×225", 24, 144, 33750, InMode::Plain),
        ("gemm dgrad 1792→448 @10×15", 448, 1792, 150, InMode::Plain),
        // a projection's data gradient as the backward runs it: with its SE partial (DotAct)
        (
            "gemm dgrad 32→192 @75×113 (SE partial)",
            192,
            32,
            8475,
            InMode::Plain,
        ),
    ] {
        let (a, x, b, s, y) = (
            GemmWeights::upload(&g, name, &vec![0.01f32; m * k], m, k).unwrap(),
            buf(&g, k * p),
            buf(&g, m),
            buf(&g, k),
            buf(&g, m * p),
        );
        let pack = XPack::new(&g, "pack", XPack::texels_for(k, p)).unwrap();
        let picked = gemm::Variant::for_k(&g, k);
        // zd and the row partials only for the shape that takes them
        let dot = name
            .ends_with("(SE partial)")
            .then(|| (buf(&g, m * p), buf(&g, m * picked.parts(p))));
        let res = name.contains("residual").then(|| buf(&g, m * p));
        let args = GemmArgs {
            m,
            k,
            p,
            a: &a,
            x: &x.buf,
            bias: Some(&b.buf),
            scale: matches!(mode, InMode::ActScaled(_)).then_some(&s.buf),
            res: res.as_ref().map(|r| &r.buf),
            y: &y.buf,
            mode,
            pack: Some(&pack),
            parts: dot.as_ref().map(|(zd, part)| gemm::Parts {
                op: gemm::PartOp::DotAct(Act::Silu),
                zd: Some(&zd.buf),
                part: &part.buf,
                off: 0,
                images: 1,
            }),
        };
        for &v in &variants {
            let ds = gemm::gemm_variant(&g, name, &args, v);
            let mark = if v == picked { "*" } else { "" };
            let label = match variants.len() {
                1 => name.to_string(),
                _ => format!("{name} {v:?}{mark}"),
            };
            report_all(&g, &label, &ds.iter().collect::<Vec<_>>(), iters);
        }
    }
    for (name, c, h, w, k, s) in [
        ("depthwise k3 s2 144ch 150×225", 144, 150, 225, 3, 2),
        ("depthwise k5 s1 336ch 38×57", 336, 38, 57, 5, 1),
    ] {
        let sh = DwShape::new(c, h, w, k, s, PadRule::Symmetric);
        let (oh, ow) = sh.out();
        let wt = depthwise::upload_weights(&g, name, (c, k), &vec![0.01f32; c * k * k]).unwrap();
        let (x, b, y, dx) = (
            buf(&g, c * h * w),
            buf(&g, c),
            buf(&g, c * oh * ow),
            buf(&g, c * h * w),
        );
        // the SE's scale and pooled gradient, and the depthwise output's pre-activation
        let (ses, sem, zd) = (buf(&g, c), buf(&g, c), buf(&g, c * oh * ow));
        report(
            &g,
            &format!("{name} fwd"),
            &depthwise::forward(
                &g,
                name,
                &DwForward {
                    s: sh,
                    act: Act::Silu,
                    in_act: true,
                    x: &x.buf,
                    wt: &wt,
                    bias: &b.buf,
                    out: &y.buf,
                    pool: None,
                },
            ),
            iters,
        );
        report(
            &g,
            &format!("{name} bwd (through the SE)"),
            &depthwise::backward(
                &g,
                name,
                &DwBackward {
                    s: sh,
                    act: Act::Silu,
                    dy: &y.buf,
                    wt: &wt,
                    zin: Some(&x.buf),
                    res: None,
                    se_in: Some(SeIn {
                        s: &ses.buf,
                        dm: &sem.buf,
                        zd: &zd.buf,
                    }),
                    dx: &dx.buf,
                },
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
            Reduce::MeanAct(Act::Silu),
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

    // stem: 3→48, k3 s2, 300×450 → 150×225
    let sh = ConvShape::new((3, 300, 450), 48, 3, 2, PadRule::Symmetric);
    let (oh, ow) = sh.out();
    let cw = conv::upload_weights(&g, "stem", (48, 3, 3), &vec![0.01f32; 48 * 27]).unwrap();
    let (cx, cb, cy) = (buf(&g, 3 * 300 * 450), buf(&g, 48), buf(&g, 48 * oh * ow));
    report(
        &g,
        "conv stem 3→48 k3 s2 @300×450",
        &conv::conv(
            &g,
            "stem",
            &ConvArgs {
                s: sh,
                act: Some(Act::Silu),
                x: &cx.buf,
                wt: &cw,
                bias: &cb.buf,
                y: &cy.buf,
            },
        ),
        iters,
    );
    // squeeze-excite of a stage-6 block: 1632 channels, 68 hidden, 10×15
    let sh = SeShape {
        cmid: 1632,
        cse: 68,
        hw: 150,
    };
    let (wv, bv) = (vec![0.01f32; 68 * 1632], vec![0.01f32; 1632]);
    let seb = SeBuffers::upload(&g, "se", (1632, 68), [&wv, &bv[..68], &wv, &bv]).unwrap();
    let (m, r, sv, ds, dm) = (
        buf(&g, 1632),
        buf(&g, 68),
        buf(&g, 1632),
        buf(&g, 1632),
        buf(&g, 1632),
    );
    let w = seb.weights();
    // the partial sums a k3 s1 depthwise kernel writes at 10×15
    let parts = depthwise::pool_parts(&g, &DwShape::new(1632, 10, 15, 3, 1, PadRule::Symmetric));
    let part = buf(&g, 1632 * parts);
    report(
        &g,
        &format!("se forward 1632/68 (squeeze of {parts} parts)"),
        &se::forward(
            &g,
            "se",
            &SeForward {
                sh,
                w: &w,
                part: &part.buf,
                parts,
                m: &m.buf,
                r: &r.buf,
                s: &sv.buf,
            },
        ),
        iters,
    );
    // ds from the partial sums the projection's backward GEMM writes at 10×15
    let dparts = gemm::Variant::for_adapter(&g).parts(10 * 15);
    let dpart = buf(&g, 1632 * dparts);
    report(
        &g,
        &format!("se backward 1632/68 (ds from {dparts} parts)"),
        &se::backward(
            &g,
            "se",
            &SeBackward {
                sh,
                w: &w,
                r: &r.buf,
                s: &sv.buf,
                part: &dpart.buf,
                parts: dparts,
                ds: &ds.buf,
                dm: &dm.buf,
            },
        ),
        iters,
    );
    // the geolocation head: 31,145 × 1792, in two texture chunks like the model's
    let (n, k) = (31145usize, 1792usize);
    let rows0 = n / 2;
    let chunks: Vec<(GemmWeights, usize, usize)> = [(0, rows0), (rows0, n - rows0)]
        .iter()
        .map(|&(r0, rows)| {
            (
                GemmWeights::upload(&g, "fc", &vec![0.001f32; rows * k], rows, k).unwrap(),
                r0,
                rows,
            )
        })
        .collect();
    let (f, hb, logits, gl) = (buf(&g, k), buf(&g, n), buf(&g, n), buf(&g, n));
    let segs: usize = chunks.iter().map(|c| c.2.div_ceil(head::SEG_ROWS)).sum();
    let part = buf(&g, segs * k);
    let fwd: Vec<Dispatch> = chunks
        .iter()
        .map(|(w, r0, rows)| {
            head::linear(
                &g,
                "fc",
                &LinearArgs {
                    chunk: Chunk {
                        w,
                        row0: *r0,
                        rows: *rows,
                        k,
                    },
                    n,
                    f: &f.buf,
                    bias: &hb.buf,
                    logits: &logits.buf,
                },
            )
        })
        .collect();
    report_all(
        &g,
        "head linear 1792→31145",
        &fwd.iter().collect::<Vec<_>>(),
        iters,
    );
    let mut seg0 = 0;
    let bwd: Vec<Dispatch> = chunks
        .iter()
        .map(|(w, r0, rows)| {
            let d = head::linear_backward(
                &g,
                "fc",
                &LinearBackwardArgs {
                    chunk: Chunk {
                        w,
                        row0: *r0,
                        rows: *rows,
                        k,
                    },
                    seg0,
                    nsegs: segs,
                    n,
                    g: &gl.buf,
                    partial: &part.buf,
                },
            );
            seg0 += rows.div_ceil(head::SEG_ROWS);
            d
        })
        .collect();
    report_all(
        &g,
        "head linear_backward 31145→1792",
        &bwd.iter().collect::<Vec<_>>(),
        iters,
    );
    // every CAM method at a stage-2 block (32 channels at 75×113), and the fusion of 32 maps
    let (act, grad, wts, maps) = (
        buf(&g, 32 * 8475),
        buf(&g, 32 * 8475),
        buf(&g, 32),
        buf(&g, 32 * 8475),
    );
    let cargs = ChannelArgs {
        c: 32,
        hw: 8475,
        blk: &act.buf,
        grad: &grad.buf,
        w: &wts.buf,
        w_off: 0,
        maps: &maps.buf,
        map_off: 0,
        hvp: Some(&grad.buf),
        strides: Default::default(),
    };
    for m in [
        Method::GradCam,
        Method::GradCamPP,
        Method::XGradCam,
        Method::GradCamPPOfficial,
    ] {
        report(
            &g,
            &format!("cam {} weights 32ch 75×113", m.name()),
            &channel::channel_weights(&g, "w", m, &cargs),
            iters,
        );
    }
    report(
        &g,
        "cam weighted_map 32ch 75×113",
        &channel::weighted_map(&g, "map", &cargs),
        iters,
    );
    // every block's max |A| and Grad-CAM means from the GEMMs' row partials: B4 at 300×450
    let cfg = config::efficientnet(4, config::Family::Visloc);
    let (_, _, sizes) = cfg.sizes(300, 450);
    let channels: Vec<usize> = cfg.blocks.iter().map(|b| b.cout).collect();
    let hw: Vec<usize> = sizes.iter().map(|(h, w)| h * w).collect();
    let variant = gemm::Variant::for_adapter(&g);
    let layout = PartsLayout::new(&channels, &hw, &|p| variant.parts(p));
    let mut w_off = 0;
    let blocks: Vec<_> = (0..channels.len())
        .map(|l| {
            w_off += channels[l];
            (l, channels[l], hw[l], Some(w_off - channels[l]))
        })
        .collect();
    let parts = BlockParts {
        act: buf(&g, layout.total),
        grad: buf(&g, layout.total),
        has_grad: vec![true; channels.len()],
        layout,
    };
    let (gw, amax) = (buf(&g, w_off), buf(&g, channels.len()));
    let pargs = FromPartsArgs {
        parts: &parts,
        blocks: &blocks,
        w: &gw.buf,
        amax: &amax.buf,
        strides: Default::default(),
    };
    report(
        &g,
        "cam from_parts B4 300×450 (32 blocks)",
        &channel::from_parts(&g, "parts", &pargs).unwrap(),
        iters,
    );
    let eargs = ElementwiseArgs {
        c: 32,
        hw: 8475,
        blk: &act.buf,
        grad: &grad.buf,
        gmax: &wts.buf,
        gmax_off: 0,
        maps: &maps.buf,
        map_off: 0,
        strides: Default::default(),
    };
    for m in [Method::HiResCam, Method::LayerCam, Method::LayerCamOfficial] {
        report(
            &g,
            &format!("cam {} map 32ch 75×113", m.name()),
            &elementwise::map(&g, "map", m, &eargs),
            iters,
        );
    }
    // B4's block sizes at 300×450: 2, 4, 4, 12 and 10 blocks of one size, 2,000 floats apart
    let sizes = [
        (150, 225, 2),
        (75, 113, 4),
        (38, 57, 4),
        (19, 29, 12),
        (10, 15, 10),
    ];
    let (mut meta, mut off) = (Vec::new(), 0u32);
    for (h, w, n) in sizes {
        for _ in 0..n {
            meta.extend([off, h, w, 0]);
            off += 2000;
        }
    }
    let (bmeta, fused, bnorm) = (
        g.upload_u32("bmeta", &meta).unwrap(),
        buf(&g, 300 * 450),
        buf(&g, 64),
    );
    for rule in FUSIONS {
        let fargs = FuseArgs {
            out_h: 300,
            out_w: 450,
            nblocks: 32,
            maps: &maps.buf,
            bmeta: &bmeta.buf,
            bnorm: &bnorm.buf,
            base: None,
            groups: None,
            fused: &fused.buf,
            strides: Default::default(),
        };
        report(
            &g,
            &format!("cam fuse {} 32 maps → 300×450", rule.name()),
            &fusion::fuse(&g, "fuse", rule, &fargs),
            iters,
        );
    }
    // the sum as a plan runs it: the maps added up per size in the statistics' dispatch,
    // then five upsampled
    let all: Vec<(usize, usize)> = sizes
        .iter()
        .flat_map(|&(h, w, n)| std::iter::repeat_n((h as usize, w as usize), n))
        .collect();
    let groups = GroupBuffers::new(&g, &all, |n| Ok(buf(&g, n))).unwrap();
    let stats = buf(&g, 64);
    let sargs = StatsArgs {
        nblocks: 32,
        floats: all.iter().map(|&(h, w)| h * w).sum(),
        total: 32,
        maps: &maps.buf,
        bmeta: &bmeta.buf,
        bnorm: &bnorm.buf,
        stats: &stats.buf,
        groups: Some(&groups),
        strides: Default::default(),
    };
    let fargs = FuseArgs {
        out_h: 300,
        out_w: 450,
        nblocks: 32,
        maps: &maps.buf,
        bmeta: &bmeta.buf,
        bnorm: &bnorm.buf,
        base: None,
        groups: Some(&groups),
        fused: &fused.buf,
        strides: Default::default(),
    };
    report_all(
        &g,
        "cam stats + fuse sum, 32 maps in 5 sizes → 300×450",
        &[
            &fusion::stats(&g, "stats", &sargs),
            &fusion::fuse(&g, "fuse", Fusion::Sum, &fargs),
        ],
        iters,
    );
}
