//! Op families. Each module holds the GPU launcher(s) and `mod cpu`, the plain-loop
//! reference (forward and data gradient) that the WGSL kernels are checked against.

pub mod conv;
pub mod depthwise;
pub mod gemm;
pub mod head;
pub mod hvp;
pub mod masked;
pub mod pad;
pub mod reduce;
pub mod resample;
pub mod retrieval;
pub mod se;
pub mod tolerance;
pub(crate) mod window;

pub use tolerance::Tolerance;

/// The activation of a network's convs (stem, expand, depthwise, head); the kernels read it
/// as the WGSL override `ACT` of shaders/prelude.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Act {
    /// x·sigmoid(x) (EfficientNet)
    Silu,
    /// min(max(x, 0), 6) (EfficientNet-Lite)
    Relu6,
}

impl Act {
    /// The value of the WGSL override `ACT`.
    pub fn code(self) -> u32 {
        match self {
            Act::Silu => 0,
            Act::Relu6 => 1,
        }
    }
    /// The pipeline constant that selects this activation.
    pub fn constant(self) -> (&'static str, f64) {
        ("ACT", self.code() as f64)
    }
    /// CPU reference of the activation.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Silu => silu(x),
            Act::Relu6 => x.clamp(0.0, 6.0),
        }
    }
    /// CPU reference of its second derivative (SiLU'' = σ(1 − σ)(2 + x(1 − 2σ)); ReLU6'' = 0).
    pub fn grad2(self, x: f32) -> f32 {
        match self {
            Act::Silu => {
                let s = sigmoid(x);
                s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s))
            }
            Act::Relu6 => 0.0,
        }
    }
    /// CPU reference of its derivative; ReLU6's is 1 on 0 < x < 6, else 0 (as PyTorch's).
    pub fn grad(self, x: f32) -> f32 {
        match self {
            Act::Silu => dsilu(x),
            Act::Relu6 => {
                if x > 0.0 && x < 6.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

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
