//! Depthwise k×k convolution with stride, BN folded; forward and data gradient.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d},
    words,
};
use crate::ops::Act;
use crate::ops::pad::PadRule;

crate::wgsl_params! {
    /// shaders/depthwise.wgsl's `Params`
    pub struct DepthwiseParams for "depthwise" {
        c: u32, h: u32, w: u32, oh: u32, ow: u32, k: u32, stride: u32, pad_t: u32,
        inv_ohw: f32,
    }
}

/// A depthwise conv: C channels of H×W, k×k, stride; `pad_t`/`pad_l` zero rows/columns
/// before the image (after it, whatever the output size needs: asymmetric TF "SAME" padding
/// has one more after than before).
#[derive(Clone, Copy, Debug)]
pub struct DwShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad_t: usize,
    pub pad_l: usize,
    pub oh: usize,
    pub ow: usize,
}

impl DwShape {
    /// The shape with the padding `rule` gives at this size (`config::pad_out`).
    pub fn new(c: usize, h: usize, w: usize, k: usize, stride: usize, rule: PadRule) -> Self {
        let (pad_t, pad_l, oh, ow) = crate::ops::pad::pads_2d(h, w, k, stride, rule);
        DwShape {
            c,
            h,
            w,
            k,
            stride,
            pad_t,
            pad_l,
            oh,
            ow,
        }
    }
    pub fn out(&self) -> (usize, usize) {
        (self.oh, self.ow)
    }
    fn params(&self) -> DepthwiseParams {
        DepthwiseParams {
            c: self.c as u32,
            h: self.h as u32,
            w: self.w as u32,
            oh: self.oh as u32,
            ow: self.ow as u32,
            k: self.k as u32,
            stride: self.stride as u32,
            pad_t: self.pad_t as u32,
            // 1/HW as the former SE pass took it: SE_IN reads dy bit for bit as that pass wrote it
            inv_ohw: 1.0 / (self.oh * self.ow) as f32,
        }
    }
}

/// Output rows per forward invocation (TH in the shader): two with stride 1, where they
/// share K − 1 of their input rows; one with stride 2 (measured: two were not faster there).
fn fwd_rows(stride: usize) -> usize {
    if stride == 1 { 2 } else { 1 }
}

/// Output rows per backward invocation (THB in the shader).
const BWD_ROWS: usize = 2;

/// Strips of 8 along rows, 64 invocations per workgroup (see the shader).
fn strips(rows: usize, width: usize) -> [u32; 3] {
    grid_1d(((rows * width.div_ceil(8)) as u32).div_ceil(64))
}

/// What the shader's parity rule allows: the stride divides the strip width.
fn check_shape(s: &DwShape) {
    assert!(
        s.stride >= 1 && 8 % s.stride == 0 && s.k >= 1,
        "depthwise: kernel {} stride {} is outside what shaders/depthwise.wgsl handles",
        s.k,
        s.stride
    );
}

/// The template with K, S, PAD_T and PAD_L set and the kernel rows written out (see the
/// shader).
pub fn source(k: usize, stride: usize, pad_t: usize, pad_l: usize) -> String {
    let template = crate::gpu::pipelines::shader_source("depthwise");
    let (th, thb) = (fwd_rows(stride), BWD_ROWS);
    let (fwd, bwd) = (forward_rows(k, stride), backward_rows(k, stride, pad_l));
    crate::gpu::pipelines::splice(
        &template,
        &[
            ("const K = 3u;", format!("const K = {k}u;")),
            ("const S = 1u;", format!("const S = {stride}u;")),
            ("const TH = 2u;", format!("const TH = {th}u;")),
            ("const THB = 2u;", format!("const THB = {thb}u;")),
            ("const PAD_T = 1;", format!("const PAD_T = {pad_t};")),
            ("const PAD_L = 1;", format!("const PAD_L = {pad_l};")),
            ("    //@rows forward\n", fwd),
            ("    //@rows backward\n", bwd),
        ],
    )
}

/// The forward's unrolled body: TH output rows of 8 per thread, the K×K taps from the rows
/// of input each needs, the SE squeeze's partial sum, the stores.
fn forward_rows(k: usize, stride: usize) -> String {
    use std::fmt::Write;
    let mut fwd = String::new();
    let th = fwd_rows(stride);
    for u in 0..k {
        for v in 0..k {
            let _ = writeln!(fwd, "    let w{u}_{v} = wt[wrow + {}u];", u * k + v);
        }
    }
    for i in 0..th {
        for j in 0..8 {
            let _ = writeln!(fwd, "    var a{i}_{j} = b;");
        }
    }
    for r in 0..((th - 1) * stride + k) {
        let _ = writeln!(fwd, "    {{\n        let ii = i_lo + {r};");
        fwd.push_str("        if (ii >= 0 && ii < i32(prm.h)) {\n");
        fwd.push_str("            let row = base + u32(ii) * prm.w;\n");
        for t in 0..(7 * stride + k) {
            let _ = writeln!(fwd, "            let v{t} = xin(row, j_lo + {t});");
        }
        for i in 0..th {
            let Some(u) = r.checked_sub(i * stride).filter(|&u| u < k) else {
                continue;
            };
            for j in 0..8 {
                for v in 0..k {
                    let _ = writeln!(
                        fwd,
                        "            a{i}_{j} = fma(w{u}_{v}, v{}, a{i}_{j});",
                        j * stride + v
                    );
                }
            }
        }
        fwd.push_str("        }\n    }\n");
    }
    fwd.push_str("    if (POOL) {\n        var sum = 0.0;\n");
    for i in 0..th {
        for j in 0..8 {
            let _ = writeln!(
                fwd,
                "        sum += pool_term(a{i}_{j}, oi0 + {i}u, oj0 + {j}u);"
            );
        }
    }
    fwd.push_str("        part[pidx] = sum;\n    }\n");
    for i in 0..th {
        let _ = writeln!(fwd, "    if (oi0 + {i}u < prm.oh) {{");
        let _ = writeln!(
            fwd,
            "        let o = (plane * prm.oh + oi0 + {i}u) * prm.ow + oj0;"
        );
        for j in 0..8 {
            let _ = writeln!(
                fwd,
                "        if (oj0 + {j}u < prm.ow) {{ out[o + {j}u] = a{i}_{j}; }}"
            );
        }
        fwd.push_str("    }\n");
    }
    fwd
}

/// The backward's unrolled body: THB input rows of 8 per thread, gathering the output
/// gradients whose taps reach them (only the stride's slots), the stores.
fn backward_rows(k: usize, stride: usize, pad_l: usize) -> String {
    use std::fmt::Write;
    let (k_i, s_i, pad_i) = (k as i64, stride as i64, pad_l as i64);
    let slot = |t: i64| (pad_i - k_i + 1 + t).rem_euclid(s_i) == 0;
    let mut bwd = String::new();
    let thb = BWD_ROWS;
    for u in 0..k {
        for v in 0..k {
            let _ = writeln!(bwd, "    let w{u}_{v} = wt[wrow + {}u];", u * k + v);
        }
    }
    for i in 0..thb {
        for j in 0..8 {
            let _ = writeln!(bwd, "    var a{i}_{j} = 0.0;");
        }
    }
    for r in (0..(thb + k - 1)).rev() {
        let _ = writeln!(bwd, "    {{\n        let ti = r_lo + {r};");
        bwd.push_str("        if (ti >= 0 && ti % i32(S) == 0 && ti / i32(S) < i32(prm.oh)) {\n");
        bwd.push_str("            let drow = dbase + u32(ti / i32(S)) * prm.ow;\n");
        for t in (0..(8 + k_i - 1)).filter(|&t| slot(t)) {
            let _ = writeln!(bwd, "            let d{t} = dyin(drow, t_lo + {t});");
        }
        for i in 0..thb {
            // u = i + K − 1 − r
            let Some(u) = (i + k - 1).checked_sub(r).filter(|&u| u < k) else {
                continue;
            };
            for j in 0..8i64 {
                for v in 0..k_i {
                    let t = j + k_i - 1 - v;
                    if slot(t) {
                        let _ =
                            writeln!(bwd, "            a{i}_{j} = fma(w{u}_{v}, d{t}, a{i}_{j});");
                    }
                }
            }
        }
        bwd.push_str("        }\n    }\n");
    }
    for i in 0..thb {
        let _ = writeln!(bwd, "    if (y0 + {i}u < prm.h) {{");
        let _ = writeln!(bwd, "        let o = (c * prm.h + y0 + {i}u) * prm.w + x0;");
        for j in 0..8 {
            let _ = writeln!(
                bwd,
                "        if (x0 + {j}u < prm.w) {{ put_dx(o + {j}u, a{i}_{j}); }}"
            );
        }
        bwd.push_str("    }\n");
    }
    bwd
}

/// Make a dispatch of the module generated for this shape's (K, S, PAD).
fn dispatch(
    gpu: &Gpu,
    label: &str,
    s: &DwShape,
    entry: &str,
    constants: &[(&str, f64)],
    bindings: &[(u32, Option<&wgpu::Buffer>)],
    groups: [u32; 3],
) -> Dispatch {
    check_shape(s);
    let key = format!("depthwise_k{}s{}p{}_{}", s.k, s.stride, s.pad_t, s.pad_l);
    let make = || source(s.k, s.stride, s.pad_t, s.pad_l);
    gpu.dispatch(&DispatchDesc {
        label,
        family: "depthwise",
        source: Some(Source::Generated {
            key: &key,
            make: &make,
        }),
        entry,
        constants,
        params: words(&s.params()),
        bindings,
        groups,
        ..Default::default()
    })
}

/// Partial sums per channel that `forward` writes when asked for the pool: one per invocation.
pub fn pool_parts(s: &DwShape) -> usize {
    let (oh, ow) = s.out();
    oh.div_ceil(fwd_rows(s.stride)) * ow.div_ceil(8)
}

/// A depthwise forward: out = bias + dw(x'), x' = act(x) when `in_act` (x is the expand
/// conv's pre-activation), else x. With `pool` ((C, pool_parts) floats) it also writes
/// partial sums of act(out) there: the SE squeeze, which `se::forward` adds up.
pub struct DwForward<'a> {
    pub s: DwShape,
    pub act: Act,
    pub in_act: bool,
    /// (C, H, W)
    pub x: &'a wgpu::Buffer,
    /// (C, K, K), BN folded
    pub wt: &'a wgpu::Buffer,
    /// (C)
    pub bias: &'a wgpu::Buffer,
    /// (C, OH, OW), written
    pub out: &'a wgpu::Buffer,
    pub pool: Option<&'a wgpu::Buffer>,
}

pub fn forward(gpu: &Gpu, label: &str, a: &DwForward) -> Dispatch {
    let s = a.s;
    let (oh, ow) = s.out();
    let mut d = dispatch(
        gpu,
        label,
        &s,
        "forward",
        &[
            ("IN_ACT", a.in_act as u32 as f64),
            ("POOL", a.pool.is_some() as u32 as f64),
            a.act.constant(),
        ],
        &[
            (1, Some(a.wt)),
            (2, Some(a.bias)),
            (3, Some(a.x)),
            (4, Some(a.out)),
            (7, a.pool),
        ],
        strips(s.c * oh.div_ceil(fwd_rows(s.stride)), ow),
    );
    d.flops = 2.0 * (s.c * oh * ow * s.k * s.k) as f64;
    d.bytes = 4.0 * (s.c * s.h * s.w + s.c * oh * ow) as f64;
    d
}

/// A depthwise data gradient: dx = act'(zin)·dwᵀ(dy) (+ res); without `zin` (the forward's
/// input was not activated) dx = dwᵀ(dy) (+ res).
pub struct DwBackward<'a> {
    pub s: DwShape,
    pub act: Act,
    /// (C, OH, OW)
    pub dy: &'a wgpu::Buffer,
    /// (C, K, K)
    pub wt: &'a wgpu::Buffer,
    /// the forward input's pre-activation (C, H, W)
    pub zin: Option<&'a wgpu::Buffer>,
    /// the residual path's gradient, added (C, H, W)
    pub res: Option<&'a wgpu::Buffer>,
    /// dy read through the squeeze-excite's backward
    pub se_in: Option<SeIn<'a>>,
    /// (C, H, W), written
    pub dx: &'a wgpu::Buffer,
}

/// The squeeze-excite's backward applied to dy as the depthwise backward reads it:
/// dy' = (dy·s[c] + dm[c]/(OH·OW))·act'(zd), which needs no pass of its own
/// (`se::cpu::apply_backward` is the reference). Without SE: s = ones, dm = zeros.
#[derive(Clone, Copy)]
pub struct SeIn<'a> {
    /// the SE's scale (C)
    pub s: &'a wgpu::Buffer,
    /// the gradient at the SE's pooled input (C)
    pub dm: &'a wgpu::Buffer,
    /// the depthwise output's pre-activation (C, OH, OW)
    pub zd: &'a wgpu::Buffer,
}

pub fn backward(gpu: &Gpu, label: &str, a: &DwBackward) -> Dispatch {
    let s = a.s;
    let (oh, ow) = s.out();
    let in_act = a.zin.is_some();
    let consts = [
        ("IN_ACT", in_act as u32 as f64),
        ("HAS_RES", a.res.is_some() as u32 as f64),
        ("SE_IN", a.se_in.is_some() as u32 as f64),
        a.act.constant(),
    ];
    let mut d = dispatch(
        gpu,
        label,
        &s,
        "backward",
        &consts,
        &[
            (1, Some(a.wt)),
            (3, a.zin),
            (4, Some(a.dx)),
            (5, a.res),
            (6, Some(a.dy)),
            (8, a.se_in.map(|e| e.s)),
            (9, a.se_in.map(|e| e.dm)),
            (10, a.se_in.map(|e| e.zd)),
        ],
        strips(s.c * s.h.div_ceil(BWD_ROWS), s.w),
    );
    d.flops = 2.0 * (s.c * oh * ow * s.k * s.k) as f64;
    d.bytes = 4.0
        * (s.c * oh * ow * (1 + a.se_in.is_some() as usize)
            + s.c * s.h * s.w * (1 + in_act as usize + a.res.is_some() as usize)) as f64;
    d
}

pub mod cpu {
    use super::DwShape;
    use crate::ops::Act;
    use crate::ops::conv::cpu::for_each_tap;

    /// `in_act`: x is a pre-activation, read as act(x).
    pub fn forward(
        s: DwShape,
        in_act: Option<Act>,
        x: &[f32],
        wt: &[f32],
        bias: &[f32],
    ) -> Vec<f32> {
        let (oh, ow) = s.out();
        let (ohw, hw, kk) = (oh * ow, s.h * s.w, s.k * s.k);
        let mut y = vec![0f32; s.c * ohw];
        for c in 0..s.c {
            let (plane, xc, wc) = (
                &mut y[c * ohw..(c + 1) * ohw],
                &x[c * hw..(c + 1) * hw],
                &wt[c * kk..(c + 1) * kk],
            );
            plane.fill(bias[c]);
            for_each_tap(
                s.h,
                s.w,
                s.k,
                s.stride,
                (s.pad_t, s.pad_l),
                (s.oh, s.ow),
                |op, ip, t| plane[op] += wc[t] * in_act.map_or(xc[ip], |a| a.apply(xc[ip])),
            );
        }
        y
    }

    /// Scatter form of the data gradient (the GPU uses the gather form: a different order).
    pub fn backward(
        s: DwShape,
        dy: &[f32],
        wt: &[f32],
        zin: Option<(Act, &[f32])>,
        res: Option<&[f32]>,
    ) -> Vec<f32> {
        let (oh, ow) = s.out();
        let (ohw, hw, kk) = (oh * ow, s.h * s.w, s.k * s.k);
        let mut dx = vec![0f32; s.c * hw];
        for c in 0..s.c {
            let (plane, gc, wc) = (
                &mut dx[c * hw..(c + 1) * hw],
                &dy[c * ohw..(c + 1) * ohw],
                &wt[c * kk..(c + 1) * kk],
            );
            for_each_tap(
                s.h,
                s.w,
                s.k,
                s.stride,
                (s.pad_t, s.pad_l),
                (s.oh, s.ow),
                |op, ip, t| plane[ip] += wc[t] * gc[op],
            );
        }
        if let Some((act, z)) = zin {
            for (d, &zv) in dx.iter_mut().zip(z) {
                *d *= act.grad(zv);
            }
        }
        if let Some(r) = res {
            for (d, &rv) in dx.iter_mut().zip(r) {
                *d += rv;
            }
        }
        dx
    }
}
