//! The backward recorder (with the official Grad-CAM++'s Hessian-vector product): the head and a block, beside `cpu::block_backward`.

use super::fullgrad::Term;
use super::rec::{BlockFwd, Forward, HeadFwd, Rec, Scratch};
use crate::cam::fullgrad::Read;
use crate::cam::phase::FullGradMaps;
use crate::error::Result;
use crate::gpu::{Dispatch, GpuBuf};
use crate::ops::hvp::Direction;
use crate::ops::{depthwise, gemm, head, hvp, reduce, se};
use crate::ops::{
    depthwise::{DwBackward, SeIn},
    gemm::{GemmArgs, InMode},
    reduce::PoolBackward,
    reduce::{Reduce, RowsArgs},
    se::SeBackward,
};

/// The recorded backward: its dispatches, the gradient at every block output it reaches
/// (`None` below), and the head's HVP (the official Grad-CAM++).
pub(super) struct Backward {
    pub(super) dispatches: Vec<Dispatch>,
    pub(super) grads: Vec<Option<GpuBuf>>,
    /// the head's Hessian-vector products at the last block, one per direction asked for
    pub(super) hvp: Vec<(Direction, GpuBuf)>,
    /// FullGrad's sums, when asked for
    pub(super) fullgrad: Option<FullGradMaps>,
}

impl Rec<'_> {
    /// The backward of the recorded forward `f` down to block `lo`: the head's gradient
    /// (and its Hessian-vector product along each of `hvp`: the official Grad-CAM++'s,
    /// ShapleyCAM's), then each block's. `finer`: the plan also runs FinerCAM's score (its
    /// comparison classes are picked before the score's gradient). `full`: FullGrad's
    /// selected blocks; its terms are recorded on the way and the backward runs on through
    /// the stem to the input. Returns the dispatches, the gradient at every block output from
    /// `lo` up (`None` below), the HVPs and FullGrad's sums.
    pub(super) fn backward(
        &mut self,
        f: &Forward,
        sizes: &[(usize, usize)],
        (lo, hvp, finer, full): (usize, &[Direction], bool, Option<&[usize]>),
    ) -> Result<Backward> {
        let cfg = &self.m.weights.cfg;
        let nb = cfg.blocks.len();
        if let Some(blocks) = full {
            self.start_fullgrad(blocks, sizes, (f.input_size, f.stem_size))?;
        }
        let mut grads: Vec<Option<GpuBuf>> = (0..nb).map(|_| None).collect();
        let mut bwd = Vec::new();
        let hw = sizes[nb - 1].0 * sizes[nb - 1].1;
        let (g_last, df) = self.head_backward(&f.head, (hw, finer), &mut bwd)?;
        grads[nb - 1] = Some(g_last);
        let hvp = hvp
            .iter()
            .map(|&d| Ok((d, self.head_hvp(&f.head, &df, (hw, d), &mut bwd)?)))
            .collect::<Result<Vec<_>>>()?;
        // scratch shared by all blocks
        let (mut max_du, mut max_dze, mut max_c, mut max_part) = (0, 0, 0, 0);
        let mut p = f.stem_size;
        let variant = gemm::Variant::for_adapter(self.gpu);
        for (l, b) in cfg.blocks.iter().enumerate() {
            let hw = sizes[l].0 * sizes[l].1;
            max_du = max_du.max(b.cmid() * hw);
            max_dze = max_dze.max(b.cmid() * p.0 * p.1);
            max_c = max_c.max(b.cmid());
            max_part = max_part.max(b.cmid() * variant.parts(hw));
            p = sizes[l];
        }
        let sc = Scratch {
            du: self.a.per_image("scratch.du".into(), max_du)?,
            dze: self.a.per_image("scratch.dz_expand".into(), max_dze)?,
            ds: self.a.per_image("scratch.ds".into(), max_c)?,
            dm: self.a.per_image("scratch.dm".into(), se::vec_len(max_c))?,
            dpart: self.a.per_image("scratch.ds_parts".into(), max_part)?,
        };
        let bottom = if full.is_some() { 0 } else { lo + 1 };
        for l in (bottom..nb).rev() {
            let gout = &grads[l].as_ref().unwrap().buf;
            let at = if l == 0 { f.stem_size } else { sizes[l - 1] };
            let gin = self.block_backward(l, &f.blocks[l], gout, at, &sc, &mut bwd)?;
            match l {
                0 => self.fullgrad_stem(f, &gin, &mut bwd)?,
                _ => grads[l - 1] = Some(gin),
            }
        }
        Ok(Backward {
            dispatches: bwd,
            grads,
            hvp,
            fullgrad: self.full.take().map(|t| t.into_maps()),
        })
    }

    /// From the score to the last block's output gradient: dlogits (probability, logit or
    /// region), the classifier's and the pool's gradients, the head conv's transpose.
    /// Beside the head part of `cpu::backward`.
    pub(super) fn head_backward(
        &mut self,
        hf: &HeadFwd,
        (hw, finer): (usize, bool),
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
            zh,
            logits,
            probs,
            info,
            ..
        } = hf;
        let a = &mut self.a;
        let pack = &self.pack;
        let dlog = a.per_image("dlogits".into(), n)?;
        let mass = a.per_image("fc.region_mass".into(), 1)?;
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
        if finer {
            bwd.push(head::finer_pick(
                gpu,
                "fc.finer_pick.bwd",
                n,
                &logits.buf,
                &probs.buf,
                &info.buf,
            ));
        }
        bwd.push(head::dlogits(
            gpu,
            "fc.dlogits.bwd",
            &head::DlogitsArgs {
                n,
                logits: &logits.buf,
                probs: &probs.buf,
                info: &info.buf,
                region: region.as_ref(),
                g: &dlog.buf,
            },
        ));
        let df = Self::classifier_t(gpu, m, a, "fc", "dfeatures", &dlog.buf, bwd)?;
        let dzh = a.per_image("head.dz".into(), k * hw)?;
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
        let g_last = a.per_image(format!("{}.grad", nb - 1), last * hw)?;
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
                parts: self.block_parts(nb - 1, true),
            },
        ));
        if let Some(p) = self.parts.as_mut() {
            p.has_grad[nb - 1] = true;
        }
        let term = Term {
            l: nb - 1,
            c: k,
            hw,
            g: &dzh.buf,
            bias: &m.head_b.buf,
            read: Read::Plain,
        };
        self.fullgrad_term("head", term, bwd);
        Ok((g_last, df))
    }

    /// h = H·t at the last block's output along `dir` (t = 1: ∂(Σ g)/∂A, the official
    /// Grad-CAM++'s; t = A: ShapleyCAM's), the head's Hessian-vector product
    /// (shaders/hvp.wgsl derives it); `df` = ∂score/∂features. Beside `cpu::head_hvp`.
    pub(super) fn head_hvp(
        &mut self,
        hf: &HeadFwd,
        df: &GpuBuf,
        (hw, dir): (usize, Direction),
        bwd: &mut Vec<Dispatch>,
    ) -> Result<GpuBuf> {
        let (gpu, m, act) = (self.gpu, self.m, self.act);
        let cfg = &m.weights.cfg;
        let (last, k, n) = (cfg.blocks.last().unwrap().cout, cfg.head, m.n_classes());
        let a = &mut self.a;
        let tag = match dir {
            Direction::Ones => "hvp",
            Direction::Activations => "hvp_a",
        };
        let name = |what: &str| format!("{tag}.{what}");
        // ḟ = mean_p act'(z) ⊙ ż
        let fdot = a.per_image(name("fdot"), k)?;
        let tan = match dir {
            Direction::Ones => {
                bwd.push(reduce::rows(
                    gpu,
                    &name("mean_dact.bwd"),
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
                bwd.push(hvp::fdot(
                    gpu,
                    &name("fdot.bwd"),
                    k,
                    &fdot.buf,
                    &m.head_w1.buf,
                ));
                &m.head_w1.buf
            }
            Direction::Activations => {
                let args = (&hf.zh.buf, &m.head_b.buf, &fdot.buf);
                bwd.push(hvp::fdot_act(gpu, &name("fdot.bwd"), act, (k, hw), args));
                &m.head_b.buf
            }
        };
        // l̇ = Wfc·ḟ, then δ̇
        let ldot = a.per_image(name("ldot"), n)?;
        let zero_bias = a.buf(name("zero_bias"), n)?;
        Self::classifier(
            gpu,
            m,
            (&name("fc"), ".bwd"),
            (&fdot.buf, &zero_bias.buf, &ldot.buf),
            bwd,
        );
        let ddl = a.per_image(name("ddlogits"), n)?;
        bwd.push(hvp::jvp_dlogits(
            gpu,
            &name("jvp_dlogits.bwd"),
            n,
            &ldot.buf,
            &hf.probs.buf,
            &hf.info.buf,
            &ddl.buf,
        ));
        // ḋf = Wfcᵀ·δ̇
        let dfdot = Self::classifier_t(gpu, m, a, &name("fc_t"), &name("dfdot"), &ddl.buf, bwd)?;
        // dż, then h = Wᵀ·dż
        let dz = a.per_image(name("dz"), k * hw)?;
        bwd.push(hvp::pool_hvp(
            gpu,
            &name("pool.bwd"),
            act,
            &hvp::PoolHvpArgs {
                k,
                p: hw,
                z: &hf.zh.buf,
                dir,
                tan,
                dfdot: &dfdot.buf,
                df: &df.buf,
                out: &dz.buf,
            },
        ));
        let h = a.per_image(name("h"), last * hw)?;
        bwd.extend(gemm::gemm(
            gpu,
            &name("head_conv.bwd"),
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
                parts: None,
            },
        ));
        Ok(h)
    }

    /// The gradient at block `l`'s input (ih×iw) from `gout` at its output: projection
    /// transposed, SE (or its absence), depthwise transposed with the activation's
    /// derivative, expand transposed (+ the residual's gradient). Beside `cpu::block_backward`.
    pub(super) fn block_backward(
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
        let Scratch { du, dze, .. } = sc;
        let a = &mut self.a;
        let pack = &self.pack;
        let name = match l {
            0 => "stem.grad".to_string(),
            _ => format!("{}.grad", l - 1),
        };
        let gin = a.per_image(name, b.cin * ih * iw)?;
        // with SE, the GEMM also writes the partial sums of the SE's ds (`se_backward`)
        let parts = bw.se.as_ref().map(|_| gemm::Parts {
            op: gemm::PartOp::DotAct(act),
            zd: Some(&st.zd.buf),
            part: &sc.dpart.buf,
            off: 0,
            images: a.images,
        });
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
                parts,
            },
        ));
        let se_in = self.se_backward(l, st, (oh, ow), sc, bwd);
        self.fullgrad_block(l, (gout, &du.buf), &se_in, oh * ow, bwd);
        let dws = b.dw_shape(ih, iw);
        let res = if b.residual() { Some(gout) } else { None };
        match (&bw.expand, &st.ze) {
            (Some((_, ewt, eb)), Some(z)) => {
                bwd.push(depthwise::backward(
                    gpu,
                    &format!("{l}.dw.bwd"),
                    &DwBackward {
                        s: dws,
                        act,
                        dy: &du.buf,
                        wt: &bw.dw_w,
                        zin: Some(&z.buf),
                        res: None,
                        se_in: Some(se_in),
                        dx: &dze.buf,
                    },
                ));
                self.fullgrad_expand(l, (&dze.buf, &eb.buf), ih * iw, bwd);
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
                        parts: l.checked_sub(1).and_then(|g| self.block_parts(g, true)),
                    },
                ));
                // g_{l−1}'s partials (`start_parts`)
                if let (Some(p), Some(g)) = (self.parts.as_mut(), l.checked_sub(1)) {
                    p.has_grad[g] = true;
                }
            }
            _ => bwd.push(depthwise::backward(
                gpu,
                &format!("{l}.dw.bwd"),
                &DwBackward {
                    s: dws,
                    act,
                    dy: &du.buf,
                    wt: &bw.dw_w,
                    zin: None,
                    res,
                    se_in: Some(se_in),
                    dx: &gin.buf,
                },
            )),
        }
        Ok(gin)
    }

    /// Block `l`'s squeeze-excite backward: the SE's own gradient (ds from the partial sums
    /// the projection's backward GEMM wrote), and what the depthwise backward needs to read
    /// the projection's gradient `du` through the SE and the activation (`SeIn`; without
    /// SE, ones and zeros).
    fn se_backward<'b>(
        &'b self,
        l: usize,
        st: &'b BlockFwd,
        (oh, ow): (usize, usize),
        sc: &'b Scratch,
        bwd: &mut Vec<Dispatch>,
    ) -> SeIn<'b> {
        let (gpu, m) = (self.gpu, self.m);
        let b = &m.weights.cfg.blocks[l];
        let bw = &m.blocks[l];
        let Scratch { ds, dm, dpart, .. } = sc;
        let seshape = b.se_shape(oh * ow);
        // (s, dm): the SE's scale and gradient, or ones and zeros without SE
        let (s_l, dm_l) = match (&bw.se, &st.r, &st.s) {
            (Some(sew), Some(r), Some(s)) => {
                bwd.push(se::backward(
                    gpu,
                    &format!("{l}.se.bwd"),
                    &SeBackward {
                        sh: seshape,
                        w: &sew.weights(),
                        r: &r.buf,
                        s: &s.buf,
                        part: &dpart.buf,
                        parts: gemm::Variant::for_adapter(gpu).parts(oh * ow),
                        ds: &ds.buf,
                        dm: &dm.buf,
                    },
                ));
                (&s.buf, &dm.buf)
            }
            _ => {
                let (ones, zeros) = self
                    .no_se
                    .as_ref()
                    .expect("blocks without SE have ones and zeros");
                (&ones.buf, &zeros.buf)
            }
        };
        SeIn {
            s: s_l,
            dm: dm_l,
            zd: &st.zd.buf,
        }
    }
}
