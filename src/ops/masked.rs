//! Masked copies of one image (Score-CAM's and AblationCAM's: of one of a few, `copy_value`)
//! for Score-CAM, AblationCAM and the faithfulness metrics (shaders/masked.wgsl): each copy's
//! input (AblationCAM: block output) is made on the GPU from its original and a mask, and only
//! the target's score is kept. GPU launchers and the CPU reference side by side.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{Source, grid_1d, grid_items},
    words,
};

crate::wgsl_params! {
    /// shaders/masked.wgsl's `Params`
    pub struct MaskedParams for "masked" { out_h: u32, out_w: u32, copy: u32, classes: u32 }
}

impl MaskedParams {
    /// The model input's size, the other fields 0.
    fn size(h: usize, w: usize) -> MaskedParams {
        MaskedParams {
            out_h: h as u32,
            out_w: w as u32,
            ..Default::default()
        }
    }
}

/// The buffers the masking kernels read and write (see the shader's header).
pub struct MaskBufs<'a> {
    pub x0: &'a wgpu::Buffer,
    pub input: &'a wgpu::Buffer,
    /// u32 [target, C, bh, bw, value per copy…]
    pub job: &'a wgpu::Buffer,
    pub acts: &'a wgpu::Buffer,
    pub mm: &'a wgpu::Buffer,
    pub rank: &'a wgpu::Buffer,
    pub other: &'a wgpu::Buffer,
    pub logits: &'a wgpu::Buffer,
    pub probs: &'a wgpu::Buffer,
    pub scores: &'a wgpu::Buffer,
}

/// Where the per-copy values start in `job`.
pub const JOB_HEADER: usize = 4;

/// The job value of Score-CAM's and AblationCAM's copy of original `z` (0 but for
/// --aug-smooth's originals) at channel `k` (AblationCAM: k = C, nothing set to 0): the shader's
/// `original` and `channel` take it apart. None past 65,535 channels or originals.
pub fn copy_value(z: usize, k: usize) -> Option<u32> {
    (z <= 0xffff && k <= 0xffff).then_some(((z as u32) << 16) | k as u32)
}

fn launch(
    gpu: &Gpu,
    label: &str,
    entry: &str,
    constants: &[(&str, f64)],
    params: MaskedParams,
    bindings: &[(u32, Option<&wgpu::Buffer>)],
    groups: [u32; 3],
) -> Dispatch {
    gpu.dispatch(&DispatchDesc {
        label,
        family: "masked",
        source: Some(Source::Table("masked")),
        entry,
        constants,
        params: words(&params),
        bindings,
        groups,
        ..Default::default()
    })
}

/// mm[2k], mm[2k+1] = min and max of up(A_k) over the H×W input, for the first job[1] of the
/// `c` channels `acts` holds (every original's, one after another).
pub fn up_minmax(gpu: &Gpu, label: &str, b: &MaskBufs, h: usize, w: usize, c: usize) -> Dispatch {
    launch(
        gpu,
        label,
        "up_minmax",
        &[],
        MaskedParams::size(h, w),
        &[(3, Some(b.job)), (4, Some(b.acts)), (5, Some(b.mm))],
        grid_1d(c as u32),
    )
}

/// Copy n (workgroup z; `Dispatch::record_batch` sets how many): input n = x0_o·up(A_ok) for
/// the original o and channel k of job[4 + n] (`copy_value`); min-max normalised per channel
/// (mm holds every original's channels one after another) or raw.
pub fn mask_cam(
    gpu: &Gpu,
    label: &str,
    b: &MaskBufs,
    h: usize,
    w: usize,
    normalise: bool,
) -> Dispatch {
    launch(
        gpu,
        label,
        "mask_cam",
        &[("NORMALISE", normalise as u32 as f64)],
        MaskedParams::size(h, w),
        &[
            (1, Some(b.x0)),
            (2, Some(b.input)),
            (3, Some(b.job)),
            (4, Some(b.acts)),
            (5, Some(b.mm)),
        ],
        grid_items(h * w),
    )
}

/// Copy n (workgroup z): the job[4 + n] first pixels by rank deleted (to 0) or inserted
/// (into the blurred input held in `other`).
pub fn mask_rank(
    gpu: &Gpu,
    label: &str,
    b: &MaskBufs,
    h: usize,
    w: usize,
    insertion: bool,
) -> Dispatch {
    // `other` is read by insertion only, but bound for both (one layout)
    let bindings = [
        (1, Some(b.x0)),
        (2, Some(b.input)),
        (3, Some(b.job)),
        (6, Some(b.rank)),
        (7, Some(b.other)),
    ];
    launch(
        gpu,
        label,
        "mask_rank",
        &[("MODE", insertion as u32 as f64)],
        MaskedParams::size(h, w),
        &bindings,
        grid_items(h * w),
    )
}

/// input = x0·S, S the (H, W) map in `other` (copy n: workgroup z).
pub fn mask_map(gpu: &Gpu, label: &str, b: &MaskBufs, h: usize, w: usize) -> Dispatch {
    launch(
        gpu,
        label,
        "mask_map",
        &[],
        MaskedParams::size(h, w),
        &[(1, Some(b.x0)), (2, Some(b.input)), (7, Some(b.other))],
        grid_items(h * w),
    )
}

/// AblationCAM's copies (workgroup z = copy n) of the `len` = C·bh·bw block output held in
/// `acts` (one per original), written into `out`, block l's batched output: copy n that of the
/// original of job[4 + n] (`copy_value`) with its channel set to 0 (none when it is ≥ C).
pub fn ablate(gpu: &Gpu, label: &str, b: &MaskBufs, out: &wgpu::Buffer, len: usize) -> Dispatch {
    launch(
        gpu,
        label,
        "ablate",
        &[],
        MaskedParams::default(),
        &[(2, Some(out)), (3, Some(b.job)), (4, Some(b.acts))],
        grid_items(len),
    )
}

/// scores[2n .. 2n + 2] = (logit, probability) of the target job[0] for the `copies` images
/// n of a batch of logits and probabilities (`classes` each).
pub fn take_score(gpu: &Gpu, label: &str, b: &MaskBufs, copies: usize, classes: usize) -> Dispatch {
    launch(
        gpu,
        label,
        "take_score",
        &[],
        MaskedParams {
            copy: copies as u32,
            classes: classes as u32,
            ..Default::default()
        },
        &[
            (3, Some(b.job)),
            (8, Some(b.logits)),
            (9, Some(b.probs)),
            (10, Some(b.scores)),
        ],
        [(copies as u32).div_ceil(64), 1, 1],
    )
}

pub mod cpu {
    use crate::ops::resample::upsample;

    /// Per channel (min, max) of up(A_k) at h×w.
    pub fn up_minmax(acts: &[f32], c: usize, bh: usize, bw: usize, h: usize, w: usize) -> Vec<f32> {
        (0..c)
            .flat_map(|k| {
                let u = upsample(&acts[k * bh * bw..(k + 1) * bh * bw], bh, bw, h, w);
                let lo = u.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                let hi = u.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                [lo, hi]
            })
            .collect()
    }

    /// x0·up(A_k), normalised with mm when given (pytorch-grad-cam's Score-CAM), else raw (the
    /// official repository's).
    pub fn mask_cam(
        x0: &[f32],
        acts: &[f32],
        mm: Option<&[f32]>,
        k: usize,
        (bh, bw): (usize, usize),
        (h, w): (usize, usize),
    ) -> Vec<f32> {
        let mut m = upsample(&acts[k * bh * bw..(k + 1) * bh * bw], bh, bw, h, w);
        if let Some(mm) = mm {
            let (lo, hi) = (mm[2 * k], mm[2 * k + 1]);
            m.iter_mut().for_each(|v| *v = (*v - lo) / (hi - lo + 1e-8));
        }
        mask_map(x0, &m)
    }

    /// The first `count` pixels by rank changed: deleted to 0, or (with `blurred`) the
    /// blurred input with those pixels put back.
    pub fn mask_rank(x0: &[f32], blurred: Option<&[f32]>, rank: &[u32], count: usize) -> Vec<f32> {
        let n = rank.len();
        (0..x0.len())
            .map(|i| {
                let changed = (rank[i % n] as usize) < count;
                match blurred {
                    None if changed => 0.0,
                    None => x0[i],
                    Some(_) if changed => x0[i],
                    Some(b) => b[i],
                }
            })
            .collect()
    }

    /// Block output `acts` (c planes) with plane `k` set to 0 (none when k ≥ c).
    pub fn ablate(acts: &[f32], c: usize, k: usize) -> Vec<f32> {
        let plane = acts.len() / c;
        let mut y = acts.to_vec();
        if k < c {
            y[k * plane..(k + 1) * plane].fill(0.0);
        }
        y
    }

    /// x0·S, S broadcast over the channels.
    pub fn mask_map(x0: &[f32], s: &[f32]) -> Vec<f32> {
        let n = s.len();
        x0.iter().enumerate().map(|(i, &v)| v * s[i % n]).collect()
    }

    /// The rank of every pixel when sorted by `s` descending, ties by index ascending
    /// (the README's Faithfulness section).
    pub fn ranks(s: &[f32]) -> Vec<u32> {
        let mut order: Vec<usize> = (0..s.len()).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
        let mut rank = vec![0u32; s.len()];
        for (r, &p) in order.iter().enumerate() {
            rank[p] = r as u32;
        }
        rank
    }
}
