//! The plan: every buffer, bind group and dispatch of one input size, recorded once and
//! replayed per image in one submission. It reads like the CPU reference model (`cpu.rs`):
//! `Rec::block_forward` beside `cpu::block_forward`, `Rec::head_forward`,
//! `Rec::head_backward`, `Rec::block_backward` beside `cpu::block_backward`; the CAM phase is
//! `cam::phase`; a run ends with a typed read-back.

use super::config::ModelCfg;
use super::efficientnet::{ExplainerOutput, ModelGpu, Output, PlanOptions, Score};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, GpuBuf, RecycleStats, Recycler};
use crate::ops::Act;
use crate::ops::{conv, depthwise, gemm, head, hvp, reduce, se};
use crate::ops::{
    conv::{ConvArgs, ConvShape},
    depthwise::{DwBackward, DwForward},
    gemm::{GemmArgs, InMode},
    head::{Chunk, LinearArgs, LinearBackwardArgs},
    reduce::PoolBackward,
    reduce::{Reduce, RowsArgs},
    se::{SeApplyBackward, SeBackward},
};
use std::time::Instant;

/// A phase of the plan: its dispatches, timed as one compute pass.
pub struct Phase {
    pub name: &'static str,
    pub dispatches: Vec<Dispatch>,
}

pub struct Plan {
    pub h: usize,
    pub w: usize,
    pub opts: PlanOptions,
    pub sizes: Vec<(usize, usize)>,
    pub phases: Vec<Phase>,
    pub input: GpuBuf,
    pub stem: GpuBuf,
    pub outs: Vec<GpuBuf>,
    pub grads: Vec<Option<GpuBuf>>,
    pub features: GpuBuf,
    info: GpuBuf,
    /// what is copied into `staging` after a run, and where it lands
    rb: ReadBack,
    staging: wgpu::Buffer,
    n: usize,
    /// the head has cell centres (the region score is possible)
    geo: bool,
    /// GPU memory the plan holds (buffers with their headroom, textures)
    pub bytes: u64,
    /// how much of the previous plan this one took back
    pub recycled: RecycleStats,
    /// what it holds, in the order it made it, for the next size to take back
    pool: Recycler,
    /// masked copies of the image (`PlanOptions::masked`, `run_masked`)
    pub(super) masked: Option<super::masked::Masked>,
}

/// Where a buffer's floats land in the read-back buffer.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    off: usize,
    len: usize,
}

impl Span {
    fn of<'a>(&self, f: &'a [f32]) -> &'a [f32] {
        &f[self.off..self.off + self.len]
    }
}

/// One explainer's results in the read-back buffer.
#[derive(Clone, Copy, Debug, Default)]
struct ExplainerSpans {
    maps: Span,
    norm: Span,
    mm: Span,
    stats: Span,
}

/// The read-back: the copies a run ends with, as named spans.
#[derive(Default)]
struct ReadBack {
    copies: Vec<(wgpu::Buffer, Span)>,
    len: usize,
    info: Span,
    probs: Span,
    logits: Span,
    /// with the backward: max |A_l| per block, and per explainer its results
    act_maxabs: Span,
    explainers: Vec<ExplainerSpans>,
    /// where block l's map starts inside an explainer's maps
    map_offs: Vec<usize>,
}

impl ReadBack {
    fn add(&mut self, b: &GpuBuf, len: usize) -> Span {
        let s = Span { off: self.len, len };
        self.copies.push((b.buf.clone(), s));
        self.len += len;
        s
    }
}

struct Alloc<'a> {
    gpu: &'a Gpu,
    /// images the forward's buffers hold (`Plan::masked_copies`; 1 without masked copies)
    batch: usize,
}

impl Alloc<'_> {
    fn buf(&mut self, label: String, len: usize) -> Result<GpuBuf> {
        self.gpu.zeros(&label, len)
    }

    /// A forward buffer: `len` floats per image for every image of the batch, one after
    /// another. Its `len` is one image's, so what reads it sees image 0, the plan's image.
    fn batched(&mut self, label: String, len: usize) -> Result<GpuBuf> {
        let mut b = self.gpu.zeros(&label, len * self.batch)?;
        b.len = len;
        Ok(b)
    }
}

/// The largest GEMM input of a plan, in scratch texels (`gemm::XPack`): every 1×1 conv's
/// input forward, and its output gradient backward.
fn gemm_pack_texels(cfg: &ModelCfg, stem: (usize, usize), sizes: &[(usize, usize)]) -> usize {
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

/// Images of `all` floats each that fit in `BATCH_BUDGET` (at least 1).
fn budget_fit(all: usize) -> usize {
    ((BATCH_BUDGET / (4 * all.max(1)) as u64) as usize).max(1)
}

/// What one image of a forward batch holds, in floats: all its forward buffers together (the
/// GEMM's scratch texels `pack` counted as 4 floats each) and the largest of them. Mirrors
/// the allocations of `Rec::block_forward` and `Rec::head_forward`.
fn forward_footprint(
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
            let parts = crate::ops::depthwise::pool_parts(&b.dw_shape(prev.0, prev.1));
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

/// The GEMM's scratch texels per image on adapters that pack (`gemm::Variant::Regs`).
fn pack_texels(
    gpu: &Gpu,
    cfg: &ModelCfg,
    stem: (usize, usize),
    sizes: &[(usize, usize)],
) -> Option<usize> {
    (gemm::Variant::for_adapter(gpu) == gemm::Variant::Regs)
        .then(|| gemm_pack_texels(cfg, stem, sizes))
}

/// At most `want` images of `largest` floats per buffer, within what the adapter binds (and
/// holds in one buffer) and,
/// with a scratch texture of `pack` texels per image, its texture size limit.
fn batch_limit(gpu: &Gpu, want: usize, largest: usize, pack: Option<usize>) -> usize {
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
fn batch_for(
    gpu: &Gpu,
    asked: usize,
    (all, largest): (usize, usize),
    pack: Option<usize>,
) -> usize {
    let want = if asked == PlanOptions::AUTO_BATCH {
        let want = if gpu.is_cpu() { 4 } else { 32 };
        want.min(budget_fit(all))
    } else if gpu.is_cpu() {
        asked.min(budget_fit(all))
    } else {
        asked
    };
    batch_limit(gpu, want, largest, pack)
}

impl Plan {
    /// Masked copies per batch when the user gives none: 4 on a CPU adapter (a copy takes
    /// about a second there, the progress bar moves per batch, and a bigger batch is not
    /// faster per copy), 32 on a GPU (small layers need several images to fill it); fewer
    /// when the `h`×`w` forward of `m` would take more than `BATCH_BUDGET` or the adapter's
    /// limits.
    pub fn default_batch(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize) -> usize {
        let (all, largest, pack) = Self::copy_footprint(gpu, m, h, w);
        batch_for(gpu, PlanOptions::AUTO_BATCH, (all, largest), pack)
    }

    /// GPU memory each image of a forward batch adds, in bytes: what `--batch` costs.
    pub fn bytes_per_copy(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize) -> u64 {
        4 * Self::copy_footprint(gpu, m, h, w).0 as u64
    }

    /// `forward_footprint` for `m` at `h`×`w` on this adapter, and its scratch texels.
    fn copy_footprint(
        gpu: &Gpu,
        m: &ModelGpu,
        h: usize,
        w: usize,
    ) -> (usize, usize, Option<usize>) {
        let cfg = &m.weights.cfg;
        let (sh, sw, sizes) = cfg.sizes(h, w);
        let pack = pack_texels(gpu, cfg, (sh, sw), &sizes);
        let (all, largest) =
            forward_footprint(cfg, (h, w), ((sh, sw), &sizes), m.n_classes(), pack);
        (all, largest, pack)
    }
}

/// What recording a plan needs: the device, the uploaded model, the allocator, the GEMM's
/// scratch texture and, for blocks without SE, ones (the projection's scale) and zeros (the
/// SE gradient).
struct Rec<'a> {
    gpu: &'a Gpu,
    m: &'a ModelGpu,
    a: Alloc<'a>,
    pack: Option<gemm::XPack>,
    act: Act,
    no_se: Option<(GpuBuf, GpuBuf)>,
}

/// A block's forward intermediates on the GPU, as `cpu::BlockState` holds them.
struct BlockFwd {
    ze: Option<GpuBuf>,
    zd: GpuBuf,
    r: Option<GpuBuf>,
    s: Option<GpuBuf>,
    out: GpuBuf,
}

/// The head's forward results.
struct HeadFwd {
    zh: GpuBuf,
    features: GpuBuf,
    logits: GpuBuf,
    probs: GpuBuf,
    info: GpuBuf,
}

/// Scratch every block's backward reuses.
struct Scratch {
    du: GpuBuf,
    dze: GpuBuf,
    ds: GpuBuf,
    dm: GpuBuf,
}

impl Rec<'_> {
    /// out = Wfc·f + bias, one dispatch per chunk of the classifier (labels `{tag}[i].linear{suffix}`).
    #[allow(clippy::too_many_arguments)]
    fn classifier(
        gpu: &Gpu,
        m: &ModelGpu,
        tag: &str,
        suffix: &str,
        f: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        out: &wgpu::Buffer,
        d: &mut Vec<Dispatch>,
    ) {
        let (k, n) = (m.weights.cfg.head, m.n_classes());
        for (ci, (chunk, row0, rows)) in m.fc.iter().enumerate() {
            d.push(head::linear(
                gpu,
                &format!("{tag}[{ci}].linear{suffix}"),
                &LinearArgs {
                    chunk: Chunk {
                        w: chunk,
                        row0: *row0,
                        rows: *rows,
                        k,
                    },
                    n,
                    f,
                    bias,
                    logits: out,
                },
            ));
        }
    }

    /// Wfcᵀ·g (K): the classifier's data gradient, per segment of rows, then summed.
    fn classifier_t(
        gpu: &Gpu,
        m: &ModelGpu,
        a: &mut Alloc,
        tag: &str,
        out_label: &str,
        g: &wgpu::Buffer,
        d: &mut Vec<Dispatch>,
    ) -> Result<GpuBuf> {
        let k = m.weights.cfg.head;
        let nsegs: usize = m.fc.iter().map(|c| c.2.div_ceil(head::SEG_ROWS)).sum();
        let partial = a.buf(format!("{tag}.partial"), nsegs * k)?;
        let mut seg0 = 0;
        for (ci, (chunk, row0, rows)) in m.fc.iter().enumerate() {
            d.push(head::linear_backward(
                gpu,
                &format!("{tag}[{ci}].linear.bwd"),
                &LinearBackwardArgs {
                    chunk: Chunk {
                        w: chunk,
                        row0: *row0,
                        rows: *rows,
                        k,
                    },
                    seg0,
                    g,
                    partial: &partial.buf,
                },
            ));
            seg0 += rows.div_ceil(head::SEG_ROWS);
        }
        let out = a.buf(out_label.into(), k)?;
        d.push(head::sum_partials(
            gpu,
            &format!("{tag}.sum.bwd"),
            k,
            nsegs,
            &partial.buf,
            &out.buf,
        ));
        Ok(out)
    }
    /// Block `l` on `x` (ih×iw): expand, depthwise (writing the SE squeeze's partial sums),
    /// squeeze-excite, projection (+ residual). Beside `cpu::block_forward`.
    fn block_forward(
        &mut self,
        l: usize,
        x: &wgpu::Buffer,
        (ih, iw): (usize, usize),
        fwd: &mut Vec<Dispatch>,
    ) -> Result<BlockFwd> {
        let (gpu, m, act) = (self.gpu, self.m, self.act);
        let b = &m.weights.cfg.blocks[l];
        let bw = &m.blocks[l];
        let (_, _, oh, ow) = b.pads(ih, iw);
        let cm = b.cmid();
        let a = &mut self.a;
        let pack = &self.pack;
        let no_se = self.no_se.as_ref().map(|n| &n.0);
        let zexp = match &bw.expand {
            Some((ew, _, eb)) => {
                let z = a.batched(format!("{l}.z_expand"), cm * ih * iw)?;
                fwd.extend(gemm::gemm(
                    gpu,
                    &format!("{l}.expand.fwd"),
                    &GemmArgs {
                        m: cm,
                        k: b.cin,
                        p: ih * iw,
                        a: ew,
                        x,
                        bias: Some(&eb.buf),
                        scale: None,
                        res: None,
                        y: &z.buf,
                        mode: InMode::Plain,
                        pack: pack.as_ref(),
                    },
                ));
                Some(z)
            }
            None => None,
        };
        let zdw = a.batched(format!("{l}.z_dw"), cm * oh * ow)?;
        let dws = b.dw_shape(ih, iw);
        let dw_in = zexp.as_ref().map(|z| &z.buf).unwrap_or(x);
        // the SE squeeze: partial sums of act(z_d) written by the depthwise kernel
        let parts = depthwise::pool_parts(&dws);
        let partial = match bw.se {
            Some(_) => Some(a.batched(format!("{l}.se_pool.parts"), cm * parts)?),
            None => None,
        };
        fwd.push(depthwise::forward(
            gpu,
            &format!("{l}.dw.fwd"),
            &DwForward {
                s: dws,
                act,
                in_act: zexp.is_some(),
                x: dw_in,
                wt: &bw.dw_w.buf,
                bias: &bw.dw_b.buf,
                out: &zdw.buf,
                pool: partial.as_ref().map(|p| &p.buf),
            },
        ));
        let (r, s) = match (&bw.se, &partial) {
            (Some(sew), Some(partial)) => {
                let pooled = a.batched(format!("{l}.se_pool"), cm)?;
                fwd.push(reduce::rows_scaled(
                    gpu,
                    &format!("{l}.se_pool.fwd"),
                    Reduce::Mean,
                    &RowsArgs {
                        rows: cm,
                        len: parts,
                        in_off: 0,
                        out_off: 0,
                        x: &partial.buf,
                        y: None,
                        out: &pooled.buf,
                    },
                    1.0 / (oh * ow) as f32,
                ));
                let r = a.batched(format!("{l}.se_r"), b.cse)?;
                let s = a.batched(format!("{l}.se_s"), cm)?;
                fwd.push(se::forward(
                    gpu,
                    &format!("{l}.se.fwd"),
                    b.se_shape(oh * ow),
                    &sew.weights(),
                    &pooled.buf,
                    &r.buf,
                    &s.buf,
                ));
                (Some(r), Some(s))
            }
            _ => (None, None),
        };
        let scale = match (&s, no_se) {
            (Some(s), _) => &s.buf,
            (None, Some(ones)) => &ones.buf,
            (None, None) => unreachable!("a block without SE has the ones buffer"),
        };
        let out = a.batched(format!("{l}.out"), b.cout * oh * ow)?;
        fwd.extend(gemm::gemm(
            gpu,
            &format!("{l}.project.fwd"),
            &GemmArgs {
                m: b.cout,
                k: cm,
                p: oh * ow,
                a: &bw.proj_w,
                x: &zdw.buf,
                bias: Some(&bw.proj_b.buf),
                scale: Some(scale),
                res: if b.residual() { Some(x) } else { None },
                y: &out.buf,
                mode: InMode::ActScaled(act),
                pack: pack.as_ref(),
            },
        ));
        Ok(BlockFwd {
            ze: zexp,
            zd: zdw,
            r,
            s,
            out,
        })
    }

    /// The head on the last block's output `x` (hw positions): conv, pool of the activation,
    /// classifier, softmax and the target. Beside `cpu::head_forward`.
    fn head_forward(
        &mut self,
        x: &wgpu::Buffer,
        hw: usize,
        fwd: &mut Vec<Dispatch>,
    ) -> Result<HeadFwd> {
        let (gpu, m, act) = (self.gpu, self.m, self.act);
        let cfg = &m.weights.cfg;
        let a = &mut self.a;
        let pack = &self.pack;
        let last = cfg.blocks.last().unwrap().cout;
        let k = cfg.head;
        let n = m.n_classes();
        let zh = a.batched("head.z".into(), k * hw)?;
        fwd.extend(gemm::gemm(
            gpu,
            "head.conv.fwd",
            &GemmArgs {
                m: k,
                k: last,
                p: hw,
                a: &m.head_w,
                x,
                bias: Some(&m.head_b.buf),
                scale: None,
                res: None,
                y: &zh.buf,
                mode: InMode::Plain,
                pack: pack.as_ref(),
            },
        ));
        let features = a.batched("features".into(), k)?;
        fwd.push(reduce::rows(
            gpu,
            "head.pool.fwd",
            Reduce::MeanAct(act),
            &RowsArgs {
                rows: k,
                len: hw,
                in_off: 0,
                out_off: 0,
                x: &zh.buf,
                y: None,
                out: &features.buf,
            },
        ));
        let logits = a.batched("logits".into(), n)?;
        let probs = a.batched("probs".into(), n)?;
        // [target asked, score, target, argmax, region km (f32 bits), 0, 0, 0]
        let info = a.buf("info".into(), 8)?;
        Self::classifier(
            gpu,
            m,
            "fc",
            ".fwd",
            &features.buf,
            &m.fc_b.buf,
            &logits.buf,
            fwd,
        );
        fwd.push(head::softmax(
            gpu,
            "fc.softmax.fwd",
            n,
            &logits.buf,
            &probs.buf,
            &info.buf,
        ));
        Ok(HeadFwd {
            zh,
            features,
            logits,
            probs,
            info,
        })
    }

    /// From the score to the last block's output gradient: dlogits (probability, logit or
    /// region), the classifier's and the pool's gradients, the head conv's transpose.
    /// Beside the head part of `cpu::backward`.
    fn head_backward(
        &mut self,
        hf: &HeadFwd,
        hw: usize,
        bwd: &mut Vec<Dispatch>,
    ) -> Result<(GpuBuf, GpuBuf)> {
        let (gpu, m, act) = (self.gpu, self.m, self.act);
        let cfg = &m.weights.cfg;
        let (nb, last, k, n) = (
            cfg.blocks.len(),
            cfg.blocks.last().unwrap().cout,
            cfg.head,
            m.n_classes(),
        );
        let HeadFwd {
            zh, probs, info, ..
        } = hf;
        let a = &mut self.a;
        let pack = &self.pack;
        let dlog = a.buf("dlogits".into(), n)?;
        let mass = a.buf("fc.region_mass".into(), 1)?;
        let region = m.cells.as_ref().map(|c| head::Region {
            cells: &c.buf,
            mass: &mass.buf,
        });
        if let Some(r) = &region {
            bwd.push(head::region_mass(
                gpu,
                "fc.region_mass.bwd",
                n,
                &probs.buf,
                &info.buf,
                r,
            ));
        }
        bwd.push(head::dlogits(
            gpu,
            "fc.dlogits.bwd",
            n,
            &probs.buf,
            &info.buf,
            region.as_ref(),
            &dlog.buf,
        ));
        let df = Self::classifier_t(gpu, m, a, "fc", "dfeatures", &dlog.buf, bwd)?;
        let dzh = a.buf("head.dz".into(), k * hw)?;
        bwd.push(reduce::pool_backward(
            gpu,
            "head.pool.bwd",
            &PoolBackward {
                act,
                rows: k,
                len: hw,
                z: &zh.buf,
                g: &df.buf,
                out: &dzh.buf,
            },
        ));
        let g_last = a.buf(format!("{}.grad", nb - 1), last * hw)?;
        bwd.extend(gemm::gemm(
            gpu,
            "head.conv.bwd",
            &GemmArgs {
                m: last,
                k,
                p: hw,
                a: &m.head_wt,
                x: &dzh.buf,
                bias: None,
                scale: None,
                res: None,
                y: &g_last.buf,
                mode: InMode::Plain,
                pack: pack.as_ref(),
            },
        ));
        Ok((g_last, df))
    }

    /// h = ∂(Σ g)/∂A at the last block's output: the head's Hessian-vector product the
    /// official Grad-CAM++ needs (shaders/hvp.wgsl derives it); `df` = ∂p_c/∂features.
    /// Beside `cpu::head_hvp`.
    fn head_hvp(
        &mut self,
        hf: &HeadFwd,
        df: &GpuBuf,
        hw: usize,
        bwd: &mut Vec<Dispatch>,
    ) -> Result<GpuBuf> {
        let (gpu, m, act) = (self.gpu, self.m, self.act);
        let cfg = &m.weights.cfg;
        let (last, k, n) = (cfg.blocks.last().unwrap().cout, cfg.head, m.n_classes());
        let a = &mut self.a;
        // ḟ = w1 ⊙ mean_p act'(z)
        let fdot = a.buf("hvp.fdot".into(), k)?;
        bwd.push(reduce::rows(
            gpu,
            "hvp.mean_dact.bwd",
            Reduce::MeanDAct(act),
            &RowsArgs {
                rows: k,
                len: hw,
                in_off: 0,
                out_off: 0,
                x: &hf.zh.buf,
                y: None,
                out: &fdot.buf,
            },
        ));
        bwd.push(hvp::fdot(gpu, "hvp.fdot.bwd", k, &fdot.buf, &m.head_w1.buf));
        // l̇ = Wfc·ḟ, then δ̇
        let ldot = a.buf("hvp.ldot".into(), n)?;
        let zero_bias = a.buf("hvp.zero_bias".into(), n)?;
        Self::classifier(
            gpu,
            m,
            "hvp.fc",
            ".bwd",
            &fdot.buf,
            &zero_bias.buf,
            &ldot.buf,
            bwd,
        );
        let ddl = a.buf("hvp.ddlogits".into(), n)?;
        bwd.push(hvp::jvp_dlogits(
            gpu,
            "hvp.jvp_dlogits.bwd",
            n,
            &ldot.buf,
            &hf.probs.buf,
            &hf.info.buf,
            &ddl.buf,
        ));
        // ḋf = Wfcᵀ·δ̇
        let dfdot = Self::classifier_t(gpu, m, a, "hvp.fc_t", "hvp.dfdot", &ddl.buf, bwd)?;
        // dż, then h = Wᵀ·dż
        let dz = a.buf("hvp.dz".into(), k * hw)?;
        bwd.push(hvp::pool_hvp(
            gpu,
            "hvp.pool.bwd",
            act,
            &hvp::PoolHvpArgs {
                k,
                p: hw,
                z: &hf.zh.buf,
                w1: &m.head_w1.buf,
                dfdot: &dfdot.buf,
                df: &df.buf,
                out: &dz.buf,
            },
        ));
        let h = a.buf("hvp.h".into(), last * hw)?;
        bwd.extend(gemm::gemm(
            gpu,
            "hvp.head_conv.bwd",
            &GemmArgs {
                m: last,
                k,
                p: hw,
                a: &m.head_wt,
                x: &dz.buf,
                bias: None,
                scale: None,
                res: None,
                y: &h.buf,
                mode: InMode::Plain,
                pack: self.pack.as_ref(),
            },
        ));
        Ok(h)
    }

    /// The gradient at block `l`'s input (ih×iw) from `gout` at its output: projection
    /// transposed, SE (or its absence), depthwise transposed with the activation's
    /// derivative, expand transposed (+ the residual's gradient). Beside `cpu::block_backward`.
    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &mut self,
        l: usize,
        st: &BlockFwd,
        gout: &wgpu::Buffer,
        (ih, iw): (usize, usize),
        sc: &Scratch,
        bwd: &mut Vec<Dispatch>,
    ) -> Result<GpuBuf> {
        let (gpu, m, act) = (self.gpu, self.m, self.act);
        let b = &m.weights.cfg.blocks[l];
        let bw = &m.blocks[l];
        let (_, _, oh, ow) = b.pads(ih, iw);
        let cm = b.cmid();
        let Scratch { du, dze, ds, dm } = sc;
        let a = &mut self.a;
        let pack = &self.pack;
        let gin = a.buf(format!("{}.grad", l - 1), b.cin * ih * iw)?;
        bwd.extend(gemm::gemm(
            gpu,
            &format!("{l}.project.bwd"),
            &GemmArgs {
                m: cm,
                k: b.cout,
                p: oh * ow,
                a: &bw.proj_wt,
                x: gout,
                bias: None,
                scale: None,
                res: None,
                y: &du.buf,
                mode: InMode::Plain,
                pack: pack.as_ref(),
            },
        ));
        let seshape = b.se_shape(oh * ow);
        // (s, dm): the SE's scale and gradient, or ones and zeros without SE
        let (s_l, dm_l) = match (&bw.se, &st.r, &st.s) {
            (Some(sew), Some(r), Some(s)) => {
                bwd.push(reduce::rows(
                    gpu,
                    &format!("{l}.se_ds.bwd"),
                    Reduce::DotAct(act),
                    &RowsArgs {
                        rows: cm,
                        len: oh * ow,
                        in_off: 0,
                        out_off: 0,
                        x: &du.buf,
                        y: Some(&st.zd.buf),
                        out: &ds.buf,
                    },
                ));
                bwd.push(se::backward(
                    gpu,
                    &format!("{l}.se.bwd"),
                    &SeBackward {
                        sh: seshape,
                        w: &sew.weights(),
                        r: &r.buf,
                        s: &s.buf,
                        ds: &ds.buf,
                        dm: &dm.buf,
                    },
                ));
                (&s.buf, &dm.buf)
            }
            _ => (
                &self
                    .no_se
                    .as_ref()
                    .expect("blocks without SE have ones")
                    .0
                    .buf,
                &self.no_se.as_ref().expect("and zeros").1.buf,
            ),
        };
        bwd.push(se::apply_backward(
            gpu,
            &format!("{l}.se_apply.bwd"),
            &SeApplyBackward {
                act,
                sh: seshape,
                s: s_l,
                dm: dm_l,
                du: &du.buf,
                zd: &st.zd.buf,
            },
        ));
        let dws = b.dw_shape(ih, iw);
        let res = if b.residual() { Some(gout) } else { None };
        match (&bw.expand, &st.ze) {
            (Some((_, ewt, _)), Some(z)) => {
                bwd.push(depthwise::backward(
                    gpu,
                    &format!("{l}.dw.bwd"),
                    &DwBackward {
                        s: dws,
                        act,
                        dy: &du.buf,
                        wt: &bw.dw_w.buf,
                        zin: Some(&z.buf),
                        res: None,
                        dx: &dze.buf,
                    },
                ));
                bwd.extend(gemm::gemm(
                    gpu,
                    &format!("{l}.expand.bwd"),
                    &GemmArgs {
                        m: b.cin,
                        k: cm,
                        p: ih * iw,
                        a: ewt,
                        x: &dze.buf,
                        bias: None,
                        scale: None,
                        res,
                        y: &gin.buf,
                        mode: InMode::Plain,
                        pack: pack.as_ref(),
                    },
                ));
            }
            _ => bwd.push(depthwise::backward(
                gpu,
                &format!("{l}.dw.bwd"),
                &DwBackward {
                    s: dws,
                    act,
                    dy: &du.buf,
                    wt: &bw.dw_w.buf,
                    zin: None,
                    res,
                    dx: &gin.buf,
                },
            )),
        }
        Ok(gin)
    }
}

impl Plan {
    /// Build the plan for an H×W input. Validation errors come back as `Error::Gpu`.
    pub fn new(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize, opts: PlanOptions) -> Result<Plan> {
        Self::build(gpu, m, h, w, opts, Recycler::default())
    }

    /// Build the plan, taking back what `old` (a previous plan of the same options, at
    /// another size) holds where it fits: memory stays that of the largest size seen.
    pub fn build(
        gpu: &Gpu,
        m: &ModelGpu,
        h: usize,
        w: usize,
        opts: PlanOptions,
        old: Recycler,
    ) -> Result<Plan> {
        let cfg = &m.weights.cfg;
        if h < 1 || w < 1 {
            return Err(Error::Input(format!("input size {h}×{w} is empty")));
        }
        let nb = cfg.blocks.len();
        if let Some(&b) = opts.blocks.iter().find(|&&b| b >= nb) {
            return Err(Error::Input(format!(
                "block {b} does not exist: this model has blocks 0-{}",
                nb - 1
            )));
        }
        // the official Grad-CAM++ is defined on the last block only (its score: see `run`)
        crate::cam::methods::check_official(&opts.explainers, &opts.blocks, nb, true)?;
        if let Some(e) = opts.explainers.iter().find(|e| e.method.is_score_cam()) {
            return Err(Error::Input(format!(
                "{} is made of masked passes (cam::scorecam), not of a plan's CAM phase",
                e.method.name()
            )));
        }
        let official = crate::cam::methods::needs_hvp(&opts.explainers);
        let (sh, sw, sizes) = cfg.sizes(h, w);
        if let Some(l) = sizes.iter().position(|&(a, b)| a == 0 || b == 0) {
            return Err(Error::Input(format!(
                "a {h}×{w} input is too small for this network: block {l} has no output left"
            )));
        }
        // the largest single buffer: an expanded activation (or its gradient). Photos are
        // resized to a fixed short side, so only the aspect ratio makes it large.
        let mut largest = 0usize;
        let mut prev = (sh, sw);
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
        let recording = gpu.record_with(old);
        let texels = pack_texels(gpu, cfg, (sh, sw), &sizes);
        // the forward's buffers hold `batch` images when there are masked copies to run
        // (`batch_for`)
        let batch = match opts.masked {
            0 => 1,
            asked => {
                let fp = forward_footprint(cfg, (h, w), ((sh, sw), &sizes), m.n_classes(), texels);
                batch_for(gpu, asked, fp, texels)
            }
        };
        let mut a = Alloc { gpu, batch };
        let pack = match texels {
            Some(t) => Some(gemm::XPack::new(gpu, "gemm.pack", t * batch)?),
            None => None,
        };
        let max_cm = cfg.blocks.iter().map(|b| b.cmid()).max().unwrap_or(1);
        let no_se = if cfg.blocks.iter().any(|b| !b.has_se()) {
            // the projection's scale without SE: ones for every image of the batch
            let ones = gpu.upload("no_se.ones", &vec![1f32; max_cm * batch])?;
            Some((ones, a.buf("no_se.dm".into(), max_cm)?))
        } else {
            None
        };
        let mut rec = Rec {
            gpu,
            m,
            a,
            pack,
            act: cfg.family.act(),
            no_se,
        };

        // forward: the stem, every block, the head
        let input = rec.a.batched("input".into(), 3 * h * w)?;
        let stem = rec.a.batched("stem.out".into(), cfg.stem * sh * sw)?;
        let mut fwd = vec![conv::conv(
            gpu,
            "stem.conv.fwd",
            &ConvArgs {
                s: ConvShape::new((3, h, w), cfg.stem, 3, 2, cfg.stem_pad),
                act: Some(rec.act),
                x: &input.buf,
                wt: &m.stem_w,
                bias: &m.stem_b.buf,
                y: &stem.buf,
            },
        )];
        let mut blocks: Vec<BlockFwd> = Vec::new();
        for l in 0..nb {
            let x = if l == 0 {
                &stem.buf
            } else {
                &blocks[l - 1].out.buf
            };
            let input_size = if l == 0 { (sh, sw) } else { sizes[l - 1] };
            let st = rec.block_forward(l, x, input_size, &mut fwd)?;
            blocks.push(st);
        }
        let hw = sizes[nb - 1].0 * sizes[nb - 1].1;
        let hf = rec.head_forward(&blocks[nb - 1].out.buf, hw, &mut fwd)?;
        let outs: Vec<GpuBuf> = blocks.iter().map(|b| b.out.clone()).collect();
        let n = m.n_classes();
        let mut phases = vec![Phase {
            name: "forward",
            dispatches: fwd,
        }];
        let masked = if opts.masked > 0 {
            let acts_len = outs.iter().map(|o| o.len).max().unwrap_or(1);
            let max_c = cfg.blocks.iter().map(|b| b.cout).max().unwrap_or(1);
            let mut alloc = |label: String, len: usize| rec.a.buf(label, len);
            Some(super::masked::Masked::record(
                gpu,
                &mut alloc,
                (&input, &hf.logits, &hf.probs),
                (h, w),
                acts_len,
                max_c,
                (batch, n),
            )?)
        } else {
            None
        };
        let mut rb = ReadBack::default();
        rb.info = rb.add(&hf.info, 4);
        rb.probs = rb.add(&hf.probs, n);
        rb.logits = rb.add(&hf.logits, n);

        // the backward down to the first selected block, then the CAM phase
        let mut grads: Vec<Option<GpuBuf>> = (0..nb).map(|_| None).collect();
        if opts.backward && !opts.blocks.is_empty() {
            let lo = *opts.blocks.iter().min().unwrap();
            let mut bwd = Vec::new();
            let (g_last, df) = rec.head_backward(&hf, hw, &mut bwd)?;
            grads[nb - 1] = Some(g_last);
            let hvp = if official {
                Some(rec.head_hvp(&hf, &df, hw, &mut bwd)?)
            } else {
                None
            };
            // scratch shared by all blocks
            let (mut max_du, mut max_dze, mut max_c) = (0, 0, 0);
            let mut p = (sh, sw);
            for (l, b) in cfg.blocks.iter().enumerate() {
                max_du = max_du.max(b.cmid() * sizes[l].0 * sizes[l].1);
                max_dze = max_dze.max(b.cmid() * p.0 * p.1);
                max_c = max_c.max(b.cmid());
                p = sizes[l];
            }
            let sc = Scratch {
                du: rec.a.buf("scratch.du".into(), max_du)?,
                dze: rec.a.buf("scratch.dz_expand".into(), max_dze)?,
                ds: rec.a.buf("scratch.ds".into(), max_c)?,
                dm: rec.a.buf("scratch.dm".into(), max_c)?,
            };
            for l in (lo + 1..nb).rev() {
                let gout = &grads[l].as_ref().unwrap().buf;
                let gin = rec.block_backward(l, &blocks[l], gout, sizes[l - 1], &sc, &mut bwd)?;
                grads[l - 1] = Some(gin);
            }
            phases.push(Phase {
                name: "backward",
                dispatches: bwd,
            });

            // every explainer's maps at every selected block, and their fusion
            let inputs = crate::cam::phase::CamInputs {
                cfg,
                sizes: &sizes,
                outs: &outs,
                grads: &grads,
                h,
                w,
                blocks: &opts.blocks,
                hvp: hvp.as_ref(),
            };
            let mut alloc = |label: String, len: usize| rec.a.buf(label, len);
            let (camd, cb) = crate::cam::phase::record(gpu, &inputs, &opts.explainers, &mut alloc)?;
            phases.push(Phase {
                name: "cam",
                dispatches: camd,
            });
            rb.act_maxabs = rb.add(&cb.act_maxabs, nb);
            rb.map_offs = cb.map_offs.clone();
            for e in &cb.explainers {
                let spans = ExplainerSpans {
                    maps: rb.add(&e.maps, cb.total_maps),
                    norm: rb.add(&e.norm, h * w),
                    mm: rb.add(&e.mm, 2),
                    stats: rb.add(&e.stats, 2 * nb),
                };
                rb.explainers.push(spans);
            }
        }
        let staging = gpu.staging("readback", (rb.len * 4) as u64);
        let mut masked = masked;
        gpu.bind_all(
            phases
                .iter_mut()
                .flat_map(|p| p.dispatches.iter_mut())
                .chain(masked.iter_mut().flat_map(|m| m.dispatches_mut())),
        );
        gpu.check_errors("plan creation")?;
        let (pool, recycled) = recording.finish();
        Ok(Plan {
            h,
            w,
            opts,
            sizes,
            phases,
            input,
            stem,
            outs,
            grads,
            features: hf.features,
            info: hf.info,
            rb,
            staging,
            n,
            geo: m.cells.is_some(),
            bytes: pool.bytes(),
            recycled,
            pool,
            masked,
        })
    }

    /// Record every phase into one encoder, one compute pass per phase, then the copies into
    /// the read-back buffer.
    pub fn encode(&self, gpu: &Gpu) -> wgpu::CommandBuffer {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("plan"),
            });
        for ph in &self.phases {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(ph.name),
                timestamp_writes: None,
            });
            for d in &ph.dispatches {
                d.record(&mut pass);
            }
        }
        for (src, s) in &self.rb.copies {
            if s.len > 0 {
                enc.copy_buffer_to_buffer(
                    src,
                    0,
                    &self.staging,
                    (s.off * 4) as u64,
                    (s.len * 4) as u64,
                );
            }
        }
        enc.finish()
    }

    /// Upload the image and the target, run everything in one submission, read back.
    pub fn run(
        &self,
        gpu: &Gpu,
        input: &[f32],
        target: Option<usize>,
        score: Score,
    ) -> Result<Output> {
        if input.len() != 3 * self.h * self.w {
            return Err(Error::Input(format!(
                "input has {} values, the plan expects 3×{}×{}",
                input.len(),
                self.h,
                self.w
            )));
        }
        if let Some(t) = target
            && t >= self.n
        {
            return Err(Error::Input(format!(
                "--target {t} is out of range: the model has {} outputs (0-{})",
                self.n,
                self.n - 1
            )));
        }
        crate::cam::methods::check_official(
            &self.opts.explainers,
            &self.opts.blocks,
            self.sizes.len(),
            score == Score::Prob,
        )?;
        if let Score::Region(km) = score {
            if !self.geo {
                return Err(Error::Input(
                    "--score region:KM needs geolocation weights (cells with centres); these weights classify images".into(),
                ));
            }
            if !(km.is_finite() && km >= 0.0) {
                return Err(Error::Input(format!(
                    "--score region:{km}: the radius must be a number of km, 0 or more"
                )));
            }
        }
        gpu.write(&self.input, input);
        if let Some(m) = &self.masked {
            m.set_original(gpu, input);
        }
        let (mode, km) = score.code();
        let info = [
            target.map(|t| t as u32).unwrap_or(u32::MAX),
            mode,
            0,
            0,
            km,
            0,
            0,
            0,
        ];
        gpu.queue
            .write_buffer(&self.info.buf, 0, bytemuck::cast_slice(&info));
        let t0 = Instant::now();
        gpu.queue.submit([self.encode(gpu)]);
        gpu.wait()?;
        let t1 = Instant::now();
        let raw = gpu.read_staging(&self.staging, (self.rb.len * 4) as u64)?;
        gpu.check_errors("the model run")?;
        let mut out = self.parse(bytemuck::cast_slice(&raw));
        out.gpu_seconds = (t1 - t0).as_secs_f64();
        out.readback_seconds = t1.elapsed().as_secs_f64();
        Ok(out)
    }

    fn parse(&self, f: &[f32]) -> Output {
        let rb = &self.rb;
        let info: Vec<u32> = rb.info.of(f).iter().map(|v| v.to_bits()).collect();
        let nb = self.sizes.len();
        let mut out = Output {
            target: info[2] as usize,
            argmax: info[3] as usize,
            probs: rb.probs.of(f).to_vec(),
            logits: rb.logits.of(f).to_vec(),
            maps: vec![None; nb],
            map_sizes: self.sizes.clone(),
            map_max: vec![None; nb],
            map_mean: vec![None; nb],
            ..Default::default()
        };
        out.act_maxabs = rb.act_maxabs.of(f).to_vec();
        for (spans, e) in rb.explainers.iter().zip(&self.opts.explainers) {
            let maps = spans.maps.of(f);
            let stats = spans.stats.of(f);
            let mm = spans.mm.of(f);
            let mut eo = ExplainerOutput {
                explainer: *e,
                maps: vec![None; nb],
                fused: spans.norm.of(f).to_vec(),
                fused_range: (mm[0], mm[1]),
                map_max: vec![None; nb],
                map_mean: vec![None; nb],
            };
            for &l in &self.opts.blocks {
                let (h, w) = self.sizes[l];
                let o = rb.map_offs[l];
                eo.maps[l] = Some(maps[o..o + h * w].to_vec());
                eo.map_max[l] = Some(stats[l]);
                eo.map_mean[l] = Some(stats[nb + l]);
            }
            out.explainers.push(eo);
        }
        out.mirror_first();
        out
    }

    /// Outputs of the model (cells or classes).
    pub fn n_outputs(&self) -> usize {
        self.n
    }

    /// Give up the plan, keeping what it holds for the next plan of the same options.
    pub fn into_recycler(self) -> Recycler {
        self.pool
    }

    pub fn dispatch_count(&self) -> usize {
        self.phases.iter().map(|p| p.dispatches.len()).sum()
    }
}
