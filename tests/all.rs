//! The one integration-test binary. Needs a GPU adapter (software Vulkan is fine): see README.

mod checkpoint; // .pt files torch wrote, hostile ones, CERTH's folder layout
mod cli;
mod common; // the shared device, random tensors, loud comparisons
mod model; // whole model: GPU vs CPU model (B0, by block), vs PyTorch golden files (B0, B4, timm), finite differences
mod ops; // every kernel against its CPU reference, on awkward shapes
mod preprocess; // decoding and torchvision Resize(300), bit-exact against PIL; bad images
mod render; // JET colormap against OpenCV, overlay, atomic writes
mod shaders; // naga validates every WGSL file
mod weights; // the test formula, layouts, dtypes, bad weights files // the command line end to end, bad inputs
