//! Pointwise (1×1) convolutions as GEMM: y = A·T(x) + bias (+ residual). The data gradient
//! of a 1×1 conv is the same GEMM with Aᵀ.

use crate::error::{Error, Result};
use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d},
    words,
};
use crate::ops::Act;

crate::wgsl_params! {
    /// shaders/gemm.wgsl's `Params`
    pub struct GemmParams for "gemm" { m: u32, k: u32, p: u32, flags: u32, part_off: u32, part_n: u32 }
}

/// How the GEMM reads x.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InMode {
    /// x as stored
    Plain,
    /// act(x)·scale[k]: the projection's input, the SE channel scale (ones without SE) fused
    /// into the loads
    ActScaled(Act),
}

impl InMode {
    /// The shader's IN_MODE and ACT.
    fn constants(self) -> [(&'static str, f64); 2] {
        match self {
            InMode::Plain => [("IN_MODE", 0.0), Act::Silu.constant()],
            InMode::ActScaled(a) => [("IN_MODE", 1.0), a.constant()],
        }
    }
}

mod variant;

pub use variant::{REGS_TEXTURES, SLIM_K, SLIM_WIDE_K, Variant, slim_wide_source, subgroup_source};

/// A weight matrix (M, K) on the GPU as the GEMM reads it: an rgba32float texture of
/// ceil(K/4) × M texels, each row zero-padded past K.
pub struct GemmWeights {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    pub m: usize,
    pub k: usize,
}

impl GemmWeights {
    pub fn upload(gpu: &Gpu, label: &str, a: &[f32], m: usize, k: usize) -> Result<GemmWeights> {
        assert_eq!(
            a.len(),
            m * k,
            "{label}: {} values for a {m}×{k} matrix",
            a.len()
        );
        let kq = k.div_ceil(4);
        let max = gpu.limits.max_texture_dimension_2d as usize;
        if m > max || kq > max {
            return Err(Error::Gpu(format!(
                "{label}: a {m}×{k} weight matrix needs a {kq}×{m} texture but adapter {} allows at most {max} per side; try another adapter with --device N",
                gpu.adapter.line()
            )));
        }
        // rows padded to whole texels: a copy only when K is not a multiple of 4 (the visloc
        // head, 223 MB, goes up as it is)
        let texels: std::borrow::Cow<[f32]> = if k.is_multiple_of(4) {
            a.into()
        } else {
            let mut t = vec![0f32; m * kq * 4];
            for (dst, src) in t.chunks_exact_mut(kq * 4).zip(a.chunks_exact(k.max(1))) {
                dst[..k].copy_from_slice(src);
            }
            t.into()
        };
        let size = wgpu::Extent3d {
            width: kq.max(1) as u32,
            height: m.max(1) as u32,
            depth_or_array_layers: 1,
        };
        let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width: not_pow2(kq, max) as u32,
                height: not_pow2(m, max) as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: gpu.read_usage() | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        if m > 0 && k > 0 {
            gpu.queue.write_texture(
                texture.as_image_copy(),
                bytemuck::cast_slice(&texels),
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some((kq * 16) as u32),
                    rows_per_image: Some(m as u32),
                },
                size,
            );
        }
        let view = texture.create_view(&Default::default());
        Ok(GemmWeights {
            texture,
            view,
            m,
            k,
        })
    }

    /// Bytes the texture holds.
    pub fn bytes(&self) -> u64 {
        (self.m * self.k.div_ceil(4) * 16) as u64
    }
}

/// A texture side of at least `n` that is not a power of two (within `max`). llvmpipe
/// compiles a kernel once per combination of its textures' "power of two" flags (they are
/// part of its shader variant key), at 1–4 s each on first use; with every weight texture
/// non-power-of-two, all GEMMs of a plan share one compiled variant. The extra texels are
/// never read.
fn not_pow2(n: usize, max: usize) -> usize {
    let mut s = n.max(1);
    while s.is_power_of_two() && s < max {
        s += 1;
    }
    s
}

/// Scratch texture for `Variant::Regs`: each GEMM first packs T(x) into it (rgba32float,
/// row k of x at linear texels k·ceil(P/4) ..), then reads it back. One per plan, shared by
/// all its GEMMs, which run one after another.
pub struct XPack {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    /// capacity in texels
    pub texels: usize,
}

/// Texels per row of the scratch texture (PACK_W in shaders/gemm.wgsl).
pub const PACK_W: usize = 4096;

/// Texels of one row each `pack_x` invocation writes (gemm.wgsl's PACK_RUN).
const PACK_RUN: usize = 8;

impl XPack {
    /// Room for every GEMM whose x has at most `texels` = K·ceil(P/4) texels.
    pub fn new(gpu: &Gpu, label: &str, texels: usize) -> Result<XPack> {
        let rows = texels.div_ceil(PACK_W).max(1);
        let max = gpu.limits.max_texture_dimension_2d as usize;
        if rows > max || PACK_W > max {
            return Err(Error::Gpu(format!(
                "{label}: the GEMM scratch texture needs {PACK_W}×{rows} texels but adapter {} allows at most {max} per side; use a smaller image",
                gpu.adapter.line()
            )));
        }
        let make = |rows: u32| {
            let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d {
                    width: PACK_W as u32,
                    height: rows,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
                view_formats: &[],
            });
            let view = texture.create_view(&Default::default());
            (texture, view)
        };
        // while a plan is recorded, the previous plan's texture is taken back if large enough
        let (texture, view) = gpu
            .pooled_texture(rows as u32, &make)
            .unwrap_or_else(|| make(rows as u32));
        let rows = texture.size().height as usize;
        Ok(XPack {
            texture,
            view,
            texels: rows * PACK_W,
        })
    }

    /// Texels a (K, P) input takes.
    pub fn texels_for(k: usize, p: usize) -> usize {
        k * p.div_ceil(4)
    }

    pub fn bytes(&self) -> u64 {
        (self.texels * 16) as u64
    }
}

pub struct GemmArgs<'a> {
    pub m: usize,
    pub k: usize,
    pub p: usize,
    pub a: &'a GemmWeights,              // (M, K)
    pub x: &'a wgpu::Buffer,             // (K, P)
    pub bias: Option<&'a wgpu::Buffer>,  // (M)
    pub scale: Option<&'a wgpu::Buffer>, // (K), with InMode::ActScaled
    pub res: Option<&'a wgpu::Buffer>,   // (M, P)
    pub y: &'a wgpu::Buffer,             // (M, P)
    pub mode: InMode,
    /// scratch for the `Regs` kernels (ignored by `Tiled` and `Slim`)
    pub pack: Option<&'a XPack>,
    /// also row partials of y (`Parts`)
    pub parts: Option<Parts<'a>>,
}

/// What a GEMM's row partials combine, over each column group of a row of y.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PartOp {
    /// Σ y·act(zd): the projection's backward, for the SE's ds = Σ_p du·act(z_d)
    DotAct(Act),
    /// Σ y: a block output's gradient, for Grad-CAM's channel means
    Sum,
    /// max |y|: a block output, for max |A|
    MaxAbs,
}

impl PartOp {
    fn code(self) -> u32 {
        match self {
            PartOp::DotAct(_) => 1,
            PartOp::Sum => 2,
            PartOp::MaxAbs => 3,
        }
    }
}

/// A GEMM's row partials, written beside y: part[off + (z·M + m)·parts + q] for the
/// variant's column groups q (`Variant::parts`) and the first `images` images of a batch.
/// Each spares a reduction pass over y of its own.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    pub op: PartOp,
    /// (M, P) as y: `PartOp::DotAct`'s zd
    pub zd: Option<&'a wgpu::Buffer>,
    pub part: &'a wgpu::Buffer,
    pub off: usize,
    pub images: usize,
}

/// The kernel for the adapter and K (`Variant::for_k`): one dispatch, or two with the
/// `Regs` kernels.
pub fn gemm(gpu: &Gpu, label: &str, g: &GemmArgs) -> Vec<Dispatch> {
    gemm_variant(gpu, label, g, Variant::for_k(gpu, g.k))
}

/// The pipeline constants of `g`'s loads (IN_MODE and ACT) and the activation of DotAct's zd,
/// after checking that the weights, zd and the activations agree with the GEMM.
fn checked_constants(label: &str, g: &GemmArgs) -> (Vec<(&'static str, f64)>, Option<Act>) {
    assert!(
        g.a.m == g.m && g.a.k == g.k,
        "{label}: weights are {}×{}, the GEMM wants {}×{}",
        g.a.m,
        g.a.k,
        g.m,
        g.k
    );
    // IN_MODE and ACT shape the loads of x (`tiled`, `slim`, `pack_x`)
    let mut constants = g.mode.constants().to_vec();
    // the act of DotAct's zd; InMode::Plain's default ACT otherwise
    let dot_act = match g.parts.map(|p| p.op) {
        Some(PartOp::DotAct(a)) => Some(a),
        _ => None,
    };
    if let Some(a) = dot_act {
        constants[1] = a.constant();
    }
    if let Some(p) = &g.parts {
        assert_eq!(
            p.zd.is_some(),
            dot_act.is_some(),
            "{label}: zd goes with PartOp::DotAct alone"
        );
    }
    if let (Some(d), InMode::ActScaled(a)) = (dot_act, g.mode) {
        assert_eq!(d, a, "{label}: one ACT serves the loads and DotAct");
    }
    (constants, dot_act)
}

/// The GEMM `g` with `variant`'s kernel (the `Regs` kernels: their packing step first).
pub fn gemm_variant(gpu: &Gpu, label: &str, g: &GemmArgs, variant: Variant) -> Vec<Dispatch> {
    gemm_variant_reads(gpu, label, g, variant, gpu.image_reads)
}

/// `gemm_variant` with the CPU-shaped kernels reading their textures as storage textures
/// (`image`, as on adapters with `Gpu::image_reads`) or sampled, whatever the adapter would
/// pick: the same texels, so the same results bit for bit.
pub fn gemm_variant_reads(
    gpu: &Gpu,
    label: &str,
    g: &GemmArgs,
    variant: Variant,
    image: bool,
) -> Vec<Dispatch> {
    let (constants, dot_act) = checked_constants(label, g);
    let flags = g.bias.is_some() as u32
        | (g.res.is_some() as u32) << 1
        | g.parts.map_or(0, |p| p.op.code()) << 2;
    let (zd, part) = (g.parts.and_then(|d| d.zd), g.parts.map(|d| d.part));
    let params = GemmParams {
        m: g.m as u32,
        k: g.k as u32,
        p: g.p as u32,
        flags,
        part_off: g.parts.map_or(0, |p| p.off) as u32,
        part_n: g.parts.map_or(0, |p| p.images) as u32,
    };
    let bytes = |m: usize| {
        4.0 * (m * g.k + g.k * g.p + g.m * g.p * if g.res.is_some() { 2 } else { 1 }) as f64
    };
    match variant {
        Variant::Tiled | Variant::Slim | Variant::SlimWide => {
            let mut constants = constants;
            constants.push(("FLAGS", flags as f64));
            let (entry, side) = match variant {
                Variant::Tiled => ("tiled", 64),
                _ => ("slim", 32),
            };
            let make = slim_wide_source;
            let source = (variant == Variant::SlimWide).then_some(Source::Generated {
                key: "gemm+slim8",
                make: &make,
            });
            let mut d = gpu.dispatch(&DispatchDesc {
                label,
                family: "gemm",
                source,
                entry,
                constants: &constants,
                params: words(&params),
                bindings: &[
                    (2, Some(g.x)),
                    (3, g.bias),
                    (4, g.scale),
                    (5, g.res),
                    (6, Some(g.y)),
                    (9, zd),
                    (10, part),
                ],
                textures: &[(1, &g.a.view)],
                groups: [(g.p as u32).div_ceil(side), (g.m as u32).div_ceil(side), 1],
                ..Default::default()
            });
            d.flops = 2.0 * (g.m * g.k * g.p) as f64;
            d.bytes = bytes(g.m);
            vec![d]
        }
        Variant::Regs | Variant::RegsSubgroup => {
            let pack = g
                .pack
                .expect("the Regs GEMM needs its XPack scratch texture");
            let texels = XPack::texels_for(g.k, g.p);
            assert!(
                texels <= pack.texels,
                "{label}: x needs {texels} texels, the scratch holds {}",
                pack.texels
            );
            let mut p = gpu.dispatch(&DispatchDesc {
                label: &format!("{label}.pack"),
                family: "gemm",
                entry: "pack_x",
                constants: &constants,
                params: words(&params),
                bindings: &[(11, Some(g.x)), (4, g.scale)],
                textures: &[(8, &pack.view)],
                groups: grid_1d((g.k * g.p.div_ceil(4).div_ceil(PACK_RUN)).div_ceil(64) as u32),
                ..Default::default()
            });
            p.bytes = 4.0 * (g.k * g.p) as f64 * 2.0;
            // no constants but DotAct's presence and its activation where it is not the
            // default: one pipeline for every GEMM of a model without SE, two with (gemm.wgsl
            // DOT_ACT)
            let regs_constants: Vec<(&str, f64)> = match dot_act {
                None => vec![("DOT_ACT", 0.0)],
                Some(a) => (a != Act::Silu).then(|| a.constant()).into_iter().collect(),
            };
            let make = subgroup_source;
            let source = (variant == Variant::RegsSubgroup).then_some(Source::Generated {
                key: "gemm+subgroup8",
                make: &make,
            });
            // row blocks fastest where x outweighs the weights (gemm.wgsl ROWS_FIRST)
            let rows_first = g.p > g.m;
            let regs_params = GemmParams {
                flags: flags | (rows_first as u32) << 4,
                ..params
            };
            let (pb, mb) = ((g.p as u32).div_ceil(64), (g.m as u32).div_ceil(32));
            let mut d = gpu.dispatch(&DispatchDesc {
                label,
                family: "gemm",
                source,
                entry: "regs",
                constants: &regs_constants,
                params: words(&regs_params),
                bindings: &[(3, g.bias), (5, g.res), (6, Some(g.y)), (9, zd), (10, part)],
                textures: &[(1, &g.a.view), (7, &pack.view)],
                image_reads: if image { &REGS_TEXTURES } else { &[] },
                groups: if rows_first { [mb, pb, 1] } else { [pb, mb, 1] },
            });
            d.flops = 2.0 * (g.m * g.k * g.p) as f64;
            d.bytes = bytes(g.m);
            vec![p, d]
        }
    }
}

/// Plain-loop references.
pub mod cpu {
    use super::PartOp;
    use crate::ops::Act;

    /// y[m,p] = Σ_k a[m,k]·T(x[k,p]) + bias[m] + res[m,p]; T(v) = act(v)·scale[k] with
    /// `scale`, else v
    pub fn gemm(
        a: &[f32],
        x: &[f32],
        bias: Option<&[f32]>,
        scale: Option<(Act, &[f32])>,
        res: Option<&[f32]>,
        (m, k, p): (usize, usize, usize),
    ) -> Vec<f32> {
        let mut y = vec![0f32; m * p];
        let mut xt = x.to_vec();
        if let Some((act, s)) = scale {
            for kk in 0..k {
                for v in &mut xt[kk * p..(kk + 1) * p] {
                    *v = act.apply(*v) * s[kk];
                }
            }
        }
        for mm in 0..m {
            let row = &mut y[mm * p..(mm + 1) * p];
            for kk in 0..k {
                let w = a[mm * k + kk];
                let xr = &xt[kk * p..(kk + 1) * p];
                for (o, &xv) in row.iter_mut().zip(xr) {
                    *o += w * xv;
                }
            }
            let b = bias.map(|b| b[mm]).unwrap_or(0.0);
            for (i, o) in row.iter_mut().enumerate() {
                *o += b + res.map(|r| r[mm * p + i]).unwrap_or(0.0);
            }
        }
        y
    }

    /// A GEMM's row partials of y (M, P): (M, parts), column group q combining columns
    /// q·width .. (q + 1)·width (`Variant::parts`, `Variant::group_width`); `zd` for
    /// `PartOp::DotAct`.
    pub fn row_parts(
        op: PartOp,
        y: &[f32],
        zd: Option<&[f32]>,
        (m, p): (usize, usize),
        (parts, width): (usize, usize),
    ) -> Vec<f32> {
        let term = |i: usize| match op {
            PartOp::DotAct(act) => y[i] * act.apply(zd.expect("DotAct's zd")[i]),
            PartOp::Sum => y[i],
            PartOp::MaxAbs => y[i].abs(),
        };
        let mut out = vec![0f32; m * parts];
        for mm in 0..m {
            for (q, o) in out[mm * parts..(mm + 1) * parts].iter_mut().enumerate() {
                let cols = q * width..((q + 1) * width).min(p);
                *o = match op {
                    PartOp::MaxAbs => cols.map(|i| term(mm * p + i)).fold(0.0, f32::max),
                    _ => cols.map(|i| term(mm * p + i)).sum(),
                };
            }
        }
        out
    }

    /// Transpose (M, K) → (K, M).
    pub fn transpose(a: &[f32], m: usize, k: usize) -> Vec<f32> {
        let mut t = vec![0f32; a.len()];
        for i in 0..m {
            for j in 0..k {
                t[j * m + i] = a[i * k + j];
            }
        }
        t
    }
}
