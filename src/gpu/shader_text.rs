//! The shader table: every WGSL file, the prelude joined in front and the shared helpers
//! spliced in, and the splicing of generated code into templates.

/// Shared WGSL functions (the activations), joined in front of every shader of the table.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// Every WGSL source, one file per op family (each is valid after [`PRELUDE`]).
pub const SHADERS: &[(&str, &str)] = &[
    ("gemm", include_str!("../../shaders/gemm.wgsl")),
    ("conv", include_str!("../../shaders/conv.wgsl")),
    ("depthwise", include_str!("../../shaders/depthwise.wgsl")),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("se", include_str!("../../shaders/se.wgsl")),
    ("head", include_str!("../../shaders/head.wgsl")),
    ("hvp", include_str!("../../shaders/hvp.wgsl")),
    (
        "cam_channel",
        include_str!("../../shaders/cam_channel.wgsl"),
    ),
    (
        "cam_elementwise",
        include_str!("../../shaders/cam_elementwise.wgsl"),
    ),
    ("cam_fusion", include_str!("../../shaders/cam_fusion.wgsl")),
    ("cam_eigen", include_str!("../../shaders/cam_eigen.wgsl")),
    (
        "cam_fullgrad",
        include_str!("../../shaders/cam_fullgrad.wgsl"),
    ),
    ("masked", include_str!("../../shaders/masked.wgsl")),
    ("retrieval", include_str!("../../shaders/retrieval.wgsl")),
];

/// The text of a shader of the table, after the prelude.
pub fn shader_source(name: &str) -> String {
    let body = SHADERS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no shader {name:?} in the table"))
        .1;
    format!("{PRELUDE}\n{}", with_includes(body))
}

/// Helpers written once and spliced where a shader says `//@include <name>`
/// (shaders/include/).
pub const INCLUDES: &[(&str, &str)] = &[
    (
        "resample",
        include_str!("../../shaders/include/resample.wgsl"),
    ),
    (
        "gemm_subgroup_store",
        include_str!("../../shaders/include/gemm_subgroup_store.wgsl"),
    ),
];

/// The text of the helper `name` of shaders/include/, for generated sources that splice it
/// themselves (a subgroup form's code cannot sit in a shader every adapter compiles).
pub fn include_text(name: &str) -> &'static str {
    INCLUDES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no include {name:?} in the table"))
        .1
}

/// `body` with every `//@include <name>` line replaced by that helper's text.
fn with_includes(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for line in body.split_inclusive('\n') {
        match line.trim_end().strip_prefix("//@include ") {
            Some(name) => {
                out.push_str(include_text(name.trim()));
                out.push('\n');
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Fill a template: every marker must occur, so a template edit that drops one fails loudly
/// instead of leaving the default in place.
pub fn splice(template: &str, parts: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (marker, text) in parts {
        assert!(
            s.contains(marker),
            "shader template lacks the marker {marker:?}"
        );
        s = s.replacen(marker, text, 1);
    }
    s
}

/// `text` with its sampled textures `names` (each `var NAME: texture_2d<f32>;`, rgba32float)
/// read as read-only storage textures instead: the declaration becomes
/// `texture_storage_2d<rgba32float, read>` and every `textureLoad(NAME, coords, 0)` drops its
/// mip level. The same texels, read by another path, which lavapipe runs faster
/// (`Gpu::image_reads`). Panics when a name is not declared so, or has a load of another form.
pub fn image_reads(text: &str, names: &[&str]) -> String {
    let mut s = text.to_string();
    for name in names {
        let sampled = format!("var {name}: texture_2d<f32>;");
        assert!(
            s.contains(&sampled),
            "image_reads: no `{sampled}` in the shader"
        );
        s = s.replace(
            &sampled,
            &format!("var {name}: texture_storage_2d<rgba32float, read>;"),
        );
        let call = format!("textureLoad({name}, ");
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        let mut loads = 0;
        while let Some(at) = rest.find(&call) {
            let args = at + call.len();
            out.push_str(&rest[..args]);
            // the call's closing parenthesis
            let mut depth = 1;
            let end = (rest[args..].char_indices())
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(i, _)| args + i)
                .unwrap_or_else(|| panic!("image_reads: `{call}` is not closed"));
            let coords = rest[args..end].strip_suffix(", 0").unwrap_or_else(|| {
                panic!(
                    "image_reads: `{call}{}` does not end with mip level 0",
                    &rest[args..end]
                )
            });
            out.push_str(coords);
            rest = &rest[end..];
            loads += 1;
        }
        out.push_str(rest);
        assert!(loads > 0, "image_reads: `{name}` is never loaded");
        s = out;
    }
    s
}
