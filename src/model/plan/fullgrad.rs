//! FullGrad's terms, recorded in the backward where their gradients are made
//! (`cam::fullgrad` holds the kernels): the head's, every block's projection, depthwise and
//! expansion, the stem's, and below the stem the gradient at the input and its term. Block
//! l's sum holds the terms at its resolution: its depthwise and projection, the next block's
//! expansion, the stem's at block 0, the head's at the last.

use super::rec::{Forward, FullGradTerms, Rec};
use crate::cam::fullgrad::{self, Read, TermArgs};
use crate::cam::phase::map_layout;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuBuf};
use crate::ops::conv::{self, ConvArgs, ConvBackward, ConvShape};
use crate::ops::depthwise::SeIn;
use std::cell::Cell;

/// One term: the (c, hw) gradient `g` read as `read`, the conv's bias, into block `l`'s sum.
pub(super) struct Term<'a> {
    pub(super) l: usize,
    pub(super) c: usize,
    pub(super) hw: usize,
    pub(super) g: &'a wgpu::Buffer,
    pub(super) bias: &'a wgpu::Buffer,
    pub(super) read: Read<'a>,
}

impl Rec<'_> {
    /// FullGrad's buffers for the selected `blocks` at the block `sizes` of an input of
    /// `input_size`; the stem's term goes to block 0, so the stem must run at its resolution.
    pub(super) fn start_fullgrad(
        &mut self,
        blocks: &[usize],
        sizes: &[(usize, usize)],
        (input_size, stem_size): ((usize, usize), (usize, usize)),
    ) -> Result<()> {
        if stem_size != sizes[0] {
            return Err(Error::Input(format!(
                "fullgrad adds the stem's term to block 0's map, but this model's block 0 runs at {:?}, not the stem's {stem_size:?}: use another method",
                sizes[0]
            )));
        }
        let cfg = &self.m.weights.cfg;
        let widest = cfg.blocks.iter().map(|b| b.cmid().max(b.cout)).max();
        let max_c = widest.unwrap_or(1).max(cfg.head).max(cfg.stem).max(3);
        let (offs, total) = map_layout(blocks, sizes);
        self.full = Some(FullGradTerms {
            maps: self.a.per_image("fullgrad.maps".into(), total)?,
            input: (self.a).per_image("fullgrad.input".into(), input_size.0 * input_size.1)?,
            mm: self.a.per_image("fullgrad.minmax".into(), 2 * max_c)?,
            offs,
            written: (0..sizes.len()).map(|_| Cell::new(false)).collect(),
        });
        Ok(())
    }

    /// Record a term when FullGrad is asked for and its block is selected.
    pub(super) fn fullgrad_term(&self, label: &str, t: Term, bwd: &mut Vec<Dispatch>) {
        let Some(full) = &self.full else { return };
        if full.offs[t.l] == usize::MAX {
            return;
        }
        let first = !full.written[t.l].replace(true);
        let args = TermArgs {
            c: t.c,
            hw: t.hw,
            act: self.act,
            g: t.g,
            bias: Some(t.bias),
            read: t.read,
            mm: &full.mm.buf,
            map: &full.maps.buf,
            map_off: full.offs[t.l],
            first,
            strides: (full.maps.len, full.mm.len),
        };
        fullgrad::record(self.gpu, &format!("{label}.fullgrad.bwd"), &args, bwd);
    }

    /// Block `l`'s own terms: the projection's from `gout` (the gradient at its output) and
    /// the depthwise's from `du` (at the SE-scaled activation) through `se_in`, at `hw`
    /// positions.
    pub(super) fn fullgrad_block(
        &self,
        l: usize,
        (gout, du): (&wgpu::Buffer, &wgpu::Buffer),
        se_in: &SeIn,
        hw: usize,
        bwd: &mut Vec<Dispatch>,
    ) {
        let (b, bw) = (&self.m.weights.cfg.blocks[l], &self.m.blocks[l]);
        let (g, bias, read, c) = (gout, &bw.proj_b.buf, Read::Plain, b.cout);
        self.fullgrad_term(
            &format!("{l}.project"),
            Term {
                l,
                c,
                hw,
                g,
                bias,
                read,
            },
            bwd,
        );
        let (s, dm, z) = (se_in.s, se_in.dm, se_in.zd);
        let (c, g, bias, read) = (b.cmid(), du, &bw.dw_b.buf, Read::Se { s, dm, z });
        self.fullgrad_term(
            &format!("{l}.dw"),
            Term {
                l,
                c,
                hw,
                g,
                bias,
                read,
            },
            bwd,
        );
    }

    /// Block `l`'s expansion term from `dze` (the gradient at its output, `hw` positions at
    /// the block's input) with its bias `eb`: it joins the previous block's map (block 0's
    /// for block 0).
    pub(super) fn fullgrad_expand(
        &self,
        l: usize,
        (dze, eb): (&wgpu::Buffer, &wgpu::Buffer),
        hw: usize,
        bwd: &mut Vec<Dispatch>,
    ) {
        let c = self.m.weights.cfg.blocks[l].cmid();
        let (to, g, bias, read) = (l.saturating_sub(1), dze, eb, Read::Plain);
        let t = Term {
            l: to,
            c,
            hw,
            g,
            bias,
            read,
        };
        self.fullgrad_term(&format!("{l}.expand"), t, bwd);
    }

    /// Below block 0, when FullGrad is asked for: the stem's pre-activation (recomputed: the
    /// forward keeps only act of it), its term from `g` (the gradient at the stem's output),
    /// the gradient at the input and the input term.
    pub(super) fn fullgrad_stem(
        &mut self,
        f: &Forward,
        g: &GpuBuf,
        bwd: &mut Vec<Dispatch>,
    ) -> Result<()> {
        if self.full.is_none() {
            return Ok(());
        }
        let (gpu, m) = (self.gpu, self.m);
        let cfg = &m.weights.cfg;
        let (h, w) = f.input_size;
        let (sh, sw) = f.stem_size;
        let shape = ConvShape::new((3, h, w), cfg.stem, 3, 2, cfg.stem_pad);
        let z = self
            .a
            .per_image("fullgrad.stem_z".into(), cfg.stem * sh * sw)?;
        let gx = self.a.per_image("fullgrad.input_grad".into(), 3 * h * w)?;
        let conv_args = ConvArgs {
            s: shape,
            act: None,
            x: &f.input.buf,
            wt: &m.stem_w,
            bias: &m.stem_b.buf,
            y: &z.buf,
        };
        bwd.push(conv::conv(gpu, "stem.z.fullgrad.bwd", &conv_args));
        let term = Term {
            l: 0,
            c: cfg.stem,
            hw: sh * sw,
            g: &g.buf,
            bias: &m.stem_b.buf,
            read: Read::Act { z: &z.buf },
        };
        self.fullgrad_term("stem", term, bwd);
        let back = ConvBackward {
            s: shape,
            act: self.act,
            g: &g.buf,
            z: Some(&z.buf),
            wt: &m.stem_w,
            dx: &gx.buf,
        };
        bwd.push(conv::backward_input(gpu, "stem.conv.bwd", &back));
        let full = self.full.as_ref().expect("checked above");
        let args = TermArgs {
            c: 3,
            hw: h * w,
            act: self.act,
            g: &gx.buf,
            bias: None,
            read: Read::Input { x: &f.input.buf },
            mm: &full.mm.buf,
            map: &full.input.buf,
            map_off: 0,
            first: true,
            strides: (full.input.len, full.mm.len),
        };
        fullgrad::record(gpu, "input.fullgrad.bwd", &args, bwd);
        Ok(())
    }
}
