// gemm.wgsl: pointwise (1×1) convolution as a register-tiled GEMM. Used for the
// expand, project and head convs (forward) and their data gradients (with Wᵀ).
// Bindings: 0 prm, 1 a: (M, K4) f32 weights, rows zero-padded to K4 = ceil(K/4)·4
//           (`ops::gemm::pack`), 2 x: (K, P) f32, 3 bias: (M) f32, 4 scale: (K) f32,
//           5 res: (M, P) f32, 6 y: (M, P) f32
// Math: y[m,p] = Σ_k a[m,k]·T(x[k,p]) + bias[m] + res[m,p],
//       T(v) = v (IN_MODE 0) or silu(v)·scale[k] (IN_MODE 1: SE-scaled projection input).
// Tile: each invocation owns 16 rows (m) × 8 columns (p) in registers; a workgroup of
// 8×4 invocations covers 64 (p) × 64 (m). No workgroup memory: every load is used by 8
// (weights, vec4 over k) or 16 (activations) FMAs straight from registers. The 16 rows
// are written out by hand because loops over register arrays are not unrolled by every
// compiler (on lavapipe the looped form was 1.4× slower). Rows and columns past the edge
// are clamped on load and skipped on store.

struct Params { m: u32, k: u32, p: u32, _pad: u32 }

override IN_MODE: u32 = 0u;
override HAS_BIAS: bool = true;
override HAS_RES: bool = false;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// One row's 8 accumulators (two vec4 over p).
alias Acc = array<vec4<f32>, 2>;
// Four k-rows of the 8 columns: xs[2·kk + j] holds x[k + kk, p0 + 4j .. p0 + 4j + 3].
alias XTile = array<vec4<f32>, 8>;

var<private> cols: array<u32, 8>; // clamped column indices p0 .. p0 + 7

// T(x[k, cols..]) for 4 consecutive columns starting at column slot j0; zero for k ≥ K.
fn load_x4(k: u32, j0: u32) -> vec4<f32> {
    let kc = min(k, prm.k - 1u);
    let o = kc * prm.p;
    var v = vec4(x[o + cols[j0]], x[o + cols[j0 + 1u]], x[o + cols[j0 + 2u]], x[o + cols[j0 + 3u]]);
    if (IN_MODE == 1u) {
        v = v / (1.0 + exp(-v)) * scale[kc];
    }
    return select(vec4(0.0), v, k < prm.k);
}

fn row(c: ptr<function, Acc>, av: vec4<f32>, xs: XTile) {
    (*c)[0] = fma(vec4(av.x), xs[0], (*c)[0]);
    (*c)[1] = fma(vec4(av.x), xs[1], (*c)[1]);
    (*c)[0] = fma(vec4(av.y), xs[2], (*c)[0]);
    (*c)[1] = fma(vec4(av.y), xs[3], (*c)[1]);
    (*c)[0] = fma(vec4(av.z), xs[4], (*c)[0]);
    (*c)[1] = fma(vec4(av.z), xs[5], (*c)[1]);
    (*c)[0] = fma(vec4(av.w), xs[6], (*c)[0]);
    (*c)[1] = fma(vec4(av.w), xs[7], (*c)[1]);
}

fn store(m: u32, p0: u32, c: Acc) {
    if (m >= prm.m) {
        return;
    }
    var b = 0.0;
    if (HAS_BIAS) {
        b = bias[m];
    }
    for (var j = 0u; j < 8u; j++) {
        let p = p0 + j;
        if (p < prm.p) {
            var v = c[j / 4u][j % 4u] + b;
            if (HAS_RES) {
                v += res[m * prm.p + p];
            }
            y[m * prm.p + p] = v;
        }
    }
}

@compute @workgroup_size(8, 4)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let p0 = (wid.x * 8u + lid.x) * 8u;
    let m0 = (wid.y * 4u + lid.y) * 16u;
    for (var j = 0u; j < 8u; j++) {
        cols[j] = min(p0 + j, prm.p - 1u);
    }
    let kq_n = (prm.k + 3u) / 4u; // vec4s per padded weight row
    let ra0 = min(m0 + 0u, prm.m - 1u) * kq_n;
    let ra1 = min(m0 + 1u, prm.m - 1u) * kq_n;
    let ra2 = min(m0 + 2u, prm.m - 1u) * kq_n;
    let ra3 = min(m0 + 3u, prm.m - 1u) * kq_n;
    let ra4 = min(m0 + 4u, prm.m - 1u) * kq_n;
    let ra5 = min(m0 + 5u, prm.m - 1u) * kq_n;
    let ra6 = min(m0 + 6u, prm.m - 1u) * kq_n;
    let ra7 = min(m0 + 7u, prm.m - 1u) * kq_n;
    let ra8 = min(m0 + 8u, prm.m - 1u) * kq_n;
    let ra9 = min(m0 + 9u, prm.m - 1u) * kq_n;
    let ra10 = min(m0 + 10u, prm.m - 1u) * kq_n;
    let ra11 = min(m0 + 11u, prm.m - 1u) * kq_n;
    let ra12 = min(m0 + 12u, prm.m - 1u) * kq_n;
    let ra13 = min(m0 + 13u, prm.m - 1u) * kq_n;
    let ra14 = min(m0 + 14u, prm.m - 1u) * kq_n;
    let ra15 = min(m0 + 15u, prm.m - 1u) * kq_n;
    var c0: Acc;
    var c1: Acc;
    var c2: Acc;
    var c3: Acc;
    var c4: Acc;
    var c5: Acc;
    var c6: Acc;
    var c7: Acc;
    var c8: Acc;
    var c9: Acc;
    var c10: Acc;
    var c11: Acc;
    var c12: Acc;
    var c13: Acc;
    var c14: Acc;
    var c15: Acc;
    for (var kq = 0u; kq < kq_n; kq++) {
        let k = kq * 4u;
        let xs = XTile(
            load_x4(k, 0u), load_x4(k, 4u),
            load_x4(k + 1u, 0u), load_x4(k + 1u, 4u),
            load_x4(k + 2u, 0u), load_x4(k + 2u, 4u),
            load_x4(k + 3u, 0u), load_x4(k + 3u, 4u),
        );
        row(&c0, a[ra0 + kq], xs);
        row(&c1, a[ra1 + kq], xs);
        row(&c2, a[ra2 + kq], xs);
        row(&c3, a[ra3 + kq], xs);
        row(&c4, a[ra4 + kq], xs);
        row(&c5, a[ra5 + kq], xs);
        row(&c6, a[ra6 + kq], xs);
        row(&c7, a[ra7 + kq], xs);
        row(&c8, a[ra8 + kq], xs);
        row(&c9, a[ra9 + kq], xs);
        row(&c10, a[ra10 + kq], xs);
        row(&c11, a[ra11 + kq], xs);
        row(&c12, a[ra12 + kq], xs);
        row(&c13, a[ra13 + kq], xs);
        row(&c14, a[ra14 + kq], xs);
        row(&c15, a[ra15 + kq], xs);
    }
    store(m0 + 0u, p0, c0);
    store(m0 + 1u, p0, c1);
    store(m0 + 2u, p0, c2);
    store(m0 + 3u, p0, c3);
    store(m0 + 4u, p0, c4);
    store(m0 + 5u, p0, c5);
    store(m0 + 6u, p0, c6);
    store(m0 + 7u, p0, c7);
    store(m0 + 8u, p0, c8);
    store(m0 + 9u, p0, c9);
    store(m0 + 10u, p0, c10);
    store(m0 + 11u, p0, c11);
    store(m0 + 12u, p0, c12);
    store(m0 + 13u, p0, c13);
    store(m0 + 14u, p0, c14);
    store(m0 + 15u, p0, c15);
}
