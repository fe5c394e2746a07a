//! Classifier / geolocation head: Linear K→N over row chunks of the weight matrix (each an
//! rgba32float texture, `gemm::GemmWeights`), softmax with the Grad-CAM target, the score
//! gradient and the linear data gradient.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d, grid_items},
    words,
};
use crate::ops::gemm::GemmWeights;

crate::wgsl_params! {
    /// shaders/head.wgsl's `Params`
    pub struct HeadParams for "head" {
        rows: u32, k: u32, row0: u32, n: u32, seg_rows: u32, seg0: u32, nsegs: u32, _p: u32,
    }
}

/// Rows of the linear gradient summed per workgroup before the partial sums are added.
pub const SEG_ROWS: usize = 256;

/// logits[row0 + r] = w[r,:]·f + bias[row0 + r] for the chunk's `rows` rows.
/// One chunk of the classifier matrix: rows `row0 .. row0 + rows` of (N, K), in a texture.
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    pub w: &'a GemmWeights,
    pub row0: usize,
    pub rows: usize,
    pub k: usize,
}

/// logits[row0 + r] = Σ_k w[r, k]·f[k] + bias[row0 + r] over one chunk of rows
pub struct LinearArgs<'a> {
    pub chunk: Chunk<'a>,
    /// N, all classes
    pub n: usize,
    /// (K)
    pub f: &'a wgpu::Buffer,
    /// (N)
    pub bias: &'a wgpu::Buffer,
    /// (N), written for the chunk's rows
    pub logits: &'a wgpu::Buffer,
}

/// How `linear` and `linear_backward` run (see shaders/head.wgsl).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    /// GPUs: 32 invocations a row (`linear_rows`); the backward as `Rows`
    Lanes,
    /// CPU adapters: 8 rows per invocation; the backward's g read a row at a time
    Rows,
    /// `Rows` where each lane of a subgroup of 8 loads one f texel of 8 K steps (the
    /// forward) or the g of one of 8 rows (the backward) and broadcasts it to the others
    /// (`subgroup_source`): CPU adapters with subgroups of exactly 8 (`Gpu::subgroup8`). On
    /// lavapipe every lane's load of the same value is a loop over the lanes; a broadcast is
    /// a lane extract. Same results as `Rows`, bit for bit
    RowsSubgroup,
}

impl Form {
    /// The form for this adapter: on CPU adapters `RowsSubgroup` where the device has
    /// subgroups of 8, else `Rows`; on GPUs `Lanes` (as `gemm::Variant::for_adapter` picks).
    pub fn for_adapter(gpu: &Gpu) -> Form {
        if gpu.cpu_subgroups() {
            Form::RowsSubgroup
        } else if gpu.is_cpu() {
            Form::Rows
        } else {
            Form::Lanes
        }
    }

    /// Texel columns each `linear_backward` invocation sums (head.wgsl's BK): 8 on CPU
    /// adapters, where a row's turn costs about what its fetches do, 4 on GPUs (twice the
    /// invocations).
    fn backward_texels(self) -> u32 {
        match self {
            Form::Lanes => 4,
            Form::Rows | Form::RowsSubgroup => 8,
        }
    }

    /// The WGSL: head.wgsl, or for `RowsSubgroup` its generated form.
    fn source(self) -> Option<Source<'static>> {
        (self == Form::RowsSubgroup).then_some(Source::Generated {
            key: "head+subgroup8",
            make: &subgroup_source,
        })
    }
}

/// The classifier's weights, read as a storage texture with `image` (`DispatchDesc::image_reads`).
fn weight_reads(image: bool) -> &'static [&'static str] {
    if image { &["w"] } else { &[] }
}

/// head.wgsl with the K loop of `linear` and the row loop of `linear_backward` stepping 8 at a
/// time, the value every lane of a step reads (f's texel, g's row) loaded by one lane each and
/// broadcast (`Form::RowsSubgroup`). Steps past the end use clamped texels and zero f or g,
/// which add exactly nothing.
pub fn subgroup_source() -> String {
    let template = crate::gpu::pipelines::shader_source("head");
    let steps = |head: &str, each: &dyn Fn(usize) -> String| {
        let mut out = head.to_string();
        for j in 0..8 {
            out += &each(j);
        }
        out + "    }\n"
    };
    let forward = steps(
        "    for (var kq0 = 0u; kq0 < nq; kq0 += 8u) {\n        let fs = f4((kq0 + sg) * 4u);\n",
        &|j| format!("        rows8(&lo, &hi, kq0 + {j}u, r0, subgroupBroadcast(fs, {j}u));\n"),
    );
    let backward = steps(
        "    for (var rb = r0; rb < r1; rb += 8u) {\n        let gs = select(0.0, g[go + min(rb + sg, r1 - 1u)], rb + sg < r1);\n",
        &|j| {
            format!(
                "        grad_row(&a, kq, min(rb + {j}u, r1 - 1u), vec4(subgroupBroadcast(gs, {j}u)));\n"
            )
        },
    );
    let lane = "(@builtin(subgroup_invocation_id) sg: u32, @builtin";
    crate::gpu::pipelines::splice(
        &template,
        &[
            ("fn linear(@builtin", format!("fn linear{lane}")),
            (
                "fn linear_backward(@builtin",
                format!("fn linear_backward{lane}"),
            ),
            (
                "    for (var kq = 0u; kq < nq; kq++) {\n        rows8(&lo, &hi, kq, r0, f4(kq * 4u));\n    }\n",
                forward,
            ),
            (
                "    for (var r = r0; r < r1; r++) {\n        grad_row(&a, kq, r, vec4(g[go + r]));\n    }\n",
                backward,
            ),
        ],
    )
}

/// A classifier chunk of at least this many weights reads them as a storage texture where the
/// adapter does (`Gpu::image_reads`); a smaller one keeps sampled reads. On lavapipe
/// (2026-12-05) the storage-read form took the visloc classifier's forward over 31,145 cells
/// from 22 to 11 ms and its data gradient from 43 to 28 ms, but its code took 0.14 s longer
/// to generate on a first run (single-threaded): what a 1,000-class classifier (1.3 M
/// weights; about 0.6 ms a run, scaled from the visloc figures) would gain in some 250 runs.
pub const IMAGE_MIN_WEIGHTS: usize = 1 << 23;

/// Whether `chunk` is read as a storage texture on this adapter (`IMAGE_MIN_WEIGHTS`).
fn image_reads_for(gpu: &Gpu, chunk: &Chunk) -> bool {
    gpu.image_reads && chunk.rows * chunk.k >= IMAGE_MIN_WEIGHTS
}

pub fn linear(gpu: &Gpu, label: &str, a: &LinearArgs) -> Dispatch {
    let image = image_reads_for(gpu, &a.chunk);
    linear_form(gpu, label, a, (Form::for_adapter(gpu), image))
}

/// `linear` in the given form, reading the weights as a storage texture (`image`, which needs
/// `Gpu::image_reads`) or sampled, whatever the adapter would pick.
pub fn linear_form(
    gpu: &Gpu,
    label: &str,
    a: &LinearArgs,
    (form, image): (Form, bool),
) -> Dispatch {
    let Chunk { w, row0, rows, k } = a.chunk;
    let params = HeadParams {
        rows: rows as u32,
        k: k as u32,
        row0: row0 as u32,
        n: a.n as u32,
        ..Default::default()
    };
    // 8 rows per invocation on CPU adapters, 32 invocations a row on GPUs (head.wgsl)
    let (entry, per_group) = match form {
        Form::Lanes => ("linear_rows", 8),
        Form::Rows | Form::RowsSubgroup => ("linear", 512),
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "head",
        source: form.source(),
        image_reads: weight_reads(image),
        entry,
        params: words(&params),
        bindings: &[(2, Some(a.f)), (3, Some(a.bias)), (4, Some(a.logits))],
        textures: &[(1, &w.view)],
        groups: grid_1d((rows as u32).div_ceil(per_group)),
        ..Default::default()
    });
    d.flops = 2.0 * (rows * k) as f64;
    d.bytes = 4.0 * (rows * k + rows) as f64;
    d
}

/// A kernel over the N outputs whose only parameter is N: `groups` workgroups, `per_output`
/// (flops, bytes) per output for the bench's rates.
fn over_outputs(
    gpu: &Gpu,
    label: &str,
    entry: &str,
    n: usize,
    bindings: &[(u32, Option<&wgpu::Buffer>)],
    groups: [u32; 3],
    per_output: (f64, f64),
) -> Dispatch {
    let params = HeadParams {
        n: n as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "head",
        entry,
        params: words(&params),
        bindings,
        groups,
        ..Default::default()
    });
    d.flops = per_output.0 * n as f64;
    d.bytes = per_output.1 * n as f64;
    d
}

/// probs = softmax(logits); info[2] = target (info[0], or the argmax when info[0] ≥ n); info[3] = argmax.
pub fn softmax(
    gpu: &Gpu,
    label: &str,
    n: usize,
    logits: &wgpu::Buffer,
    probs: &wgpu::Buffer,
    info: &wgpu::Buffer,
) -> Dispatch {
    over_outputs(
        gpu,
        label,
        "softmax",
        n,
        &[(4, Some(logits)), (5, Some(probs)), (6, Some(info))],
        [1, 1, 1],
        (4.0, 12.0),
    )
}

/// g = ∂score/∂logits, score = p_target (info[1] = 0) or logit_target (info[1] = 1).
/// The head's geography for the region score: cell centres (lat, lon in radians) and the
/// one-float buffer that holds the region's mass.
pub struct Region<'a> {
    pub cells: &'a wgpu::Buffer,
    pub mass: &'a wgpu::Buffer,
}

/// region.mass[0] = Σ p over the cells within info[4] km of the target (region score only)
pub fn region_mass(
    gpu: &Gpu,
    label: &str,
    n: usize,
    probs: &wgpu::Buffer,
    info: &wgpu::Buffer,
    r: &Region,
) -> Dispatch {
    let bindings = [
        (5, Some(probs)),
        (6, Some(info)),
        (10, Some(r.cells)),
        (11, Some(r.mass)),
    ];
    over_outputs(
        gpu,
        label,
        "region_mass",
        n,
        &bindings,
        [1, 1, 1],
        (20.0, 12.0),
    )
}

/// FinerCAM's comparison classes: at most this many (`--comparison`).
pub const FINER_MAX: usize = 32;

/// The words of the `info` buffer an image: target, score mode, p_target, argmax, the score's
/// parameter (FinerCAM's |J| once picked), FinerCAM's S and N and the |J| asked for, then
/// FinerCAM's classes. Image z of a batch keeps its FinerCAM words INFO_WORDS·z further on.
pub const INFO_WORDS: usize = 8 + FINER_MAX;

/// FinerCAM's comparison classes J into info[8 ..] and its sums S, N into info[5], info[6]
/// (finer score only; one workgroup).
pub fn finer_pick(
    gpu: &Gpu,
    label: &str,
    n: usize,
    logits: &wgpu::Buffer,
    probs: &wgpu::Buffer,
    info: &wgpu::Buffer,
) -> Dispatch {
    let bindings = [(4, Some(logits)), (5, Some(probs)), (6, Some(info))];
    over_outputs(
        gpu,
        label,
        "finer_pick",
        n,
        &bindings,
        [1, 1, 1],
        (3.0, 4.0),
    )
}

/// The score and where its gradient goes: `g` = ∂score/∂logits (N).
pub struct DlogitsArgs<'a> {
    pub n: usize,
    pub logits: &'a wgpu::Buffer,
    pub probs: &'a wgpu::Buffer,
    pub info: &'a wgpu::Buffer,
    pub region: Option<&'a Region<'a>>,
    pub g: &'a wgpu::Buffer,
}

pub fn dlogits(gpu: &Gpu, label: &str, a: &DlogitsArgs) -> Dispatch {
    let DlogitsArgs {
        n,
        logits,
        probs,
        info,
        region,
        g,
    } = *a;
    let bindings = [
        (4, Some(logits)),
        (5, Some(probs)),
        (6, Some(info)),
        (7, Some(g)),
        (10, region.map(|r| r.cells)),
        (11, region.map(|r| r.mass)),
    ];
    over_outputs(
        gpu,
        label,
        "dlogits",
        n,
        &bindings,
        grid_items(n),
        (2.0, 8.0),
    )
}

/// partial[seg0 + s, :] = Σ over the chunk's segment s of w[r,:]·g[row0 + r]
pub struct LinearBackwardArgs<'a> {
    pub chunk: Chunk<'a>,
    /// the chunk's first segment (of SEG_ROWS rows) in `partial`
    pub seg0: usize,
    /// the segments of all chunks, and their rows N: an image's share of `partial` and `g`
    /// in a batch
    pub nsegs: usize,
    pub n: usize,
    /// (N) ∂score/∂logits
    pub g: &'a wgpu::Buffer,
    /// (segments, K), written for the chunk's segments
    pub partial: &'a wgpu::Buffer,
}

pub fn linear_backward(gpu: &Gpu, label: &str, a: &LinearBackwardArgs) -> Dispatch {
    let image = image_reads_for(gpu, &a.chunk);
    linear_backward_form(gpu, label, a, (Form::for_adapter(gpu), image))
}

/// `linear_backward` in the given form (`Lanes` runs as `Rows`) and reads (`linear_form`),
/// whatever the adapter would pick.
pub fn linear_backward_form(
    gpu: &Gpu,
    label: &str,
    a: &LinearBackwardArgs,
    (form, image): (Form, bool),
) -> Dispatch {
    let Chunk { w, row0, rows, k } = a.chunk;
    let params = HeadParams {
        rows: rows as u32,
        k: k as u32,
        row0: row0 as u32,
        seg_rows: SEG_ROWS as u32,
        seg0: a.seg0 as u32,
        n: a.n as u32,
        nsegs: a.nsegs as u32,
        ..Default::default()
    };
    let segs = rows.div_ceil(SEG_ROWS) as u32;
    let bk = form.backward_texels();
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "head",
        source: form.source(),
        image_reads: weight_reads(image),
        entry: "linear_backward",
        constants: &[("BK", bk as f64)],
        params: words(&params),
        bindings: &[(7, Some(a.g)), (8, Some(a.partial))],
        textures: &[(1, &w.view)],
        // 64 invocations of BK texels (4·BK values of k) a workgroup
        groups: [(k as u32).div_ceil(256 * bk), segs, 1],
    });
    d.flops = 2.0 * (rows * k) as f64;
    d.bytes = 4.0 * (rows * k + rows) as f64;
    d
}

/// df[k] = Σ_s partial[s, k]
pub fn sum_partials(
    gpu: &Gpu,
    label: &str,
    k: usize,
    nsegs: usize,
    partial: &wgpu::Buffer,
    df: &wgpu::Buffer,
) -> Dispatch {
    let params = HeadParams {
        k: k as u32,
        nsegs: nsegs as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "head",
        entry: "sum_partials",
        params: words(&params),
        bindings: &[(8, Some(partial)), (9, Some(df))],
        groups: [(k as u32).div_ceil(64), 1, 1],
        ..Default::default()
    });
    d.flops = (nsegs * k) as f64;
    d.bytes = 4.0 * (nsegs * k + k) as f64;
    d
}

pub mod cpu {
    pub fn linear(w: &[f32], f: &[f32], bias: &[f32], n: usize, k: usize) -> Vec<f32> {
        (0..n)
            .map(|r| {
                w[r * k..(r + 1) * k]
                    .iter()
                    .zip(f)
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    + bias[r]
            })
            .collect()
    }

    /// (probs, argmax)
    pub fn softmax(logits: &[f32]) -> (Vec<f32>, usize) {
        let mut arg = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[arg] {
                arg = i;
            }
        }
        let mx = logits[arg];
        let e: Vec<f32> = logits.iter().map(|&v| (v - mx).exp()).collect();
        let s: f32 = e.iter().sum();
        (e.iter().map(|v| v / s).collect(), arg)
    }

    /// ∂S/∂logits of the region score S = Σ_{n in region} p_n: p_n(1[n in region] − S).
    pub fn dlogits_region(probs: &[f32], inside: &[bool]) -> Vec<f32> {
        let s: f32 = probs.iter().zip(inside).filter(|p| *p.1).map(|p| p.0).sum();
        probs
            .iter()
            .zip(inside)
            .map(|(&p, &i)| p * (if i { 1.0 } else { 0.0 } - s))
            .collect()
    }

    /// FinerCAM's comparison classes: the `k` classes j ≠ c whose logits are nearest to c's,
    /// nearest first, ties to the lower index (pytorch-grad-cam's `np.argsort(|y − y_c|)`,
    /// positions 1 ..= k).
    pub fn finer_classes(logits: &[f32], c: usize, k: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..logits.len()).filter(|&j| j != c).collect();
        let d = |j: usize| (logits[j] - logits[c]).abs();
        order.sort_by(|&a, &b| d(a).total_cmp(&d(b)).then(a.cmp(&b)));
        order.truncate(k);
        order
    }

    /// ∂F/∂logits of FinerCAM's score F = N/(S + 1e-9), S = Σ_{j in J} p_j,
    /// N = Σ_{j in J} p_j(y_c − y_j), in f64 (the kernel's reference).
    pub fn dlogits_finer(logits: &[f32], probs: &[f32], c: usize, k: usize) -> Vec<f32> {
        let j = finer_classes(logits, c, k);
        let (y, p) = (|i: usize| logits[i] as f64, |i: usize| probs[i] as f64);
        let s: f64 = j.iter().map(|&i| p(i)).sum();
        let num: f64 = j.iter().map(|&i| p(i) * (y(c) - y(i))).sum();
        let d = s + 1e-9;
        (0..logits.len())
            .map(|n| {
                let jp = if j.contains(&n) { p(n) } else { 0.0 };
                let ds = jp - p(n) * s;
                let dn = jp * (y(c) - y(n) - 1.0) - p(n) * num + if n == c { s } else { 0.0 };
                ((dn - num / d * ds) / d) as f32
            })
            .collect()
    }

    pub fn dlogits(probs: &[f32], target: usize, logit_score: bool) -> Vec<f32> {
        let pc = probs[target];
        (0..probs.len())
            .map(|n| {
                let hit = if n == target { 1.0 } else { 0.0 };
                if logit_score {
                    hit
                } else {
                    pc * (hit - probs[n])
                }
            })
            .collect()
    }

    /// df = wᵀ·g
    pub fn linear_backward(w: &[f32], g: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut df = vec![0f32; k];
        for r in 0..n {
            for (d, &wv) in df.iter_mut().zip(&w[r * k..(r + 1) * k]) {
                *d += wv * g[r];
            }
        }
        df
    }
}
