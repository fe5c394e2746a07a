//! combicam-gpu: Combi-CAM explanations of EfficientNet geolocation and ImageNet models,
//! with the forward and backward passes as WGSL compute shaders on wgpu.
//!
//! Layering, each layer using only those below it: the binary (main.rs, commands/) → `app`
//! (one image's run, folders, metrics, writers, bench) → `model` (weights, the plan) and
//! `preprocess` → `cam` (the CAM math a plan records) → `ops` (kernels and their CPU
//! references) → `gpu`.

pub mod app;
pub mod cam;
pub mod error;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod preprocess;

pub use error::{Error, Result};
