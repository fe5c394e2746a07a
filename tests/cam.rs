//! Every CAM method's kernels and every fusion rule against their CPU references, on awkward
//! shapes: channel counts that are no multiple of 8, maps of 1×1 and sizes that are no
//! multiple of the 4 or 8 positions an invocation takes, maps at offsets, gradients with
//! exact zeros (Grad-CAM++'s special case) and both signs.

use crate::common::{check, gpu, rand, read, up, zeros};
use combicam_gpu::cam::channel::{self, BlockParts, ChannelArgs, FromPartsArgs, PartsLayout};
use combicam_gpu::cam::elementwise::{self, ElementwiseArgs};
use combicam_gpu::cam::fusion::{self, FuseArgs, GroupBuffers, StatsArgs};
use combicam_gpu::cam::methods::{FUSIONS, Family, METHODS, Method, TABLE};
use combicam_gpu::ops::Tolerance;
use combicam_gpu::ops::reduce::{self, Reduce, RowsArgs};

fn tol_for(want: &[f32]) -> Tolerance {
    Tolerance::KERNEL.scaled(want)
}

/// `tol_for`, but over 100,000 positions the f32 sums of a channel (Σ A enters Grad-CAM++'s
/// every term, FEM's threshold decides each count) are only so exact: measured on lavapipe,
/// 2026-12-03, at 400,003 positions, 1.7e-3 of the peak at worst (gradcampp's weights), FEM
/// 6.6e-4, gradcam and xgradcam 3e-5. A pass cut short by lavapipe's loop limit would be off
/// by a good part of the peak.
fn long_tol(hw: usize, want: &[f32]) -> Tolerance {
    if hw > 100_000 {
        Tolerance::new(
            0.0,
            5e-3 * want.iter().fold(1e-30f32, |a, v| a.max(v.abs())),
        )
    } else {
        tol_for(want)
    }
}

/// A block output (mostly positive, as after SiLU) and a gradient with some exact zeros.
fn block(c: usize, hw: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let a = rand(c * hw, seed, -0.3, 2.0);
    let mut g = rand(c * hw, seed + 1, -1.0, 1.0);
    for v in g.iter_mut().step_by(7) {
        *v = 0.0;
    }
    (a, g)
}

/// The table's methods of one family.
fn family(f: Family) -> Vec<Method> {
    TABLE
        .iter()
        .filter(|i| i.family == f)
        .map(|i| i.method)
        .collect()
}

#[test]
fn every_method_matches_its_reference() {
    let g = gpu();
    // the last: 400,003 positions, where Grad-CAM++'s two and FEM's three passes take 64
    // invocations per channel (with 8, each would pass lavapipe's 65,535 loop turns and stop
    // short, silently), while Grad-CAM's one pass keeps 8; with the GPU-shaped kernels, the
    // last two take a workgroup a channel (8,192 positions or more; 1,024 lanes on lavapipe)
    for (i, &(c, hw)) in [
        (11, 35),
        (13, 1),
        (70, 63),
        (9, 257),
        (5, 8_200),
        (3, 400_003),
    ]
    .iter()
    .enumerate()
    {
        let (a, gr) = block(c, hw, 2000 + 10 * i as u64);
        let hv = rand(c * hw, 2500 + i as u64, -3.0, 3.0);
        let (ab, gb, hb) = (up(&a), up(&gr), up(&hv));
        // FEM weighs a channel by its share of outliers (above mean + 2 std), which uniform
        // data has none of: it gets a heavy-tailed block output
        let a_fem: Vec<f32> = a.iter().map(|v| v * v * v / 4.0).collect();
        let ab_fem = up(&a_fem);
        // every channel-weight method of the table
        for m in family(Family::Channel) {
            // the official Grad-CAM++ runs at the last block only (B4: 144 positions); with a
            // random h its denominators come near zero, which a long sum turns into rounding
            // noise (an H200's division: 2e-2 of 900 at 8,200 positions, within tolerance on
            // lavapipe)
            if m == Method::GradCamPPOfficial && hw > 4_096 {
                continue;
            }
            let (a, ab) = if m == Method::Fem {
                (&a_fem, &ab_fem)
            } else {
                (&a, &ab)
            };
            let (wb, mb) = (zeros(5 + c), zeros(100 + hw));
            let args = ChannelArgs {
                c,
                hw,
                blk: &ab.buf,
                grad: &gb.buf,
                w: &wb.buf,
                w_off: 5,
                maps: &mb.buf,
                map_off: 100,
                hvp: Some(&hb.buf),
                strides: Default::default(),
            };
            g.run_now(&[
                &channel::channel_weights(g, "test.w", m, &args),
                &channel::weighted_map(g, "test.map", &args),
            ])
            .unwrap();
            let w = channel::cpu::weights(m, a, &gr, Some(&hv), c, hw);
            if m == Method::Fem && hw > 1 {
                assert!(
                    w.iter().any(|&v| v > 0.0),
                    "fem.weights.{c}x{hw}: no outliers"
                );
            }
            check(
                &format!("{}.weights.{c}x{hw}", m.name()),
                &read(&wb)[5..],
                &w,
                &[c],
                long_tol(hw, &w),
            );
            // the map from the weights the GPU made: each kernel against its own reference
            // (over a long block the weights' rounding alone moves the map past the map's
            // tolerance: Shapley-CAM at 5 channels of 8,200 positions, 3.5e-8 of 4e-6)
            let want = channel::cpu::weighted_map(&read(&wb)[5..], a, c, hw);
            check(
                &format!("{}.map.{c}x{hw}", m.name()),
                &read(&mb)[100..],
                &want,
                &[hw],
                long_tol(hw, &want),
            );
        }
        for m in family(Family::Elementwise) {
            let (gmax, mb) = (zeros(4), zeros(3 + hw));
            // the max the plan computes with reduce::rows
            g.run_now(&[&reduce::rows(
                g,
                "test.gmax",
                Reduce::Max,
                &RowsArgs {
                    rows: 1,
                    len: c * hw,
                    in_off: 0,
                    out_off: 2,
                    x: &gb.buf,
                    y: None,
                    out: &gmax.buf,
                },
            )])
            .unwrap();
            let args = ElementwiseArgs {
                c,
                hw,
                blk: &ab.buf,
                grad: &gb.buf,
                gmax: &gmax.buf,
                gmax_off: 2,
                maps: &mb.buf,
                map_off: 3,
                strides: Default::default(),
            };
            g.run_now(&[&elementwise::map(g, "test.map", m, &args)])
                .unwrap();
            let want = elementwise::cpu::map(m, &a, &gr, c, hw);
            check(
                &format!("{}.map.{c}x{hw}", m.name()),
                &read(&mb)[3..],
                &want,
                &[hw],
                tol_for(&want),
            );
        }
    }
}

/// Every block's max |A| and Grad-CAM's channel means from the GEMMs' row partials, in one
/// dispatch: blocks of odd channel counts (3 to 300: one pass of 256 invocations over 64 to 1
/// lanes per channel, and two passes) and partial counts, some without gradient partials.
#[test]
fn block_statistics_from_partials_match_their_reference() {
    let g = gpu();
    let channels = [3, 13, 70, 5, 300];
    let hw = [1, 50, 1000, 7, 20];
    let layout = PartsLayout::new(&channels, &hw, &|p| p.div_ceil(8));
    let act: Vec<f32> = rand(layout.total, 3100, 0.0, 4.0);
    let grad = rand(layout.total, 3200, -1.0, 1.0);
    let parts = BlockParts {
        act: up(&act),
        grad: up(&grad),
        layout: layout.clone(),
        has_grad: vec![true, true, true, false, true],
    };
    // Grad-CAM weights at blocks 0 and 2, after 9 floats the kernel must leave alone
    let blocks = [
        (0, 3, 1, Some(9)),
        (1, 13, 50, None),
        (2, 70, 1000, Some(12)),
        (3, 5, 7, None),
        (4, 300, 20, Some(82)),
    ];
    let (wb, amax) = (zeros(9 + 3 + 70 + 300), zeros(5));
    let args = FromPartsArgs {
        parts: &parts,
        blocks: &blocks,
        w: &wb.buf,
        amax: &amax.buf,
        strides: Default::default(),
    };
    g.run_now(&[&channel::from_parts(g, "test.parts", &args).unwrap()])
        .unwrap();
    let (w, am) = (read(&wb), read(&amax));
    assert!(
        w[..9].iter().all(|&v| v == 0.0),
        "from_parts wrote before w_off: {w:?}"
    );
    for &(l, c, n, w_off) in &blocks {
        let (o, q) = (layout.offs[l], layout.parts[l]);
        let rows = o..o + c * q;
        let (want_max, want_w) = channel::cpu::from_parts(&act[rows.clone()], &grad[rows], q, n);
        // a max: exact
        assert_eq!(am[l], want_max, "block {l}'s max |A|");
        if let Some(off) = w_off {
            check(
                &format!("gradcam.weights.from_parts.block{l}.{c}x{q}"),
                &w[off..off + c],
                &want_w,
                &[c],
                tol_for(&want_w),
            );
        }
    }
}

#[test]
fn every_fusion_rule_matches_its_reference() {
    let g = gpu();
    // three maps of different sizes (one 1×1, whose normalised map is 0), fused to 29×37
    let sizes = [(7usize, 5usize), (1, 1), (4, 9)];
    let maps: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(h, w))| rand(h * w, 1100 + i as u64, 0.0, 1.0))
        .collect();
    let mut all = Vec::new();
    let mut meta = Vec::new();
    let mut bnorm = Vec::new();
    for (m, &(h, w)) in maps.iter().zip(&sizes) {
        meta.extend_from_slice(&[all.len() as u32, h as u32, w as u32, 0]);
        all.extend_from_slice(m);
        bnorm.push(m.iter().fold(f32::MAX, |a, &v| a.min(v)));
        bnorm.push(m.iter().fold(f32::MIN, |a, &v| a.max(v)));
    }
    let (oh, ow) = (29, 37);
    let list: Vec<(&[f32], usize, usize)> = maps
        .iter()
        .zip(&sizes)
        .map(|(m, &(h, w))| (&m[..], h, w))
        .collect();
    let (mapsb, metab, bnb) = (up(&all), g.upload_u32("meta", &meta).unwrap(), up(&bnorm));
    for rule in FUSIONS {
        // the product of three maps, one of them all zero after normalising, is zero:
        // leave the 1×1 map out there
        let n = if rule == combicam_gpu::cam::methods::Fusion::Product {
            2
        } else {
            3
        };
        let (fb, mmb, nb) = (zeros(oh * ow), zeros(2), zeros(oh * ow));
        let args = FuseArgs {
            out_h: oh,
            out_w: ow,
            nblocks: n,
            maps: &mapsb.buf,
            bmeta: &metab.buf,
            bnorm: &bnb.buf,
            base: None,
            groups: None,
            fused: &fb.buf,
            strides: Default::default(),
        };
        g.run_now(&[
            &fusion::fuse(g, "test.fuse", rule, &args),
            &fusion::minmax(g, "test.minmax", oh, ow, &fb.buf, &mmb.buf),
            &fusion::normalize(g, "test.norm", oh, ow, &fb.buf, &mmb.buf, &nb.buf),
        ])
        .unwrap();
        let (norm, raw) = fusion::cpu::fuse(rule, &list[..n], oh, ow);
        check(
            &format!("fuse.{}", rule.name()),
            &read(&fb),
            &raw,
            &[oh, ow],
            tol_for(&raw),
        );
        check(
            &format!("fused.{}", rule.name()),
            &read(&nb),
            &norm,
            &[oh, ow],
            // lavapipe: max|diff| 4.2e-7, 0.56% of the former 1e-4/1e-5: ≈ 11% of this
            Tolerance::new(5e-6, 5e-7),
        );
    }
    // an all-zero map normalises to zeros, not NaN
    let (z, mmb, nb) = (zeros(oh * ow), zeros(2), zeros(oh * ow));
    g.run_now(&[
        &fusion::minmax(g, "t", oh, ow, &z.buf, &mmb.buf),
        &fusion::normalize(g, "t", oh, ow, &z.buf, &mmb.buf, &nb.buf),
    ])
    .unwrap();
    assert!(
        read(&nb).iter().all(|&v| v == 0.0),
        "flat map must normalise to zeros"
    );
}

#[test]
fn min_reduction_matches_reference() {
    let g = gpu();
    for &(rows, len) in &[(5, 301), (13, 3), (1, 1)] {
        let x = rand(rows * len, 77, -3.0, 3.0);
        let (xb, out) = (up(&x), zeros(rows));
        g.run_now(&[&reduce::rows(
            g,
            "test.min",
            Reduce::Min,
            &RowsArgs {
                rows,
                len,
                in_off: 0,
                out_off: 0,
                x: &xb.buf,
                y: None,
                out: &out.buf,
            },
        )])
        .unwrap();
        let want = reduce::cpu::rows(Reduce::Min, &x, None, rows, len);
        check(
            &format!("reduce.min.{rows}x{len}"),
            &read(&out),
            &want,
            &[rows],
            tol_for(&want),
        );
    }
}

/// The summing rules as a plan runs them: the statistics' dispatch also adds up each run of
/// same-sized maps, and `fuse` upsamples one sum per run. Equal to the reference over the
/// blocks up to float32 rounding (the sums are added in another order).
#[test]
fn fusion_of_same_sized_maps_summed_first_matches_the_reference() {
    use combicam_gpu::cam::methods::Fusion;
    let g = gpu();
    // runs of 2, 1, 3 and 1 (the last size again, not beside its own: a group of its own);
    // one run under a workgroup, one past it, a 1×1
    let sizes = [
        (7usize, 5usize),
        (7, 5),
        (1, 1),
        (19, 23),
        (19, 23),
        (19, 23),
        (7, 5),
    ];
    let groups = fusion::groups(&sizes);
    assert_eq!(groups.count(), 4);
    assert_eq!(groups.total(), 35 + 1 + 437 + 35);
    assert_eq!(
        groups.meta,
        [0, 35, 0, 2, 35, 1, 2, 1, 36, 437, 3, 3, 473, 35, 6, 1]
    );
    assert_eq!(
        groups.fuse_meta,
        [0, 7, 5, 0, 35, 1, 1, 0, 36, 19, 23, 0, 473, 7, 5, 0]
    );
    let maps: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(h, w))| rand(h * w, 1300 + i as u64, 0.0, 1.0))
        .collect();
    let (mut all, mut meta) = (Vec::new(), Vec::new());
    for (b, (m, &(h, w))) in maps.iter().zip(&sizes).enumerate() {
        meta.extend_from_slice(&[all.len() as u32, h as u32, w as u32, b as u32]);
        all.extend_from_slice(m);
    }
    let (mapsb, metab) = (up(&all), g.upload_u32("meta", &meta).unwrap());
    let list: Vec<(&[f32], usize, usize)> = maps
        .iter()
        .zip(&sizes)
        .map(|(m, &(h, w))| (&m[..], h, w))
        .collect();
    let (oh, ow) = (29, 37);
    for rule in [Fusion::Sum, Fusion::Mean] {
        assert!(fusion::sums_groups(rule));
        // fresh zeroed sums for each rule, so that each run must write them
        let gb = GroupBuffers::new(g, &sizes, |n| Ok(zeros(n))).unwrap();
        assert_eq!(gb.groups, groups);
        let (bnb, sb) = (zeros(2 * sizes.len()), zeros(14));
        let (fb, mmb, nb) = (zeros(oh * ow), zeros(2), zeros(oh * ow));
        let stats = fusion::stats(
            g,
            "test.stats",
            &StatsArgs {
                nblocks: sizes.len(),
                floats: all.len(),
                total: 7,
                maps: &mapsb.buf,
                bmeta: &metab.buf,
                bnorm: &bnb.buf,
                stats: &sb.buf,
                groups: Some(&gb),
                strides: Default::default(),
            },
        );
        let args = FuseArgs {
            out_h: oh,
            out_w: ow,
            nblocks: sizes.len(),
            maps: &mapsb.buf,
            bmeta: &metab.buf,
            bnorm: &bnb.buf,
            base: None,
            groups: Some(&gb),
            fused: &fb.buf,
            strides: Default::default(),
        };
        g.run_now(&[
            &stats,
            &fusion::fuse(g, "test.fuse", rule, &args),
            &fusion::minmax(g, "test.minmax", oh, ow, &fb.buf, &mmb.buf),
            &fusion::normalize(g, "test.norm", oh, ow, &fb.buf, &mmb.buf, &nb.buf),
        ])
        .unwrap();
        // the sums, added in the blocks' order as the kernel does: exact (lavapipe: 0)
        let mut want_sums = Vec::new();
        for run in groups.meta.chunks(4) {
            let (n, b0, nb) = (run[1] as usize, run[2] as usize, run[3] as usize);
            want_sums.extend((0..n).map(|i| (b0..b0 + nb).fold(0f32, |s, b| s + maps[b][i])));
        }
        check(
            "group sums",
            &read(&gb.sums),
            &want_sums,
            &[groups.total()],
            Tolerance::new(0.0, 0.0),
        );
        // the sum of the upsampled maps block by block, against one per group; lavapipe:
        // 1.0% (sum) and 1.3% (mean) of this, the normalised maps 10-12% of theirs
        let (norm, raw) = fusion::cpu::fuse(rule, &list, oh, ow);
        check(
            &format!("grouped fuse.{}", rule.name()),
            &read(&fb),
            &raw,
            &[oh, ow],
            tol_for(&raw),
        );
        check(
            &format!("grouped fused.{}", rule.name()),
            &read(&nb),
            &norm,
            &[oh, ow],
            Tolerance::new(5e-6, 5e-7),
        );
    }
}

#[test]
fn block_map_statistics_match_their_reference() {
    let g = gpu();
    // a 1×1 map, one under a workgroup of 256, ones over it and a signed one, as model blocks
    // 4, 0, 9, 2 of 11 (their order in `bmeta` is not the blocks' order)
    let sizes = [(1usize, 1usize), (7, 5), (19, 23), (70, 63)];
    let blocks = [4usize, 0, 9, 2];
    let total = 11;
    let maps: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(h, w))| rand(h * w, 1200 + i as u64, if i == 3 { -1.0 } else { 0.0 }, 2.0))
        .collect();
    let mut all = Vec::new();
    let mut meta = Vec::new();
    for ((m, &(h, w)), &l) in maps.iter().zip(&sizes).zip(&blocks) {
        meta.extend_from_slice(&[all.len() as u32, h as u32, w as u32, l as u32]);
        all.extend_from_slice(m);
    }
    let (mapsb, metab) = (up(&all), g.upload_u32("meta", &meta).unwrap());
    let (bnb, sb) = (zeros(2 * sizes.len()), zeros(2 * total));
    let d = fusion::stats(
        g,
        "test.stats",
        &StatsArgs {
            nblocks: sizes.len(),
            floats: all.len(),
            total,
            maps: &mapsb.buf,
            bmeta: &metab.buf,
            bnorm: &bnb.buf,
            stats: &sb.buf,
            groups: None,
            strides: Default::default(),
        },
    );
    g.run_now(&[&d]).unwrap();
    let (mut want_bnorm, mut want_stats) = (Vec::new(), vec![0f32; 2 * total]);
    for (m, &l) in maps.iter().zip(&blocks) {
        let (lo, hi, mean) = fusion::cpu::stats(m);
        want_bnorm.extend([lo, hi]);
        want_stats[l] = hi;
        want_stats[total + l] = mean;
    }
    // min and max are exact; the mean is a sum in another order: float32 rounding
    check(
        "stats.bnorm",
        &read(&bnb),
        &want_bnorm,
        &[sizes.len(), 2],
        Tolerance::new(0.0, 0.0),
    );
    // the means against a float64 sum; lavapipe: max|diff| 6.0e-8, ≈ 14% of this
    check(
        "stats",
        &read(&sb),
        &want_stats,
        &[2, total],
        Tolerance::new(4e-7, 4e-8),
    );
}

/// `method_table!` declares each method once: the variants and `TABLE`'s rows in one order,
/// `METHODS` the every-block gradient rows (FullGrad's maps are not of a block's A and g), every name parsed back, the error listing them.
#[test]
fn the_method_table_declares_every_method_once() {
    let rows: Vec<Method> = TABLE
        .iter()
        .filter(|i| !matches!(i.family, Family::Masked | Family::Full) && !i.last_block)
        .map(|i| i.method)
        .collect();
    assert_eq!(rows, METHODS.to_vec());
    for (n, i) in TABLE.iter().enumerate() {
        assert_eq!(
            i.method as usize, n,
            "{}: TABLE is in the variants' order",
            i.name
        );
        assert_eq!(i.method.info().name, i.name);
        assert_eq!(Method::parse(i.name).unwrap(), i.method, "{}", i.name);
    }
    let e = Method::parse("nope").unwrap_err().to_string();
    assert!(
        e.contains("use gradcam, gradcampp,")
            && e.contains(
                "gradcampp-official (last block), shapleycam (last block), scorecam, scorecam-official"
            ),
        "{e}"
    );
}
