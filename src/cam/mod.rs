//! Explanations. The CAM methods, one module per family, each with its GPU launchers and its
//! CPU reference (`channel`: a weight per channel; `elementwise`: a weight per element;
//! `fusion`: the rules that fuse blocks), `methods` (the catalogue), `phase` (the CAM phase
//! a plan records); then running the plan on images and writing what a researcher needs
//! (`render`: colormap and overlay; `explain`: PNG, JSON, raw safetensors). `scorecam` is made
//! of masked forward passes instead.

pub mod channel;
pub mod elementwise;
pub mod explain;
pub mod fusion;
pub mod methods;
pub mod phase;
pub mod render;
pub mod report;
pub mod runs;
pub mod scorecam;
