//! Weights: a tensor source (`source`, `checkpoint`) or the deterministic test formula
//! (`formula`), in the visloc, efficientnet_pytorch or timm key layout (`keys`, `detect`),
//! checked against the architecture, converted to f32, with BN folded into the
//! convolutions (`load`) into the network (`network`).

pub mod checkpoint;
mod detect;
mod formula;
mod keys;
mod load;
mod network;
mod source;

pub use detect::detect_layout;
pub use detect::{LoadOptions, parse_arch};
pub use formula::{Formula, arch_name, formula, formula_for, formula_with_retrieval};
pub use keys::{Layout, expected};
pub use load::{
    B_IMAGE_SIZE, BUILTIN_NAME, builtin, default_preprocessing, imagenet_labels, load, load_file,
    load_paths, load_with,
};
pub use network::{BlockWeights, Classifier, Conv, HeadKind, Weights};
pub use source::{
    RawTensor, SafetensorsFile, TensorSource, Tensors, read_safetensors, serialize_safetensors,
};
