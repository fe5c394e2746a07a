//! The EfficientNet model: configuration, weights, the GPU plan, the CPU reference model and
//! the geolocation head's post-processing.

pub mod config;
pub mod cpu;
pub mod detweights;
pub mod efficientnet;
pub mod geo;

pub mod pickle_depth;
pub mod plan;
pub mod retrieval;
pub mod search;
pub mod weights;
