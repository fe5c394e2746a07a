//! GPU context: adapter choice, requested limits, the device and queue. The one device seam.

pub mod buffers;
pub mod checks;
pub mod host;
pub mod params;
pub mod pipelines;
pub mod recycle;
mod shader_text;
mod warm;
pub mod workers;

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

pub use buffers::GpuBuf;
pub use params::{WgslParams, words};
pub use pipelines::{Dispatch, DispatchDesc, PipelineCache};
pub use recycle::{RecycleStats, Recycler};

/// What we tell users about an adapter.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

/// `AdapterSummary::device_type` of a CPU adapter (lavapipe, llvmpipe, WARP).
const CPU_TYPE: &str = "CPU (software)";

impl AdapterSummary {
    fn from_info(index: usize, info: &wgpu::AdapterInfo) -> Self {
        let device_type = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete GPU",
            wgpu::DeviceType::IntegratedGpu => "integrated GPU",
            wgpu::DeviceType::VirtualGpu => "virtual GPU",
            wgpu::DeviceType::Cpu => CPU_TYPE,
            wgpu::DeviceType::Other => "other",
        };
        AdapterSummary {
            index,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: device_type.to_string(),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }

    /// One line: "llvmpipe (LLVM 15.0.6, 256 bits) · Vulkan · CPU (software)".
    pub fn line(&self) -> String {
        format!("{} · {} · {}", self.name, self.backend, self.device_type)
    }
}

/// Environment variable that picks the adapter by index (see `combicam-gpu devices`).
pub const DEVICE_ENV: &str = "COMBICAM_DEVICE";
/// `cpu` or `gpu`: which kernel variants to use, whatever the adapter is.
pub const KERNELS_ENV: &str = "COMBICAM_KERNELS";
/// How many devices generate kernel code at once on a CPU adapter (default: one per core, at
/// most 8; 1: the plan's own device alone). See `warm`.
pub const COMPILE_THREADS_ENV: &str = "COMBICAM_COMPILE_THREADS";
/// `off`: leave subgroup operations unused even where the device has subgroups of 8 (see
/// `Gpu::subgroup8`).
pub const SUBGROUPS_ENV: &str = "COMBICAM_SUBGROUPS";

/// `off`: keep the GPU-shaped long-K GEMM at four K groups even where the device allows eight
/// (see `Gpu::slim_wide`).
pub const SLIM_WIDE_ENV: &str = "COMBICAM_SLIM_WIDE";

/// The workgroup memory the wide long-K GEMM needs (`Gpu::slim_wide`), in bytes.
const SLIM_WIDE_STORAGE: u32 = 32768;

/// Whether the switch `$name` is on: unset (on) or `off`; any other value is an error whose
/// fix says what leaving it unset does (`unset_does`).
fn switch_on(name: &str, unset_does: &str) -> Result<bool> {
    match std::env::var(name).as_deref() {
        Ok("off") => Ok(false),
        Ok(v) => Err(Error::Input(format!(
            "{name}={v:?}: use `off` (or leave it unset to {unset_does})"
        ))),
        Err(_) => Ok(true),
    }
}

/// Whether to ask `adapter` for subgroups: it has them, in sizes of exactly 8 (one AVX2 SIMD
/// group on lavapipe), and `$COMBICAM_SUBGROUPS` is not `off`.
fn subgroups_of_8(adapter: &wgpu::Adapter) -> Result<bool> {
    if !switch_on(SUBGROUPS_ENV, "use subgroups where the device has them")? {
        return Ok(false);
    }
    let info = adapter.get_info();
    Ok(adapter.features().contains(wgpu::Features::SUBGROUP)
        && info.subgroup_min_size == 8
        && info.subgroup_max_size == 8)
}

const NO_ADAPTER_HELP: &str = "no GPU adapter found (Vulkan, Metal or DX12); install a GPU driver, \
or on Linux without a GPU install Mesa's software Vulkan: `apt-get install mesa-vulkan-drivers`";

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    }
    wgpu::Instance::new(desc)
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// All adapters, in the order `--device N` indexes them.
pub fn adapters() -> Vec<(AdapterSummary, wgpu::Adapter)> {
    let inst = instance();
    let list = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    let mut list: Vec<_> = list
        .into_iter()
        .filter(|a| a.get_info().backend != wgpu::Backend::Noop)
        .collect();
    list.sort_by_key(|a| rank(a.get_info().device_type));
    list.into_iter()
        .enumerate()
        .map(|(i, a)| (AdapterSummary::from_info(i, &a.get_info()), a))
        .collect()
}

/// The device, its queue, what it is, and the pipeline cache.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub timestamps: bool,
    /// Kernels pick their CPU-shaped variants (texel-fed GEMM, packed inputs): true on a CPU
    /// (software) adapter such as lavapipe unless `$COMBICAM_KERNELS` says otherwise.
    pub cpu: bool,
    /// the run-time guards in its kernels (`$COMBICAM_SHADER_CHECKS`)
    pub checks: checks::ShaderChecks,
    /// The device has subgroups of exactly 8 invocations, asked for where the adapter offers
    /// them (`$COMBICAM_SUBGROUPS` not `off`). Only CPU-shaped kernels use them (the GEMM's
    /// `gemm::Variant::RegsSubgroup`, the head's `head::Form::RowsSubgroup`), so no subgroup
    /// code runs on a GPU, where it is not tested, unless `$COMBICAM_KERNELS=cpu` asks for
    /// those kernels there.
    pub subgroup8: bool,
    /// The CPU-shaped kernels read their rgba32float textures (the GEMM's weights and packed
    /// input, the classifier's and the stem's weights) as read-only storage textures
    /// (`pipelines::image_reads`), where the adapter allows it: on lavapipe the same texels
    /// come faster so (2026-12-05, B4 at 300×450: its GEMMs 13–25%, the visloc classifier's
    /// forward 2× and its gradient 1.5×, the whole explain 11%), for more code to generate on
    /// a first run (a small classifier keeps sampled reads: `head::IMAGE_MIN_WEIGHTS`). The
    /// GPU-shaped kernels keep sampled reads.
    pub image_reads: bool,
    /// The GPU-shaped GEMM may take its wide long-K form (`gemm::Variant::SlimWide`: eight
    /// groups of 64 invocations, 32 KiB of workgroup memory): the device allows both, and
    /// `$COMBICAM_SLIM_WIDE` is not `off`.
    pub slim_wide: bool,
    pub pipelines: PipelineCache,
    pub(crate) dummies: Vec<wgpu::Buffer>,
    /// where helper devices generate kernel code on spare cores (CPU adapters; `warm`)
    helpers: Option<warm::Helpers>,
    /// the plan being recorded, taking back the previous one's buffers (see `recycle`)
    pub(crate) recording:
        Mutex<std::collections::HashMap<std::thread::ThreadId, recycle::Recording>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Gpu {
    /// Open adapter `index` (or `$COMBICAM_DEVICE`, or the best one: discrete > integrated > CPU).
    pub fn new(index: Option<usize>) -> Result<Gpu> {
        let index = match index {
            Some(i) => Some(i),
            None => match std::env::var(DEVICE_ENV) {
                Ok(v) => Some(v.trim().parse::<usize>().map_err(|_| {
                    Error::Input(format!("{DEVICE_ENV}={v:?} is not an adapter index; run `combicam-gpu devices` to list them"))
                })?),
                Err(_) => None,
            },
        };
        let mut list = adapters();
        if list.is_empty() {
            return Err(Error::Gpu(NO_ADAPTER_HELP.into()));
        }
        let pick = index.unwrap_or(0);
        if pick >= list.len() {
            return Err(Error::Input(format!(
                "adapter {pick} does not exist ({} found); run `combicam-gpu devices` to list them",
                list.len()
            )));
        }
        let (summary, adapter) = list.swap_remove(pick);
        Self::from_adapter(summary, adapter)
    }

    fn from_adapter(summary: AdapterSummary, adapter: wgpu::Adapter) -> Result<Gpu> {
        let cpu = match std::env::var(KERNELS_ENV).as_deref() {
            Ok("cpu") => true,
            Ok("gpu") => false,
            Ok(v) => {
                return Err(Error::Input(format!(
                    "{KERNELS_ENV}={v:?}: use `cpu` or `gpu` (or leave it unset to follow the adapter)"
                )));
            }
            Err(_) => adapter.get_info().device_type == wgpu::DeviceType::Cpu,
        };
        let compile_helpers = warm::helpers_wanted()?;
        let checks = checks::ShaderChecks::from_env()?;
        let subgroup8 = subgroups_of_8(&adapter)?;
        let image_reads = cpu && {
            let f = adapter.get_texture_format_features(wgpu::TextureFormat::Rgba32Float);
            f.allowed_usages
                .contains(wgpu::TextureUsages::STORAGE_BINDING)
                && f.flags
                    .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY)
        };
        let have = adapter.limits();
        // WebGPU's guaranteed limits, raised only where we need more and the adapter has it.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
            max_buffer_size: have.max_buffer_size,
            // weight matrices and the GEMM scratch live in 2-D textures
            max_texture_dimension_2d: have.max_texture_dimension_2d,
            max_storage_buffers_per_shader_stage: have.max_storage_buffers_per_shader_stage.min(12),
            // a one-workgroup kernel takes up to 1,024 invocations (`Gpu::wide_workgroup`)
            max_compute_invocations_per_workgroup: have
                .max_compute_invocations_per_workgroup
                .min(1024),
            max_compute_workgroup_size_x: have.max_compute_workgroup_size_x.min(1024),
            // the wide long-K GEMM's two tiles (`slim_wide`)
            max_compute_workgroup_storage_size: have
                .max_compute_workgroup_storage_size
                .clamp(16384, SLIM_WIDE_STORAGE),
            ..Default::default()
        };
        let slim_wide = switch_on(
            SLIM_WIDE_ENV,
            "use the wide GEMM where the adapter allows it",
        )? && limits.max_compute_workgroup_storage_size >= SLIM_WIDE_STORAGE
            && limits.max_compute_invocations_per_workgroup >= 512;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        if subgroup8 {
            features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("combicam-gpu"),
            required_features: features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| {
            // a software driver refuses a device when the process's memory runs short: say so
            // as the check below would (its device and kernels need about twice the headroom)
            if summary.device_type == CPU_TYPE
                && let Err(oom) =
                    host::check_left(2 * host::DRIVER_HEADROOM, "to make its device and kernels")
            {
                return oom;
            }
            Error::Gpu(format!(
                "adapter {} refused a device: {e}; try another with --device N",
                summary.line()
            ))
        })?;
        if summary.device_type == CPU_TYPE {
            host::check_left(host::DRIVER_HEADROOM, "to compile its kernels")?;
        }
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        // One placeholder per binding slot, so two unused writable slots never share a buffer.
        let dummies = (0..16)
            .map(|_| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("unused"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let helpers = (summary.device_type == CPU_TYPE).then(|| warm::Helpers {
            adapter: adapter.clone(),
            features,
            limits: limits.clone(),
            count: compile_helpers,
            checks,
        });
        Ok(Gpu {
            helpers,
            device,
            queue,
            adapter: summary,
            limits,
            timestamps,
            cpu,
            checks,
            subgroup8,
            image_reads,
            slim_wide,
            pipelines: PipelineCache::default(),
            dummies,
            recording: Mutex::default(),
            errors,
        })
    }

    /// Whether the adapter's buffers are this process's memory (a CPU adapter), whichever
    /// kernels run on it.
    pub fn host_memory(&self) -> bool {
        self.adapter.device_type == CPU_TYPE
    }

    /// Whether kernels take their CPU-shaped variants (see `cpu`).
    pub fn is_cpu(&self) -> bool {
        self.cpu
    }

    /// The usages of a texture that kernels read: sampled, and storage too where the
    /// CPU-shaped kernels read it so (`image_reads`).
    pub fn read_usage(&self) -> wgpu::TextureUsages {
        match self.image_reads {
            true => wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
            false => wgpu::TextureUsages::TEXTURE_BINDING,
        }
    }

    /// Whether the CPU-shaped kernels take their subgroup forms (`subgroup8`): the one place
    /// that keeps subgroups to the CPU-shaped kernels.
    pub fn cpu_subgroups(&self) -> bool {
        self.cpu && self.subgroup8
    }

    /// Invocations in the workgroup of a kernel that does a whole task in one workgroup (the
    /// SE, `from_parts`): 1,024 on GPUs whose limits allow it, where the workgroup's chains of
    /// dependent loads are then four times shorter; 256 with the CPU-shaped kernels (lavapipe
    /// runs a workgroup's invocations one SIMD group after another).
    pub fn wide_workgroup(&self) -> u32 {
        let l = &self.limits;
        if !self.cpu
            && l.max_compute_invocations_per_workgroup >= 1024
            && l.max_compute_workgroup_size_x >= 1024
        {
            1024
        } else {
            256
        }
    }

    /// Largest storage binding, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Turn any validation error raised so far into an `Error` (wgpu reports them asynchronously).
    pub fn check_errors(&self, what: &str) -> Result<()> {
        let mut errs = self.errors.lock().unwrap();
        if errs.is_empty() {
            return Ok(());
        }
        let first = errs.remove(0).replace('\n', " ");
        errs.clear();
        Err(Error::Gpu(format!("GPU error during {what}: {first}")))
    }

    /// Block until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("GPU wait failed: {e}")))?;
        Ok(())
    }
}
