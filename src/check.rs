//! `combicam-gpu check`: a small random network on the chosen adapter against the CPU
//! reference model, block by block: the self-test a user runs on their own GPU (and the
//! model test of the test suite).

use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::efficientnet::{ModelGpu, Plan, PlanOptions, Score};
use crate::model::weights::{self, Layout};
use crate::model::{cpu, detweights};
use crate::ops::tolerance::{Tolerance, compare, map_tolerance};

/// Returns whether everything agreed.
pub fn run(gpu: &Gpu, variant: usize, h: usize, w: usize) -> Result<bool> {
    let wts = weights::formula(variant, Layout::Visloc, 500);
    let nb = wts.cfg.blocks.len();
    println!(
        "check: {} with random weights, 500 cells, {h}×{w} input, on {}",
        wts.cfg.name(),
        gpu.adapter.line()
    );
    let x = detweights::input(h, w);
    let f = cpu::forward(&wts, &x, h, w);
    let grads = cpu::backward(&wts, &f, f.argmax, false, 0);
    let all: Vec<usize> = (0..nb).collect();
    let (maps, combi) = cpu::gradcam(&wts, &f, &grads, &all, h, w);
    let m = ModelGpu::upload(gpu, wts.clone())?;
    let plan = Plan::new(
        gpu,
        &m,
        h,
        w,
        PlanOptions {
            backward: true,
            blocks: all,
        },
    )?;
    // another image first: nothing may leak from one run into the next
    let other: Vec<f32> = x.iter().rev().map(|v| v * 0.5).collect();
    plan.run(gpu, &other, None, Score::Prob)?;
    let o = plan.run(gpu, &x, None, Score::Prob)?;
    let tol = |v: &[f32]| Tolerance::new(1e-3, 1e-4).scaled(v);
    let mut ok = true;
    let mut show = |name: String, got: &[f32], want: &[f32], shape: &[usize], t: Tolerance| {
        let c = compare(&name, got, want, shape, t);
        println!(
            "{}",
            if c.ok() {
                c.report.lines().next().unwrap().to_string()
            } else {
                c.report.clone()
            }
        );
        ok &= c.ok();
    };
    let (sh, sw, _) = wts.cfg.sizes(h, w);
    show(
        "stem".into(),
        &gpu.read(&plan.stem)?,
        &f.stem,
        &[wts.cfg.stem, sh, sw],
        tol(&f.stem),
    );
    for l in 0..nb {
        let shape = [wts.cfg.blocks[l].cout, f.sizes[l].0, f.sizes[l].1];
        show(
            format!("block.{l:02}"),
            &gpu.read(&plan.outs[l])?,
            &f.blocks[l].out,
            &shape,
            tol(&f.blocks[l].out),
        );
    }
    show(
        "features".into(),
        &gpu.read(&plan.features)?,
        &f.features,
        &[f.features.len()],
        tol(&f.features),
    );
    show(
        "probs".into(),
        &o.probs,
        &f.probs,
        &[o.probs.len()],
        tol(&f.probs),
    );
    for l in (0..nb).rev() {
        let g = grads[l].as_ref().unwrap();
        let shape = [wts.cfg.blocks[l].cout, f.sizes[l].0, f.sizes[l].1];
        show(
            format!("grad.{l:02}"),
            &gpu.read(plan.grads[l].as_ref().unwrap())?,
            g,
            &shape,
            tol(g),
        );
    }
    let largest = maps.iter().flatten().flatten().fold(0f32, |a, &v| a.max(v));
    for l in 0..nb {
        let want = maps[l].as_ref().unwrap();
        show(
            format!("gradcam.{l:02}"),
            o.maps[l].as_ref().unwrap(),
            want,
            &[f.sizes[l].0, f.sizes[l].1],
            map_tolerance(want, largest),
        );
    }
    show(
        "combicam".into(),
        &o.combicam,
        &combi,
        &[h, w],
        Tolerance::new(0.0, 1e-3),
    );
    if o.target != f.argmax {
        println!("top cell differs: GPU {} CPU {}", o.target, f.argmax);
        ok = false;
    }
    println!(
        "{}",
        if ok {
            "check passed: the GPU agrees with the CPU reference"
        } else {
            "check FAILED: see the mismatches above"
        }
    );
    Ok(ok)
}
