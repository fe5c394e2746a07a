//! The one integration-test binary. Needs a GPU adapter (software Vulkan is fine): see README.

mod common; // the shared device, random tensors, loud comparisons
mod shaders; // naga validates every WGSL file
mod ops; // every kernel against its CPU reference, on awkward shapes
