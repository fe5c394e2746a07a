//! The pointwise GEMM's kernels (`Regs`, `RegsSubgroup`, `Tiled`, `Slim`) against the
//! plain-Rust reference on awkward shapes, over a batch of two images, with every row partial.

use crate::common::{check, first_bit_difference, gpu, rand, read, up, zeros};
use crate::ops::{act_of, tol_for};
use combicam_gpu::ops::gemm::{self, GemmArgs, GemmWeights, InMode, PartOp, Variant, XPack};

#[test]
fn gemm_matches_reference() {
    let g = gpu();
    let cases = [
        (13, 7, 97, false, false, false),
        (70, 33, 130, true, true, true),
        (1, 5, 1, true, false, false),
        (130, 65, 257, true, true, false),
        (24, 144, 4075, false, false, true),
        (67, 40, 150, true, true, false),
        (33, 20, 71, true, false, true),
        // long K over few positions (`Slim`'s shapes): K steps that the four (`SlimWide`:
        // eight) groups of a workgroup share unevenly (for `SlimWide`, K = 301 and 530 leave
        // the eighth group none, 1,001 gives it 7 of its 8), P past one and two 32-column
        // tiles; 1,001 is in the range `Variant::for_k` gives `SlimWide` (≥ 768)
        (37, 301, 45, true, true, true),
        (70, 530, 97, true, true, false),
        (45, 1001, 33, false, true, true),
    ];
    // every case over a batch of two images (workgroup z), each against the CPU on its own:
    // its x, SE scale and residual one after another in each buffer, the weights shared
    const B: usize = 2;
    for (i, &(m, k, p, bias, scaled, res)) in cases.iter().enumerate() {
        let a = rand(m * k, 1 + i as u64, -1.0, 1.0);
        let x = rand(B * k * p, 100 + i as u64, -8.0, 8.0);
        let b = rand(m, 200 + i as u64, -1.0, 1.0);
        let act = act_of(i);
        let s = rand(B * k, 300 + i as u64, 0.0, 1.0);
        let r = rand(B * m * p, 400 + i as u64, -1.0, 1.0);
        let ab = GemmWeights::upload(g, "test.a", &a, m, k).unwrap();
        let (xb, bb, sb, rb) = (up(&x), up(&b), up(&s), up(&r));
        let want: Vec<Vec<f32>> = (0..B)
            .map(|n| {
                gemm::cpu::gemm(
                    &a,
                    &x[n * k * p..(n + 1) * k * p],
                    bias.then_some(&b[..]),
                    scaled.then_some((act, &s[n * k..(n + 1) * k])),
                    res.then_some(&r[n * m * p..(n + 1) * m * p]),
                    (m, k, p),
                )
            })
            .collect();
        let pack = XPack::new(g, "test.pack", B * XPack::texels_for(k, p)).unwrap();
        // row partials on all cases but the first, each op in turn: Σ y·act(zd) (the
        // projection's backward), Σ y (a block output's gradient), max |y| (a block output)
        let op = match i % 3 {
            _ if i == 0 => None,
            // both activations (i = 3: ReLU6, 6: SiLU)
            0 => Some(PartOp::DotAct(act_of(i / 3))),
            1 => Some(PartOp::Sum),
            _ => Some(PartOp::MaxAbs),
        };
        let zd = rand(B * m * p, 500 + i as u64, -8.0, 8.0);
        let zdb = up(&zd);
        // every kernel, whatever this adapter would pick (`RegsSubgroup` where the device has
        // subgroups of 8, as lavapipe on AVX2 has): each against the CPU, and `RegsSubgroup`
        // bit for bit against `Regs` (the same FMAs in the same order, only fetched otherwise)
        let mut variants = vec![Variant::Regs, Variant::Tiled, Variant::Slim];
        if g.slim_wide {
            variants.push(Variant::SlimWide);
        } else if i == 0 {
            eprintln!(
                "gemm: Variant::SlimWide not tested: this device does not allow its 32 KiB of workgroup memory"
            );
        }
        if g.subgroup8 {
            variants.push(Variant::RegsSubgroup);
        } else if i == 0 {
            eprintln!("gemm: Variant::RegsSubgroup not tested: this device has no subgroups of 8");
        }
        let mut regs_y = None;
        for variant in variants {
            let yb = zeros(B * m * p);
            let parts = variant.parts(p);
            // not zeros: the groups past the data must be written (as 0), not left alone
            let partb = up(&vec![7.0; 3 + B * m * parts]);
            let args = GemmArgs {
                m,
                k,
                p,
                a: &ab,
                x: &xb.buf,
                bias: bias.then_some(&bb.buf),
                scale: scaled.then_some(&sb.buf),
                res: res.then_some(&rb.buf),
                y: &yb.buf,
                mode: if scaled {
                    InMode::ActScaled(act)
                } else {
                    InMode::Plain
                },
                pack: Some(&pack),
                parts: op.map(|op| gemm::Parts {
                    op,
                    zd: matches!(op, PartOp::DotAct(_)).then_some(&zdb.buf),
                    part: &partb.buf,
                    off: 3,
                    images: B,
                }),
            };
            let ds = gemm::gemm_variant(g, "test.gemm", &args, variant);
            g.run_now_batched(&ds.iter().collect::<Vec<_>>(), B as u32)
                .unwrap();
            let got = read(&yb);
            if matches!(variant, Variant::Regs | Variant::RegsSubgroup) && g.image_reads {
                // the same kernel reading its textures sampled: the same texels, the same bits
                let yb2 = zeros(B * m * p);
                let args2 = GemmArgs {
                    y: &yb2.buf,
                    ..args
                };
                let ds = gemm::gemm_variant_reads(g, "test.gemm", &args2, variant, false);
                g.run_now_batched(&ds.iter().collect::<Vec<_>>(), B as u32)
                    .unwrap();
                if let Some(i) = first_bit_difference(&read(&yb2), &got) {
                    panic!(
                        "gemm.{variant:?}.{m}x{k}x{p}: y[{i}] differs between image and sampled reads"
                    );
                }
            } else if i == 0 && !g.image_reads {
                eprintln!("gemm: storage-texture reads not tested: this device does not use them");
            }
            match variant {
                Variant::Regs => regs_y = Some(got.clone()),
                Variant::RegsSubgroup => {
                    let regs = regs_y.as_ref().unwrap();
                    if let Some(i) = first_bit_difference(&got, regs) {
                        panic!(
                            "gemm.RegsSubgroup.{m}x{k}x{p}: y[{i}] = {} differs from Regs' {}",
                            got[i], regs[i]
                        );
                    }
                    eprintln!("gemm.RegsSubgroup.{m}x{k}x{p}: bit-identical to Regs");
                }
                _ => {}
            }
            for (n, want) in want.iter().enumerate() {
                check(
                    &format!(
                        "gemm.{variant:?}.{m}x{k}x{p}{} image {n}",
                        if scaled {
                            format!(".{act:?}")
                        } else {
                            String::new()
                        }
                    ),
                    &got[n * m * p..(n + 1) * m * p],
                    want,
                    &[m, p],
                    tol_for(want),
                );
                if let Some(op) = op {
                    let zd = &zd[n * m * p..(n + 1) * m * p];
                    let y = &got[n * m * p..(n + 1) * m * p];
                    let shape = (parts, variant.group_width());
                    let want = gemm::cpu::row_parts(op, y, Some(zd), (m, p), shape);
                    let o = 3 + n * m * parts;
                    check(
                        &format!("gemm.{variant:?}.{m}x{k}x{p}.parts.{op:?} image {n}"),
                        &read(&partb)[o..o + m * parts],
                        &want,
                        &[m, parts],
                        tol_for(&want),
                    );
                }
            }
        }
    }
}
