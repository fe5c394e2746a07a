//! What recording a plan needs, and the intermediates it keeps.

use crate::cam::channel::{BlockParts, PartsLayout};
use crate::cam::phase::FullGradMaps;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, GpuBuf};
use crate::model::efficientnet::ModelGpu;
use crate::ops::Act;
use crate::ops::head::{Chunk, LinearArgs, LinearBackwardArgs};
use crate::ops::{gemm, head};

pub(super) struct Alloc<'a> {
    pub(super) gpu: &'a Gpu,
    /// images the forward's buffers hold (`Plan::masked_copies`, or `PlanOptions::images`;
    /// 1 without either)
    pub(super) batch: usize,
    /// images the backward and the CAM phase run at once (`PlanOptions::images`)
    pub(super) images: usize,
}

impl Alloc<'_> {
    pub(super) fn buf(&mut self, label: String, len: usize) -> Result<GpuBuf> {
        self.gpu.zeros(&label, len)
    }

    /// A forward buffer: `len` floats per image for every image of the batch, one after
    /// another. Its `len` is one image's, so what reads it sees image 0, the plan's image.
    pub(super) fn batched(&mut self, label: String, len: usize) -> Result<GpuBuf> {
        self.images_of(label, len, self.batch)
    }

    /// A backward or CAM buffer: `len` floats per image the plan explains at once
    /// (`images`), one after another; its `len` is one image's, as `batched`.
    pub(super) fn per_image(&mut self, label: String, len: usize) -> Result<GpuBuf> {
        self.images_of(label, len, self.images)
    }

    /// `len` floats for each of `n` images, the buffer's `len` one image's.
    fn images_of(&mut self, label: String, len: usize, n: usize) -> Result<GpuBuf> {
        let mut b = self.gpu.zeros(&label, len * n)?;
        b.len = len;
        Ok(b)
    }
}

/// What recording a plan needs: the device, the uploaded model, the allocator, the GEMM's
/// scratch texture and, for blocks without SE, ones (the projection's scale) and zeros (the
/// SE gradient).
pub(super) struct Rec<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) m: &'a ModelGpu,
    pub(super) a: Alloc<'a>,
    pub(super) pack: Option<gemm::XPack>,
    pub(super) act: Act,
    pub(super) no_se: Option<(GpuBuf, GpuBuf)>,
    /// FullGrad's buffers, when the backward records its terms (`Rec::start_fullgrad`)
    pub(super) full: Option<FullGradTerms>,
    /// the row partials of the block outputs and their gradients, when the plan has a CAM
    /// phase (`Rec::start_parts`)
    pub(super) parts: Option<BlockParts>,
}

/// A block's forward intermediates on the GPU, as `cpu::BlockState` holds them.
pub(super) struct BlockFwd {
    pub(super) ze: Option<GpuBuf>,
    pub(super) zd: GpuBuf,
    pub(super) r: Option<GpuBuf>,
    pub(super) s: Option<GpuBuf>,
    pub(super) out: GpuBuf,
}

/// The head's forward results.
pub(super) struct HeadFwd {
    pub(super) zh: GpuBuf,
    pub(super) features: GpuBuf,
    pub(super) logits: GpuBuf,
    pub(super) probs: GpuBuf,
    pub(super) info: GpuBuf,
}

/// The recorded forward: the batched input, the stem's output, every block's
/// intermediates, the head's results, the dispatches, and the stem's output size.
pub(super) struct Forward {
    pub(super) input: GpuBuf,
    pub(super) stem: GpuBuf,
    /// the model input's size (H, W)
    pub(super) input_size: (usize, usize),
    pub(super) stem_size: (usize, usize),
    pub(super) blocks: Vec<BlockFwd>,
    pub(super) head: HeadFwd,
    pub(super) dispatches: Vec<Dispatch>,
    /// where each block's dispatches begin in `dispatches`, then the head's (blocks + 1)
    pub(super) starts: Vec<usize>,
}

/// FullGrad's buffers while the backward records (`plan::fullgrad`): the selected blocks'
/// sums at the CAM phase's offsets, the input term, the per-channel (min, max) scratch, and
/// which sums a term has written (the first writes, the rest add).
pub(super) struct FullGradTerms {
    pub(super) maps: GpuBuf,
    pub(super) input: GpuBuf,
    pub(super) mm: GpuBuf,
    pub(super) offs: Vec<usize>,
    pub(super) written: Vec<std::cell::Cell<bool>>,
}

impl FullGradTerms {
    pub(super) fn into_maps(self) -> FullGradMaps {
        FullGradMaps {
            maps: self.maps,
            input: self.input,
        }
    }
}

/// Scratch every block's backward reuses.
pub(super) struct Scratch {
    pub(super) du: GpuBuf,
    pub(super) dze: GpuBuf,
    pub(super) ds: GpuBuf,
    pub(super) dm: GpuBuf,
    /// the projection backward's partial sums of ds (`gemm::PartOp::DotAct`)
    pub(super) dpart: GpuBuf,
}

impl<'a> Rec<'a> {
    /// The recorder of `m` with allocator `a`: the GEMM's scratch texture of `texels` per
    /// image (adapters that pack) and, when a block has no SE, its ones and zeros.
    pub(super) fn new(
        gpu: &'a Gpu,
        m: &'a ModelGpu,
        mut a: Alloc<'a>,
        texels: Option<usize>,
    ) -> Result<Rec<'a>> {
        let cfg = &m.weights.cfg;
        let pack = match texels {
            Some(t) => Some(gemm::XPack::new(gpu, "gemm.pack", t * a.batch)?),
            None => None,
        };
        let max_cm = cfg.blocks.iter().map(|b| b.cmid()).max().unwrap_or(1);
        let no_se = if cfg.blocks.iter().any(|b| !b.has_se()) {
            // the projection's scale without SE: ones for every image of the batch
            let ones = gpu.upload("no_se.ones", &vec![1f32; max_cm * a.batch])?;
            let zeros = a.per_image("no_se.dm".into(), crate::ops::se::vec_len(max_cm))?;
            Some((ones, zeros))
        } else {
            None
        };
        Ok(Rec {
            gpu,
            m,
            a,
            pack,
            act: cfg.family.act(),
            no_se,
            full: None,
            parts: None,
        })
    }

    /// Make the buffers for the row partials of every block output (max |A|, which the
    /// forward's projection GEMMs write) and of their gradients (Σ g, the backward's GEMMs),
    /// at blocks of output sizes `sizes`.
    pub(super) fn start_parts(&mut self, sizes: &[(usize, usize)]) -> Result<()> {
        // each block's rows for every image the plan explains at once (C an image)
        let images = self.a.images;
        let blocks = self.m.weights.cfg.blocks.iter();
        let channels: Vec<usize> = blocks.map(|b| b.cout * images).collect();
        let hw: Vec<usize> = sizes.iter().map(|(h, w)| h * w).collect();
        let variant = gemm::Variant::for_adapter(self.gpu);
        let layout = PartsLayout::new(&channels, &hw, &|p| variant.parts(p));
        self.parts = Some(BlockParts {
            act: self.a.buf("parts.act".into(), layout.total)?,
            grad: self.a.buf("parts.grad".into(), layout.total)?,
            has_grad: vec![false; channels.len()],
            layout,
        });
        Ok(())
    }

    /// Where block `l`'s output (`grad`: its gradient) writes its row partials, if anywhere.
    pub(super) fn block_parts(&self, l: usize, grad: bool) -> Option<gemm::Parts<'_>> {
        self.parts.as_ref().map(|p| gemm::Parts {
            op: if grad {
                gemm::PartOp::Sum
            } else {
                gemm::PartOp::MaxAbs
            },
            zd: None,
            part: if grad { &p.grad.buf } else { &p.act.buf },
            off: p.layout.offs[l],
            images: self.a.images,
        })
    }

    /// out = Wfc·f + bias, one dispatch per chunk of the classifier (labels `{tag}[i].linear{suffix}`).
    pub(super) fn classifier(
        gpu: &Gpu,
        m: &ModelGpu,
        (tag, suffix): (&str, &str),
        (f, bias, out): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
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
    pub(super) fn classifier_t(
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
        let partial = a.per_image(format!("{tag}.partial"), nsegs * k)?;
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
                    nsegs,
                    n: m.n_classes(),
                    g,
                    partial: &partial.buf,
                },
            ));
            seg0 += rows.div_ceil(head::SEG_ROWS);
        }
        let out = a.per_image(out_label.into(), k)?;
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
}
