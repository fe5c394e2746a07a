//! `combicam-gpu check`: a small random network on the chosen adapter against the CPU
//! reference model, block by block: the self-test a user runs on their own GPU (and the
//! model test of the test suite).

use crate::cam::eigen::MAX_KPCA_POSITIONS;
use crate::cam::methods::{Explainer, METHODS, Method};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::config::Family;
use crate::model::efficientnet::ModelGpu;
use crate::model::plan::{Output, Plan, PlanOptions, Score};
use crate::model::weights::{self, Layout, Weights};
use crate::model::{cpu, detweights};
use crate::ops::tolerance::{Tolerance, compare, map_tolerance, xgradcam_tolerance};

/// The test network `check` runs for an architecture name (`b0`, `lite0`, `tf_b0`, or any
/// name `weights::parse_arch` reads): visloc B0–B7 with 500 cells, the others with 1000
/// ImageNet classes in their own key layout.
pub fn test_network(arch: &str) -> Result<Weights> {
    let t = arch.trim().to_lowercase();
    let name = match t.as_str() {
        b if b.len() == 2 && b.starts_with('b') => format!("visloc_{b}"),
        l if l.starts_with("lite") => format!("efficientnet_{l}"),
        tf if tf.starts_with("tf_b") => format!("tf_efficientnet_{}", &tf[3..]),
        other => other.to_string(),
    };
    let Some((family, v)) = weights::parse_arch(&name) else {
        return Err(crate::error::Error::Input(format!(
            "unknown architecture {arch:?}: use b0 … b7 (visloc), lite0 … lite4, tf_b0 … tf_b7, or a timm name such as efficientnet_b3"
        )));
    };
    let cfg = crate::model::config::efficientnet(v, family);
    Ok(match family {
        Family::Visloc => weights::formula_for(cfg, Layout::Visloc, 500),
        Family::Lite => weights::formula_for(cfg, Layout::EfficientnetPytorch, 1000),
        Family::Timm | Family::TimmTf => weights::formula_for(cfg, Layout::Timm, 1000),
    })
}

/// What `check` compares in its main plan: Combi-CAM first, then every other method with its
/// default fusion but KPCA-CAM, which gets a plan of its own at the blocks it takes.
fn explainers() -> Vec<Explainer> {
    let mut v = vec![Explainer::COMBICAM];
    let every = METHODS.iter().skip(1).filter(|&&m| m != Method::KpcaCam);
    v.extend(every.map(|&m| Explainer::of(m)));
    v
}

/// Returns whether everything agreed.
pub fn run(gpu: &Gpu, wts: Weights, h: usize, w: usize) -> Result<bool> {
    let nb = wts.cfg.blocks.len();
    println!(
        "check: {} ({:?} family) with random weights, {} outputs, {h}×{w} input, on {}",
        wts.cfg.name(),
        wts.cfg.family,
        wts.classifier.n,
        gpu.adapter.line()
    );
    let x = detweights::input(h, w);
    let f = cpu::forward(&wts, &x, h, w);
    let grads = cpu::backward(&wts, &f, f.argmax, false, 0);
    let all: Vec<usize> = (0..nb).collect();
    let all_blocks = all.clone();
    let m = ModelGpu::upload(gpu, wts.clone())?;
    let plan = Plan::new(
        gpu,
        &m,
        h,
        w,
        PlanOptions {
            backward: true,
            blocks: all,
            explainers: explainers(),
            masked: 0,
            eigen_smooth: false,
            images: 1,
        },
    )?;
    // another image first: nothing may leak from one run into the next
    let other: Vec<f32> = x.iter().rev().map(|v| v * 0.5).collect();
    plan.run(gpu, &other, None, Score::Prob)?;
    let o = plan.run(gpu, &x, None, Score::Prob)?;
    let mut s = Shown { ok: true };
    s.forward_and_gradients(gpu, (&plan, &o), &wts, &f, &grads)?;
    s.maps(&wts, (&f, &grads), &o, (&all_blocks, (h, w)));
    // KPCA-CAM at the blocks of 16 to 4,096 positions: with fewer, random weights leave the
    // centred kernel matrix's top eigenvalues nearly tied (on 2 positions its sign is a tie),
    // so f32 rounding of the block outputs decides the map
    let fits: Vec<usize> = (0..nb)
        .filter(|&l| (16..=MAX_KPCA_POSITIONS).contains(&(f.sizes[l].0 * f.sizes[l].1)))
        .collect();
    println!(
        "kpcacam: compared at the {} blocks of 16 to {MAX_KPCA_POSITIONS} positions",
        fits.len()
    );
    if !fits.is_empty() {
        let opts = PlanOptions {
            backward: true,
            blocks: fits.clone(),
            explainers: vec![Explainer::of(Method::KpcaCam)],
            masked: 0,
            eigen_smooth: false,
            images: 1,
        };
        let ko = Plan::new(gpu, &m, h, w, opts)?.run(gpu, &x, None, Score::Prob)?;
        s.maps(&wts, (&f, &grads), &ko, (&fits, (h, w)));
    }
    let mut ok = s.ok;
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

/// KPCA-CAM's maps with random weights: 2e-3 of the peak (the kernel itself agrees with its
/// reference to 2.5e-6 of the peak, and with pytorch-grad-cam on the trained Lite0 to 3.4e-5).
fn kpca_tolerance(want: &[f32]) -> Tolerance {
    Tolerance::new(0.0, 2e-3 * crate::ops::tolerance::peak(want))
}

/// The tolerance of the activations and gradients: rel 1e-3, abs 1e-4 of the tensor's scale.
fn tol(v: &[f32]) -> Tolerance {
    Tolerance::new(1e-3, 1e-4).scaled(v)
}

/// The comparisons printed so far, and whether all held.
struct Shown {
    ok: bool,
}

impl Shown {
    /// Compare, print the first line of the report (all of it on a mismatch).
    fn show(&mut self, name: &str, got: &[f32], want: &[f32], shape: &[usize], t: Tolerance) {
        let c = compare(name, got, want, shape, t);
        println!(
            "{}",
            if c.ok() {
                c.report.lines().next().unwrap().to_string()
            } else {
                c.report.clone()
            }
        );
        self.ok &= c.ok();
    }

    /// The stem, every block output, the features, the probabilities and every block's
    /// gradient.
    fn forward_and_gradients(
        &mut self,
        gpu: &Gpu,
        (plan, o): (&Plan, &Output),
        wts: &Weights,
        f: &cpu::Forward,
        grads: &[Option<Vec<f32>>],
    ) -> Result<()> {
        let nb = wts.cfg.blocks.len();
        let (h, w) = (plan.h, plan.w);
        let (sh, sw, _) = wts.cfg.sizes(h, w);
        let stem_shape = [wts.cfg.stem, sh, sw];
        self.show(
            "stem",
            &gpu.read(&plan.stem)?,
            &f.stem,
            &stem_shape,
            tol(&f.stem),
        );
        for l in 0..nb {
            let shape = [wts.cfg.blocks[l].cout, f.sizes[l].0, f.sizes[l].1];
            let want = &f.blocks[l].out;
            let got = gpu.read(&plan.outs[l])?;
            self.show(&format!("block.{l:02}"), &got, want, &shape, tol(want));
        }
        let got = gpu.read(&plan.features)?;
        self.show(
            "features",
            &got,
            &f.features,
            &[f.features.len()],
            tol(&f.features),
        );
        self.show("probs", &o.probs, &f.probs, &[o.probs.len()], tol(&f.probs));
        for l in (0..nb).rev() {
            let g = grads[l].as_ref().unwrap();
            let shape = [wts.cfg.blocks[l].cout, f.sizes[l].0, f.sizes[l].1];
            let got = gpu.read(plan.grads[l].as_ref().unwrap())?;
            self.show(&format!("grad.{l:02}"), &got, g, &shape, tol(g));
        }
        Ok(())
    }

    /// Every explainer's maps at `blocks` and its fused map against the CPU reference's
    /// (Combi-CAM against the reference of the paper's algorithm).
    fn maps(
        &mut self,
        wts: &Weights,
        (f, grads): (&cpu::Forward, &[Option<Vec<f32>>]),
        o: &Output,
        (blocks, (h, w)): (&[usize], (usize, usize)),
    ) {
        for eo in &o.explainers {
            let e = eo.explainer;
            let (maps, fused) = match e == Explainer::COMBICAM {
                true => cpu::gradcam(wts, f, grads, blocks, h, w),
                false => cpu::explain(wts, f, grads, blocks, e, (h, w), false),
            };
            let largest = maps.iter().flatten().flatten().fold(0f32, |a, &v| a.max(v));
            for (l, want) in maps.iter().enumerate() {
                let Some(want) = want.as_ref() else {
                    continue; // not a selected block
                };
                let tol = match e.method {
                    Method::XGradCam => xgradcam_tolerance(want, largest),
                    // the kernel matrix's eigenvector moves more with the block outputs' f32
                    // rounding than a weighted sum: b0, lite0 and tf_b0 at 41×37, 67×45,
                    // 33×29, 50×50 and 80×61, 2026-12-03, 9.1e-4 of the peak at worst
                    // (tf_b0 33×29, a 5×4 block)
                    Method::KpcaCam => kpca_tolerance(want),
                    _ => map_tolerance(want, largest),
                };
                let shape = [f.sizes[l].0, f.sizes[l].1];
                let name = format!("{}.{l:02}", e.method.name());
                self.show(&name, eo.maps[l].as_ref().unwrap(), want, &shape, tol);
            }
            let fused_tol = Tolerance::new(0.0, 1e-3);
            self.show(&e.fused_name(), &eo.fused, &fused, &[h, w], fused_tol);
        }
    }
}
