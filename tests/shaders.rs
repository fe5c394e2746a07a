//! Every WGSL file parses and validates with naga (the same front end wgpu uses).

use combicam_gpu::gpu::pipelines::{PRELUDE, SHADERS, shader_source};
use combicam_gpu::ops::{conv, depthwise};

fn validate(name: &str, src: &str) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    );
    v.validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    println!("{name:<40} OK");
}

#[test]
fn every_shader_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "prelude")
        .collect();
    files.sort();
    let mut table: Vec<String> = SHADERS.iter().map(|(n, _)| n.to_string()).collect();
    table.sort();
    assert_eq!(
        files, table,
        "every shaders/*.wgsl but the prelude must be in the shader table"
    );
    validate("prelude.wgsl", PRELUDE);
    for name in table {
        validate(
            &format!("{name}.wgsl (after the prelude)"),
            &shader_source(&name),
        );
    }
}

#[test]
fn generated_conv_shaders_validate() {
    for (k, s, cin) in [(3, 2, 3), (3, 1, 3), (5, 2, 2), (1, 1, 1)] {
        validate(
            &format!("conv k{k} s{s} cin {cin}"),
            &conv::source(k, s, cin),
        );
    }
}

/// The depthwise kernels generated from the template, for every EfficientNet shape and more.
#[test]
fn generated_depthwise_shaders_validate() {
    // (k, s, pad top, pad left): symmetric, then TF "SAME" pads
    for (k, s, pt, pl) in [
        (3, 1, 1, 1),
        (3, 2, 1, 1),
        (5, 1, 2, 2),
        (5, 2, 2, 2),
        (1, 1, 0, 0),
        (7, 2, 3, 3),
        (3, 4, 1, 1),
        (3, 2, 0, 1),
        (5, 2, 1, 2),
        (5, 2, 2, 1),
    ] {
        validate(
            &format!("depthwise k{k} s{s} pad {pt},{pl}"),
            &depthwise::source(k, s, pt, pl),
        );
    }
}
