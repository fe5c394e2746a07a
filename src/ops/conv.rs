//! Dense k×k convolution (the stem), BN folded, optional activation, and its data gradient
//! (only FullGrad needs a gradient upstream of block 0).

use crate::error::Result;
use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d},
    words,
};
use crate::ops::Act;
use crate::ops::gemm::GemmWeights;
use crate::ops::window;

crate::wgsl_params! {
    /// shaders/conv.wgsl's `Params`
    pub struct ConvParams for "conv" {
        cin: u32, h: u32, w: u32, cout: u32, oh: u32, ow: u32, k: u32, stride: u32,
        pad_t: u32, pad_l: u32, _p1: u32, _p2: u32,
    }
}

/// A dense conv; `pad_t`/`pad_l` zero rows/columns before the image (see `DwShape`).
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad_t: usize,
    pub pad_l: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvShape {
    /// The shape with the padding `rule` gives at this size (`config::pad_out`).
    pub fn new(
        (cin, h, w): (usize, usize, usize),
        cout: usize,
        k: usize,
        stride: usize,
        rule: crate::ops::pad::PadRule,
    ) -> Self {
        let (pad_t, pad_l, oh, ow) = crate::ops::pad::pads_2d(h, w, k, stride, rule);
        ConvShape {
            cin,
            h,
            w,
            cout,
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
    fn params(&self) -> ConvParams {
        let u = |v: usize| v as u32;
        ConvParams {
            cin: u(self.cin),
            h: u(self.h),
            w: u(self.w),
            cout: u(self.cout),
            oh: u(self.oh),
            ow: u(self.ow),
            k: u(self.k),
            stride: u(self.stride),
            pad_t: u(self.pad_t),
            pad_l: u(self.pad_l),
            ..Default::default()
        }
    }
}

/// ⌊(n + 2p − k)/s⌋ + 1
pub fn out_size(n: usize, k: usize, s: usize, p: usize) -> usize {
    (n + 2 * p - k) / s + 1
}

/// The weights (Cout, Cin, K, K) as the shader reads them: transposed to (Cin·K·K, Cout),
/// in a texture.
pub fn upload_weights(
    gpu: &Gpu,
    label: &str,
    (cout, cin, k): (usize, usize, usize),
    wt: &[f32],
) -> Result<GemmWeights> {
    let taps = cin * k * k;
    let t = crate::ops::gemm::cpu::transpose(wt, cout, taps);
    GemmWeights::upload(gpu, label, &t, taps, cout)
}

/// The template with K and S set and the body written out (see the shader).
pub fn source(k: usize, stride: usize) -> String {
    use std::fmt::Write;
    let template = crate::gpu::pipelines::shader_source("conv");
    let mut b = String::new();
    for j in 0..8 {
        let _ = writeln!(b, "    var l{j} = vec4(0.0);\n    var h{j} = vec4(0.0);");
    }
    // the input channels and the kernel rows in loops whose bounds are uniforms, so that
    // compilers keep them loops: written out for all channels, lavapipe's LLVM spent most of
    // a second on the kernel, and one copy of the window's code instead of K cuts what it
    // spends on a first run by a third again
    let width = 7 * stride + k;
    // which window slots are columns of the image (the rest are padding)
    for t in 0..width {
        let _ = writeln!(
            b,
            "    let cin{t} = j_lo + {t} >= 0 && j_lo + {t} < i32(prm.w);"
        );
    }
    b.push_str("    for (var c = 0u; c < prm.cin; c++) {\n");
    b.push_str("    for (var u = 0u; u < prm.k; u++) {\n");
    {
        b.push_str("    {\n        let ii = i32(oi * S) - pad_t + i32(u);\n");
        b.push_str("        if (ii >= 0 && ii < i32(prm.h)) {\n");
        b.push_str("            let row = xoff + (c * prm.h + u32(ii)) * prm.w;\n");
        let ind = "            ";
        window::chunk_at(&mut b, ind, "xc", "i32(row) + j_lo");
        let xs = window::window(&mut b, ind, "x", "x_chunk", "xc", width);
        for (t, xv) in xs.iter().enumerate() {
            let _ = writeln!(b, "{ind}let v{t} = select(0.0, {xv}, cin{t});");
        }
        for v in 0..k {
            let _ = writeln!(
                b,
                "            let w0_{v} = textureLoad(wt, vec2(q0, (c * K + u) * K + {v}u), 0);"
            );
            let _ = writeln!(
                b,
                "            let w1_{v} = textureLoad(wt, vec2(q1, (c * K + u) * K + {v}u), 0);"
            );
            for j in 0..8 {
                let t = j * stride + v;
                let _ = writeln!(b, "            l{j} = fma(w0_{v}, vec4(v{t}), l{j});");
                let _ = writeln!(b, "            h{j} = fma(w1_{v}, vec4(v{t}), h{j});");
            }
        }
        b.push_str("        }\n    }\n");
    }
    b.push_str("    }\n    }\n");
    // the stores go out through workgroup memory in one loop: written out, they were most of
    // the kernel's code and lavapipe's LLVM took over a second on it
    b.push_str("    let o = lid * 16u;\n");
    for j in 0..8 {
        let _ = writeln!(
            b,
            "    out_acc[o + {}u] = l{j};\n    out_acc[o + {}u] = h{j};",
            2 * j,
            2 * j + 1
        );
    }
    b.push_str("    store_strip(o, oct * 8u, oi, oj0);\n");
    crate::gpu::pipelines::splice(
        &template,
        &[
            ("const K = 3u;", format!("const K = {k}u;")),
            ("const S = 2u;", format!("const S = {stride}u;")),
            ("    //@body\n", b),
        ],
    )
}

/// The generated module of a shape's (K, S), which both entries live in: its key and its
/// maker.
fn module(s: &ConvShape) -> (String, impl Fn() -> String) {
    let (k, stride) = (s.k, s.stride);
    (format!("conv_k{k}s{stride}"), move || source(k, stride))
}

/// The weights, read as a storage texture where the CPU-shaped kernels read so
/// (`DispatchDesc::image_reads`).
fn weight_reads(gpu: &Gpu) -> &'static [&'static str] {
    if gpu.image_reads { &["wt"] } else { &[] }
}

/// y = act(conv(x) + bias) (or without the activation)
pub struct ConvArgs<'a> {
    pub s: ConvShape,
    pub act: Option<Act>,
    /// (Cin, H, W)
    pub x: &'a wgpu::Buffer,
    /// from `upload_weights`
    pub wt: &'a GemmWeights,
    /// (Cout)
    pub bias: &'a wgpu::Buffer,
    /// (Cout, OH, OW), written
    pub y: &'a wgpu::Buffer,
}

pub fn conv(gpu: &Gpu, label: &str, a: &ConvArgs) -> Dispatch {
    let (s, act, x, wt, bias, y) = (a.s, a.act, a.x, a.wt, a.bias, a.y);
    let (oh, ow) = s.out();
    let params = s.params();
    let invocations = s.cout.div_ceil(8) * oh * ow.div_ceil(8);
    let (key, make) = module(&s);
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "conv",
        source: Some(Source::Generated {
            key: &key,
            make: &make,
        }),
        entry: "main",
        constants: &[
            ("APPLY_ACT", act.is_some() as u32 as f64),
            act.unwrap_or(Act::Silu).constant(),
        ],
        params: words(&params),
        bindings: &[(1, Some(x)), (3, Some(bias)), (4, Some(y))],
        textures: &[(2, &wt.view)],
        image_reads: weight_reads(gpu),
        groups: grid_1d((invocations as u32).div_ceil(64)),
    });
    d.flops = 2.0 * (s.cout * oh * ow * s.cin * s.k * s.k) as f64;
    d.bytes = 4.0 * (s.cin * s.h * s.w + s.cout * s.cin * s.k * s.k + s.cout * oh * ow) as f64;
    d
}

/// dx = convᵀ(g'), g' = g·act'(z) with `z` (g is the gradient at act(z)), else g
pub struct ConvBackward<'a> {
    pub s: ConvShape,
    pub act: Act,
    /// (Cout, OH, OW)
    pub g: &'a wgpu::Buffer,
    /// the pre-activation (Cout, OH, OW), or none: g is the gradient at the conv's output
    pub z: Option<&'a wgpu::Buffer>,
    /// from `upload_weights`
    pub wt: &'a GemmWeights,
    /// (Cin, H, W), written
    pub dx: &'a wgpu::Buffer,
}

/// The data gradient, an invocation per input element (see the shader's `backward_input`).
pub fn backward_input(gpu: &Gpu, label: &str, a: &ConvBackward) -> Dispatch {
    let s = a.s;
    let params = s.params();
    let (key, make) = module(&s);
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "conv",
        source: Some(Source::Generated {
            key: &key,
            make: &make,
        }),
        entry: "backward_input",
        constants: &[("APPLY_ACT", a.z.is_some() as u32 as f64), a.act.constant()],
        params: words(&params),
        bindings: &[(5, Some(a.g)), (6, a.z), (7, Some(a.dx))],
        textures: &[(2, &a.wt.view)],
        image_reads: weight_reads(gpu),
        groups: grid_1d(((s.cin * s.h * s.w) as u32).div_ceil(64)),
    });
    d.flops = 2.0 * (s.cout * s.oh * s.ow * s.cin * s.k * s.k) as f64;
    d.bytes = 4.0 * (s.cin * s.h * s.w + 2 * s.cout * s.oh * s.ow) as f64;
    d
}

pub mod cpu {
    use super::ConvShape;
    use crate::ops::Act;

    /// Every tap of a k×k window with stride and zero padding sliding over an h×w plane, padded
    /// taps skipped: `f(output index i·ow + j, input index y·w + x, tap index u·k + v)`, in
    /// row-major output order, then tap order.
    pub fn for_each_tap(
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        (pad_t, pad_l): (usize, usize),
        (oh, ow): (usize, usize),
        mut f: impl FnMut(usize, usize, usize),
    ) {
        for i in 0..oh {
            for j in 0..ow {
                for u in 0..k {
                    let Some(y) = (i * stride + u).checked_sub(pad_t).filter(|&y| y < h) else {
                        continue;
                    };
                    for v in 0..k {
                        let Some(x) = (j * stride + v).checked_sub(pad_l).filter(|&x| x < w) else {
                            continue;
                        };
                        f(i * ow + j, y * w + x, u * k + v);
                    }
                }
            }
        }
    }

    pub fn conv(s: ConvShape, act: Option<Act>, x: &[f32], wt: &[f32], bias: &[f32]) -> Vec<f32> {
        let (oh, ow) = s.out();
        let (ohw, hw, kk) = (oh * ow, s.h * s.w, s.k * s.k);
        let mut y = vec![0f32; s.cout * ohw];
        for o in 0..s.cout {
            let plane = &mut y[o * ohw..(o + 1) * ohw];
            plane.fill(bias[o]);
            for c in 0..s.cin {
                let (xc, wc) = (
                    &x[c * hw..(c + 1) * hw],
                    &wt[(o * s.cin + c) * kk..(o * s.cin + c + 1) * kk],
                );
                for_each_tap(
                    s.h,
                    s.w,
                    s.k,
                    s.stride,
                    (s.pad_t, s.pad_l),
                    (s.oh, s.ow),
                    |op, ip, t| plane[op] += wc[t] * xc[ip],
                );
            }
            if let Some(a) = act {
                plane.iter_mut().for_each(|v| *v = a.apply(*v));
            }
        }
        y
    }

    /// The data gradient in scatter form (the GPU gathers): dx = convᵀ(g·act'(z)), or
    /// convᵀ(g) without `z`.
    pub fn backward_input(
        s: ConvShape,
        g: &[f32],
        z: Option<(Act, &[f32])>,
        wt: &[f32],
    ) -> Vec<f32> {
        let (ohw, hw, kk) = (s.oh * s.ow, s.h * s.w, s.k * s.k);
        let gz: Vec<f32> = match z {
            Some((a, z)) => g.iter().zip(z).map(|(&g, &z)| g * a.grad(z)).collect(),
            None => g.to_vec(),
        };
        let mut dx = vec![0f32; s.cin * hw];
        for o in 0..s.cout {
            let go = &gz[o * ohw..(o + 1) * ohw];
            for c in 0..s.cin {
                let (plane, wc) = (
                    &mut dx[c * hw..(c + 1) * hw],
                    &wt[(o * s.cin + c) * kk..(o * s.cin + c + 1) * kk],
                );
                let (pads, out) = ((s.pad_t, s.pad_l), (s.oh, s.ow));
                for_each_tap(s.h, s.w, s.k, s.stride, pads, out, |op, ip, t| {
                    plane[ip] += wc[t] * go[op]
                });
            }
        }
        dx
    }
}
