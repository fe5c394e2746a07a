//! Shader table, the pipeline cache keyed by (shader, entry point, constants), and the
//! `Dispatch` type a plan is made of.

use super::Gpu;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Shared WGSL functions (the activations), joined in front of every shader of the table.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// Every WGSL source, one file per op family (each is valid after [`PRELUDE`]).
pub const SHADERS: &[(&str, &str)] = &[
    ("gemm", include_str!("../../shaders/gemm.wgsl")),
    ("conv", include_str!("../../shaders/conv.wgsl")),
    ("depthwise", include_str!("../../shaders/depthwise.wgsl")),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("se", include_str!("../../shaders/se.wgsl")),
    ("head", include_str!("../../shaders/head.wgsl")),
    ("hvp", include_str!("../../shaders/hvp.wgsl")),
    (
        "cam_channel",
        include_str!("../../shaders/cam_channel.wgsl"),
    ),
    (
        "cam_elementwise",
        include_str!("../../shaders/cam_elementwise.wgsl"),
    ),
    ("cam_fusion", include_str!("../../shaders/cam_fusion.wgsl")),
];

/// The text of a shader of the table, after the prelude.
pub fn shader_source(name: &str) -> String {
    let body = SHADERS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no shader {name:?} in the table"))
        .1;
    format!("{PRELUDE}\n{body}")
}

/// Fill a template: every marker must occur, so a template edit that drops one fails loudly
/// instead of leaving the default in place.
pub fn splice(template: &str, parts: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (marker, text) in parts {
        assert!(
            s.contains(marker),
            "shader template lacks the marker {marker:?}"
        );
        s = s.replacen(marker, text, 1);
    }
    s
}

#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
}

/// One recorded compute dispatch: made once when the plan is built, replayed per image.
pub struct Dispatch {
    pub label: String,
    /// Op family ("gemm", "depthwise", ...) for per-kernel timing.
    pub family: &'static str,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
    /// Exact floating-point operations and bytes moved, for GFLOP/s and GB/s.
    pub flops: f64,
    pub bytes: f64,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
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
}

impl Gpu {
    fn module(&self, src: Source) -> Arc<wgpu::ShaderModule> {
        let mut m = self.pipelines.modules.lock().unwrap();
        if let Some(module) = m.get(src.key()) {
            return module.clone();
        }
        let text: std::borrow::Cow<str> = match src {
            Source::Table(shader) => shader_source(shader).into(),
            Source::Generated { make, .. } => make().into(),
        };
        let module = Arc::new(
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(src.key()),
                    source: wgpu::ShaderSource::Wgsl(text),
                }),
        );
        m.insert(src.key().to_string(), module.clone());
        module
    }

    /// The pipeline for (shader, entry, constants), made once.
    pub fn pipeline(
        &self,
        shader: Source,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Arc<wgpu::ComputePipeline> {
        let key = format!("{}:{entry}:{constants:?}", shader.key());
        if let Some(p) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return p.clone();
        }
        let module = self.module(shader);
        let p = Arc::new(
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&key),
                    layout: None,
                    module: &module,
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

    /// Make a dispatch: a uniform buffer with `params`, a bind group with `bindings`
    /// (binding number, buffer; `None` binds a dummy for an unused optional input).
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch(
        &self,
        label: &str,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u32],
        bindings: &[(u32, Option<&wgpu::Buffer>)],
        groups: [u32; 3],
    ) -> Dispatch {
        self.dispatch_with_textures(
            label,
            shader,
            entry,
            constants,
            params,
            bindings,
            &[],
            groups,
        )
    }

    /// `dispatch`, plus textures bound as (binding number, view).
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_with_textures(
        &self,
        label: &str,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u32],
        bindings: &[(u32, Option<&wgpu::Buffer>)],
        textures: &[(u32, &wgpu::TextureView)],
        groups: [u32; 3],
    ) -> Dispatch {
        self.dispatch_from(
            label,
            shader,
            Source::Table(shader),
            entry,
            constants,
            params,
            bindings,
            textures,
            groups,
        )
    }

    /// The general form: `family` names the op family for timing, `source` the WGSL.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_from(
        &self,
        label: &str,
        family: &'static str,
        source: Source,
        entry: &str,
        constants: &[(&str, f64)],
        params: &[u32],
        bindings: &[(u32, Option<&wgpu::Buffer>)],
        textures: &[(u32, &wgpu::TextureView)],
        groups: [u32; 3],
    ) -> Dispatch {
        let pipeline = self.pipeline(source, entry, constants);
        let mut words = params.to_vec();
        while !words.len().is_multiple_of(4) || words.is_empty() {
            words.push(0);
        }
        let buffers: Vec<(u32, &wgpu::Buffer)> = bindings
            .iter()
            .map(|(b, buf)| (*b, buf.unwrap_or(&self.dummies[*b as usize])))
            .collect();
        let make = || {
            let ubuf = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(&words),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                });
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: ubuf.as_entire_binding(),
            }];
            for (b, buf) in &buffers {
                entries.push(wgpu::BindGroupEntry {
                    binding: *b,
                    resource: buf.as_entire_binding(),
                });
            }
            for (b, view) in textures {
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
        };
        // while a plan is recorded, the previous plan's bind group is taken back if it fits
        let bind_group = match self.pooled_bind_group(&pipeline, &buffers, textures, &words, &make)
        {
            Some(bg) => bg,
            None => make().1,
        };
        Dispatch {
            label: label.to_string(),
            family,
            pipeline,
            bind_group,
            groups,
            flops: 0.0,
            bytes: 0.0,
        }
    }

    /// Run dispatches now in one submission and wait (tests and one-off work).
    pub fn run_now(&self, ds: &[&Dispatch]) -> crate::error::Result<()> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in ds {
                d.record(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
        self.wait()?;
        self.check_errors(ds.first().map(|d| d.label.as_str()).unwrap_or("dispatch"))
    }
}

/// f32 as the u32 bits a uniform carries.
pub fn fbits(v: f32) -> u32 {
    v.to_bits()
}
