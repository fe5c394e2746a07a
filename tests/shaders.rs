//! Every WGSL file parses and validates with naga (the same front end wgpu uses).

use combicam_gpu::gpu::WgslParams;
use combicam_gpu::gpu::pipelines::{INCLUDES, PRELUDE, SHADERS, image_reads, shader_source};
use combicam_gpu::ops::{conv, depthwise, gemm, head};

fn validate(name: &str, src: &str) {
    validate_with(name, src, naga::valid::Capabilities::default());
}

/// `validate` with `caps` allowed; with `SUBGROUP`, every subgroup operation in compute shaders.
fn validate_with(name: &str, src: &str, caps: naga::valid::Capabilities) {
    use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags};
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let mut v = naga::valid::Validator::new(ValidationFlags::all(), caps);
    if caps.contains(Capabilities::SUBGROUP) {
        v.subgroup_stages(ShaderStages::COMPUTE)
            .subgroup_operations(SubgroupOperationSet::all());
    }
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
    // the helpers of shaders/include/, each in the table and spliced somewhere
    let mut includes: Vec<String> = std::fs::read_dir(dir.join("include"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    includes.sort();
    let mut table_inc: Vec<String> = INCLUDES.iter().map(|(n, _)| n.to_string()).collect();
    table_inc.sort();
    assert_eq!(
        includes, table_inc,
        "every shaders/include/*.wgsl must be in INCLUDES"
    );
    // each spliced by a shader's `//@include` line or, for a subgroup form's code (which
    // cannot sit in a shader every adapter compiles), by the generated source that uses it
    let generated = gemm::subgroup_source();
    for (inc, text) in INCLUDES {
        let marker = format!("//@include {inc}");
        assert!(
            SHADERS.iter().any(|(_, body)| body.contains(&marker)) || generated.contains(text),
            "include {inc} is used by no shader"
        );
    }
    for name in table {
        validate(
            &format!("{name}.wgsl (after the prelude)"),
            &shader_source(&name),
        );
    }
}

#[test]
fn generated_conv_shaders_validate() {
    for (k, s) in [(3, 2), (3, 1), (5, 2), (1, 1)] {
        validate(&format!("conv k{k} s{s}"), &conv::source(k, s));
    }
}

/// The subgroup forms of the CPU-shaped GEMM and head (`gemm::Variant::RegsSubgroup`,
/// `head::Form::RowsSubgroup`), with subgroup operations allowed, whatever the test adapter has.
#[test]
fn generated_subgroup_shaders_validate() {
    let caps = naga::valid::Capabilities::SUBGROUP;
    validate_with("gemm+subgroup8", &gemm::subgroup_source(), caps);
    validate_with("head+subgroup8", &head::subgroup_source(), caps);
    // the CPU-shaped kernels' storage-texture reads (`Gpu::image_reads`), with and without
    // subgroups
    let sources = [
        (
            "gemm+subgroup8+image",
            gemm::subgroup_source(),
            &gemm::REGS_TEXTURES[..],
        ),
        ("gemm+image", shader_source("gemm"), &gemm::REGS_TEXTURES),
        ("head+subgroup8+image", head::subgroup_source(), &["w"]),
        ("head+image", shader_source("head"), &["w"]),
    ];
    for (key, text, textures) in sources {
        validate_with(key, &image_reads(&text, textures), caps);
    }
    for (k, s) in [(3, 2), (3, 1)] {
        let key = format!("conv_k{k}s{s}+image");
        validate_with(&key, &image_reads(&conv::source(k, s), &["wt"]), caps);
    }
}

/// The depthwise kernels generated from the template, for every EfficientNet shape and more.
#[test]
fn generated_depthwise_shaders_validate() {
    // (k, s): what the models use, then the edges of what the generator handles (the
    // paddings are uniforms, so one module serves every padding)
    for (k, s) in [(3, 1), (3, 2), (5, 1), (5, 2), (1, 1), (7, 2), (4, 4)] {
        let src = depthwise::source(k, s);
        if std::env::var_os("COMBICAM_DUMP_DW").is_some() {
            std::fs::write(std::env::temp_dir().join(format!("dw_k{k}s{s}.wgsl")), &src).unwrap();
        }
        validate(&format!("depthwise k{k} s{s}"), &src);
    }
}

/// (name, byte offset) of every field of `struct Params` in a shader, and its size, as naga
/// lays it out (what the GPU reads).
fn wgsl_params(shader: &str) -> Option<(Vec<(String, usize)>, usize)> {
    let src = shader_source(shader);
    let module = naga::front::wgsl::parse_str(&src).unwrap();
    module
        .types
        .iter()
        .find_map(|(_, t)| match (&t.name, &t.inner) {
            (Some(n), naga::TypeInner::Struct { members, span }) if n == "Params" => Some((
                members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
                    .collect(),
                *span as usize,
            )),
            _ => None,
        })
}

/// One mirror against its WGSL: the same fields in the same order at the same offsets, the
/// same size. Returns the shader's name.
fn mirror<P: WgslParams>() -> &'static str {
    let (fields, size) = wgsl_params(P::SHADER)
        .unwrap_or_else(|| panic!("shaders/{}.wgsl has no struct Params", P::SHADER));
    let ours: Vec<(String, usize)> = P::fields()
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
    assert_eq!(
        ours,
        fields,
        "{}: the Rust mirror's (field, offset) differ from the WGSL struct Params",
        P::SHADER
    );
    assert_eq!(
        std::mem::size_of::<P>(),
        size,
        "{}: size of Params",
        P::SHADER
    );
    println!(
        "{:<16} Params: {} fields, {size} bytes, offsets agree",
        P::SHADER,
        fields.len()
    );
    P::SHADER
}

#[test]
fn every_params_struct_mirrors_its_wgsl() {
    use combicam_gpu::cam::{channel, eigen, elementwise, fullgrad, fusion};
    use combicam_gpu::ops::{gemm, head, hvp, masked, reduce, retrieval, se};
    let mut covered = vec![
        mirror::<channel::CamChannelParams>(),
        mirror::<eigen::CamEigenParams>(),
        mirror::<elementwise::CamElementwiseParams>(),
        mirror::<fullgrad::CamFullgradParams>(),
        mirror::<fusion::CamFusionParams>(),
        mirror::<conv::ConvParams>(),
        mirror::<depthwise::DepthwiseParams>(),
        mirror::<gemm::GemmParams>(),
        mirror::<head::HeadParams>(),
        mirror::<hvp::HvpParams>(),
        mirror::<masked::MaskedParams>(),
        mirror::<reduce::ReduceParams>(),
        mirror::<retrieval::RetrievalParams>(),
        mirror::<se::SeParams>(),
    ];
    covered.sort();
    // every shader with a `struct Params` has its mirror, once
    let mut with_params: Vec<&str> = SHADERS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| wgsl_params(n).is_some())
        .collect();
    with_params.sort();
    assert_eq!(
        covered, with_params,
        "shaders with a struct Params, and their mirrors"
    );
}
