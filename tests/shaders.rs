//! Every WGSL file parses and validates with naga (the same front end wgpu uses).

use combicam_gpu::gpu::pipelines::SHADERS;

#[test]
fn every_shader_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        SHADERS.len(),
        "every shaders/*.wgsl must be in the shader table"
    );
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", f.display(), e.emit_to_string(&src)));
        let mut v = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        );
        v.validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", f.display(), e.emit_to_string(&src)));
        println!("{:<40} OK", f.file_name().unwrap().to_string_lossy());
    }
}
