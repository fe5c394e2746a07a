//! The one integration-test binary. Needs a GPU adapter (software Vulkan is fine): see README.

mod ablation; // AblationCAM: the trained Lite0 against pytorch-grad-cam, probability and logit
mod aug; // --aug-smooth: the augmented inputs, the trained Lite0 against pytorch-grad-cam's aug_smooth
mod batch; // the forward kernels over a batch of images, each image against the CPU reference
mod batch_backward; // the backward kernels over a batch of images, each image against the CPU reference
mod browser; // --report pages in headless Chromium: images load, no errors, no requests out
mod cam; // every CAM method and fusion rule against its CPU reference
mod checkpoint; // .pt files torch wrote, hostile ones, CERTH's folder layout
mod cli; // the command line end to end, bad inputs, the built-in model
mod common; // the shared device, random tensors, loud comparisons
mod eigen; // EigenCAM, EigenGradCAM and --eigen-smooth: kernels against the CPU, the trained Lite0 against pytorch-grad-cam
mod evaluate; // Score-CAM and the faithfulness metrics against PyTorch, the blur, explainer specs
// the binary's source, for its dry run (the CLI fuzz target's entry); `fuzz_entry` is the fuzz
// targets' entry points, which `fuzz` replays
#[allow(dead_code, unused_imports)]
#[path = "../src/main.rs"]
mod binary;
mod finer; // FinerCAM: the trained Lite0 against pytorch-grad-cam, with Grad-CAM in the same engine run
mod first_hour; // a new user's first runs: what the console says, --target labels, folder runs, tiny photos
mod fullgrad; // FullGrad: the stem's data gradient and the term kernel against the CPU, the trained Lite0 against pytorch-grad-cam
mod fuzz; // every fuzzer finding and kept corpus entry in fuzz/regressions/, through the targets' entry points
#[path = "../fuzz/entry.rs"]
mod fuzz_entry;
mod gemm; // the pointwise GEMM's kernels against the CPU reference; the subgroup form bit for bit against the plain one
mod head_forms; // the head's linear layer in each form against the CPU; the subgroup form bit for bit against the plain one
mod house; // the house rules from the source: imports run down the layers, no circles, short files and functions
mod hub; // fetch from a hub served on 127.0.0.1: cache layout, resume, hf:REPO
mod images; // a plan of several images at once against plans of one, bit for bit; what it refuses
mod masked; // masked copies: kernels against the CPU, batched passes against single ones, ablated block outputs
mod memory; // out of memory under prlimit: one-line errors, no crash, nothing written
mod model; // whole model: GPU vs CPU model by block (B0, Lite0, tf_b0), vs PyTorch goldens (B0, B4, timm, Lite0 random and trained), finite differences
mod ops; // every kernel against its CPU reference, on awkward shapes, both activations
mod plans; // a plan recorded again for a new size from the old one's memory: bit-exact, bounded
mod preprocess; // decoding (JPEG too) and torchvision Resize, bit-exact against PIL; bad images
mod python; // the Python package: its wheel built by maturin, its pytest suite
mod readme; // every example command of the README, run as written
mod render; // JET colormap against OpenCV, overlay, atomic writes
mod retrieval; // visloc's retrieval head and search within cell against the official pipeline
mod road; // ROAD against pytorch-grad-cam: the imputer and the probability changes, the imputer on awkward shapes
mod runs; // folder runs: recursive inputs, shards, the index
mod shaders; // naga validates every WGSL file
mod shapley; // ShapleyCAM: the trained Lite0 against pytorch-grad-cam at the last block, probability and logit
mod weights; // the test formula, layouts, dtypes, bad weights files
