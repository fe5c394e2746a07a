//! ROAD against pytorch-grad-cam 1.5.7's own classes with the imputer's noise at 0
//! (tests/golden/make_road.py): the imputed inputs, and the probability changes at every
//! percentile on the trained Lite0, the coffee photo and a smooth map; plus the imputer's own
//! properties on awkward shapes.

use crate::common::{check, rand, shared_gpu};
use crate::model::{golden, lite0_coffee};
use combicam_gpu::app::engine::Engine;
use combicam_gpu::app::eval::{self, Protocol};
use combicam_gpu::app::road;
use combicam_gpu::ops::Tolerance;

#[test]
fn road_of_the_trained_lite0_matches_pytorch_grad_cam() {
    let (gd, meta) = golden("road_lite0_coffee.safetensors");
    let (wts, p) = lite0_coffee(&meta);
    let (h, w) = (p.height, p.width);
    let map = &gd["map"].1;
    // the imputer alone: the removed pixels' linear fill (f64 Cholesky against scipy's
    // spsolve, both rounded to f32)
    for (name, p_, most) in [("morf30", 30, true), ("lerf70", 70, false)] {
        let keep = road::kept(map, p_, most);
        let got = road::impute(&p.tensor, (h, w), &keep, 0.0, 0).unwrap();
        // measured, 2026-12-03: 6.0e-8 at worst, both
        check(
            &format!("road {name}"),
            &got,
            &gd[name].1,
            &[3, h, w],
            Tolerance::new(0.0, 1e-4),
        );
    }
    let mut engine = Engine::new(shared_gpu().clone(), wts).unwrap();
    let target: usize = meta["target"].parse().unwrap();
    let y = gd["y"].1[0];
    let protocol = Protocol {
        steps: 1,
        batch: 4,
        road_noise: Some(0.0),
    };
    let m = eval::metrics(
        &mut engine,
        &p.tensor,
        (h, w),
        map,
        (target, y),
        &protocol,
        &mut |_| {},
    )
    .unwrap();
    let r = m.road.expect("ROAD was asked for");
    // the contract: within 1e-4 of pytorch-grad-cam's probability changes; measured on
    // lavapipe, 2026-12-03: MoRF 2.7e-7, LeRF 9.5e-7 at worst
    check(
        "road morf",
        &r.morf,
        &gd["morf"].1,
        &[9],
        Tolerance::new(0.0, 1e-4),
    );
    check(
        "road lerf",
        &r.lerf,
        &gd["lerf"].1,
        &[9],
        Tolerance::new(0.0, 1e-4),
    );
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / 9.0;
    let (morf, lerf) = (mean(&gd["morf"].1), mean(&gd["lerf"].1));
    assert!(
        (r.combined - (lerf - morf) / 2.0).abs() < 1e-4,
        "combined {} vs {}",
        r.combined,
        (lerf - morf) / 2.0
    );
}

#[test]
fn imputer_fills_with_neighbour_means_on_awkward_shapes() {
    // odd sizes, a 1-pixel-wide image, removed pixels on the borders and corners: every
    // removed pixel equals the weighted mean of its neighbours inside the image (the system's
    // definition), kept pixels are untouched, and σ = 0 is deterministic
    let weights = |dy: i64, dx: i64| {
        if dy == 0 || dx == 0 {
            1.0 / 6.0
        } else {
            1.0 / 12.0
        }
    };
    for (case, &(h, w)) in [(7usize, 5usize), (1, 9), (13, 1), (31, 17)]
        .iter()
        .enumerate()
    {
        let x = rand(3 * h * w, 4000 + case as u64, -1.0, 1.0);
        let s = rand(h * w, 4100 + case as u64, 0.0, 1.0);
        let keep = road::kept(&s, 40, true);
        assert!(keep.iter().any(|&k| k) && keep.iter().any(|&k| !k));
        let got = road::impute(&x, (h, w), &keep, 0.0, 0).unwrap();
        let mut worst = 0f64;
        for c in 0..3 {
            for i in 0..h * w {
                let v = got[c * h * w + i] as f64;
                if keep[i] {
                    assert_eq!(v as f32, x[c * h * w + i], "a kept pixel moved");
                    continue;
                }
                let (y, xx) = ((i / w) as i64, (i % w) as i64);
                let (mut num, mut den) = (0.0, 0.0);
                for dy in -1..=1i64 {
                    for dx in -1..=1i64 {
                        let (ny, nx) = (y + dy, xx + dx);
                        if (dy, dx) == (0, 0)
                            || ny < 0
                            || nx < 0
                            || ny >= h as i64
                            || nx >= w as i64
                        {
                            continue;
                        }
                        let j = ny as usize * w + nx as usize;
                        num += weights(dy, dx) * got[c * h * w + j] as f64;
                        den += weights(dy, dx);
                    }
                }
                worst = worst.max((v - num / den).abs());
            }
        }
        // f32 rounding of an f64 solve: measured ≤ 1.2e-7
        assert!(
            worst < 1e-6,
            "{h}x{w}: a removed pixel is {worst} from its neighbours' mean"
        );
        println!("imputer {h}x{w}: max |pixel − neighbours' mean| {worst:.2e}");
        let noisy = road::impute(&x, (h, w), &keep, 0.01, 7).unwrap();
        assert_eq!(
            noisy,
            road::impute(&x, (h, w), &keep, 0.01, 7).unwrap(),
            "seeded noise repeats"
        );
        assert_ne!(noisy, got, "σ = 0.01 adds noise");
    }
    // nothing kept: no system to solve; the removed pixels are 0 (plus noise)
    let x = rand(3 * 6, 4200, -1.0, 1.0);
    let all = road::impute(&x, (2, 3), &[false; 6], 0.0, 0).unwrap();
    assert!(all.iter().all(|&v| v == 0.0));
}
