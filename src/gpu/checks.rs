//! Which run-time guards naga writes into the kernels (`$COMBICAM_SHADER_CHECKS`).
//!
//! wgpu's default guards every kernel three ways: indices into arrays and textures are clamped
//! (buffers are left to the driver where it bounds them itself, as Vulkan's robust buffer
//! access does), every loop carries a hidden counter that breaks it after 2⁶⁴ turns, and every
//! integer division checks its divisor. Our kernels' loops are all bounded by their uniform
//! sizes and their divisors are sizes of one or more, so the last two guards only cost time in
//! the inner loops: on an H200 (2026-12-04, B4 at 300×450, one run with the `tiled` GEMM
//! alone) explain took 20.0 ms with them, 15.4 ms without (`bounds`, the default) and 15.0 ms
//! with no guards at all (`none`); in the next, with `slim` for K ≥ 192, 25.3, 13.3 and
//! 13.6 ms (`slim` suffered most from the counters). The default keeps the bounds checks,
//! which hold on every backend (Metal has no bounds of its own); `none` is for measuring.

use crate::error::{Error, Result};

/// `full`, `bounds` or `none` (see `ShaderChecks`).
pub const SHADER_CHECKS_ENV: &str = "COMBICAM_SHADER_CHECKS";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShaderChecks {
    /// wgpu's default: bounds, loop counters and division guards
    Full,
    /// bounds only: no loop counters, no division guards (our default)
    Bounds,
    /// none of them (buffers stay bounded where the driver bounds them)
    None,
}

impl ShaderChecks {
    pub fn from_env() -> Result<ShaderChecks> {
        match std::env::var(SHADER_CHECKS_ENV).as_deref() {
            Ok("full") => Ok(ShaderChecks::Full),
            Err(_) | Ok("bounds") => Ok(ShaderChecks::Bounds),
            Ok("none") => Ok(ShaderChecks::None),
            Ok(v) => Err(Error::Input(format!(
                "{SHADER_CHECKS_ENV}={v:?}: use `full`, `bounds` or `none` (or leave it unset: bounds)"
            ))),
        }
    }

    fn runtime(self) -> wgpu::ShaderRuntimeChecks {
        // SAFETY (Bounds, None): every loop in shaders/ is bounded by sizes the host sets (in
        // uniforms, pipeline constants, or tables it uploads: from_parts' rows, FinerCAM's
        // count, checked 1..=32 by the plan), with steps of 1 or more, and no integer
        // division there has a zero divisor (the sizes are 1 or more), which is what
        // leaving out the loop counters and division guards asks of the caller. With None,
        // indices into arrays and textures are not clamped either: the kernels' indices are
        // in range by construction, as their CPU reference tests check.
        let mut c = unsafe { wgpu::ShaderRuntimeChecks::all(false) };
        match self {
            ShaderChecks::Full => wgpu::ShaderRuntimeChecks::checked(),
            ShaderChecks::Bounds => {
                c.bounds_checks = true;
                c
            }
            ShaderChecks::None => c,
        }
    }
}

/// A shader module from WGSL `text` with `checks`.
pub(crate) fn module(
    device: &wgpu::Device,
    label: &str,
    text: &str,
    checks: ShaderChecks,
) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(text.into()),
    };
    match checks {
        ShaderChecks::Full => device.create_shader_module(desc),
        // SAFETY: see `ShaderChecks::runtime`
        _ => unsafe { device.create_shader_module_trusted(desc, checks.runtime()) },
    }
}
