//! Explanations: running the plan on images and writing what a researcher needs (render:
//! colormap and overlay; outputs: PNG, JSON, raw safetensors).

pub mod explain;
pub mod render;
