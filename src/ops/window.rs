//! Generated WGSL for windows of consecutive floats read as vec4 chunks (the prelude's
//! `chunk_of` and `funnel`): on a CPU adapter each storage load is a loop over the SIMD lanes
//! whatever its width, so a run of floats costs what its chunks do. Used by the generated
//! depthwise and stem kernels.

/// `let {name} = chunk_of({start});`: where a window of consecutive floats from flat index
/// `start` (an i32 expression ≥ −8) begins, which `window` reads from (several tensors of one
/// shape share it).
pub(crate) fn chunk_at(f: &mut String, indent: &str, name: &str, start: &str) {
    *f += &format!("{indent}let {name} = chunk_of({start});\n");
}

/// The WGSL expression of each of `len` floats held in vec4 variables `{prefix}0`, `{prefix}1`, ….
pub(crate) fn floats(prefix: &str, len: usize) -> Vec<String> {
    (0..len)
        .map(|t| format!("{prefix}{}.{}", t / 4, ['x', 'y', 'z', 'w'][t % 4]))
        .collect()
}

/// `len` consecutive floats of a tensor bound as vec4 chunks (`chunk`, e.g. "x_chunk"), from
/// where the `chunk_at` variable `at` says: writes the chunk loads and their shifts under
/// names starting with `name` at `indent`, and returns the expression of each float.
pub(crate) fn window(
    f: &mut String,
    indent: &str,
    name: &str,
    chunk: &str,
    at: &str,
    len: usize,
) -> Vec<String> {
    // the chunks a window at any offset in its first chunk touches, and the shifted groups
    let (chunks, groups) = ((len + 3).div_ceil(4), len.div_ceil(4));
    for i in 0..chunks {
        *f += &format!("{indent}let {name}g{i} = {chunk}({at}.x + {i});\n");
    }
    for i in 0..groups {
        let next = (i + 1).min(chunks - 1);
        *f += &format!("{indent}let {name}h{i} = funnel({name}g{i}, {name}g{next}, {at}.y);\n");
    }
    floats(&format!("{name}h"), len)
}
