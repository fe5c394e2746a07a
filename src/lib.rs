//! combicam-gpu: Combi-CAM explanations of EfficientNet geolocation and ImageNet models,
//! with the forward and backward passes as WGSL compute shaders on wgpu.
//!
//! Layering: cli (main.rs) → cam / model → ops → gpu.

pub mod bench;
pub mod cam;
pub mod check;
pub mod engine;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod hub;
pub mod model;
pub mod ops;
pub mod preprocess;

pub use error::{Error, Result};
