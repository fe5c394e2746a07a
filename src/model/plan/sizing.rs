//! Batch and memory sizing: what a plan's forward holds per image, and how many masked copies fit.

use super::io::PlanOptions;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::config::ModelCfg;
use crate::model::efficientnet::ModelGpu;
use crate::ops::gemm;

/// The largest GEMM input of a plan, in scratch texels (`gemm::XPack`): every 1×1 conv's
/// input forward, and its output gradient backward.
pub(super) fn gemm_pack_texels(
    cfg: &ModelCfg,
    stem: (usize, usize),
    sizes: &[(usize, usize)],
) -> usize {
    let t = gemm::XPack::texels_for;
    let mut prev = stem;
    let mut most = 0;
    for (b, &(oh, ow)) in cfg.blocks.iter().zip(sizes) {
        let (pin, pout) = (prev.0 * prev.1, oh * ow);
        most = most
            .max(t(b.cin, pin))
            .max(t(b.cmid(), pin))
            .max(t(b.cmid(), pout))
            .max(t(b.cout, pout));
        prev = (oh, ow);
    }
    let last = cfg.blocks.last().map(|b| b.cout).unwrap_or(0);
    most.max(t(last.max(cfg.head), prev.0 * prev.1))
}

/// GPU memory the default batch of masked copies may take (`Plan::default_batch`). wgpu
/// tells no adapter's memory size, so this is a fixed budget that fits beside the model on a
/// GPU of 4 GB or more. On a GPU an explicit `--batch` is held only to the adapter's limits;
/// on a CPU adapter, whose memory is the host's and is taken on first touch, to this budget
/// too.
pub const BATCH_BUDGET: u64 = 2 << 30;

/// Images of `all` floats each that fit in `BATCH_BUDGET` (at least 1); on a CPU adapter, whose
/// buffers are host memory, also in what the process may still allocate
/// (`gpu::host::memory_left`: `ulimit -v`, the memory available, a cgroup's limit) beyond the
/// plan's own buffers and the driver's headroom (`host_need`).
pub(super) fn budget_fit(gpu: &Gpu, all: usize) -> usize {
    let mut budget = BATCH_BUDGET;
    if gpu.host_memory()
        && let Some(left) = crate::gpu::host::memory_left()
    {
        budget = budget.min(left.saturating_sub(host_need(all)));
    }
    ((budget / (4 * all.max(1)) as u64) as usize).max(1)
}

/// Host memory a plan of forward footprint `all` floats takes on a CPU adapter, in bytes: one
/// and a half forward footprints (the forward, and the backward's and CAM phase's buffers,
/// which reuse much of it: a 224×4200 Lite0 explain's plan holds 787 MiB, 1.36 footprints)
/// and what the driver needs to compile the plan's kernels.
fn host_need(all: usize) -> u64 {
    3 * 4 * all as u64 / 2 + crate::gpu::host::DRIVER_HEADROOM
}

/// What one image of a forward batch holds, in floats: all its forward buffers together (the
/// GEMM's scratch texels `pack` counted as 4 floats each) and the largest of them. Mirrors
/// the allocations of `Rec::block_forward` and `Rec::head_forward`.
pub(super) fn forward_footprint(
    gpu: &Gpu,
    cfg: &ModelCfg,
    (h, w): (usize, usize),
    (stem, sizes): ((usize, usize), &[(usize, usize)]),
    classes: usize,
    pack: Option<usize>,
) -> (usize, usize) {
    let mut each = vec![3 * h * w, cfg.stem * stem.0 * stem.1];
    let mut prev = stem;
    for (b, &(oh, ow)) in cfg.blocks.iter().zip(sizes) {
        let cm = b.cmid();
        if b.expand != 1 {
            each.push(cm * prev.0 * prev.1);
        }
        each.push(cm * oh * ow);
        if b.has_se() {
            let parts = crate::ops::depthwise::pool_parts(gpu, &b.dw_shape(prev.0, prev.1));
            each.extend([cm * parts, cm, b.cse, cm]);
        }
        each.push(b.cout * oh * ow);
        prev = (oh, ow);
    }
    let hw = prev.0 * prev.1;
    each.extend([cfg.head * hw, cfg.head, classes, classes]);
    let all = each.iter().sum::<usize>() + 4 * pack.unwrap_or(0);
    (all, each.into_iter().max().unwrap_or(1))
}

/// The GEMM's scratch texels per image on adapters that pack (`gemm::Variant::packs`).
pub(super) fn pack_texels(
    gpu: &Gpu,
    cfg: &ModelCfg,
    stem: (usize, usize),
    sizes: &[(usize, usize)],
) -> Option<usize> {
    gemm::Variant::for_adapter(gpu)
        .packs()
        .then(|| gemm_pack_texels(cfg, stem, sizes))
}

/// At most `want` images of `largest` floats per buffer, within what the adapter binds (and
/// holds in one buffer) and,
/// with a scratch texture of `pack` texels per image, its texture size limit.
pub(super) fn batch_limit(gpu: &Gpu, want: usize, largest: usize, pack: Option<usize>) -> usize {
    let most = gpu.max_binding().min(gpu.limits.max_buffer_size);
    let mut n = want.min((most / (4 * largest.max(1)) as u64) as usize);
    if let Some(t) = pack {
        let rows = gpu.limits.max_texture_dimension_2d as usize;
        n = n.min(rows * gemm::PACK_W / t.max(1));
    }
    n.max(1)
}

/// The batch a plan records for `asked` masked copies of a forward footprint (`all`,
/// `largest`: `forward_footprint`). `PlanOptions::AUTO_BATCH`: 4 on a CPU adapter, 32 on a
/// GPU, within the budget; an explicit number: within the budget on a CPU adapter only.
/// Then within the adapter's limits (`batch_limit`).
pub(super) fn batch_for(
    gpu: &Gpu,
    asked: usize,
    (all, largest): (usize, usize),
    pack: Option<usize>,
) -> usize {
    let want = if asked == PlanOptions::AUTO_BATCH {
        let want = if gpu.is_cpu() { 4 } else { 32 };
        want.min(budget_fit(gpu, all))
    } else if gpu.is_cpu() || gpu.host_memory() {
        asked.min(budget_fit(gpu, all))
    } else {
        asked
    };
    batch_limit(gpu, want, largest, pack)
}

/// Whether `images` images at once (`PlanOptions::images`) fit a plan of `m` at `h`×`w` on
/// this adapter: within its binding and texture limits and, where its memory is the host's,
/// within `BATCH_BUDGET` and what the process may still allocate, each image taking its
/// forward and half as much again for its backward and CAM phase (`host_need`).
pub fn images_fit(gpu: &Gpu, m: &ModelGpu, (h, w): (usize, usize), images: usize) -> bool {
    let (all, largest, pack) = copy_footprint(gpu, m, h, w);
    batch_for(gpu, images, (3 * all / 2, largest), pack) >= images
}

/// Masked copies per batch when the user gives none: 4 on a CPU adapter (a copy takes
/// about a second there, the progress bar moves per batch, and a bigger batch is not
/// faster per copy), 32 on a GPU (small layers need several images to fill it); fewer
/// when the `h`×`w` forward of `m` would take more than `BATCH_BUDGET` or the adapter's
/// limits.
pub fn default_batch(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize) -> usize {
    let (all, largest, pack) = copy_footprint(gpu, m, h, w);
    batch_for(gpu, PlanOptions::AUTO_BATCH, (all, largest), pack)
}

/// GPU memory each image of a forward batch adds, in bytes: what `--batch` costs.
pub fn bytes_per_copy(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize) -> u64 {
    4 * copy_footprint(gpu, m, h, w).0 as u64
}

/// `forward_footprint` for `m` at `h`×`w` on this adapter, and its scratch texels.
pub(super) fn copy_footprint(
    gpu: &Gpu,
    m: &ModelGpu,
    h: usize,
    w: usize,
) -> (usize, usize, Option<usize>) {
    let cfg = &m.weights.cfg;
    let (sh, sw, sizes) = cfg.sizes(h, w);
    let pack = pack_texels(gpu, cfg, (sh, sw), &sizes);
    let (all, largest) =
        forward_footprint(gpu, cfg, (h, w), ((sh, sw), &sizes), m.n_classes(), pack);
    (all, largest, pack)
}

/// On a CPU adapter, whose buffers are host memory: refuse a plan the process cannot hold
/// (`host_need`) rather than let an allocation fail inside the driver, which crashes.
pub(super) fn check_host_memory(
    gpu: &Gpu,
    cfg: &ModelCfg,
    (h, w): (usize, usize),
    (stem, sizes): ((usize, usize), &[(usize, usize)]),
    classes: usize,
    pack: Option<usize>,
) -> Result<()> {
    if !gpu.host_memory() {
        return Ok(());
    }
    let (all, _) = forward_footprint(gpu, cfg, (h, w), (stem, sizes), classes, pack);
    crate::gpu::host::check_left(host_need(all), &format!("for a {h}×{w} input"))
}

/// Refuse an input whose blocks have no output left, or whose largest single buffer (an
/// expanded activation or its gradient) is over what the adapter binds. Photos are resized
/// to a fixed short side, so only the aspect ratio makes it large.
pub(super) fn check_fits(
    gpu: &Gpu,
    cfg: &ModelCfg,
    (h, w): (usize, usize),
    stem: (usize, usize),
    sizes: &[(usize, usize)],
) -> Result<()> {
    if let Some(l) = sizes.iter().position(|&(a, b)| a == 0 || b == 0) {
        return Err(Error::Input(format!(
            "a {h}×{w} input is too small for this network: block {l} has no output left"
        )));
    }
    let mut largest = 0usize;
    let mut prev = stem;
    for (l, b) in cfg.blocks.iter().enumerate() {
        largest = largest.max(b.cmid() * prev.0 * prev.1.max(1));
        prev = sizes[l];
    }
    let (need, have) = ((largest * 4) as u64, gpu.max_binding());
    if need > have {
        let (lo, hi) = (h.min(w) as f64, h.max(w) as f64);
        return Err(Error::Input(format!(
            "a {h}×{w} model input (aspect {:.1}:1) needs {:.0} MiB in one buffer, over the {:.0} MiB adapter {} binds: crop the photo to an aspect ratio of at most about {:.1}:1",
            hi / lo,
            need as f64 / 1048576.0,
            have as f64 / 1048576.0,
            gpu.adapter.line(),
            (hi / lo) * have as f64 / need as f64
        )));
    }
    Ok(())
}
