//! The head's Hessian-vector products at the last block's output A, H·t along t = 1 (h =
//! ∂(Σ g)/∂A with g = ∂p_c/∂A: what the official repository's Grad-CAM++ needs) or t = A
//! (ShapleyCAM) (shaders/hvp.wgsl has the derivation). GPU launchers for its kernels; the
//! classifier's and the head conv's products reuse `head` and `gemm`. The CPU reference of
//! the whole product is `model::cpu::head_hvp`, beside the head it differentiates.

use crate::gpu::{
    Dispatch, DispatchDesc, Gpu,
    pipelines::{grid_1d, grid_items},
    words,
};
use crate::ops::Act;

crate::wgsl_params! {
    /// shaders/hvp.wgsl's `Params`
    pub struct HvpParams for "hvp" { rows: u32, len: u32, n: u32, dir: u32 }
}

/// The direction t of a Hessian-vector product H·t.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// t = 1 everywhere (the official Grad-CAM++)
    Ones,
    /// t = A, the block output itself (ShapleyCAM)
    Activations,
}

impl Direction {
    fn code(self) -> u32 {
        match self {
            Direction::Ones => 0,
            Direction::Activations => 1,
        }
    }
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

/// Direction A: ḟ[k] = Σ_p act'(z[k, p])·(z[k, p] − b[k]) / P, z (K, P), into `out` (K).
pub fn fdot_act(
    gpu: &Gpu,
    label: &str,
    act: Act,
    (k, p): (usize, usize),
    (z, b, out): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
) -> Dispatch {
    let params = HvpParams {
        rows: k as u32,
        len: p as u32,
        dir: Direction::Activations.code(),
        ..Default::default()
    };
    let mut d = gpu.dispatch(&DispatchDesc {
        label,
        family: "hvp",
        entry: "fdot_act",
        constants: &[act.constant()],
        params: words(&params),
        bindings: &[(1, Some(z)), (2, Some(b)), (5, Some(out))],
        groups: grid_1d((k as u32).div_ceil(64)),
        ..Default::default()
    });
    d.flops = 4.0 * (k * p) as f64;
    d.bytes = 4.0 * (k * p) as f64;
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

/// The head pool's second-order gradient: dż (K, P) from z, ḋf, df and the direction.
pub struct PoolHvpArgs<'a> {
    pub k: usize,
    pub p: usize,
    pub z: &'a wgpu::Buffer,
    pub dir: Direction,
    /// w1 = W·1 (direction 1) or the head conv's bias (direction A)
    pub tan: &'a wgpu::Buffer,
    pub dfdot: &'a wgpu::Buffer,
    pub df: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// dż[k, p] = (ḋf[k]·act'(z) + df[k]·act''(z)·ż[k, p]) / P
pub fn pool_hvp(gpu: &Gpu, label: &str, act: Act, a: &PoolHvpArgs) -> Dispatch {
    let params = HvpParams {
        rows: a.k as u32,
        len: a.p as u32,
        dir: a.dir.code(),
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
            (2, Some(a.tan)),
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
