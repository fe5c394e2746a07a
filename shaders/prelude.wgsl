// prelude.wgsl: functions shared by every kernel, joined in front of each shader file when it
// is loaded (`gpu::pipelines::shader_source`), so an activation is written once.
// ACT, a pipeline constant (`ops::Act`): the network's activation. 0: SiLU x·sigmoid(x)
// (EfficientNet), 1: ReLU6 min(max(x, 0), 6) (EfficientNet-Lite).

override ACT: u32 = 0u;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// d silu(v) / dv
fn dsilu(v: f32) -> f32 {
    let s = sigmoid(v);
    return s * (1.0 + v * (1.0 - s));
}

fn act(v: f32) -> f32 {
    if (ACT == 1u) {
        return clamp(v, 0.0, 6.0);
    }
    return silu(v);
}

fn act4(v: vec4<f32>) -> vec4<f32> {
    if (ACT == 1u) {
        return clamp(v, vec4(0.0), vec4(6.0));
    }
    return v / (1.0 + exp(-v));
}

// act'(v); ReLU6's derivative is 1 on 0 < v < 6 and 0 elsewhere (as PyTorch's)
fn dact(v: f32) -> f32 {
    if (ACT == 1u) {
        return select(0.0, 1.0, v > 0.0 && v < 6.0);
    }
    return dsilu(v);
}

// act''(v): SiLU'' = σ(1 − σ)(2 + v(1 − 2σ)); ReLU6'' = 0
fn d2act(v: f32) -> f32 {
    if (ACT == 1u) {
        return 0.0;
    }
    let s = sigmoid(v);
    return s * (1.0 - s) * (2.0 + v * (1.0 - 2.0 * s));
}

// the four floats from offset r (0..3) of chunk a on, running into chunk b
fn funnel(a: vec4<f32>, b: vec4<f32>, r: i32) -> vec4<f32> {
    let v1 = vec4(a.yzw, b.x);
    let v2 = vec4(a.zw, b.xy);
    let v3 = vec4(a.w, b.xyz);
    return select(select(select(a, v1, r == 1), v2, r == 2), v3, r == 3);
}

// A run of consecutive floats from flat index a (i32, a ≥ −8) of a tensor bound as vec4 chunks:
// the run's first chunk and its offset in it, (chunk, a − 4·chunk) (`ops::window` reads the
// chunks and shifts them into place with `funnel`)
fn chunk_of(a: i32) -> vec2<i32> {
    let c = (a + 8) / 4 - 2;
    return vec2(c, a - 4 * c);
}

// The first stride of a workgroup's tree reduction (`top`, the same in every invocation), read
// back through workgroup memory so that the shader compiler cannot count the tree's turns.
// With the turns countable, first-use code generation on Mesa 25.0's lavapipe (a 2-core Xeon
// VM, 2026-12-06) took 0.30 s for `cam_fusion`'s min/max kernel, 0.42–0.50 s for the head's
// softmax and 0.52 s for `stats_of_maps`; with this, 0.07–0.10, 0.17 and 0.22 s (most likely
// the loop was unrolled, a coroutine suspension per barrier: LLVM's coroutine splitting is 30%
// of that driver's compile profile). Mesa 22.3 compiled both forms alike (within its noise).
// The sums are the same, in the same order. Call it where every invocation of the workgroup
// reaches it: it holds a barrier before its load (and one after), which also makes what the
// invocations wrote for the tree visible to it, so no barrier of its own goes before it.
var<workgroup> tree_top: u32;

fn tree_start(lid: u32, top: u32) -> u32 {
    if (lid == 0u) {
        tree_top = top;
    }
    return workgroupUniformLoad(&tree_top);
}

// n, as a loop bound the shader compiler cannot see through (`len`, an arrayLength, is never
// 0): lavapipe writes out a loop whose turns it can count, each turn's storage accesses lane by
// lane on Mesa 25, where a loop of 8 or 32 stores left as a loop costs a fraction of the code to
// generate on a first run.
fn hidden(n: u32, len: u32) -> u32 {
    return select(n, 0u, len == 0u);
}
