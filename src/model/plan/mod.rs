//! The plan: every buffer, bind group and dispatch of one input size, recorded once and
//! replayed per image in one submission. It reads like the CPU reference model (`cpu.rs`):
//! `forward.rs` beside `cpu::block_forward`, `backward.rs` beside `cpu::block_backward`; the
//! CAM phase is `cam::phase`; a run ends with a typed read-back (`readback.rs`).
//!
//! - `io`: what a plan is asked for (`PlanOptions`, `Score`) and gives back (`Output`);
//! - `sizing`: what one image's forward holds, and the batch of masked copies that fits;
//! - `rec`: the recorder's state and the intermediates it keeps;
//! - `forward`, `backward`: the recorders, block by block;
//! - `readback`: the copies a run ends with and their parse;
//! - `masked`: masked copies of the image run as one batch (Score-CAM, the metrics).

mod backward;
mod forward;
mod fullgrad;
pub mod io;
pub mod masked;
mod readback;
mod rec;
mod sizing;

pub use io::{ExplainerOutput, Output, PlanOptions, Score};
pub use masked::{Masks, ORIGINALS, note_batch};
pub use sizing::BATCH_BUDGET;

use crate::cam::methods;
use crate::cam::phase::{self, CamInputs};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, GpuBuf, RecycleStats, Recycler};
use crate::model::config::ModelCfg;
use crate::model::efficientnet::ModelGpu;
use masked::{Masked, MaskedView};
use readback::{ExplainerSpans, ReadBack};
use rec::{Alloc, BlockFwd, Forward, Rec};
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
    masked: Option<Masked>,
    /// the next run's command buffer, recorded while the GPU runs this one (`run_images`)
    next: std::sync::Mutex<Option<wgpu::CommandBuffer>>,
}

/// The options a plan cannot record: blocks that do not exist, the official Grad-CAM++ off
/// the last block, Score-CAM (made of masked passes, not of a CAM phase).
fn check_options(opts: &PlanOptions, nb: usize) -> Result<()> {
    if let Some(&b) = opts.blocks.iter().find(|&&b| b >= nb) {
        return Err(Error::Input(format!(
            "block {b} does not exist: this model has blocks 0-{}",
            nb - 1
        )));
    }
    // the official Grad-CAM++ is defined on the last block only (its score: see `run`)
    methods::check_official(&opts.explainers, &opts.blocks, nb, 0)?;
    let full = (opts.explainers.iter()).find(|e| e.method == methods::Method::FullGrad);
    if full.is_some_and(|e| e.fusion != methods::Fusion::Sum) {
        return Err(Error::Input(
            "fullgrad sums its terms at the input: drop its fusion rule (or use sum)".into(),
        ));
    }
    if full.is_some() && opts.eigen_smooth {
        return Err(Error::Input(
            "--eigen-smooth does not apply to fullgrad (its maps are sums of normalised terms, not weighted activations): drop one of them".into(),
        ));
    }
    if opts.images == 0 {
        return Err(Error::Input(
            "a plan runs one image at least (PlanOptions::images)".into(),
        ));
    }
    if opts.images > 1 && !opts.batches_images() {
        return Err(Error::Input(format!(
            "a plan of {} images at once needs the backward and no masked passes (Score-CAM, AblationCAM, whose copies take the batch): run those one image at a time",
            opts.images
        )));
    }
    if let Some(e) = opts.explainers.iter().find(|e| e.method.is_score_cam()) {
        return Err(Error::Input(format!(
            "{} is made of masked passes (app::scorecam), not of a plan's CAM phase",
            e.method.name()
        )));
    }
    Ok(())
}

/// The CAM phase's results in the read-back: act_maxabs, then per explainer its maps, fused
/// map, range and statistics.
fn read_cam(rb: &mut ReadBack, cb: &phase::CamBuffers, nb: usize, hw: usize) {
    rb.act_maxabs = rb.add(&cb.act_maxabs, nb);
    rb.map_offs = cb.map_offs.clone();
    for e in &cb.explainers {
        let spans = ExplainerSpans {
            maps: rb.add(&e.maps, cb.total_maps),
            norm: rb.add(&e.norm, hw),
            mm: rb.add(&e.mm, 2),
            stats: rb.add(&e.stats, 2 * nb),
        };
        rb.explainers.push(spans);
    }
}

impl Plan {
    /// Build the plan for an H×W input. Validation errors come back as `Error::Gpu`.
    pub fn new(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize, opts: PlanOptions) -> Result<Plan> {
        Self::build(gpu, m, h, w, opts, Recycler::default())
    }

    /// Build the plan, taking back what `old` (a previous plan of the same options, at
    /// another size) holds where it fits: memory stays that of the largest size seen.
    /// The stages: check, size the batch, record the forward, the masked copies, the
    /// backward and the CAM phase, then bind everything and check the device's errors.
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
        check_options(&opts, cfg.blocks.len())?;
        let (sh, sw, sizes) = cfg.sizes(h, w);
        crate::cam::eigen::check_kpca(&opts.explainers, &opts.blocks, &sizes, (h, w))?;
        sizing::check_fits(gpu, cfg, (h, w), (sh, sw), &sizes)?;
        let recording = gpu.record_with(old);
        let texels = sizing::pack_texels(gpu, cfg, (sh, sw), &sizes);
        if opts.images > 1 && !sizing::images_fit(gpu, m, (h, w), opts.images) {
            return Err(Error::Input(format!(
                "{} images of {h}×{w} at once are more than this adapter holds: run them one at a time",
                opts.images
            )));
        }
        sizing::check_host_memory(gpu, cfg, (h, w), ((sh, sw), &sizes), m.n_classes(), texels)?;
        // the forward's buffers hold `batch` images when there are masked copies to run
        let batch = match opts.masked {
            0 => opts.images,
            asked => {
                let (all, largest, _) = sizing::copy_footprint(gpu, m, h, w);
                sizing::batch_for(gpu, asked, (all, largest), texels)
            }
        };
        let images = opts.images;
        let mut rec = Rec::new(gpu, m, Alloc { gpu, batch, images }, texels)?;
        let cam = opts.backward && !opts.blocks.is_empty();
        if cam {
            rec.start_parts(&sizes)?;
        }
        let fwd = rec.forward((h, w), (sh, sw), &sizes)?;
        let masked = match opts.masked {
            0 => None,
            _ => Some(Self::record_masked(&mut rec, cfg, &fwd, (h, w), batch)?),
        };
        let mut rb = ReadBack {
            images,
            ..Default::default()
        };
        rb.info = rb.add_one(&fwd.head.info, 4);
        rb.probs = rb.add(&fwd.head.probs, m.n_classes());
        rb.logits = rb.add(&fwd.head.logits, m.n_classes());
        let outs: Vec<GpuBuf> = fwd.blocks.iter().map(|b| b.out.clone()).collect();
        let (mut phases, grads) = match cam {
            true => Self::record_backward_and_cam(&mut rec, &opts, (&fwd, &outs), &sizes, &mut rb)?,
            false => (vec![], (0..cfg.blocks.len()).map(|_| None).collect()),
        };
        let Forward {
            input,
            stem,
            head,
            dispatches,
            ..
        } = fwd;
        phases.insert(
            0,
            Phase {
                name: "forward",
                dispatches,
            },
        );
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
            features: head.features,
            info: head.info,
            rb,
            staging,
            n: m.n_classes(),
            geo: m.cells.is_some(),
            bytes: pool.bytes(),
            recycled,
            pool,
            masked,
            next: Default::default(),
        })
    }

    /// The backward down to the first selected block, then the CAM phase on its gradients;
    /// the CAM results join the read-back. Returns the two phases and the gradients.
    fn record_backward_and_cam(
        rec: &mut Rec,
        opts: &PlanOptions,
        (fwd, outs): (&Forward, &[GpuBuf]),
        sizes: &[(usize, usize)],
        rb: &mut ReadBack,
    ) -> Result<(Vec<Phase>, Vec<Option<GpuBuf>>)> {
        let (gpu, cfg) = (rec.gpu, &rec.m.weights.cfg);
        let hvp = methods::needs_hvp(&opts.explainers);
        let lo = *opts.blocks.iter().min().unwrap();
        let has = |m| opts.explainers.iter().any(|e| e.method == m);
        let finer = has(methods::Method::FinerCam);
        let full = has(methods::Method::FullGrad).then_some(opts.blocks.as_slice());
        let b = rec.backward(fwd, sizes, (lo, &hvp, finer, full))?;
        let mut phases = vec![Phase {
            name: "backward",
            dispatches: b.dispatches,
        }];
        let channels: Vec<usize> = cfg.blocks.iter().map(|b| b.cout).collect();
        let inputs = CamInputs {
            channels: &channels,
            sizes,
            outs,
            grads: &b.grads,
            h: fwd.input_size.0,
            w: fwd.input_size.1,
            blocks: &opts.blocks,
            hvp: &b.hvp,
            eigen_smooth: opts.eigen_smooth,
            fullgrad: b.fullgrad.as_ref(),
            parts: rec
                .parts
                .as_ref()
                .expect("made with the CAM phase (start_parts)"),
            images: opts.images,
        };
        let mut alloc = |label: String, len: usize| rec.a.per_image(label, len);
        let (camd, cb) = phase::record(gpu, &inputs, &opts.explainers, &mut alloc)?;
        phases.push(Phase {
            name: "cam",
            dispatches: camd,
        });
        read_cam(rb, &cb, cfg.blocks.len(), inputs.h * inputs.w);
        Ok((phases, b.grads))
    }

    /// The masked copies' machinery against the forward's batched input and head.
    fn record_masked(
        rec: &mut Rec,
        cfg: &ModelCfg,
        fwd: &Forward,
        (h, w): (usize, usize),
        batch: usize,
    ) -> Result<Masked> {
        let outs: Vec<GpuBuf> = fwd
            .blocks
            .iter()
            .map(|o: &BlockFwd| o.out.clone())
            .collect();
        let max_c = cfg.blocks.iter().map(|b| b.cout).max().unwrap_or(1);
        let gpu = rec.gpu;
        let n = rec.m.n_classes();
        let mut alloc = |label: String, len: usize| rec.a.buf(label, len);
        Masked::record(
            gpu,
            &mut alloc,
            (&fwd.input, &fwd.head.logits, &fwd.head.probs),
            (h, w),
            (&outs, &fwd.starts, max_c),
            (batch, n),
        )
    }

    /// Masked copies per batch when the user gives none: 4 on a CPU adapter (a copy takes
    /// about a second there, the progress bar moves per batch, and a bigger batch is not
    /// faster per copy), 32 on a GPU (small layers need several images to fill it); fewer
    /// when the `h`×`w` forward of `m` would take more than `BATCH_BUDGET` or the adapter's
    /// limits.
    pub fn default_batch(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize) -> usize {
        sizing::default_batch(gpu, m, h, w)
    }

    /// Whether `images` images at once (`PlanOptions::images`) fit an `h`×`w` plan of `m` on
    /// this adapter (`sizing::images_fit`).
    pub fn images_fit(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize, images: usize) -> bool {
        sizing::images_fit(gpu, m, (h, w), images)
    }

    /// GPU memory each image of a forward batch adds, in bytes: what `--batch` costs.
    pub fn bytes_per_copy(gpu: &Gpu, m: &ModelGpu, h: usize, w: usize) -> u64 {
        sizing::bytes_per_copy(gpu, m, h, w)
    }

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
        let mk = self.masked()?;
        let view = MaskedView {
            forward: &self.phases[0].dispatches,
            input: &self.input,
            outs: &self.outs,
            sizes: &self.sizes,
            h: self.h,
            w: self.w,
            outputs: self.n,
        };
        mk.run(gpu, &view, masks, target, progress)
    }

    /// The masked copies' machinery, or the error that says the plan records none.
    fn masked(&self) -> Result<&Masked> {
        self.masked.as_ref().ok_or_else(|| {
            Error::Input("this plan records no masked copies (PlanOptions::masked)".into())
        })
    }

    /// Make `inputs` (m × 3 × H × W, m up to `masked_originals_held`) the originals of the next
    /// Score-CAM and AblationCAM copies (`Masks::Cam`, `Masks::Ablation`): their channels'
    /// copies of each original in turn, mixed in the batches. The next `run` makes its own
    /// image the only original again.
    pub fn set_masked_originals(&self, gpu: &Gpu, inputs: &[f32]) -> Result<()> {
        self.masked()?.set_originals(gpu, inputs)
    }

    /// How many originals the masked copies can come from at once: `masked::ORIGINALS`, fewer
    /// where the adapter's largest binding would not hold them; 0 without masked copies.
    pub fn masked_originals_held(&self) -> usize {
        self.masked.as_ref().map_or(0, |m| m.originals_held())
    }

    /// Block `l`'s output of each original (one after another), as the last Score-CAM or
    /// AblationCAM copies of block `l` made them.
    pub fn masked_block_outputs(&self, gpu: &Gpu, l: usize) -> Result<Vec<f32>> {
        let len = self.outs.get(l).map(|o| o.len);
        let len = len.ok_or_else(|| Error::Input(format!("block {l} does not exist")))?;
        self.masked()?.block_outputs(gpu, len)
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
                match self.opts.images {
                    1 => d.record(&mut pass),
                    n => d.record_batch(&mut pass, n as u32),
                }
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
        Ok(self.run_images(gpu, input, target, score)?.remove(0))
    }

    /// `run` for the plan's `PlanOptions::images` images at once, their inputs one after
    /// another in `input`: every image explains image 0's target (or `target`). One output
    /// per image, in order, each with the submission's time.
    pub fn run_images(
        &self,
        gpu: &Gpu,
        input: &[f32],
        target: Option<usize>,
        score: Score,
    ) -> Result<Vec<Output>> {
        let images = self.opts.images;
        if input.len() != images * 3 * self.h * self.w {
            let n = if images > 1 {
                format!("{images}×")
            } else {
                String::new()
            };
            return Err(Error::Input(format!(
                "input has {} values, the plan expects {n}3×{}×{}",
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
        methods::check_official(
            &self.opts.explainers,
            &self.opts.blocks,
            self.sizes.len(),
            // the finer score's run (`Engine::run`) gives FinerCAM's maps alone
            match score {
                Score::Finer(_) => 0,
                s => s.code().0,
            },
        )?;
        if let Score::Finer(k) = score {
            let has = (self.opts.explainers.iter()).any(|e| e.method == methods::Method::FinerCam);
            if !has || !(1..=crate::ops::head::FINER_MAX as u32).contains(&k) {
                return Err(Error::Input(format!(
                    "FinerCAM's score needs a plan with finercam and 1 to {} comparison classes (got {k})",
                    crate::ops::head::FINER_MAX
                )));
            }
        }
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
            m.set_originals(gpu, input)?;
        }
        let (mode, km) = score.code();
        let mut info = [0u32; crate::ops::head::INFO_WORDS];
        info[0] = target.map(|t| t as u32).unwrap_or(u32::MAX);
        info[1] = mode;
        (info[4], info[7]) = (km, km);
        gpu.queue
            .write_buffer(&self.info.buf, 0, bytemuck::cast_slice(&info));
        let t0 = Instant::now();
        // A plan's command buffer is the same every run (the inputs are written before it):
        // the next run's is recorded while the GPU runs this one, so that recording its
        // dispatches (about 1.5 ms for B4's 425 on a 2-core VM) is off every later run's path
        let ready = self.next.lock().ok().and_then(|mut n| n.take());
        gpu.queue
            .submit([ready.unwrap_or_else(|| self.encode(gpu))]);
        let next = self.encode(gpu);
        if let Ok(mut n) = self.next.lock() {
            *n = Some(next);
        }
        gpu.wait()?;
        let t1 = Instant::now();
        let raw = gpu.read_staging(&self.staging, (self.rb.len * 4) as u64)?;
        gpu.check_errors("the model run")?;
        let f: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
        let readback_seconds = t1.elapsed().as_secs_f64();
        let outs = (0..images).map(|z| {
            let mut out = self.rb.parse(&f, (&self.sizes, &self.opts), z);
            out.gpu_seconds = (t1 - t0).as_secs_f64();
            out.readback_seconds = readback_seconds;
            out
        });
        Ok(outs.collect())
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
