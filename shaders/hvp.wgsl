// hvp.wgsl: the head's Hessian-vector product h = ∂(Σ g)/∂A = H·1, g = ∂p_c/∂A, A the last
// block's output, through the head conv z = W·A + b, s = act(z), f = mean_p s, the classifier
// l = Wfc·f + b, p = softmax(l) (forward-mode derivative of the backward along A + t·1):
//   ż = W·1 =: w1 (every position);  ḟ = w1 ⊙ mean_p act'(z)          (reduce MeanDAct, then fdot)
//   l̇ = Wfc·ḟ;  ṗ = p ⊙ (l̇ − p·l̇);  δ = p_c(e_c − p);  δ̇ = ṗ_c(e_c − p) − p_c·ṗ   (jvp_dlogits)
//   ḋf = Wfcᵀ·δ̇;  dż[k, p] = (ḋf[k]·act'(z) + df[k]·act''(z)·w1[k]) / P          (pool_hvp)
//   h = Wᵀ·dż                                                        (the head conv's GEMM)
// Bindings: 0 prm, 1 x: fdot: mean act'(z) in, ḟ out (rw) | jvp: l̇ | pool: z (K, P),
//           2 w1: (K), 3 probs: (N), 4 info (target at [2]), 5 out: δ̇ (N) | dż (K, P) rw,
//           6 dfdot: (K), 7 df: (K)

struct Params { rows: u32, len: u32, n: u32, _p: u32 }

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> w1: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read> info: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> dfdot: array<f32>;
@group(0) @binding(7) var<storage, read> df: array<f32>;

var<workgroup> red: array<f32, 256>;

// ḟ[k] = w1[k]·x[k], in place
@compute @workgroup_size(64)
fn fdot(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k < prm.rows) {
        x[k] = x[k] * w1[k];
    }
}

// One workgroup: dot = Σ p·l̇, then δ̇ for every class.
@compute @workgroup_size(256)
fn jvp_dlogits(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var n = lid; n < prm.n; n += 256u) {
        s += probs[n] * x[n];
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let dot = red[0];
    let c = info[2];
    let pc = probs[c];
    let pdot_c = pc * (x[c] - dot);
    for (var n = lid; n < prm.n; n += 256u) {
        let pn = probs[n];
        let hit = select(0.0, 1.0, n == c);
        out[n] = pdot_c * (hit - pn) - pc * pn * (x[n] - dot);
    }
}

// dż[k, p] = (ḋf[k]·act'(z) + df[k]·act''(z)·w1[k]) / P
@compute @workgroup_size(256)
fn pool_hvp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= prm.rows * prm.len) {
        return;
    }
    let k = idx / prm.len;
    let z = x[idx];
    out[idx] = (dfdot[k] * dact(z) + df[k] * d2act(z) * w1[k]) / f32(prm.len);
}
