//! Op families. Each module holds the GPU launcher(s) and `mod cpu`, the plain-loop
//! reference (forward and data gradient) that the WGSL kernels are checked against.

pub mod cam;
pub mod conv;
pub mod depthwise;
pub mod gemm;
pub mod head;
pub mod reduce;
pub mod se;
pub mod tolerance;

pub use tolerance::Tolerance;

/// SiLU and its derivative, shared by the CPU references.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn dsilu(x: f32) -> f32 {
    let s = sigmoid(x);
    s * (1.0 + x * (1.0 - s))
}
