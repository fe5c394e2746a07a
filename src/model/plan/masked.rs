//! Masked forward passes: copies of the plan's image, made on the GPU from the original and
//! a mask (`ops::masked`), run as one batch through the plan's forward, keeping only the
//! target's logit and probability of each. Score-CAM and the faithfulness metrics are made
//! of these; AblationCAM of copies of a block output, run through the forward from the next
//! block on.
//!
//! A plan with masked copies holds a batch of `n` images in every forward buffer (image 0
//! is the plan's own; `Plan::masked_copies`). The mask kernels write the `n` inputs at once,
//! and each forward dispatch is replayed with `n` workgroups along z, one per image. `n` is
//! what was asked for (or the default, `PlanOptions::AUTO_BATCH`), within the adapter's
//! limits and a memory budget (`sizing::batch_for`).
//!
//! Score-CAM's and AblationCAM's copies can come from up to `ORIGINALS` images at once
//! (`Plan::set_masked_originals`: --aug-smooth's six augmented inputs), their copies mixed in
//! the batches; other masks copy the plan's own image.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, GpuBuf};
use crate::ops::masked::{self, JOB_HEADER, MaskBufs, copy_value};
use std::cell::Cell;
use std::ops::Range;

/// The most originals Score-CAM's and AblationCAM's copies come from at once: --aug-smooth's
/// six augmented inputs. Fewer where their inputs or block outputs would pass the adapter's
/// largest binding (`Masked::room_for`).
pub const ORIGINALS: usize = 6;

/// Say once per process, on stderr, that an explicit `--batch asked` became `got` copies per
/// batch (`Plan::masked_copies`), so a user who sized it knows what ran.
pub fn note_batch(asked: usize, got: usize) {
    static SAID: std::sync::Once = std::sync::Once::new();
    if got < asked {
        SAID.call_once(|| {
            eprintln!(
                "note: --batch {asked} lowered to {got} masked copies per batch: the most this adapter's buffer limits allow at this image size (on a CPU adapter, also within 2 GiB and the memory this process may still allocate)"
            )
        });
    }
}

/// What the masked copies of one submission are.
pub enum Masks<'a> {
    /// Score-CAM: x0·up(A_k) for the channels k of block `block` of the original image,
    /// min-max normalised per channel (pytorch-grad-cam) or raw (the official repository)
    Cam {
        block: usize,
        channels: Range<usize>,
        normalise: bool,
    },
    /// deletion: the first `counts[i]` pixels by `rank` set to 0
    Deletion {
        rank: &'a [u32],
        counts: &'a [usize],
    },
    /// insertion: the blurred input with the first `counts[i]` pixels by `rank` put back
    Insertion {
        rank: &'a [u32],
        blurred: &'a [f32],
        counts: &'a [usize],
    },
    /// one copy: x0·S, S an (H, W) map
    Map { map: &'a [f32] },
    /// whole inputs (n × 3 × H × W) as they are (ROAD's imputed copies)
    Inputs { inputs: &'a [f32] },
    /// AblationCAM: block `block`'s output of the original image with channel k set to 0, for
    /// k in `channels` (k = C, one past the last channel: nothing set, the unablated score),
    /// run on from block `block` + 1
    Ablation {
        block: usize,
        channels: Range<usize>,
    },
}

/// The recorded machinery (see `PlanOptions::masked`).
pub(super) struct Masked {
    /// copies per batch
    pub n: usize,
    /// originals `x0` and `acts` hold room for (`ORIGINALS` where the binding limit allows)
    held: usize,
    /// originals of the copies now (`set_originals`; a run of the plan: 1)
    originals: Cell<usize>,
    /// the input's values (3·H·W)
    plane: usize,
    x0: GpuBuf,
    job: GpuBuf,
    acts: GpuBuf,
    rank: GpuBuf,
    other: GpuBuf,
    scores: GpuBuf,
    up: Dispatch,
    cam: Dispatch,
    cam_raw: Dispatch,
    del: Dispatch,
    ins: Dispatch,
    map: Dispatch,
    take: Dispatch,
    /// AblationCAM's copies of each block's output, into that block's batched output
    ablate: Vec<Dispatch>,
    /// where the forward resumes after block l: block l + 1's first dispatch, or the head's
    resume: Vec<usize>,
    staging: wgpu::Buffer,
}

impl Masked {
    /// Record the dispatches of a batch of `n` copies against the plan's batched input,
    /// logits and probabilities (`classes` per image), and its block outputs `outs` (their
    /// dispatches begin at `starts` in the forward, the head's last). `max_c`: the most
    /// channels of a block output.
    pub(super) fn record(
        gpu: &Gpu,
        alloc: &mut dyn FnMut(String, usize) -> Result<GpuBuf>,
        (input, logits, probs): (&GpuBuf, &GpuBuf, &GpuBuf),
        (h, w): (usize, usize),
        (outs, starts, max_c): (&[GpuBuf], &[usize], usize),
        (n, classes): (usize, usize),
    ) -> Result<Masked> {
        let acts_len = outs.iter().map(|o| o.len).max().unwrap_or(1);
        let hw = h * w;
        let held = Self::room_for(gpu, 3 * hw, acts_len);
        let x0 = alloc("masked.x0".into(), held * 3 * hw)?;
        let job = alloc("masked.job".into(), JOB_HEADER + n)?;
        let acts = alloc("masked.acts".into(), held * acts_len)?;
        let mm = alloc("masked.minmax".into(), 2 * held * max_c)?;
        let rank = alloc("masked.rank".into(), hw)?;
        let other = alloc("masked.other".into(), 3 * hw)?;
        let scores = alloc("masked.scores".into(), 2 * n)?;
        let b = MaskBufs {
            x0: &x0.buf,
            input: &input.buf,
            job: &job.buf,
            acts: &acts.buf,
            mm: &mm.buf,
            rank: &rank.buf,
            other: &other.buf,
            logits: &logits.buf,
            probs: &probs.buf,
            scores: &scores.buf,
        };
        Ok(Masked {
            n,
            held,
            originals: Cell::new(1),
            plane: 3 * hw,
            up: masked::up_minmax(gpu, "masked.up_minmax", &b, h, w, held * max_c),
            cam: masked::mask_cam(gpu, "masked.cam", &b, h, w, true),
            cam_raw: masked::mask_cam(gpu, "masked.cam_raw", &b, h, w, false),
            del: masked::mask_rank(gpu, "masked.deletion", &b, h, w, false),
            ins: masked::mask_rank(gpu, "masked.insertion", &b, h, w, true),
            map: masked::mask_map(gpu, "masked.map", &b, h, w),
            take: masked::take_score(gpu, "masked.score", &b, n, classes),
            ablate: (outs.iter().enumerate())
                .map(|(l, o)| masked::ablate(gpu, &format!("{l}.masked.ablate"), &b, &o.buf, o.len))
                .collect(),
            resume: starts[1..].to_vec(),
            staging: gpu.staging("masked.readback", (8 * n) as u64),
            x0,
            job,
            acts,
            rank,
            other,
            scores,
        })
    }

    pub(super) fn dispatches_mut(&mut self) -> impl Iterator<Item = &mut Dispatch> {
        [
            &mut self.up,
            &mut self.cam,
            &mut self.cam_raw,
            &mut self.del,
            &mut self.ins,
            &mut self.map,
            &mut self.take,
        ]
        .into_iter()
        .chain(self.ablate.iter_mut())
    }

    /// The most originals `x0` and `acts` can hold: `ORIGINALS`, fewer where `ORIGINALS` inputs
    /// (`plane` values each) or block outputs (`acts_len`) would pass the adapter's largest
    /// binding.
    fn room_for(gpu: &Gpu, plane: usize, acts_len: usize) -> usize {
        let most = (gpu.max_binding() / 4) as usize / plane.max(acts_len).max(1);
        most.clamp(1, ORIGINALS)
    }

    /// `inputs` (m × 3 × H × W), the originals of Score-CAM's and AblationCAM's next copies
    /// (every run of the plan: its own image alone).
    pub(super) fn set_originals(&self, gpu: &Gpu, inputs: &[f32]) -> Result<()> {
        let m = inputs.len() / self.plane;
        if m == 0 || !inputs.len().is_multiple_of(self.plane) {
            return Err(Error::Input(format!(
                "{} values are not whole inputs of {} values",
                inputs.len(),
                self.plane
            )));
        }
        if m > self.held {
            return Err(Error::Input(format!(
                "{m} originals at once are more than this plan holds ({}): run them one at a time",
                self.held
            )));
        }
        gpu.queue
            .write_buffer(&self.x0.buf, 0, bytemuck::cast_slice(inputs));
        self.originals.set(m);
        Ok(())
    }

    /// How many originals the copies can come from at once.
    pub(super) fn originals_held(&self) -> usize {
        self.held
    }

    /// Block `l`'s output of every original (`originals` × C × bh × bw), as the last Score-CAM
    /// or AblationCAM run at that block made it.
    pub(super) fn block_outputs(&self, gpu: &Gpu, len: usize) -> Result<Vec<f32>> {
        gpu.read_range(&self.acts, 0, self.originals.get() * len)
    }
}

/// What the masked copies need of the plan: its forward, batched input and block outputs.
pub(super) struct MaskedView<'a> {
    pub forward: &'a [Dispatch],
    pub input: &'a GpuBuf,
    pub outs: &'a [GpuBuf],
    pub sizes: &'a [(usize, usize)],
    pub h: usize,
    pub w: usize,
    /// the model's outputs (cells or classes)
    pub outputs: usize,
}

impl Masked {
    /// `Plan::run_masked`: one submission per batch of copies.
    pub(super) fn run(
        &self,
        gpu: &Gpu,
        p: &MaskedView,
        masks: &Masks,
        target: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<(f32, f32)>> {
        if target >= p.outputs {
            return Err(Error::Input(format!(
                "target {target} is out of range: the model has {} outputs",
                p.outputs
            )));
        }
        let mut header = [target as u32, 0, 0, 0];
        let mut from = 0; // where the forward starts
        // per copy: its value in `job` (channel or pixel count); the mask dispatch
        let (values, mask): (Vec<u32>, Option<&Dispatch>) = match masks {
            Masks::Cam {
                block,
                channels,
                normalise,
            } => {
                header = self.prepare_block(gpu, p, (*block, channels.end), target, true)?;
                let d = if *normalise { &self.cam } else { &self.cam_raw };
                (self.copy_values(channels)?, Some(d))
            }
            Masks::Ablation { block, channels } => {
                // up to channel C itself: the copy with nothing set to 0
                let end = channels.end.saturating_sub(1);
                header = self.prepare_block(gpu, p, (*block, end), target, false)?;
                from = self.resume[*block];
                let d = &self.ablate[*block];
                (self.copy_values(channels)?, Some(d))
            }
            Masks::Inputs { inputs } => {
                let per = 3 * p.h * p.w;
                if inputs.is_empty() || inputs.len() % per != 0 {
                    return Err(Error::Input(format!(
                        "{} values are not whole 3×{}×{} inputs",
                        inputs.len(),
                        p.h,
                        p.w
                    )));
                }
                ((0..(inputs.len() / per) as u32).collect(), None)
            }
            _ => {
                let (v, d) = self.prepare_other(gpu, p, masks)?;
                (v, Some(d))
            }
        };
        let mut out = Vec::with_capacity(values.len());
        for chunk in values.chunks(self.n) {
            let mut job = header.to_vec();
            job.extend_from_slice(chunk);
            gpu.queue
                .write_buffer(&self.job.buf, 0, bytemuck::cast_slice(&job));
            if let Masks::Inputs { inputs } = masks {
                // the chunk's inputs straight into the batched input
                let per = 3 * p.h * p.w;
                let first = chunk[0] as usize * per;
                let these = &inputs[first..first + chunk.len() * per];
                gpu.queue
                    .write_buffer(&p.input.buf, 0, bytemuck::cast_slice(these));
            }
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let copies = chunk.len() as u32;
                let mut pass = enc.begin_compute_pass(&Default::default());
                if let Some(mask) = mask {
                    mask.record_batch(&mut pass, copies);
                }
                for d in &p.forward[from..] {
                    d.record_batch(&mut pass, copies);
                }
                self.take.record(&mut pass);
            }
            let bytes = (8 * chunk.len()) as u64;
            enc.copy_buffer_to_buffer(&self.scores.buf, 0, &self.staging, 0, bytes);
            gpu.queue.submit([enc.finish()]);
            let raw = gpu.read_staging(&self.staging, bytes)?;
            gpu.check_errors("the masked passes")?;
            let f: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
            out.extend(f.chunks_exact(2).map(|p| (p[0], p[1])));
            progress(out.len());
        }
        Ok(out)
    }

    /// The job values of Score-CAM's and AblationCAM's copies: `channels` of each original in
    /// turn.
    fn copy_values(&self, channels: &Range<usize>) -> Result<Vec<u32>> {
        let m = self.originals.get();
        let values = (0..m).flat_map(|z| channels.clone().map(move |k| copy_value(z, k)));
        values.collect::<Option<_>>().ok_or_else(|| {
            Error::Input(format!(
                "{} channels are more than masked copies can name (65,535)",
                channels.end
            ))
        })
    }

    /// Score-CAM's and AblationCAM's masks: each original's activations of block `l` (whose
    /// channels must reach `end`), and with `up` each channel's range of up(A_k), for
    /// Score-CAM (one submission). Returns the job header.
    fn prepare_block(
        &self,
        gpu: &Gpu,
        p: &MaskedView,
        (l, end): (usize, usize),
        target: usize,
        up: bool,
    ) -> Result<[u32; 4]> {
        let hw = p.h * p.w;
        let (bh, bw) = *p
            .sizes
            .get(l)
            .ok_or_else(|| Error::Input(format!("block {l} does not exist")))?;
        let c = p.outs[l].len / (bh * bw);
        if end > c {
            return Err(Error::Input(format!(
                "block {l} has {c} channels, not {end}"
            )));
        }
        let header = [target as u32, c as u32, bh as u32, bw as u32];
        // up_minmax takes every original's channels, one after another
        let m = self.originals.get();
        let every = [target as u32, (m * c) as u32, bh as u32, bw as u32];
        gpu.queue
            .write_buffer(&self.job.buf, 0, bytemuck::cast_slice(&every));
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let (input, out) = ((12 * hw) as u64, (4 * c * bh * bw) as u64);
        for z in 0..m as u64 {
            enc.copy_buffer_to_buffer(&self.x0.buf, z * input, &p.input.buf, 0, input);
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for d in p.forward {
                    d.record(&mut pass);
                }
            }
            enc.copy_buffer_to_buffer(&p.outs[l].buf, 0, &self.acts.buf, z * out, out);
        }
        if up {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.up.record(&mut pass);
        }
        gpu.queue.submit([enc.finish()]);
        Ok(header)
    }

    /// The deletion, insertion and map masks: their inputs uploaded; per copy its value in
    /// `job`, and the mask dispatch.
    fn prepare_other(
        &self,
        gpu: &Gpu,
        p: &MaskedView,
        masks: &Masks,
    ) -> Result<(Vec<u32>, &Dispatch)> {
        let (h, w) = (p.h, p.w);
        let hw = h * w;
        match masks {
            Masks::Deletion { rank, counts } | Masks::Insertion { rank, counts, .. } => {
                if rank.len() != hw {
                    return Err(Error::Input(format!(
                        "{} ranks for a {h}×{w} input",
                        rank.len()
                    )));
                }
                gpu.queue
                    .write_buffer(&self.rank.buf, 0, bytemuck::cast_slice(rank));
                let list = match masks {
                    Masks::Insertion { blurred, .. } => {
                        if blurred.len() != 3 * hw {
                            return Err(Error::Input(format!(
                                "the blurred input has {} values, not 3×{h}×{w}",
                                blurred.len()
                            )));
                        }
                        gpu.write(&self.other, blurred);
                        &self.ins
                    }
                    _ => &self.del,
                };
                Ok((counts.iter().map(|&k| k as u32).collect(), list))
            }
            Masks::Map { map } => {
                if map.len() != hw {
                    return Err(Error::Input(format!(
                        "a {} map for a {h}×{w} input",
                        map.len()
                    )));
                }
                gpu.write(&self.other, map);
                Ok((vec![0], &self.map))
            }
            Masks::Cam { .. } | Masks::Inputs { .. } | Masks::Ablation { .. } => {
                unreachable!(
                    "Score-CAM's, AblationCAM's masks and whole inputs are prepared by `run`"
                )
            }
        }
    }
}
