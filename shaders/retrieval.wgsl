// retrieval.wgsl: visloc's retrieval head on one feature vector (`model::retrieval`):
// emb = l2norm(LN2(fc2(ReLU(fc1(LN1(f)))) + LN1(f))).
// Bindings: 0 prm, 1 x: (k) input, 2 w: (n, k) row-major weights (linear) or (k) LayerNorm
//           gain, 3 b: (n) bias or (k) LayerNorm shift, 4 r: (n) residual (linear, MODE 2),
//           5 out: rw
// linear:    out[i] = Σ_j w[i, j]·x[j] + b[i], then MODE 1: max(·, 0), MODE 2: + r[i]
// layernorm: out[j] = (x[j] − mean)/sqrt(var + eps)·w[j] + b[j], biased variance (PyTorch)
// l2norm:    out[j] = x[j]/max(‖x‖₂, 1e-12)                      (F.normalize)

struct Params { n: u32, k: u32, eps: f32, _p0: u32 }

override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> r: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, 256>;

// Σ over the workgroup of each invocation's `v` (all 256 must call it).
fn wg_sum(lid: u32, v: f32) -> f32 {
    part[lid] = v;
    for (var s = tree_start(lid, 128u); s > 0u; s = s >> 1u) {
        if (lid < s) {
            part[lid] += part[lid + s];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
}

// one workgroup per output row
@compute @workgroup_size(256)
fn linear(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= prm.n) {
        return;
    }
    var acc = 0.0;
    let base = row * prm.k;
    for (var j = lid; j < prm.k; j += 256u) {
        acc += w[base + j] * x[j];
    }
    let s = wg_sum(lid, acc);
    if (lid == 0u) {
        var v = s + b[row];
        if (MODE == 1u) {
            v = max(v, 0.0);
        }
        if (MODE == 2u) {
            v += r[row];
        }
        out[row] = v;
    }
}

// one workgroup for the whole vector
@compute @workgroup_size(256)
fn layernorm(@builtin(local_invocation_index) lid: u32) {
    let k = prm.k;
    var s = 0.0;
    for (var j = lid; j < k; j += 256u) {
        s += x[j];
    }
    let mean = wg_sum(lid, s) / f32(k);
    var q = 0.0;
    for (var j = lid; j < k; j += 256u) {
        let d = x[j] - mean;
        q += d * d;
    }
    let inv = inverseSqrt(wg_sum(lid, q) / f32(k) + prm.eps);
    for (var j = lid; j < k; j += 256u) {
        out[j] = (x[j] - mean) * inv * w[j] + b[j];
    }
}

@compute @workgroup_size(256)
fn l2norm(@builtin(local_invocation_index) lid: u32) {
    let k = prm.k;
    var q = 0.0;
    for (var j = lid; j < k; j += 256u) {
        q += x[j] * x[j];
    }
    let scale = 1.0 / max(sqrt(wg_sum(lid, q)), 1e-12);
    for (var j = lid; j < k; j += 256u) {
        out[j] = x[j] * scale;
    }
}
