//! The forward recorder: a block and the head, beside `cpu::block_forward` and `cpu::head_forward`.

use super::rec::{BlockFwd, Forward, HeadFwd, Rec};
use crate::error::Result;
use crate::gpu::{Dispatch, GpuBuf};
use crate::ops::{conv, depthwise, gemm, head, reduce, se};
use crate::ops::{
    conv::{ConvArgs, ConvShape},
    depthwise::DwForward,
    gemm::{GemmArgs, InMode},
    reduce::{Reduce, RowsArgs},
    se::SeForward,
};

impl Rec<'_> {
    /// The whole forward of an `h`×`w` input: the stem (output `stem`), every block (outputs
    /// `sizes`), the head.
    pub(super) fn forward(
        &mut self,
        (h, w): (usize, usize),
        stem_size: (usize, usize),
        sizes: &[(usize, usize)],
    ) -> Result<Forward> {
        let (gpu, m) = (self.gpu, self.m);
        let cfg = &m.weights.cfg;
        let (sh, sw) = stem_size;
        let input = self.a.batched("input".into(), 3 * h * w)?;
        let stem = self.a.batched("stem.out".into(), cfg.stem * sh * sw)?;
        let mut fwd = vec![conv::conv(
            gpu,
            "stem.conv.fwd",
            &ConvArgs {
                s: ConvShape::new((3, h, w), cfg.stem, 3, 2, cfg.stem_pad),
                act: Some(self.act),
                x: &input.buf,
                wt: &m.stem_w,
                bias: &m.stem_b.buf,
                y: &stem.buf,
            },
        )];
        let mut blocks: Vec<BlockFwd> = Vec::new();
        let mut starts = Vec::new();
        for l in 0..cfg.blocks.len() {
            starts.push(fwd.len());
            let x = match l {
                0 => &stem.buf,
                _ => &blocks[l - 1].out.buf,
            };
            let input_size = if l == 0 { stem_size } else { sizes[l - 1] };
            let st = self.block_forward(l, x, input_size, &mut fwd)?;
            blocks.push(st);
        }
        let (lh, lw) = sizes[sizes.len() - 1];
        starts.push(fwd.len());
        let head = self.head_forward(&blocks[blocks.len() - 1].out.buf, lh * lw, &mut fwd)?;
        Ok(Forward {
            input,
            stem,
            input_size: (h, w),
            stem_size,
            blocks,
            head,
            dispatches: fwd,
            starts,
        })
    }

    /// Block `l` on `x` (ih×iw): expand, depthwise (writing the SE squeeze's partial sums),
    /// squeeze-excite, projection (+ residual). Beside `cpu::block_forward`.
    pub(super) fn block_forward(
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
        let zexp = match &bw.expand {
            Some((ew, _, eb)) => {
                let z = self.a.batched(format!("{l}.z_expand"), cm * ih * iw)?;
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
                        pack: self.pack.as_ref(),
                        parts: None,
                    },
                ));
                Some(z)
            }
            None => None,
        };
        let zdw = self.a.batched(format!("{l}.z_dw"), cm * oh * ow)?;
        let dws = b.dw_shape(ih, iw);
        let dw_in = zexp.as_ref().map(|z| &z.buf).unwrap_or(x);
        // the SE squeeze: partial sums of act(z_d) written by the depthwise kernel
        let parts = depthwise::pool_parts(gpu, &dws);
        let partial = match bw.se {
            Some(_) => Some(self.a.batched(format!("{l}.se_pool.parts"), cm * parts)?),
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
                wt: &bw.dw_w,
                bias: &bw.dw_b.buf,
                out: &zdw.buf,
                pool: partial.as_ref().map(|p| &p.buf),
            },
        ));
        let (r, s) = match &partial {
            Some(partial) => self.se_forward(l, partial, parts, (oh, ow), fwd)?,
            None => (None, None),
        };
        let scale = match (&s, self.no_se.as_ref().map(|n| &n.0)) {
            (Some(s), _) => &s.buf,
            (None, Some(ones)) => &ones.buf,
            (None, None) => unreachable!("a block without SE has the ones buffer"),
        };
        let out = self.a.batched(format!("{l}.out"), b.cout * oh * ow)?;
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
                pack: self.pack.as_ref(),
                parts: self.block_parts(l, false),
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

    /// Block `l`'s squeeze-excite in one dispatch: the squeeze (the depthwise kernel's
    /// `parts` partial sums added up, over oh×ow), then the excitation r and scale s.
    fn se_forward(
        &mut self,
        l: usize,
        partial: &GpuBuf,
        parts: usize,
        (oh, ow): (usize, usize),
        fwd: &mut Vec<Dispatch>,
    ) -> Result<(Option<GpuBuf>, Option<GpuBuf>)> {
        let (gpu, m) = (self.gpu, self.m);
        let b = &m.weights.cfg.blocks[l];
        let sew = m.blocks[l]
            .se
            .as_ref()
            .expect("a block with partial sums has SE");
        let cm = b.cmid();
        let a = &mut self.a;
        // the squeeze, C_mid rounded up to 4 an image (se.wgsl reads it in vec4s)
        let pooled = a.batched(format!("{l}.se_pool"), se::vec_len(cm))?;
        let r = a.batched(format!("{l}.se_r"), b.cse)?;
        let s = a.batched(format!("{l}.se_s"), cm)?;
        fwd.push(se::forward(
            gpu,
            &format!("{l}.se.fwd"),
            &SeForward {
                sh: b.se_shape(oh * ow),
                w: &sew.weights(),
                part: &partial.buf,
                parts,
                m: &pooled.buf,
                r: &r.buf,
                s: &s.buf,
            },
        ));
        Ok((Some(r), Some(s)))
    }

    /// The head on the last block's output `x` (hw positions): conv, pool of the activation,
    /// classifier, softmax and the target. Beside `cpu::head_forward`.
    pub(super) fn head_forward(
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
                parts: None,
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
        // one image's words for every image a run explains at once (its FinerCAM picks)
        let info = a.per_image("info".into(), head::INFO_WORDS)?;
        Self::classifier(
            gpu,
            m,
            ("fc", ".fwd"),
            (&features.buf, &m.fc_b.buf, &logits.buf),
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
}
