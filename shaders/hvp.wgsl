// hvp.wgsl: the head's Hessian-vector product h = H·t along a direction t, H the Hessian of
// the score (p_c, or the logit y_c) with respect to A, the last block's output, through the
// head conv z = W·A + b, s = act(z), f = mean_p s, the classifier l = Wfc·f + b,
// p = softmax(l) (forward-mode derivative of the backward along A + ε·t). Two directions
// (prm.dir): t = 1 (dir 0: the official Grad-CAM++, h = ∂(Σ g)/∂A), and t = A (dir 1:
// ShapleyCAM, h = H·A):
//   ż = W·t: w1 = W·1 (every position; tan = w1) or W·A = z − b (tan = b, the head conv's bias)
//   ḟ = mean_p act'(z) ⊙ ż      (dir 0: reduce MeanDAct, then fdot; dir 1: fdot_act)
//   l̇ = Wfc·ḟ;  ṗ = p ⊙ (l̇ − p·l̇);  δ = p_c(e_c − p);  δ̇ = ṗ_c(e_c − p) − p_c·ṗ   (jvp_dlogits;
//   0 for the logit score, whose δ = e_c does not move)
//   ḋf = Wfcᵀ·δ̇;  dż[k, p] = (ḋf[k]·act'(z) + df[k]·act''(z)·ż[k, p]) / P          (pool_hvp)
//   h = Wᵀ·dż                                                        (the head conv's GEMM)
// Bindings: 0 prm, 1 x: fdot: mean act'(z) in, ḟ out (rw) | jvp: l̇ | pool, fdot_act: z (K, P),
//           2 tan: w1 (dir 0) or b (dir 1) (K), 3 probs: (N), 4 info (score mode at [1],
//           target at [2]), 5 out: δ̇ (N) | dż (K, P) | ḟ (K) rw, 6 dfdot: (K), 7 df: (K)
// Batch: workgroup z is the image; x, probs, out, dfdot and df hold the images one after
//           another (tan and info are every image's: image 0's target).

struct Params { rows: u32, len: u32, n: u32, dir: u32 }

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> tan: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read> info: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> dfdot: array<f32>;
@group(0) @binding(7) var<storage, read> df: array<f32>;

var<workgroup> red: array<f32, 256>;

// ż[k, p] along the direction: w1[k], or z − b[k]
fn zdot(k: u32, z: f32) -> f32 {
    return select(tan[k], z - tan[k], prm.dir == 1u);
}

// dir 0: ḟ[k] = w1[k]·x[k], in place
@compute @workgroup_size(64)
fn fdot(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k < prm.rows) {
        let o = gid.z * prm.rows + k; // this image's
        x[o] = x[o] * tan[k];
    }
}

// dir 1: ḟ[k] = Σ_p act'(z[k, p])·(z[k, p] − b[k]) / P, one invocation per row
@compute @workgroup_size(64)
fn fdot_act(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= prm.rows) {
        return;
    }
    let r = gid.z * prm.rows + k; // this image's row k
    var s = 0.0;
    for (var q = 0u; q < prm.len; q++) {
        let z = x[r * prm.len + q];
        s += dact(z) * zdot(k, z);
    }
    out[r] = s / f32(prm.len);
}

// One workgroup: dot = Σ p·l̇, then δ̇ for every class.
@compute @workgroup_size(256)
fn jvp_dlogits(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let o = wid.z * prm.n; // this image's
    var s = 0.0;
    for (var n = lid; n < prm.n; n += 256u) {
        s += probs[o + n] * x[o + n];
    }
    red[lid] = s;
    for (var k = tree_start(lid, 128u); k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let dot = red[0];
    let c = info[2];
    let logit = info[1] == 1u;
    let pc = probs[o + c];
    let pdot_c = pc * (x[o + c] - dot);
    for (var n = lid; n < prm.n; n += 256u) {
        let pn = probs[o + n];
        let hit = select(0.0, 1.0, n == c);
        out[o + n] = select(pdot_c * (hit - pn) - pc * pn * (x[o + n] - dot), 0.0, logit);
    }
}

// dż[k, p] = (ḋf[k]·act'(z) + df[k]·act''(z)·ż[k, p]) / P
@compute @workgroup_size(256)
fn pool_hvp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= prm.rows * prm.len) {
        return;
    }
    let k = idx / prm.len;
    let i = wid.z * prm.rows * prm.len + idx; // this image's
    let r = wid.z * prm.rows + k;
    let z = x[i];
    out[i] = (dfdot[r] * dact(z) + df[r] * d2act(z) * zdot(k, z)) / f32(prm.len);
}
