//! Masked forward passes: copies of the plan's image, made on the GPU from the original and
//! a mask (`ops::masked`), run as one batch through the plan's forward, keeping only the
//! target's logit and probability of each. Score-CAM and the faithfulness metrics are made
//! of these.
//!
//! A plan with masked copies holds a batch of `n` images in every forward buffer (image 0
//! is the plan's own; `Plan::masked_copies`). The mask kernels write the `n` inputs at once,
//! and each forward dispatch is replayed with `n` workgroups along z, one per image. `n` is
//! what was asked for (or the default, `PlanOptions::AUTO_BATCH`), within the adapter's
//! limits and a memory budget (`plan::batch_for`).

use super::plan::Plan;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, GpuBuf};
use crate::ops::masked::{self, JOB_HEADER, MaskBufs};
use std::ops::Range;

/// Say once per process, on stderr, that an explicit `--batch asked` became `got` copies per
/// batch (`Plan::masked_copies`), so a user who sized it knows what ran.
pub fn note_batch(asked: usize, got: usize) {
    static SAID: std::sync::Once = std::sync::Once::new();
    if got < asked {
        SAID.call_once(|| {
            eprintln!(
                "note: --batch {asked} lowered to {got} masked copies per batch: the most this adapter's buffer limits allow at this image size (on a CPU adapter, also within 2 GiB)"
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
}

/// The recorded machinery (see `PlanOptions::masked`).
pub(super) struct Masked {
    pub n: usize,
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
    staging: wgpu::Buffer,
}

impl Masked {
    /// Record the dispatches of a batch of `n` copies against the plan's batched input,
    /// logits and probabilities (`classes` per image).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        gpu: &Gpu,
        alloc: &mut dyn FnMut(String, usize) -> Result<GpuBuf>,
        (input, logits, probs): (&GpuBuf, &GpuBuf, &GpuBuf),
        (h, w): (usize, usize),
        acts_len: usize,
        max_c: usize,
        (n, classes): (usize, usize),
    ) -> Result<Masked> {
        let hw = h * w;
        let x0 = alloc("masked.x0".into(), 3 * hw)?;
        let job = alloc("masked.job".into(), JOB_HEADER + n)?;
        let acts = alloc("masked.acts".into(), acts_len)?;
        let mm = alloc("masked.minmax".into(), 2 * max_c)?;
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
            up: masked::up_minmax(gpu, "masked.up_minmax", &b, h, w, max_c),
            cam: masked::mask_cam(gpu, "masked.cam", &b, h, w, true),
            cam_raw: masked::mask_cam(gpu, "masked.cam_raw", &b, h, w, false),
            del: masked::mask_rank(gpu, "masked.deletion", &b, h, w, false),
            ins: masked::mask_rank(gpu, "masked.insertion", &b, h, w, true),
            map: masked::mask_map(gpu, "masked.map", &b, h, w),
            take: masked::take_score(gpu, "masked.score", &b, n, classes),
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
    }

    pub(super) fn set_original(&self, gpu: &Gpu, input: &[f32]) {
        gpu.write(&self.x0, input);
    }
}

impl Plan {
    /// Masked copies a submission runs, the plan's batch (0: the plan has none;
    /// `PlanOptions::masked` asks, `batch_fit` decides).
    pub fn masked_copies(&self) -> usize {
        self.masked.as_ref().map_or(0, |m| m.n)
    }

    /// Run masked copies of the image of the last `run`, for target `target`: (logit,
    /// probability) per copy, in order. One submission per batch of copies: the masks, the
    /// batched forward and the scores; `progress` is told how many are done after each.
    pub fn run_masked(
        &self,
        gpu: &Gpu,
        masks: &Masks,
        target: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<(f32, f32)>> {
        let mk = self.masked.as_ref().ok_or_else(|| {
            Error::Input("this plan records no masked copies (PlanOptions::masked)".into())
        })?;
        let (h, w) = (self.h, self.w);
        let hw = h * w;
        if target >= self.n_outputs() {
            return Err(Error::Input(format!(
                "target {target} is out of range: the model has {} outputs",
                self.n_outputs()
            )));
        }
        let forward = &self.phases[0].dispatches;
        let mut header = [target as u32, 0, 0, 0];
        // per copy: its value in `job` (channel or pixel count); the mask dispatch
        let (values, mask): (Vec<u32>, &Dispatch) = match masks {
            Masks::Cam {
                block,
                channels,
                normalise,
            } => {
                let l = *block;
                let (bh, bw) = *self
                    .sizes
                    .get(l)
                    .ok_or_else(|| Error::Input(format!("block {l} does not exist")))?;
                let c = self.outs[l].len / (bh * bw);
                if channels.end > c {
                    return Err(Error::Input(format!(
                        "block {l} has {c} channels, not {}",
                        channels.end
                    )));
                }
                header = [target as u32, c as u32, bh as u32, bw as u32];
                // the original image's activations of the block, and each channel's range
                gpu.queue
                    .write_buffer(&mk.job.buf, 0, bytemuck::cast_slice(&header));
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                enc.copy_buffer_to_buffer(&mk.x0.buf, 0, &self.input.buf, 0, (12 * hw) as u64);
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    for d in forward {
                        d.record(&mut pass);
                    }
                }
                enc.copy_buffer_to_buffer(
                    &self.outs[l].buf,
                    0,
                    &mk.acts.buf,
                    0,
                    (4 * c * bh * bw) as u64,
                );
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    mk.up.record(&mut pass);
                }
                gpu.queue.submit([enc.finish()]);
                let d = if *normalise { &mk.cam } else { &mk.cam_raw };
                (channels.clone().map(|k| k as u32).collect(), d)
            }
            Masks::Deletion { rank, counts } | Masks::Insertion { rank, counts, .. } => {
                if rank.len() != hw {
                    return Err(Error::Input(format!(
                        "{} ranks for a {h}×{w} input",
                        rank.len()
                    )));
                }
                gpu.queue
                    .write_buffer(&mk.rank.buf, 0, bytemuck::cast_slice(rank));
                let list = match masks {
                    Masks::Insertion { blurred, .. } => {
                        if blurred.len() != 3 * hw {
                            return Err(Error::Input(format!(
                                "the blurred input has {} values, not 3×{h}×{w}",
                                blurred.len()
                            )));
                        }
                        gpu.write(&mk.other, blurred);
                        &mk.ins
                    }
                    _ => &mk.del,
                };
                (counts.iter().map(|&k| k as u32).collect(), list)
            }
            Masks::Map { map } => {
                if map.len() != hw {
                    return Err(Error::Input(format!(
                        "a {} map for a {h}×{w} input",
                        map.len()
                    )));
                }
                gpu.write(&mk.other, map);
                (vec![0], &mk.map)
            }
        };
        let mut out = Vec::with_capacity(values.len());
        for chunk in values.chunks(mk.n) {
            let mut job = header.to_vec();
            job.extend_from_slice(chunk);
            gpu.queue
                .write_buffer(&mk.job.buf, 0, bytemuck::cast_slice(&job));
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let copies = chunk.len() as u32;
                let mut pass = enc.begin_compute_pass(&Default::default());
                mask.record_batch(&mut pass, copies);
                for d in forward {
                    d.record_batch(&mut pass, copies);
                }
                mk.take.record(&mut pass);
            }
            let bytes = (8 * chunk.len()) as u64;
            enc.copy_buffer_to_buffer(&mk.scores.buf, 0, &mk.staging, 0, bytes);
            gpu.queue.submit([enc.finish()]);
            let raw = gpu.read_staging(&mk.staging, bytes)?;
            gpu.check_errors("the masked passes")?;
            let f: &[f32] = bytemuck::cast_slice(&raw);
            out.extend(f.chunks_exact(2).map(|p| (p[0], p[1])));
            progress(out.len());
        }
        Ok(out)
    }
}
