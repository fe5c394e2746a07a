//! The pipeline cache keyed by (shader, entry point, constants), and the
//! `Dispatch` type a plan is made of.

use super::{Gpu, warm};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

pub use super::shader_text::{
    INCLUDES, PRELUDE, SHADERS, image_reads, include_text, shader_source, splice,
};

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    /// each module's WGSL, for helper devices (`warm`)
    texts: Mutex<HashMap<String, Arc<str>>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    /// what compiling has cost so far
    spent: Mutex<CompileStats>,
}

/// Pipelines compiled so far and the wall-clock time compiling took.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileStats {
    pub modules: usize,
    pub pipelines: usize,
    pub seconds: f64,
}

impl PipelineCache {
    pub fn stats(&self) -> CompileStats {
        *self.spent.lock().unwrap()
    }

    fn spent(&self, modules: usize, pipelines: usize, seconds: f64) {
        let mut s = self.spent.lock().unwrap();
        s.modules += modules;
        s.pipelines += pipelines;
        s.seconds += seconds;
    }
}

/// One recorded compute dispatch: made once when the plan is built, replayed per image.
pub struct Dispatch {
    pub label: String,
    /// Op family ("gemm", "depthwise", ...) for per-kernel timing.
    pub family: &'static str,
    /// its pipeline and bind group; while a plan is recorded, what they will be made of
    state: Bound,
    pub groups: [u32; 3],
    /// Exact floating-point operations and bytes moved, for GFLOP/s and GB/s.
    pub flops: f64,
    pub bytes: f64,
}

enum Bound {
    Ready(Arc<wgpu::ComputePipeline>, wgpu::BindGroup),
    /// made at the end of the recording (`Gpu::bind_all`), new pipelines compiled in parallel
    Pending(Box<Pending>),
}

/// What a dispatch's pipeline and bind group are made of.
struct Pending {
    module: String,
    /// the WGSL, when its module is not made yet
    text: Option<String>,
    entry: String,
    constants: Vec<(String, f64)>,
    words: Vec<u32>,
    buffers: Vec<(u32, wgpu::Buffer)>,
    views: Vec<(u32, wgpu::TextureView)>,
}

impl Pending {
    fn key(&self) -> String {
        pipeline_key(&self.module, &self.entry, &self.constants)
    }
}

fn pipeline_key<S: AsRef<str> + std::fmt::Debug>(
    module: &str,
    entry: &str,
    constants: &[(S, f64)],
) -> String {
    format!("{module}:{entry}:{constants:?}")
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_z(pass, self.groups[2]);
    }

    /// Record it with no workgroups (`Gpu::warm_up`).
    fn record_empty(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_grid(pass, [0, 0, 0]);
    }

    /// Record it for a batch of `images` (workgroup z = the image; see the shaders' "Batch"
    /// notes). Only for dispatches whose own grid is flat in z.
    pub fn record_batch(&self, pass: &mut wgpu::ComputePass<'_>, images: u32) {
        debug_assert_eq!(
            self.groups[2], 1,
            "{}: a grid with z is not batched",
            self.label
        );
        self.record_z(pass, images);
    }

    fn record_z(&self, pass: &mut wgpu::ComputePass<'_>, z: u32) {
        self.record_grid(pass, [self.groups[0], self.groups[1], z]);
    }

    fn record_grid(&self, pass: &mut wgpu::ComputePass<'_>, [x, y, z]: [u32; 3]) {
        let Bound::Ready(pipeline, bind_group) = &self.state else {
            panic!("dispatch {} recorded before its plan bound it", self.label);
        };
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Split `n` workgroups over x and y so neither exceeds 65,535; shaders linearise with
/// `wid.y * nwg.x + wid.x`.
pub fn grid_1d(n_groups: u32) -> [u32; 3] {
    let n = n_groups.max(1);
    let x = n.min(65535);
    [x, n.div_ceil(x), 1]
}

/// Workgroups for `n` items at 256 per workgroup.
pub fn grid_items(n: usize) -> [u32; 3] {
    grid_1d((n as u32).div_ceil(256))
}

/// What a dispatch is made of (`Gpu::dispatch`).
#[derive(Clone, Copy, Default)]
pub struct DispatchDesc<'a> {
    /// the dispatch's name in errors and timings
    pub label: &'a str,
    /// the op family (`bench` times them together); also the WGSL file when `source` is
    /// `None`
    pub family: &'static str,
    /// the WGSL: `None` is the family's own file
    pub source: Option<Source<'a>>,
    /// the entry point
    pub entry: &'a str,
    /// pipeline-overridable constants (name, value)
    pub constants: &'a [(&'a str, f64)],
    /// the uniform `Params` (`params_words` of a `#[repr(C)]` struct)
    pub params: &'a [u32],
    /// (binding number, buffer); `None` binds a dummy for an unused optional input
    pub bindings: &'a [(u32, Option<&'a wgpu::Buffer>)],
    /// (binding number, texture view)
    pub textures: &'a [(u32, &'a wgpu::TextureView)],
    /// the sampled rgba32float textures of the WGSL to read as read-only storage textures
    /// instead (`image_reads`; the module is keyed with `+image`): where `Gpu::image_reads`
    /// says the CPU-shaped kernels read so
    pub image_reads: &'a [&'a str],
    /// workgroups along x, y, z
    pub groups: [u32; 3],
}

/// Where a pipeline's WGSL comes from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// a file of the shader table, by name
    Table(&'static str),
    /// WGSL made at run time (a kernel specialised by straight-line code), under a unique key
    Generated {
        key: &'a str,
        make: &'a dyn Fn() -> String,
    },
}

impl Source<'_> {
    fn key(&self) -> &str {
        match self {
            Source::Table(n) => n,
            Source::Generated { key, .. } => key,
        }
    }

    fn text(&self) -> String {
        match self {
            Source::Table(shader) => shader_source(shader),
            Source::Generated { make, .. } => make(),
        }
    }
}

impl Gpu {
    /// The shader module `key`, made once from `text()`.
    fn module(&self, key: &str, text: impl FnOnce() -> String) -> Arc<wgpu::ShaderModule> {
        let mut m = self.pipelines.modules.lock().unwrap();
        if let Some(module) = m.get(key) {
            return module.clone();
        }
        let text = text();
        let module = Arc::new(super::checks::module(&self.device, key, &text, self.checks));
        m.insert(key.to_string(), module.clone());
        (self.pipelines.texts.lock().unwrap()).insert(key.to_string(), text.into());
        module
    }

    fn has_module(&self, key: &str) -> bool {
        self.pipelines.modules.lock().unwrap().contains_key(key)
    }

    fn cached_pipeline(&self, key: &str) -> Option<Arc<wgpu::ComputePipeline>> {
        self.pipelines.pipelines.lock().unwrap().get(key).cloned()
    }

    /// Compile (module, entry, constants) and cache it under `key` (no timing).
    fn compile(
        &self,
        key: String,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Arc<wgpu::ComputePipeline> {
        let p = Arc::new(
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&key),
                    layout: None,
                    module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                }),
        );
        self.pipelines
            .pipelines
            .lock()
            .unwrap()
            .insert(key, p.clone());
        p
    }

    /// The pipeline for (shader, entry, constants), made once.
    pub fn pipeline(
        &self,
        shader: Source,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Arc<wgpu::ComputePipeline> {
        let key = pipeline_key(shader.key(), entry, constants);
        if let Some(p) = self.cached_pipeline(&key) {
            return p;
        }
        let t = std::time::Instant::now();
        let fresh = !self.has_module(shader.key());
        let module = self.module(shader.key(), || shader.text());
        let p = self.compile(key, &module, entry, constants);
        self.pipelines
            .spent(fresh as usize, 1, t.elapsed().as_secs_f64());
        p
    }

    /// A uniform buffer holding `words` and a bind group for `pipeline`.
    fn bind(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        words: &[u32],
        buffers: &[(u32, &wgpu::Buffer)],
        views: &[(u32, &wgpu::TextureView)],
    ) -> (wgpu::Buffer, wgpu::BindGroup) {
        let ubuf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(words),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: ubuf.as_entire_binding(),
        }];
        for (b, buf) in buffers {
            entries.push(wgpu::BindGroupEntry {
                binding: *b,
                resource: buf.as_entire_binding(),
            });
        }
        for (b, view) in views {
            entries.push(wgpu::BindGroupEntry {
                binding: *b,
                resource: wgpu::BindingResource::TextureView(view),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        (ubuf, bind_group)
    }

    /// Bind a recorded plan's dispatches, in order: first every pipeline not compiled yet, on
    /// all cores at once (pipeline compilation is most of a first plan's cost), then each bind
    /// group, taken back from the previous plan where it fits (`recycle`).
    pub fn bind_all<'d>(&self, dispatches: impl Iterator<Item = &'d mut Dispatch>) {
        let dispatches: Vec<&mut Dispatch> = dispatches.collect();
        // the pipelines to compile, each once, and their modules
        let mut todo: Vec<&Pending> = Vec::new();
        let mut seen = HashSet::new();
        for d in &dispatches {
            if let Bound::Pending(p) = &d.state {
                let key = p.key();
                if self.cached_pipeline(&key).is_none() && seen.insert(key) {
                    todo.push(p);
                }
            }
        }
        if !todo.is_empty() {
            let t = std::time::Instant::now();
            let mut modules = 0;
            for p in &todo {
                if let Some(text) = &p.text
                    && !self.has_module(&p.module)
                {
                    self.module(&p.module, || text.clone());
                    modules += 1;
                }
            }
            let next = std::sync::atomic::AtomicUsize::new(0);
            super::workers::run(super::workers::cores(todo.len()), || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(p) = todo.get(i) else { break };
                    let module = self.module(&p.module, || unreachable!());
                    let constants: Vec<(&str, f64)> =
                        p.constants.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                    self.compile(p.key(), &module, &p.entry, &constants);
                }
            });
            self.pipelines
                .spent(modules, todo.len(), t.elapsed().as_secs_f64());
        }
        let (jobs, firsts) = self.warm_jobs(&dispatches, &seen);
        let mut warm = Vec::new();
        for d in dispatches {
            let Bound::Pending(p) = &d.state else {
                continue;
            };
            let pipeline = self.cached_pipeline(&p.key()).expect("compiled just above");
            let buffers: Vec<(u32, &wgpu::Buffer)> =
                p.buffers.iter().map(|(i, b)| (*i, b)).collect();
            let views: Vec<(u32, &wgpu::TextureView)> =
                p.views.iter().map(|(i, v)| (*i, v)).collect();
            let make = || self.bind(&d.label, &pipeline, &p.words, &buffers, &views);
            // the previous plan's bind group, when it binds the same things
            let bind_group = self
                .pooled_bind_group(&pipeline, &buffers, &views, &p.words, &make)
                .unwrap_or_else(|| make().1);
            d.state = Bound::Ready(pipeline, bind_group);
            warm.push(&*d);
        }
        let t = std::time::Instant::now();
        self.warm_in_parallel(&jobs, &|i| self.dispatch_empty(&[warm[firsts[i]]]));
        self.pipelines.spent(0, 0, t.elapsed().as_secs_f64());
        self.warm_up(&warm);
    }

    /// One job per kernel variant among `dispatches` whose pipeline is not made yet, and the
    /// index of its first dispatch (`warm`).
    fn warm_jobs(
        &self,
        dispatches: &[&mut Dispatch],
        new: &HashSet<String>,
    ) -> (Vec<warm::WarmJob>, Vec<usize>) {
        let (mut jobs, mut firsts, mut seen) = (Vec::new(), Vec::new(), HashSet::new());
        if self.helpers.is_none() || new.is_empty() {
            return (jobs, firsts);
        }
        let texts = self.pipelines.texts.lock().unwrap();
        let pending = dispatches.iter().filter_map(|d| match &d.state {
            Bound::Pending(p) => Some(p),
            Bound::Ready(..) => None,
        });
        // i: the dispatch's place among the pending ones (as `bind_all` lists them to warm)
        for (i, p) in pending.enumerate() {
            let Some(text) = texts.get(&p.module).filter(|_| new.contains(&p.key())) else {
                continue;
            };
            let pot = |n: u32| n.is_power_of_two();
            let job = warm::WarmJob {
                module: p.module.clone(),
                text: text.clone(),
                entry: p.entry.clone(),
                constants: p.constants.clone(),
                words: p.words.clone(),
                buffers: (p.buffers.iter())
                    .map(|(b, buf)| (*b, buf.size(), buf.usage()))
                    .collect(),
                views: (p.views.iter())
                    .map(|(b, v)| {
                        let t = v.texture();
                        (*b, t.format(), t.usage(), [pot(t.width()), pot(t.height())])
                    })
                    .collect(),
            };
            if seen.insert(job.variant()) {
                jobs.push(job);
                firsts.push(i);
            }
        }
        (jobs, firsts)
    }

    /// Dispatch each of `ds` with no workgroups, in one submission, and wait: drivers that
    /// generate a kernel's machine code on its first dispatch rather than when the pipeline
    /// is made (lavapipe: LLVM, 0.03–0.5 s per kernel and texture layout) do it now, so a
    /// plan's first run costs what every later run costs, and the time counts as compiling.
    /// Nothing runs; on drivers that compiled already it takes milliseconds.
    fn warm_up(&self, ds: &[&Dispatch]) {
        if ds.is_empty() {
            return;
        }
        let t = std::time::Instant::now();
        self.dispatch_empty(ds);
        self.pipelines.spent(0, 0, t.elapsed().as_secs_f64());
    }

    /// `ds` with no workgroups, in one submission, then wait (no timing).
    fn dispatch_empty(&self, ds: &[&Dispatch]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in ds {
                d.record_empty(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
        // an error here surfaces in the plan's own error check
        let _ = self.wait();
    }

    /// Make a dispatch: a uniform buffer with `params`, a bind group with `bindings`
    /// (binding number, buffer; `None` binds a dummy for an unused optional input) and
    /// `textures`, the pipeline of `entry` in the WGSL of `source` (by default the family's
    /// own file) with `constants`.
    pub fn dispatch(&self, desc: &DispatchDesc) -> Dispatch {
        let DispatchDesc {
            label,
            family,
            source,
            entry,
            constants,
            params,
            bindings,
            textures,
            image_reads: image_textures,
            groups,
        } = *desc;
        let base = source.unwrap_or(Source::Table(family));
        let image_key = format!("{}+image", base.key());
        let image_make = || image_reads(&base.text(), image_textures);
        let source = match image_textures {
            [] => base,
            _ => Source::Generated {
                key: &image_key,
                make: &image_make,
            },
        };
        let mut words = params.to_vec();
        while !words.len().is_multiple_of(4) || words.is_empty() {
            words.push(0);
        }
        let buffers: Vec<(u32, &wgpu::Buffer)> = bindings
            .iter()
            .map(|(b, buf)| (*b, buf.unwrap_or(&self.dummies[*b as usize])))
            .collect();
        let state = if self.is_recording() {
            // bound at the end of the recording, its pipeline compiled with the others
            let module = source.key().to_string();
            Bound::Pending(Box::new(Pending {
                text: (!self.has_module(&module)).then(|| source.text()),
                module,
                entry: entry.to_string(),
                constants: constants.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
                words,
                buffers: buffers.iter().map(|(i, b)| (*i, (*b).clone())).collect(),
                views: textures.iter().map(|(i, v)| (*i, (*v).clone())).collect(),
            }))
        } else {
            let pipeline = self.pipeline(source, entry, constants);
            let (_, bind_group) = self.bind(label, &pipeline, &words, &buffers, textures);
            Bound::Ready(pipeline, bind_group)
        };
        Dispatch {
            label: label.to_string(),
            family,
            state,
            groups,
            flops: 0.0,
            bytes: 0.0,
        }
    }

    /// Run dispatches now in one submission and wait (tests and one-off work).
    pub fn run_now(&self, ds: &[&Dispatch]) -> crate::error::Result<()> {
        self.run_now_with(ds, None)
    }

    /// `run_now` for a batch of `images` (`Dispatch::record_batch`).
    pub fn run_now_batched(&self, ds: &[&Dispatch], images: u32) -> crate::error::Result<()> {
        self.run_now_with(ds, Some(images))
    }

    fn run_now_with(&self, ds: &[&Dispatch], images: Option<u32>) -> crate::error::Result<()> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in ds {
                match images {
                    Some(n) => d.record_batch(&mut pass, n),
                    None => d.record(&mut pass),
                }
            }
        }
        self.queue.submit([enc.finish()]);
        self.wait()?;
        self.check_errors(ds.first().map(|d| d.label.as_str()).unwrap_or("dispatch"))
    }
}
