//! The head's Hessian-vector product h = ∂(Σ g)/∂A with g = ∂p_c/∂A at the last block's
//! output A: what the official repository's Grad-CAM++ needs (shaders/hvp.wgsl has the
//! derivation). GPU launchers for its three kernels; the classifier's and the head conv's
//! products reuse `head` and `gemm`. The CPU reference of the whole product is
//! `model::cpu::head_hvp`, beside the head it differentiates.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{grid_1d, grid_items},
    words,
};
use crate::ops::Act;

crate::wgsl_params! {
    /// shaders/hvp.wgsl's `Params`
    pub struct HvpParams for "hvp" { rows: u32, len: u32, n: u32, _p: u32 }
}

/// ḟ[k] = w1[k]·f[k], in place (f holds mean_p act'(z) from `reduce::rows`).
pub fn fdot(gpu: &Gpu, label: &str, k: usize, f: &wgpu::Buffer, w1: &wgpu::Buffer) -> Dispatch {
    let params = HvpParams {
        rows: k as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "hvp",
        entry: "fdot",
        params: words(&params),
        bindings: &[(1, Some(f)), (2, Some(w1))],
        groups: grid_1d((k as u32).div_ceil(64)),
        ..Default::default()
    });
    d.flops = k as f64;
    d.bytes = 12.0 * k as f64;
    d
}

/// δ̇ = ṗ_c(e_c − p) − p_c·ṗ with ṗ = p ⊙ (l̇ − p·l̇), c = info[2]; one workgroup.
pub fn jvp_dlogits(
    gpu: &Gpu,
    label: &str,
    n: usize,
    ldot: &wgpu::Buffer,
    probs: &wgpu::Buffer,
    info: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Dispatch {
    let params = HvpParams {
        n: n as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "hvp",
        entry: "jvp_dlogits",
        params: words(&params),
        bindings: &[
            (1, Some(ldot)),
            (3, Some(probs)),
            (4, Some(info)),
            (5, Some(out)),
        ],
        groups: [1, 1, 1],
        ..Default::default()
    });
    d.flops = 8.0 * n as f64;
    d.bytes = 12.0 * n as f64;
    d
}

/// The head pool's second-order gradient: dż (K, P) from z, ḋf, df and w1.
pub struct PoolHvpArgs<'a> {
    pub k: usize,
    pub p: usize,
    pub z: &'a wgpu::Buffer,
    pub w1: &'a wgpu::Buffer,
    pub dfdot: &'a wgpu::Buffer,
    pub df: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// dż[k, p] = (ḋf[k]·act'(z) + df[k]·act''(z)·w1[k]) / P
pub fn pool_hvp(gpu: &Gpu, label: &str, act: Act, a: &PoolHvpArgs) -> Dispatch {
    let params = HvpParams {
        rows: a.k as u32,
        len: a.p as u32,
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "hvp",
        entry: "pool_hvp",
        constants: &[act.constant()],
        params: words(&params),
        bindings: &[
            (1, Some(a.z)),
            (2, Some(a.w1)),
            (5, Some(a.out)),
            (6, Some(a.dfdot)),
            (7, Some(a.df)),
        ],
        groups: grid_items(a.k * a.p),
        ..Default::default()
    });
    d.flops = 12.0 * (a.k * a.p) as f64;
    d.bytes = 8.0 * (a.k * a.p) as f64;
    d
}
