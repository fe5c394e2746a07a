//! First-use code generation on every core, for drivers that compile a kernel's machine code
//! on its first dispatch rather than when the pipeline is made (lavapipe: LLVM, on the one
//! thread of the device's queue, 0.03–2 s per kernel).
//!
//! One device compiles its kernels one after another, however many cores there are. So
//! before a plan's first dispatch, helper devices on the same adapter, one per spare core,
//! each make some of the new pipelines and dispatch them empty, while the plan's own device
//! does the same with the rest. The driver keeps what it generates in its disk cache (Mesa's
//! shader cache), keyed by the shader and its state, so when the plan's device then warms
//! every dispatch (`Gpu::warm_up`), the kernels the helpers made load from that cache.
//!
//! `$COMBICAM_COMPILE_THREADS` sets how many devices compile at once (default: one per core,
//! at most 8; 1: the plan's device alone).
//!
//! Nothing here changes a result: a helper runs no workgroup, and what it compiles is only
//! ever a cache entry. Where the driver keeps no cache, the plan's device compiles the rest
//! itself, as without helpers. A helper that fails (no device, a validation error) stops
//! quietly and leaves its share to the plan's device.

use super::workers::Queue;
use super::{COMPILE_THREADS_ENV, Gpu};
use crate::error::{Error, Result};

/// What a helper needs to make one kernel and dispatch it empty: the module's WGSL, the
/// entry point and constants, and the shape of each binding (dummies of that kind stand in).
pub(crate) struct WarmJob {
    pub module: String,
    pub text: std::sync::Arc<str>,
    pub entry: String,
    pub constants: Vec<(String, f64)>,
    /// the uniform parameters, as the plan's dispatch holds them: lavapipe folds uniform
    /// values into the code where that makes it much smaller (zeros would make most kernels
    /// an early return, code the plan's device never asks for)
    pub words: Vec<u32>,
    /// (binding, size, usage) of each buffer but the uniform
    pub buffers: Vec<(u32, u64, wgpu::BufferUsages)>,
    /// (binding, format, usage, whether width and height are powers of two) of each texture:
    /// the driver's kernel variant depends on the format and on those two facts
    pub views: Vec<(u32, wgpu::TextureFormat, wgpu::TextureUsages, [bool; 2])>,
}

impl WarmJob {
    /// What makes two jobs one kernel variant for the driver.
    pub fn variant(&self) -> String {
        let views: Vec<_> = self.views.iter().map(|v| (v.0, v.1, v.3)).collect();
        format!(
            "{}:{}:{:?}:{views:?}",
            self.module, self.entry, self.constants
        )
    }
}

/// The adapter and device settings to open helper devices with, and how many.
#[derive(Clone)]
pub(crate) struct Helpers {
    pub adapter: wgpu::Adapter,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    pub count: usize,
    pub checks: super::checks::ShaderChecks,
}

/// Helper devices: `$COMBICAM_COMPILE_THREADS` − 1, else one per spare core, at most 7.
pub(crate) fn helpers_wanted() -> Result<usize> {
    match std::env::var(COMPILE_THREADS_ENV) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n - 1),
            _ => Err(Error::Input(format!(
                "{COMPILE_THREADS_ENV}={v:?}: give how many devices may compile kernels at once, 1 or more (or leave it unset: one per core)"
            ))),
        },
        Err(_) => Ok(std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
            - 1),
    }
}

impl Helpers {
    /// How many helpers `jobs` jobs are worth (one job at least for this device) and the
    /// process's memory allows: each compiles as much at once as the plan's device
    /// (`host::DRIVER_HEADROOM`, which a software driver crashes without).
    fn for_jobs(&self, jobs: usize) -> usize {
        let memory = super::host::memory_left().map_or(usize::MAX, |left| {
            (left / super::host::DRIVER_HEADROOM) as usize
        });
        self.count
            .min(jobs.saturating_sub(1))
            .min(memory.saturating_sub(1))
    }
}

impl Gpu {
    /// Generate the code of `jobs` on every core: helper devices take jobs from a shared
    /// counter, and so does this thread, running `own(i)` (job i's first dispatch on this
    /// device, alone). Returns when every job was taken and done.
    pub(crate) fn warm_in_parallel(&self, jobs: &[WarmJob], own: &dyn Fn(usize)) {
        let Some(helpers) = &self.helpers else {
            return;
        };
        let n = helpers.for_jobs(jobs.len());
        if n == 0 {
            return;
        }
        let next = Queue::new(jobs.len());
        std::thread::scope(|s| {
            // a helper whose thread cannot start (a memory limit, a thread quota) leaves its
            // jobs to the others and to this thread, as `workers::run` does
            let handles: Vec<_> = (0..n)
                .map_while(|_| {
                    std::thread::Builder::new()
                        .spawn_scoped(s, || helper(helpers, jobs, &next))
                        .ok()
                })
                .collect();
            while let Some(i) = next.take() {
                own(i);
            }
            for h in handles {
                // a helper that panicked only leaves its jobs to this device
                let _ = h.join();
            }
        });
    }
}

/// One helper device: open it, then make and dispatch jobs until none is left.
fn helper(h: &Helpers, jobs: &[WarmJob], next: &Queue) {
    let Ok((device, queue)) =
        pollster::block_on(h.adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("combicam-gpu warm-up helper"),
            required_features: h.features,
            required_limits: h.limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
    else {
        return;
    };
    // its errors are its own: they stop nothing but its own jobs
    device.on_uncaptured_error(std::sync::Arc::new(|_| {}));
    let mut modules = std::collections::HashMap::new();
    while let Some(i) = next.take() {
        let job = &jobs[i];
        let module = modules
            .entry(job.module.clone())
            .or_insert_with(|| super::checks::module(&device, &job.module, &job.text, h.checks));
        dispatch_empty(&device, &queue, module, job);
    }
}

/// Make `job`'s pipeline on `device`, bind dummies of its bindings' kinds and dispatch it
/// with no workgroups, then wait.
fn dispatch_empty(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    module: &wgpu::ShaderModule,
    job: &WarmJob,
) {
    let constants: Vec<(&str, f64)> = job
        .constants
        .iter()
        .map(|(n, v)| (n.as_str(), *v))
        .collect();
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&job.entry),
        layout: None,
        module,
        entry_point: Some(&job.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let buffer = |size: u64, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            // the binding's minimum size is at most its real size; past 64 KiB no kernel of
            // ours needs more, and nothing is read
            size: size.clamp(16, 1 << 16).next_multiple_of(16),
            usage,
            mapped_at_creation: false,
        })
    };
    let uniform = buffer(
        4 * job.words.len() as u64,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    );
    queue.write_buffer(&uniform, 0, bytemuck::cast_slice(&job.words));
    let mut buffers = vec![(0, uniform)];
    for &(b, size, usage) in &job.buffers {
        let kind = usage & (wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM);
        buffers.push((b, buffer(size, kind)));
    }
    let views: Vec<(u32, wgpu::TextureView)> = job
        .views
        .iter()
        .map(|&(b, format, usage, pot)| {
            // 1 is a power of two and 3 is not: the driver's variant sees the same facts
            let side = |p: bool| if p { 1 } else { 3 };
            let t = device.create_texture(&wgpu::TextureDescriptor {
                label: None,
                size: wgpu::Extent3d {
                    width: side(pot[0]),
                    height: side(pot[1]),
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage,
                view_formats: &[],
            });
            (b, t.create_view(&Default::default()))
        })
        .collect();
    let mut entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|(b, buf)| wgpu::BindGroupEntry {
            binding: *b,
            resource: buf.as_entire_binding(),
        })
        .collect();
    entries.extend(views.iter().map(|(b, v)| wgpu::BindGroupEntry {
        binding: *b,
        resource: wgpu::BindingResource::TextureView(v),
    }));
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(0, 0, 0);
    }
    queue.submit([enc.finish()]);
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
}
