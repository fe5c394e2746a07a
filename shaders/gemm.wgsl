// gemm.wgsl: pointwise (1×1) convolution as a register-tiled GEMM. Used for the
// expand, project and head convs (forward) and their data gradients (with W^T).
// Bindings: 0 prm, 1 a: (M, K) f32 weights, 2 x: (K, P) f32, 3 bias: (M) f32,
//           4 scale: (K) f32, 5 res: (M, P) f32, 6 y: (M, P) f32
// Math: y[m,p] = Σ_k a[m,k]·T(x[k,p]) + bias[m] + res[m,p],
//       T(v) = v (IN_MODE 0) or silu(v)·scale[k] (IN_MODE 1: SE-scaled projection input).
// Tile: 64 (m) × 64 (p) per workgroup of 16×16 threads, 4×4 outputs per thread, K step 16.

struct Params { m: u32, k: u32, p: u32, _pad: u32 }

override IN_MODE: u32 = 0u;
override HAS_BIAS: bool = true;
override HAS_RES: bool = false;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

var<workgroup> tile_a: array<vec4<f32>, 256>; // [kk][m / 4], 16 × 16
var<workgroup> tile_x: array<vec4<f32>, 256>; // [kk][p / 4], 16 × 16

fn load_x(k: u32, p: u32) -> f32 {
    let v = x[k * prm.p + p];
    if (IN_MODE == 1u) {
        return v / (1.0 + exp(-v)) * scale[k];
    }
    return v;
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * 16u + tx;
    let p0 = wid.x * 64u;
    let m0 = wid.y * 64u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < prm.k; k0 += 16u) {
        for (var e = 0u; e < 4u; e++) {
            let idx = t + 256u * e;
            let am = idx / 16u;
            let ak = idx % 16u;
            var av = 0.0;
            if (m0 + am < prm.m && k0 + ak < prm.k) {
                av = a[(m0 + am) * prm.k + k0 + ak];
            }
            tile_a[ak * 16u + am / 4u][am % 4u] = av;
            let xk = idx / 64u;
            let xp = idx % 64u;
            var xv = 0.0;
            if (k0 + xk < prm.k && p0 + xp < prm.p) {
                xv = load_x(k0 + xk, p0 + xp);
            }
            tile_x[xk * 16u + xp / 4u][xp % 4u] = xv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let av = tile_a[kk * 16u + ty];
            let xv = tile_x[kk * 16u + tx];
            acc0 += av.x * xv;
            acc1 += av.y * xv;
            acc2 += av.z * xv;
            acc3 += av.w * xv;
        }
        workgroupBarrier();
    }
    var accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + ty * 4u + i;
        if (m >= prm.m) {
            break;
        }
        var b = 0.0;
        if (HAS_BIAS) {
            b = bias[m];
        }
        for (var j = 0u; j < 4u; j++) {
            let p = p0 + tx * 4u + j;
            if (p < prm.p) {
                var v = accs[i][j] + b;
                if (HAS_RES) {
                    v += res[m * prm.p + p];
                }
                y[m * prm.p + p] = v;
            }
        }
    }
}
