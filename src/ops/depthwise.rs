//! Depthwise k×k convolution with stride, BN folded; forward and data gradient.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d},
    words,
};
use crate::ops::Act;
use crate::ops::gemm::GemmWeights;
use crate::ops::pad::PadRule;
use crate::ops::window::{chunk_at, floats, window};

crate::wgsl_params! {
    /// shaders/depthwise.wgsl's `Params`
    pub struct DepthwiseParams for "depthwise" {
        c: u32, h: u32, w: u32, oh: u32, ow: u32, k: u32, stride: u32, pad_t: u32,
        inv_ohw: f32, band: u32, pad_l: u32, in_act: u32,
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
    fn params(&self, in_act: bool, band: usize) -> DepthwiseParams {
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
            band: band as u32,
            pad_l: self.pad_l as u32,
            in_act: in_act as u32,
        }
    }
}

/// Output rows per invocation, forward and backward (`prm.band` in the shader): an
/// invocation slides down a band of this many rows, loading each input row once, after
/// ⌈K/S⌉ − 1 (forward) or about (K − 1)/S (backward) rows that only fill its ring. 16 with
/// the CPU-shaped kernels: on lavapipe (2-core EPYC, `cargo bench --bench kernels --
/// depthwise`, medians of five runs against 8) the B4 shapes ran 5–50% faster, the k5 s1 ones
/// most. 8 on GPUs, whose smallest maps (10×15) need the invocations.
pub fn band(gpu: &Gpu) -> usize {
    if gpu.cpu { 16 } else { 8 }
}

/// Columns per invocation (`TW` in the shader).
const TW: usize = 8;

/// Strips of 8 along rows, 64 invocations per workgroup (see the shader).
fn strips(rows: usize, width: usize) -> [u32; 3] {
    grid_1d(((rows * width.div_ceil(TW)) as u32).div_ceil(64))
}

/// What the generated code handles: the stride divides the strip width and is at most the
/// kernel size (so every row of a window belongs to some accumulator in the ring).
fn check_shape(s: &DwShape) {
    assert!(
        s.stride >= 1 && TW.is_multiple_of(s.stride) && s.k >= s.stride,
        "depthwise: kernel {} stride {} is outside what shaders/depthwise.wgsl handles",
        s.k,
        s.stride
    );
}

/// The template with K and S set and the loop bodies written out (see the shader). The
/// paddings are uniforms, so that every block of one kernel size and stride shares a
/// pipeline whatever its padding (TF "SAME" pads vary with the input), and lavapipe generates
/// code for fewer of them on a first run.
pub fn source(k: usize, stride: usize) -> String {
    let template = crate::gpu::pipelines::shader_source("depthwise");
    let (fwd, bwd) = (forward_rows(k, stride), backward_rows(k, stride));
    crate::gpu::pipelines::splice(
        &template,
        &[
            ("const K = 3u;", format!("const K = {k}u;")),
            ("const S = 1u;", format!("const S = {stride}u;")),
            ("const TW = 8u;", format!("const TW = {TW}u;")),
            ("    //@rows forward\n", fwd),
            ("    //@rows backward\n", bwd),
        ],
    )
}

/// The weights (C, K, K) as the shader reads them: channel c's K·K in row c of a texture.
pub fn upload_weights(
    gpu: &Gpu,
    label: &str,
    (c, k): (usize, usize),
    wt: &[f32],
) -> crate::error::Result<GemmWeights> {
    GemmWeights::upload(gpu, label, wt, c, k * k)
}

/// `let w{u}_{v} = ..;` for channel c's K×K weights, read as the texels of its row of `wt`.
/// Texel fetches, not storage loads: on lavapipe a storage load is written out lane by lane
/// (Mesa 25) or looped over the lanes (Mesa 22.3), a texel fetch is one gather, so the
/// kernels have less code to generate on a first run.
fn weight_lets(k: usize) -> String {
    let mut out = String::new();
    for q in 0..(k * k).div_ceil(4) {
        out += &format!("    let wq{q} = textureLoad(wt, vec2({q}u, c), 0);\n");
    }
    let ws = floats("wq", k * k);
    for u in 0..k {
        for v in 0..k {
            out += &format!("    let w{u}_{v} = {};\n", ws[u * k + v]);
        }
    }
    out
}

/// Shift a ring of accumulators `a{m}_{j}` (m < len) down by `by`, refilling with `fill`.
fn shift_ring(out: &mut String, len: usize, by: usize, fill: &str) {
    for m in 0..len {
        for j in 0..TW {
            let from = if m + by < len {
                format!("a{}_{j}", m + by)
            } else {
                fill.to_string()
            };
            out.push_str(&format!("        a{m}_{j} = {from};\n"));
        }
    }
}

/// `window` read only `when` (a WGSL condition), into vec4 variables `{name}{i}` that are
/// zeros otherwise; returns the expression of each float.
fn window_when(
    f: &mut String,
    indent: &str,
    name: &str,
    (chunk, at, len): (&str, &str, usize),
    when: &str,
) -> Vec<String> {
    let groups = len.div_ceil(4);
    for i in 0..groups {
        *f += &format!("{indent}var {name}{i} = vec4(0.0);\n");
    }
    *f += &format!("{indent}if ({when}) {{\n");
    let inner = format!("{indent}    ");
    window(f, &inner, &format!("{name}w"), chunk, at, len);
    for i in 0..groups {
        *f += &format!("{inner}{name}{i} = {name}wh{i};\n");
    }
    *f += &format!("{indent}}}\n");
    floats(name, len)
}

/// The forward's generated body: a loop down the band. Step t loads input rows
/// t·S − PAD_T + K − S + s (s < S), the last S rows of output row t's window, into a window
/// v{s}_{τ} of (TW − 1)·S + K columns; they feed the ring of M = ⌈K/S⌉ accumulator rows a{m}_{j}
/// (output row t + m, column oj0 + j) with kernel row u = K − S + s − m·S where that is in
/// [0, K). Output row t is then complete: stored (and pooled) when it is in the band, and the
/// ring shifts. The loop starts M − 1 steps early so that row oi0 gets all its rows.
fn forward_rows(k: usize, stride: usize) -> String {
    let ring = k.div_ceil(stride);
    let width = (TW - 1) * stride + k;
    let mut f = weight_lets(k);
    for m in 0..ring {
        for j in 0..TW {
            f += &format!("    var a{m}_{j} = b;\n");
        }
    }
    f += "    var sum = 0.0;\n";
    // which window slots are input columns (the rest are padding)
    for tt in 0..width {
        f += &format!("    let cin{tt} = j_lo + {tt} >= 0 && j_lo + {tt} < i32(prm.w);\n");
    }
    f += "    let t_end = i32(min(oi0 + prm.band, prm.oh));\n";
    f += &format!(
        "    for (var t = i32(oi0) - {}; t < t_end; t++) {{\n",
        ring - 1
    );
    for s in 0..stride {
        f += &format!(
            "        let q{s} = t * {stride} - PAD_T + {};\n",
            k - stride + s
        );
        f += &format!("        let ok{s} = q{s} >= 0 && q{s} < i32(prm.h);\n");
        f += &format!("        let row{s} = base + u32(clamp(q{s}, 0, i32(prm.h) - 1)) * prm.w;\n");
        let at = format!("x{s}c");
        chunk_at(&mut f, "        ", &at, &format!("i32(row{s}) + j_lo"));
        let xs = window(&mut f, "        ", &format!("x{s}"), "x_chunk", &at, width);
        for (tt, xv) in xs.iter().enumerate() {
            f += &format!("        let v{s}_{tt} = select(0.0, xact({xv}), ok{s} && cin{tt});\n");
        }
    }
    for s in 0..stride {
        for m in 0..ring {
            let Some(u) = (k - stride + s).checked_sub(m * stride) else {
                continue;
            };
            for j in 0..TW {
                for v in 0..k {
                    f += &format!(
                        "        a{m}_{j} = fma(w{u}_{v}, v{s}_{}, a{m}_{j});\n",
                        j * stride + v
                    );
                }
            }
        }
    }
    f += "        if (t >= i32(oi0)) {\n            let oi = u32(t);\n";
    f += "            if (POOL) {\n";
    for j in 0..TW {
        f += &format!("                sum += pool_term(a0_{j}, oi, oj0 + {j}u);\n");
    }
    f += "            }\n            let o = (plane * prm.oh + oi) * prm.ow + oj0;\n";
    for j in 0..TW {
        f += &format!("            if (oj0 + {j}u < prm.ow) {{ out[o + {j}u] = a0_{j}; }}\n");
    }
    f += "        }\n";
    shift_ring(&mut f, ring, 1, "b");
    f += "    }\n    if (POOL) {\n        part[pidx] = sum;\n    }\n";
    f
}

/// The backward's generated body: a loop over the dy rows t that reach the band. Row t
/// feeds the ring of K accumulator rows a{u}_{j} (input row t·S − PAD_T + u, column x0 + j)
/// through kernel row u, from its window d{τ} (dy column of x0 + PAD_L − (K − 1) + τ, only the
/// slots S divides: x0 + PAD_L is a multiple of S). Rows t·S − PAD_T + s (s < S) then have
/// every tap: stored when in the band, and the ring shifts by S.
fn backward_rows(k: usize, stride: usize) -> String {
    let (k_i, s_i) = (k as i64, stride as i64);
    let slot = |t: i64| (1 - k_i + t).rem_euclid(s_i) == 0;
    let mut f = weight_lets(k);
    for u in 0..k {
        for j in 0..TW {
            f += &format!("    var a{u}_{j} = 0.0;\n");
        }
    }
    // first dy row: ⌈(y0 + PAD_T − K + 1) / S⌉ (WGSL's division truncates toward zero)
    f += &format!("    let n0 = i32(y0) + PAD_T - {};\n", k - 1);
    f += &format!(
        "    let t0 = select((n0 + {}) / {stride}, n0 / {stride}, n0 <= 0);\n",
        stride - 1
    );
    f += "    let y_end = i32(min(y0 + prm.band, prm.h));\n";
    f += &format!("    let t_last = (y_end - 1 + PAD_T) / {stride};\n");
    // the window's slots S divides read consecutive dy columns, from oj_f on (S divides
    // t_lo + t exactly there, so the division is exact); which of them are dy columns
    let slots: Vec<i64> = (0..(TW as i64 + k_i - 1)).filter(|&t| slot(t)).collect();
    f += &format!("    let oj_f = (t_lo + {}) / {stride};\n", slots[0]);
    for i in 0..slots.len() {
        f += &format!("    let dcol{i} = oj_f + {i} >= 0 && oj_f + {i} < i32(prm.ow);\n");
    }
    f += "    for (var t = t0; t <= t_last; t++) {\n";
    f += "        let okr = t >= 0 && t < i32(prm.oh);\n";
    f += "        let drow = dbase + u32(clamp(t, 0, i32(prm.oh) - 1)) * prm.ow;\n";
    chunk_at(&mut f, "        ", "dyc", "i32(drow) + oj_f");
    let ds = window(&mut f, "        ", "dy", "dy_chunk", "dyc", slots.len());
    // the SE's pre-activations at the same places, with SE_IN
    let zs = window_when(
        &mut f,
        "        ",
        "zd",
        ("zd_chunk", "dyc", slots.len()),
        "SE_IN",
    );
    for (i, t) in slots.iter().enumerate() {
        f += &format!(
            "        let d{t} = select(0.0, dyse({}, {}), okr && dcol{i});\n",
            ds[i], zs[i]
        );
    }
    for u in 0..k {
        for j in 0..TW as i64 {
            for v in 0..k_i {
                let t = j + k_i - 1 - v;
                if slot(t) {
                    f += &format!("        a{u}_{j} = fma(w{u}_{v}, d{t}, a{u}_{j});\n");
                }
            }
        }
    }
    for s in 0..stride {
        f += &format!("        let yy{s} = t * {stride} - PAD_T + {s};\n");
        f += &format!("        if (yy{s} >= i32(y0) && yy{s} < y_end) {{\n");
        let ind = "            ";
        f += &format!("{ind}let o = i32((plane * prm.h + u32(yy{s})) * prm.w) + x0;\n");
        // the forward input's pre-activations and the residual's gradients at the row's TW
        // places, when the kernel uses them
        chunk_at(&mut f, ind, "oc", "o");
        let zx = window_when(&mut f, ind, "zx", ("x_chunk", "oc", TW), "prm.in_act != 0u");
        let rx = window_when(&mut f, ind, "rx", ("res_chunk", "oc", TW), "HAS_RES");
        for j in 0..TW {
            // x0 is −(pad_l mod S) in the first strip
            let left = if j + 1 < stride {
                format!("x0 + {j} >= 0 && ")
            } else {
                String::new()
            };
            f += &format!(
                "{ind}if ({left}x0 + {j} < i32(prm.w)) {{ out[u32(o + {j})] = dx_of(a{s}_{j}, {}, {}); }}\n",
                zx[j], rx[j]
            );
        }
        f += "        }\n";
    }
    shift_ring(&mut f, k, stride, "0.0");
    f += "    }\n";
    f
}

/// Which kernel of the module, and its grid.
#[derive(Clone, Copy)]
enum Entry {
    /// a strip per 8 outputs
    Forward,
    /// a strip per 8 columns of dx, the first starting pad_l mod S columns left of the image
    Backward,
}

/// Make a dispatch of the module generated for this shape's (K, S).
fn dispatch(
    gpu: &Gpu,
    label: &str,
    s: &DwShape,
    in_act: bool,
    entry: Entry,
    constants: &[(&str, f64)],
    (wt, bindings): (&GemmWeights, &[(u32, Option<&wgpu::Buffer>)]),
) -> Dispatch {
    check_shape(s);
    let band = band(gpu);
    let (entry, groups) = match entry {
        Entry::Forward => ("forward", strips(s.c * s.oh.div_ceil(band), s.ow)),
        Entry::Backward => (
            "backward",
            strips(s.c * s.h.div_ceil(band), s.w + s.pad_l % s.stride),
        ),
    };
    let key = format!("depthwise_k{}s{}", s.k, s.stride);
    let make = || source(s.k, s.stride);
    gpu.dispatch(&DispatchDesc {
        label,
        family: "depthwise",
        source: Some(Source::Generated {
            key: &key,
            make: &make,
        }),
        entry,
        constants,
        params: words(&s.params(in_act, band)),
        bindings,
        textures: &[(1, &wt.view)],
        groups,
        ..Default::default()
    })
}

/// Partial sums per channel that `forward` writes on this adapter when asked for the pool: one
/// per invocation, its band (`band`) as the dispatch's.
pub fn pool_parts(gpu: &Gpu, s: &DwShape) -> usize {
    let (oh, ow) = s.out();
    oh.div_ceil(band(gpu)) * ow.div_ceil(TW)
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
    /// (C, K, K), BN folded (`upload_weights`)
    pub wt: &'a GemmWeights,
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
        a.in_act,
        Entry::Forward,
        &[("POOL", a.pool.is_some() as u32 as f64), a.act.constant()],
        (
            a.wt,
            &[
                (2, Some(a.bias)),
                (3, Some(a.x)),
                (4, Some(a.out)),
                (7, a.pool),
            ],
        ),
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
    /// (C, K, K) (`upload_weights`)
    pub wt: &'a GemmWeights,
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
        ("HAS_RES", a.res.is_some() as u32 as f64),
        ("SE_IN", a.se_in.is_some() as u32 as f64),
        a.act.constant(),
    ];
    let mut d = dispatch(
        gpu,
        label,
        &s,
        in_act,
        Entry::Backward,
        &consts,
        (
            a.wt,
            &[
                (3, a.zin),
                (4, Some(a.dx)),
                (5, a.res),
                (6, Some(a.dy)),
                (8, a.se_in.map(|e| e.s)),
                (9, a.se_in.map(|e| e.dm)),
                (10, a.se_in.map(|e| e.zd)),
            ],
        ),
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
