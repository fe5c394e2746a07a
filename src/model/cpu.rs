//! The whole model on the CPU, built only from the ops' plain-loop references: the spec the
//! GPU plan is checked against, block by block.

use super::weights::Weights;
use crate::ops::hvp::Direction;
use crate::ops::{conv, depthwise, gemm, head, reduce, se};
use crate::ops::{conv::ConvShape, reduce::Reduce};

/// Forward intermediates of one block.
pub struct BlockState {
    pub ze: Option<Vec<f32>>,
    pub zd: Vec<f32>,
    /// the SE's squeeze pre-activation (empty without SE)
    pub r: Vec<f32>,
    /// the SE's channel scale (ones without SE)
    pub s: Vec<f32>,
    pub out: Vec<f32>,
}

pub struct Forward {
    pub sizes: Vec<(usize, usize)>,
    pub stem: Vec<f32>,
    pub blocks: Vec<BlockState>,
    pub zh: Vec<f32>,
    pub features: Vec<f32>,
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
    pub argmax: usize,
}

/// Run block `l` on input `x`.
pub fn block_forward(wts: &Weights, l: usize, x: &[f32], ih: usize, iw: usize) -> BlockState {
    let b = &wts.cfg.blocks[l];
    let bw = &wts.blocks[l];
    let cm = b.cmid();
    let act = wts.cfg.family.act();
    let ze = bw
        .expand
        .as_ref()
        .map(|e| gemm::cpu::gemm(&e.w, x, Some(&e.b), None, None, (cm, b.cin, ih * iw)));
    let dws = b.dw_shape(ih, iw);
    let (oh, ow) = dws.out();
    let zd = depthwise::cpu::forward(
        dws,
        ze.is_some().then_some(act),
        ze.as_deref().unwrap_or(x),
        &bw.dw.w,
        &bw.dw.b,
    );
    let (r, s) = match &bw.se {
        Some((se_r, se_x)) => {
            let pooled = reduce::cpu::rows(Reduce::MeanAct(act), &zd, None, cm, oh * ow);
            let sh = b.se_shape(oh * ow);
            se::cpu::forward(
                (sh, se::GPU_ORDER),
                &se_r.w,
                &se_r.b,
                &se_x.w,
                &se_x.b,
                &pooled,
            )
        }
        None => (Vec::new(), vec![1.0; cm]),
    };
    let res = if b.residual() { Some(x) } else { None };
    let out = gemm::cpu::gemm(
        &bw.project.w,
        &zd,
        Some(&bw.project.b),
        Some((act, &s)),
        res,
        (b.cout, cm, oh * ow),
    );
    BlockState { ze, zd, r, s, out }
}

/// Head from the last block's output: (zh, features, logits).
pub fn head_forward(wts: &Weights, x: &[f32], hw: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let cfg = &wts.cfg;
    let last = cfg.blocks.last().unwrap().cout;
    let zh = gemm::cpu::gemm(
        &wts.head_conv.w,
        x,
        Some(&wts.head_conv.b),
        None,
        None,
        (cfg.head, last, hw),
    );
    let features = reduce::cpu::rows(Reduce::MeanAct(cfg.family.act()), &zh, None, cfg.head, hw);
    let logits = head::cpu::linear(
        &wts.classifier.w,
        &features,
        &wts.classifier.b,
        wts.classifier.n,
        cfg.head,
    );
    (zh, features, logits)
}

/// Blocks `from..` and the head, starting from block `from`'s input `x`. Returns the logits.
pub fn forward_from(
    wts: &Weights,
    from: usize,
    x: &[f32],
    sizes: &[(usize, usize)],
    input_size: (usize, usize),
) -> Vec<f32> {
    let mut cur = x.to_vec();
    let mut prev = if from == 0 {
        input_size
    } else {
        sizes[from - 1]
    };
    debug_assert_eq!(sizes.len(), wts.cfg.blocks.len(), "a size per block");
    for (l, &size) in sizes.iter().enumerate().skip(from) {
        cur = block_forward(wts, l, &cur, prev.0, prev.1).out;
        prev = size;
    }
    head_forward(wts, &cur, prev.0 * prev.1).2
}

pub fn forward(wts: &Weights, input: &[f32], h: usize, w: usize) -> Forward {
    let cfg = &wts.cfg;
    let (sh, sw, sizes) = cfg.sizes(h, w);
    let stem = conv::cpu::conv(
        ConvShape::new((3, h, w), cfg.stem, 3, 2, cfg.stem_pad),
        Some(cfg.family.act()),
        input,
        &wts.stem.w,
        &wts.stem.b,
    );
    let mut blocks: Vec<BlockState> = Vec::new();
    let mut prev = (sh, sw);
    for l in 0..cfg.blocks.len() {
        let x = if l == 0 { &stem } else { &blocks[l - 1].out };
        let st = block_forward(wts, l, x, prev.0, prev.1);
        blocks.push(st);
        prev = sizes[l];
    }
    let (zh, features, logits) = head_forward(wts, &blocks.last().unwrap().out, prev.0 * prev.1);
    let (probs, argmax) = head::cpu::softmax(&logits);
    Forward {
        sizes,
        stem,
        blocks,
        zh,
        features,
        logits,
        probs,
        argmax,
    }
}

/// ∂score/∂(block output) for blocks `lo..`, index = block.
pub fn backward(
    wts: &Weights,
    f: &Forward,
    target: usize,
    logit_score: bool,
    lo: usize,
) -> Vec<Option<Vec<f32>>> {
    let cfg = &wts.cfg;
    let nb = cfg.blocks.len();
    let last = cfg.blocks[nb - 1].cout;
    let hw = f.sizes[nb - 1].0 * f.sizes[nb - 1].1;
    let g = head::cpu::dlogits(&f.probs, target, logit_score);
    let df = head::cpu::linear_backward(&wts.classifier.w, &g, wts.classifier.n, cfg.head);
    let dzh = reduce::cpu::pool_backward(cfg.family.act(), &f.zh, &df, cfg.head, hw);
    let head_wt = gemm::cpu::transpose(&wts.head_conv.w, cfg.head, last);
    let mut grads: Vec<Option<Vec<f32>>> = vec![None; nb];
    grads[nb - 1] = Some(gemm::cpu::gemm(
        &head_wt,
        &dzh,
        None,
        None,
        None,
        (last, cfg.head, hw),
    ));
    for l in (lo + 1..nb).rev() {
        let (ih, iw) = f.sizes[l - 1];
        grads[l - 1] = Some(block_backward(
            wts,
            l,
            &f.blocks[l],
            grads[l].as_ref().unwrap(),
            ih,
            iw,
        ));
    }
    grads
}

/// Gradient at block `l`'s input from the gradient `gout` at its output (state `st`, input ih×iw).
pub fn block_backward(
    wts: &Weights,
    l: usize,
    st: &BlockState,
    gout: &[f32],
    ih: usize,
    iw: usize,
) -> Vec<f32> {
    let b = &wts.cfg.blocks[l];
    let bw = &wts.blocks[l];
    let cm = b.cmid();
    let dws = b.dw_shape(ih, iw);
    let (oh, ow) = dws.out();
    let pwt = gemm::cpu::transpose(&bw.project.w, b.cout, cm);
    let act = wts.cfg.family.act();
    let du = gemm::cpu::gemm(&pwt, gout, None, None, None, (cm, b.cout, oh * ow));
    let sh = b.se_shape(oh * ow);
    let dm = match &bw.se {
        Some((se_r, se_x)) => {
            let ds = reduce::cpu::rows(Reduce::DotAct(act), &du, Some(&st.zd), cm, oh * ow);
            se::cpu::backward((sh, se::GPU_ORDER), &se_r.w, &se_x.w, &st.r, &st.s, &ds)
        }
        None => vec![0.0; cm],
    };
    let dzd = se::cpu::apply_backward(act, sh, &st.s, &dm, &du, &st.zd);
    let res = if b.residual() { Some(gout) } else { None };
    match &bw.expand {
        Some(e) => {
            let zin = st.ze.as_deref().map(|z| (act, z));
            let dze = depthwise::cpu::backward(dws, &dzd, &bw.dw.w, zin, None);
            let ewt = gemm::cpu::transpose(&e.w, cm, b.cin);
            gemm::cpu::gemm(&ewt, &dze, None, None, res, (b.cin, cm, ih * iw))
        }
        None => depthwise::cpu::backward(dws, &dzd, &bw.dw.w, None, res),
    }
}

/// Per-block Grad-CAM maps for `blocks`, and the normalised Combi-CAM at h×w.
pub fn gradcam(
    wts: &Weights,
    f: &Forward,
    grads: &[Option<Vec<f32>>],
    blocks: &[usize],
    h: usize,
    w: usize,
) -> (Vec<Option<Vec<f32>>>, Vec<f32>) {
    explain(
        wts,
        f,
        grads,
        blocks,
        crate::cam::methods::Explainer::COMBICAM,
        (h, w),
        false,
    )
}

/// Any explainer's per-block maps for `blocks`, and its normalised fused map at h×w.
pub fn explain(
    wts: &Weights,
    f: &Forward,
    grads: &[Option<Vec<f32>>],
    blocks: &[usize],
    e: crate::cam::methods::Explainer,
    (h, w): (usize, usize),
    eigen_smooth: bool,
) -> (Vec<Option<Vec<f32>>>, Vec<f32>) {
    let outs: Vec<&[f32]> = f.blocks.iter().map(|b| b.out.as_slice()).collect();
    let gs: Vec<&[f32]> = grads.iter().map(|g| g.as_deref().unwrap_or(&[])).collect();
    let channels: Vec<usize> = wts.cfg.blocks.iter().map(|b| b.cout).collect();
    let nb = wts.cfg.blocks.len();
    let hvp = e.method.hvp_direction().map(|dir| {
        let (lh, lw) = f.sizes[nb - 1];
        head_hvp(wts, &f.blocks[nb - 1].out, (lh * lw, dir), f.argmax)
    });
    let b = crate::cam::phase::cpu::Blocks {
        a: &outs,
        g: &gs,
        hvp: hvp.as_deref(),
        channels: &channels,
        sizes: &f.sizes,
        blocks,
        h,
        w,
        eigen_smooth,
    };
    crate::cam::phase::cpu::explain(e, &b)
}

/// g = ∂p_c/∂A through the head, for the last block's output `a` (C, hw).
pub fn head_grad(wts: &Weights, a: &[f32], hw: usize, target: usize) -> Vec<f32> {
    let cfg = &wts.cfg;
    let (c, k, n) = (cfg.blocks.last().unwrap().cout, cfg.head, wts.classifier.n);
    let act = cfg.family.act();
    let (zh, _, logits) = head_forward(wts, a, hw);
    let (probs, _) = head::cpu::softmax(&logits);
    let dl = head::cpu::dlogits(&probs, target, false);
    let df = head::cpu::linear_backward(&wts.classifier.w, &dl, n, k);
    let dz = reduce::cpu::pool_backward(act, &zh, &df, k, hw);
    let wt = gemm::cpu::transpose(&wts.head_conv.w, k, c);
    gemm::cpu::gemm(&wt, &dz, None, None, None, (c, k, hw))
}

/// h = H·t through the head, t = 1 (∂(Σ g)/∂A) or t = A (`dir`), H the Hessian of the
/// target's probability (the derivation in shaders/hvp.wgsl).
pub fn head_hvp(
    wts: &Weights,
    a: &[f32],
    (hw, dir): (usize, Direction),
    target: usize,
) -> Vec<f32> {
    let cfg = &wts.cfg;
    let (c, k, n) = (cfg.blocks.last().unwrap().cout, cfg.head, wts.classifier.n);
    let act = cfg.family.act();
    let w = &wts.head_conv.w;
    let w1: Vec<f32> = (0..k).map(|r| w[r * c..(r + 1) * c].iter().sum()).collect();
    let (zh, _, logits) = head_forward(wts, a, hw);
    let (p, _) = head::cpu::softmax(&logits);
    let dl = head::cpu::dlogits(&p, target, false);
    let df = head::cpu::linear_backward(&wts.classifier.w, &dl, n, k);
    // ż[r, q] = (W·t)[r, q]: w1[r], or z − b
    let b = &wts.head_conv.b;
    let zdot = |r: usize, z: f32| match dir {
        Direction::Ones => w1[r],
        Direction::Activations => z - b[r],
    };
    let fdot: Vec<f32> = match dir {
        Direction::Ones => {
            let m = reduce::cpu::rows(reduce::Reduce::MeanDAct(act), &zh, None, k, hw);
            m.iter().zip(&w1).map(|(a, b)| a * b).collect()
        }
        Direction::Activations => (0..k)
            .map(|r| {
                let row = &zh[r * hw..(r + 1) * hw];
                row.iter().map(|&z| act.grad(z) * zdot(r, z)).sum::<f32>() / hw as f32
            })
            .collect(),
    };
    let ldot = head::cpu::linear(&wts.classifier.w, &fdot, &vec![0.0; n], n, k);
    let dot: f32 = p.iter().zip(&ldot).map(|(a, b)| a * b).sum();
    let pdot_c = p[target] * (ldot[target] - dot);
    let ddl: Vec<f32> = (0..n)
        .map(|i| {
            let hit = if i == target { 1.0 } else { 0.0 };
            pdot_c * (hit - p[i]) - p[target] * p[i] * (ldot[i] - dot)
        })
        .collect();
    let dfdot = head::cpu::linear_backward(&wts.classifier.w, &ddl, n, k);
    let mut dz = vec![0f32; k * hw];
    for r in 0..k {
        for q in 0..hw {
            let z = zh[r * hw + q];
            dz[r * hw + q] =
                (dfdot[r] * act.grad(z) + df[r] * act.grad2(z) * zdot(r, z)) / hw as f32;
        }
    }
    let wt = gemm::cpu::transpose(w, k, c);
    gemm::cpu::gemm(&wt, &dz, None, None, None, (c, k, hw))
}
