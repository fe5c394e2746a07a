// cam_eigen.wgsl: EigenCAM and EigenGradCAM at one block, and `--eigen-smooth`'s projection of
// any method's weighted activations. X = the (HW × C) matrix of INPUT (pipeline constant):
//   0 A (EigenCAM), 1 g ⊙ A (EigenGradCAM, HiResCAM), 2 w_k·A with w = aux[aux_off + k] (the
//   channel methods' weights), 3 ReLU(g ⊙ A) (Grad-CAM element-wise), 4 ReLU(g) ⊙ A (LayerCAM),
//   5 ReLU(g)/(max(aux[aux_off], 0) + 1e-8) ⊙ A, aux holding max g (the official LayerCAM);
// centred per channel over positions; the map is X·v₁ with v₁
// its first right singular vector (the covariance's top eigenvector), flipped when
// |min| > |max| (Seg-Eigen-CAM's sign rule) by more than TIE, after ReLU.
// Bindings: 0 prm, 1 blk: (C, HW) A, 2 grad: (C, HW) g (INPUT 1, 3-5), 5 aux (INPUT 2, 5),
//           3 scratch rw: the means (C) at
//           0, the covariance (C × C) at C, v₁ (C) at C + C², then a flag (1.0: the power
//           iteration has stopped), 4 maps: (Σ h·w) rw
// Entry points, dispatched in this order (`cam::eigen::record`):
//   means   one invocation per channel k: m_k = Σ_p X[k, p] / HW, over positions [from, to)
//           per dispatch, the running sum kept in scratch; the dispatch that ends the sum
//           divides it and sets the power iteration's start
//   cov     one invocation per entry (k, q): S[k, q] = Σ_p (X[k, p] − m_k)(X[q, p] − m_q), over
//           [from, to) per dispatch likewise
//   power   one workgroup: v ← S·v / |S·v| from a fixed start (S·v in units of a power of two
//           near S's largest diagonal entry, so that its squares do not underflow), until no
//           component moves by more than 1e-6, `steps` steps per dispatch, resuming v from
//           scratch; the dispatches add up to the CPU reference's 300 steps at most. Two
//           barriers a step: each invocation sums the partial sums itself.
//   project one invocation per position p: maps[map_off + p] = Σ_k (X[k, p] − m_k)·v_k
//   sign    one workgroup: the map's min and max, then maps[…] = ReLU(±map)
// Kernel PCA (KPCA-CAM, `kpcacam`; scikit-learn's KernelPCA(n_components=1, kernel="sigmoid")
// with its defaults γ = 1/C, coef0 = 1), on A, n = HW ≤ 4,096 positions; its region of
// scratch starts at k_off: row means r (n), the total mean t and a flag, v₁ (n), K·v (n), then
// the kernel matrix K (n × n). After `means`:
//   gram    one invocation per entry: K[p, q] = tanh(γ·Σ_k (A[k, p] − m_k)(A[k, q] − m_k) + 1)
//   krows   one invocation per row: r_p = Σ_q K[p, q] / n
//   ktotal  one workgroup: t = Σ_p r_p / n; the power iteration's start (as `means` sets it)
//   kcenter one invocation per entry: K[p, q] −= r_q + r_p − t (scikit-learn's KernelCenterer)
//   kpower  one workgroup: v ← K·v / |K·v| as `power`, v and K·v in scratch (4,096 floats
//           would not fit beside the rest in workgroup memory): storage barriers
//   kproject one workgroup: λ = v·K·v, maps[map_off + p] = v_p·sqrt(max(λ, 0)) (scikit-learn's
//           transform: the eigenvector scaled by √λ, λ clamped at 0 as its PSD check does)
//   then `sign`: scikit-learn's svd_flip makes v's largest |component| positive, which is the
//   sign rule above (but for its TIE), and pytorch-grad-cam's ReLU
// Batch: workgroup z is the image; blk and grad (C·HW), scratch (sstride), maps (mstride) and
// aux (astride: the channel weights' stride, or 1 for max g, image z's at aux_off + z) hold
// the images one after another (`set_image`, at the top of every entry point).
// lavapipe ends an invocation's loops after 65,535 turns in all, silently. So the long sums
// take four terms a turn (in the same order), and `record` splits the positions and the steps
// over dispatches that keep every invocation under that.

struct Params { c: u32, hw: u32, map_off: u32, p_from: u32, p_to: u32, steps: u32, aux_off: u32, k_off: u32, sstride: u32, mstride: u32, astride: u32, _p: u32 }

override INPUT: u32 = 0u;

const WG: u32 = 256u;
const MAX_C: u32 = 1024u;
// the sign rule flips only when |min| > |max|·TIE: where the two tie within rounding (a
// block of two positions, whose centred projection is ±a; a map symmetric about 0), v₁'s
// sign from the power iteration decides rather than the last bit (`eigen::cpu`'s too)
const TIE: f32 = 1.0001;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> blk: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(4) var<storage, read_write> maps: array<f32>;
@group(0) @binding(5) var<storage, read> aux: array<f32>;

// this image's offsets in the batch (workgroup z), set by each entry point
var<private> xo: u32; // blk, grad
var<private> so: u32; // scratch
var<private> mo: u32; // maps
var<private> ao: u32; // aux

fn set_image(z: u32) {
    xo = z * prm.c * prm.hw;
    so = z * prm.sstride;
    mo = z * prm.mstride;
    ao = z * prm.astride;
}

// X's entry i, rounded once. A compiler may fuse a multiply into the add or subtract that uses
// it (NVIDIA's does; WGSL lets it), which would centre g·A − m_k from the unrounded product
// while m_k summed the rounded ones: a block of one position would then not be exactly 0, and
// a nearly constant channel would centre to rounding noise of its own. Times a 1 read from a
// uniform, the product's consumer is a multiply, so it is rounded first; fma(v, 1, s) is v + s.
fn x(i: u32) -> f32 {
    return x_raw(i) * select(0.0, 1.0, prm.hw != 0u);
}

fn x_raw(i: u32) -> f32 {
    switch INPUT {
        case 1u: {
            return grad[xo + i] * blk[xo + i];
        }
        case 2u: {
            return aux[ao + prm.aux_off + i / prm.hw] * blk[xo + i];
        }
        case 3u: {
            return max(grad[xo + i] * blk[xo + i], 0.0);
        }
        case 4u: {
            return max(grad[xo + i], 0.0) * blk[xo + i];
        }
        case 5u: {
            return max(grad[xo + i], 0.0) * (1.0 / (max(aux[ao + prm.aux_off], 0.0) + 1e-8)) * blk[xo + i];
        }
        default: {
            return blk[xo + i];
        }
    }
}

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

// where v₁ and the flag start in scratch
fn v_at(c: u32) -> u32 {
    return c + c * c;
}

// the covariance's largest diagonal entry, the same in every invocation (one a turn)
fn diag_max(c: u32) -> f32 {
    var d = 0.0;
    for (var k = 0u; k < c; k++) {
        d = max(d, scratch[so + c + k * c + k]);
    }
    return d;
}

// 2^−e for the power of two 2^e ≤ d < 2^(e+1): multiplying by it is exact; 0 for d = 0, 2^126
// for a subnormal d
fn unit_of(d: f32) -> f32 {
    let e = (bitcast<u32>(d) >> 23u) & 0xffu;
    if (e == 0u) {
        return select(0.0, bitcast<f32>(253u << 23u), d > 0.0);
    }
    return bitcast<f32>(clamp(254u - e, 1u, 254u) << 23u);
}

@compute @workgroup_size(64)
fn means(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    set_image(wid.z);
    let k = flat(wid, nwg, lid);
    if (k >= prm.c) {
        return;
    }
    let b = k * prm.hw;
    var s = 0.0;
    if (prm.p_from > 0u) {
        s = scratch[so + k];
    }
    var p = prm.p_from;
    for (; p + 4u <= prm.p_to; p += 4u) {
        s += x(b + p);
        s += x(b + p + 1u);
        s += x(b + p + 2u);
        s += x(b + p + 3u);
    }
    for (; p < prm.p_to; p++) {
        s += x(b + p);
    }
    if (prm.p_to == prm.hw) {
        s = s / f32(prm.hw);
        // the power iteration's start, with no symmetry that could leave it orthogonal to v₁
        let vo = v_at(prm.c);
        scratch[so + vo + k] = 1.0 + 0.5 * sin(f32(k) * 1.7);
        if (k == 0u) {
            scratch[so + vo + prm.c] = 0.0;
        }
    }
    scratch[so + k] = s;
}

@compute @workgroup_size(64)
fn cov(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    set_image(wid.z);
    let e = flat(wid, nwg, lid);
    let c = prm.c;
    if (e >= c * c) {
        return;
    }
    let bk = (e / c) * prm.hw;
    let bq = (e % c) * prm.hw;
    let mk = scratch[so + e / c];
    let mq = scratch[so + e % c];
    var s = 0.0;
    if (prm.p_from > 0u) {
        s = scratch[so + c + e];
    }
    var p = prm.p_from;
    for (; p + 4u <= prm.p_to; p += 4u) {
        s = fma(x(bk + p) - mk, x(bq + p) - mq, s);
        s = fma(x(bk + p + 1u) - mk, x(bq + p + 1u) - mq, s);
        s = fma(x(bk + p + 2u) - mk, x(bq + p + 2u) - mq, s);
        s = fma(x(bk + p + 3u) - mk, x(bq + p + 3u) - mq, s);
    }
    for (; p < prm.p_to; p++) {
        s = fma(x(bk + p) - mk, x(bq + p) - mq, s);
    }
    scratch[so + c + e] = s;
}

var<workgroup> v: array<f32, MAX_C>;
// S·v of this step, kept between its two halves
var<workgroup> sv: array<f32, MAX_C>;
// each invocation's Σ (S·v)² and, in `moves`, its largest move
var<workgroup> part: array<f32, WG>;
var<workgroup> moves: array<f32, WG>;

// whether the iteration stopped in an earlier dispatch (read once, for the whole workgroup)
var<workgroup> stopped: u32;

@compute @workgroup_size(256)
fn power(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    set_image(wid.z);
    let c = prm.c;
    let vo = v_at(c);
    for (var j = 0u; j < MAX_C / WG; j++) {
        let k = lid + j * WG;
        if (k < c) {
            v[k] = scratch[so + vo + k];
        }
    }
    if (lid == 0u) {
        stopped = u32(scratch[so + vo + c] != 0.0);
    }
    // every v loaded, and the flag
    var todo = prm.steps;
    if (workgroupUniformLoad(&stopped) != 0u) {
        todo = 0u;
    }
    // S·v is taken in units of S's largest diagonal entry D (a power of two near it, so the
    // scaling is exact): |S·v| ≤ λ₁ ≤ C·D, and its squares stay normal floats where S itself
    // is tiny (g ⊙ A of 1e-11 gives S of 1e-21 and (S·v)² of 1e-42, which GPUs that flush
    // subnormals to zero summed as 0 or as a few bits)
    let unit = unit_of(diag_max(c));
    var done = false;
    for (var it = 0u; it < todo; it++) {
        var sq = 0.0;
        for (var j = 0u; j < MAX_C / WG; j++) {
            let k = lid + j * WG;
            if (k < c) {
                let row = c + k * c;
                var s = 0.0;
                var q = 0u;
                for (; q + 4u <= c; q += 4u) {
                    s = fma(scratch[so + row + q], v[q], s);
                    s = fma(scratch[so + row + q + 1u], v[q + 1u], s);
                    s = fma(scratch[so + row + q + 2u], v[q + 2u], s);
                    s = fma(scratch[so + row + q + 3u], v[q + 3u], s);
                }
                for (; q < c; q++) {
                    s = fma(scratch[so + row + q], v[q], s);
                }
                s *= unit;
                sv[k] = s;
                sq += s * s;
            }
        }
        part[lid] = sq;
        // every S·v and partial sum written, every read of v done
        workgroupBarrier();
        let norm = sqrt(part_total());
        // the largest move of this invocation's components; 0 when S·v = 0 (a constant block)
        var mv = 0.0;
        if (norm > 0.0) {
            for (var j = 0u; j < MAX_C / WG; j++) {
                let k = lid + j * WG;
                if (k < c) {
                    let nv = sv[k] / norm;
                    mv = max(mv, abs(nv - v[k]));
                    v[k] = nv;
                }
            }
        }
        moves[lid] = mv;
        // every v updated, every read of `part` done
        workgroupBarrier();
        // the same in every invocation: the same values in the same order
        if (most_moved() <= 1e-6) {
            done = true;
            break;
        }
    }
    for (var j = 0u; j < MAX_C / WG; j++) {
        let k = lid + j * WG;
        if (k < c) {
            scratch[so + vo + k] = v[k];
        }
    }
    if (lid == 0u && done) {
        scratch[so + vo + c] = 1.0;
    }
}

@compute @workgroup_size(64)
fn project(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    set_image(wid.z);
    let p = flat(wid, nwg, lid);
    if (p >= prm.hw) {
        return;
    }
    let c = prm.c;
    var s = 0.0;
    for (var k = 0u; k < c; k++) {
        s = fma(x(k * prm.hw + p) - scratch[so + k], scratch[so + v_at(c) + k], s);
    }
    maps[mo + prm.map_off + p] = s;
}

var<workgroup> lo: array<f32, WG>;
var<workgroup> hi: array<f32, WG>;

@compute @workgroup_size(256)
fn sign(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    set_image(wid.z);
    var mn = 3.0e38;
    var mx = -3.0e38;
    for (var j = 0u; j < (prm.hw + WG - 1u) / WG; j++) {
        let p = lid + j * WG;
        if (p < prm.hw) {
            let m = maps[mo + prm.map_off + p];
            mn = min(mn, m);
            mx = max(mx, m);
        }
    }
    lo[lid] = mn;
    hi[lid] = mx;
    for (var s = tree_start(lid, WG / 2u); s > 0u; s >>= 1u) {
        if (lid < s) {
            lo[lid] = min(lo[lid], lo[lid + s]);
            hi[lid] = max(hi[lid], hi[lid + s]);
        }
        workgroupBarrier();
    }
    let flip = abs(lo[0]) > abs(hi[0]) * TIE;
    for (var j = 0u; j < (prm.hw + WG - 1u) / WG; j++) {
        let p = lid + j * WG;
        if (p < prm.hw) {
            let m = maps[mo + prm.map_off + p];
            maps[mo + prm.map_off + p] = max(select(m, -m, flip), 0.0);
        }
    }
}

// where the kernel PCA's parts start in scratch (see the header)
fn k_r() -> u32 {
    return prm.k_off;
}

fn k_t() -> u32 {
    return prm.k_off + prm.hw;
}

fn k_v() -> u32 {
    return prm.k_off + prm.hw + 2u;
}

fn k_sv() -> u32 {
    return k_v() + prm.hw;
}

fn k_m() -> u32 {
    return k_sv() + prm.hw;
}

@compute @workgroup_size(64)
fn gram(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    set_image(wid.z);
    let e = flat(wid, nwg, lid);
    let n = prm.hw;
    if (e >= n * n) {
        return;
    }
    let p = e / n;
    let q = e % n;
    var s = 0.0;
    for (var k = 0u; k < prm.c; k++) {
        s = fma(x(k * n + p) - scratch[so + k], x(k * n + q) - scratch[so + k], s);
    }
    scratch[so + k_m() + e] = tanh(s * (1.0 / f32(prm.c)) + 1.0);
}

@compute @workgroup_size(64)
fn krows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    set_image(wid.z);
    let p = flat(wid, nwg, lid);
    let n = prm.hw;
    if (p >= n) {
        return;
    }
    let row = k_m() + p * n;
    var s = 0.0;
    var q = 0u;
    for (; q + 4u <= n; q += 4u) {
        s += scratch[so + row + q];
        s += scratch[so + row + q + 1u];
        s += scratch[so + row + q + 2u];
        s += scratch[so + row + q + 3u];
    }
    for (; q < n; q++) {
        s += scratch[so + row + q];
    }
    scratch[so + k_r() + p] = s / f32(n);
}

@compute @workgroup_size(256)
fn ktotal(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    set_image(wid.z);
    let n = prm.hw;
    var s = 0.0;
    for (var p = lid; p < n; p += WG) {
        s += scratch[so + k_r() + p];
        scratch[so + k_v() + p] = 1.0 + 0.5 * sin(f32(p) * 1.7);
    }
    part[lid] = s;
    workgroupBarrier();
    if (lid == 0u) {
        var t = 0.0;
        for (var i = 0u; i < WG; i++) {
            t += part[i];
        }
        scratch[so + k_t()] = t / f32(n);
        scratch[so + k_t() + 1u] = 0.0;
    }
}

@compute @workgroup_size(64)
fn kcenter(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    set_image(wid.z);
    let e = flat(wid, nwg, lid);
    let n = prm.hw;
    if (e >= n * n) {
        return;
    }
    let i = k_m() + e;
    scratch[so + i] = scratch[so + i] - scratch[so + k_r() + e % n] - scratch[so + k_r() + e / n] + scratch[so + k_t()];
}

// K·v of this invocation's rows into scratch, and its Σ (K·v)² (or, with `dot`, Σ v·K·v)
fn k_times_v(lid: u32, dot: bool) -> f32 {
    let n = prm.hw;
    var acc = 0.0;
    for (var p = lid; p < n; p += WG) {
        let row = k_m() + p * n;
        let v0 = k_v();
        var s = 0.0;
        var q = 0u;
        for (; q + 4u <= n; q += 4u) {
            s = fma(scratch[so + row + q], scratch[so + v0 + q], s);
            s = fma(scratch[so + row + q + 1u], scratch[so + v0 + q + 1u], s);
            s = fma(scratch[so + row + q + 2u], scratch[so + v0 + q + 2u], s);
            s = fma(scratch[so + row + q + 3u], scratch[so + v0 + q + 3u], s);
        }
        for (; q < n; q++) {
            s = fma(scratch[so + row + q], scratch[so + v0 + q], s);
        }
        scratch[so + k_sv() + p] = s;
        acc += select(s * s, s * scratch[so + v0 + p], dot);
    }
    return acc;
}

// the largest of the workgroup's moves, four a turn, the same in every invocation
fn most_moved() -> f32 {
    var most = 0.0;
    for (var i = 0u; i < WG; i += 4u) {
        most = max(most, max(max(moves[i], moves[i + 1u]), max(moves[i + 2u], moves[i + 3u])));
    }
    return most;
}

// Σ of the workgroup's partials in `part`, four a turn, the same in every invocation
fn part_total() -> f32 {
    var total = 0.0;
    for (var i = 0u; i < WG; i += 4u) {
        total += part[i];
        total += part[i + 1u];
        total += part[i + 2u];
        total += part[i + 3u];
    }
    return total;
}

@compute @workgroup_size(256)
fn kpower(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    set_image(wid.z);
    let n = prm.hw;
    if (lid == 0u) {
        stopped = u32(scratch[so + k_t() + 1u] != 0.0);
    }
    var todo = prm.steps;
    if (workgroupUniformLoad(&stopped) != 0u) {
        todo = 0u;
    }
    var done = false;
    for (var it = 0u; it < todo; it++) {
        part[lid] = k_times_v(lid, false);
        // every K·v and partial sum written, every read of v done
        storageBarrier();
        workgroupBarrier();
        let norm = sqrt(part_total());
        // the largest move of this invocation's components; 0 when K·v = 0
        var mv = 0.0;
        if (norm > 0.0) {
            for (var p = lid; p < n; p += WG) {
                let nv = scratch[so + k_sv() + p] / norm;
                mv = max(mv, abs(nv - scratch[so + k_v() + p]));
                scratch[so + k_v() + p] = nv;
            }
        }
        moves[lid] = mv;
        // every v updated, every read of `part` done
        storageBarrier();
        workgroupBarrier();
        // the same in every invocation: the same values in the same order
        if (most_moved() <= 1e-6) {
            done = true;
            break;
        }
    }
    if (lid == 0u && done) {
        scratch[so + k_t() + 1u] = 1.0;
    }
}

@compute @workgroup_size(256)
fn kproject(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    set_image(wid.z);
    part[lid] = k_times_v(lid, true);
    workgroupBarrier();
    let scale = sqrt(max(part_total(), 0.0));
    for (var p = lid; p < prm.hw; p += WG) {
        maps[mo + prm.map_off + p] = scratch[so + k_v() + p] * scale;
    }
}
