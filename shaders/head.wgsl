// head.wgsl: the classifier / geolocation head. Linear K→N over row chunks of the weight
// matrix (each chunk one texture), softmax with the Grad-CAM target, the score's gradient,
// and the linear layer's data gradient.
// Bindings: 0 prm, 1 w: (ROWS, K) one chunk as an rgba32float texture of ceil(K/4) × ROWS
//           texels, zero past K (`ops::gemm::GemmWeights`), 2 f: (K) features, 3 bias: (N),
//           4 logits: (N) rw,
//           5 probs: (N) rw, 6 info: u32 [target, score_mode, (p_target bits), (argmax)] rw,
//           7 g: (N) dscore/dlogits rw, 8 partial: (SEGS, K) rw, 9 df: (K) rw
// linear:   logits[row0 + r] = Σ_k w[r,k]·f[k] + bias[row0 + r] (`linear`: CPU adapters, 8 rows
//           per invocation; `linear_rows`: GPUs, 32 invocations a row)
// softmax:  probs = softmax(logits); target = info[0] (0xffffffff: argmax)
// Batch (linear, softmax): workgroup z is the image; f (K), logits and probs (N) hold the
//           images one after another; only image 0 writes info.
// dlogits:  score p_c: g[n] = p_c(δ_nc − p_n); score logit: g[n] = δ_nc;
//           score region (info[1] = 2): S = Σ_{m in R} p_m with R the cells whose centre
//           (cells, radians) lies within info[4] (f32 bits, km) of cell c's, by haversine
//           (R = 6371 km): g[n] = p_n(1[n in R] − S). region_mass writes S to region[0].
//           score finer (info[1] = 3; FinerCAM, pytorch-grad-cam's FinerWeightedTarget with
//           α = 1): F = N/(S + 1e-9), S = Σ_{j in J} p_j, N = Σ_{j in J} p_j(y_c − y_j), J the
//           info[4] classes nearest to c by |y_j − y_c| (j ≠ c; ties to the lower index), y the
//           logits; |J| asked for in info[7] (and info[4]). finer_pick writes |J| to info[4],
//           J to info[8 ..] and S, N (f32 bits) to info[5], info[6];
//           g[n] = ∂F/∂y_n = (∂N − F·∂S)/(S + 1e-9) with ∂S = 1[n in J]p_n − p_n·S and
//           ∂N = 1[n in J]p_n(y_c − y_n − 1) − p_n·N + δ_nc·S.
// linear_backward: partial[seg0 + s, k] = Σ_{r in segment s} w[r,k]·g[row0 + r];
// sum_partials:    df[k] = Σ_s partial[s, k]
// Batch (region_mass, finer_pick, dlogits, linear_backward, sum_partials): workgroup z is the
//           image; logits, probs, g, region (1), partial (NSEGS, K; nsegs the segments of
//           all chunks) and df (K) hold the images one after another. Every image takes
//           image 0's target (info[2]); image z's finer words (|J|, S, N, J) are those above
//           INFO_WORDS·z further on.

struct Params { rows: u32, k: u32, row0: u32, n: u32, seg_rows: u32, seg0: u32, nsegs: u32, _p: u32 }

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var w: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> f: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> probs: array<f32>;
@group(0) @binding(6) var<storage, read_write> info: array<u32>;
@group(0) @binding(7) var<storage, read_write> g: array<f32>;
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;
@group(0) @binding(9) var<storage, read_write> df: array<f32>;
@group(0) @binding(10) var<storage, read> cells: array<vec2<f32>>;
@group(0) @binding(11) var<storage, read_write> region: array<f32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;

var<private> fo: u32; // this image's features in the batch: z·K

// f[k .. k + 3], zero past K
fn f4(k: u32) -> vec4<f32> {
    let l = prm.k - 1u;
    let v = vec4(f[fo + min(k, l)], f[fo + min(k + 1u, l)], f[fo + min(k + 2u, l)], f[fo + min(k + 3u, l)]);
    return select(vec4(0.0), v, vec4(k, k + 1u, k + 2u, k + 3u) < vec4(prm.k));
}

// Rows r0 .. r0 + 7 (clamped to the last row) += their weight texel kq (clamped to the last)
// · fv: one K step of `linear`.
fn rows8(lo: ptr<function, vec4<f32>>, hi: ptr<function, vec4<f32>>, kq: u32, r0: u32, fv: vec4<f32>) {
    let last = prm.rows - 1u;
    let q = min(kq, (prm.k + 3u) / 4u - 1u);
    (*lo).x += dot(textureLoad(w, vec2(q, min(r0, last)), 0), fv);
    (*lo).y += dot(textureLoad(w, vec2(q, min(r0 + 1u, last)), 0), fv);
    (*lo).z += dot(textureLoad(w, vec2(q, min(r0 + 2u, last)), 0), fv);
    (*lo).w += dot(textureLoad(w, vec2(q, min(r0 + 3u, last)), 0), fv);
    (*hi).x += dot(textureLoad(w, vec2(q, min(r0 + 4u, last)), 0), fv);
    (*hi).y += dot(textureLoad(w, vec2(q, min(r0 + 5u, last)), 0), fv);
    (*hi).z += dot(textureLoad(w, vec2(q, min(r0 + 6u, last)), 0), fv);
    (*hi).w += dot(textureLoad(w, vec2(q, min(r0 + 7u, last)), 0), fv);
}

// 8 rows per invocation, 64 invocations (512 rows) per workgroup: each f load serves 8 FMAs,
// the weights come a texel (4 k) at a time, and there is no cross-invocation reduction.
// Every invocation runs the loop (past the last row on clamped rows, writing nothing): with
// subgroups of 8, `ops::head` rewrites it so that each lane loads one f texel of 8 K steps
// and broadcasts it (the `@linear steps` loop below), and a broadcast needs all 8 lanes.
@compute @workgroup_size(64)
fn linear(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r0 = ((wid.y * nwg.x + wid.x) * 64u + lid) * 8u;
    fo = wid.z * prm.k;
    let lo_ = wid.z * prm.n; // this image's logits
    var lo = vec4(0.0); // rows r0 .. r0 + 3
    var hi = vec4(0.0); // rows r0 + 4 .. r0 + 7
    let nq = (prm.k + 3u) / 4u;
    // @linear steps
    for (var kq = 0u; kq < nq; kq++) {
        rows8(&lo, &hi, kq, r0, f4(kq * 4u));
    }
    // the 8 rows' stores as a loop whose bound lavapipe cannot count (the prelude's `hidden`):
    // written out, they were most of this kernel's first-use code generation on Mesa 25 (0.28 s
    // against 0.18; Mesa 22.3 0.07 against 0.06; a 2-core EPYC VM, 2026-12-06, medians of 3)
    for (var i = 0u; i < hidden(8u, arrayLength(&logits)); i++) {
        let r = r0 + i;
        if (r < prm.rows) {
            var v = lo[i % 4u];
            if (i >= 4u) {
                v = hi[i % 4u];
            }
            logits[lo_ + prm.row0 + r] = v + bias[prm.row0 + r];
        }
    }
}

// GPUs: 32 lanes a row, 8 rows a workgroup of 256: lane q takes the row's texels q, q + 32, …
// (the 32 lanes of an SIMD group read a row's 128 consecutive floats at once), then the row's
// first lane adds the 32 lanes in order. One row per invocation had each walk its 1,792 weights
// alone, 974 SIMD groups on 132 SMs, too few to hide the loads' latency (1.1 TB/s on an H200).
@compute @workgroup_size(256)
fn linear_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = (wid.y * nwg.x + wid.x) * 8u + lid / 32u;
    let lane = lid % 32u;
    fo = wid.z * prm.k;
    var acc = 0.0;
    if (r < prm.rows) {
        for (var kq = lane; kq < (prm.k + 3u) / 4u; kq += 32u) {
            acc += dot(textureLoad(w, vec2(kq, r), 0), f4(kq * 4u));
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    if (lane == 0u && r < prm.rows) {
        var t = 0.0;
        for (var q = 0u; q < 32u; q++) {
            t += red[lid + q];
        }
        logits[wid.z * prm.n + prm.row0 + r] = t + bias[prm.row0 + r];
    }
}

// The workgroup's smallest (red[lid], red_i[lid]), ties to the lower index, into red[0] and
// red_i[0] (a tree over the 256 invocations' own bests)
fn tree_argmin(lid: u32) {
    for (var s = tree_start(lid, 128u); s > 0u; s >>= 1u) {
        if (lid < s) {
            let o = red[lid + s];
            let oi = red_i[lid + s];
            if (o < red[lid] || (o == red[lid] && oi < red_i[lid])) {
                red[lid] = o;
                red_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn softmax(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let o = wid.z * prm.n; // this image's logits and probs
    var best = -3.4028235e38;
    var best_i = 0xffffffffu;
    for (var n = lid; n < prm.n; n += 256u) {
        let v = logits[o + n];
        if (v > best) {
            best = v;
            best_i = n;
        }
    }
    // the argmax as the argmin of −logit (exact)
    red[lid] = -best;
    red_i[lid] = best_i;
    tree_argmin(lid);
    let mx = -red[0];
    let arg = red_i[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var n = lid; n < prm.n; n += 256u) {
        sum += exp(logits[o + n] - mx);
    }
    red[lid] = sum;
    for (var s = tree_start(lid, 128u); s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    for (var n = lid; n < prm.n; n += 256u) {
        probs[o + n] = exp(logits[o + n] - mx) / total;
    }
    if (lid == 0u && wid.z == 0u) {
        var tgt = info[0];
        if (tgt >= prm.n) {
            tgt = arg;
        }
        info[2] = tgt;
        info[3] = arg;
    }
}

// Whether cell n's centre lies within info[4] km of the target cell's (haversine).
fn in_region(n: u32) -> bool {
    let a = cells[info[2]];
    let b = cells[n];
    let s1 = sin((b.x - a.x) * 0.5);
    let s2 = sin((b.y - a.y) * 0.5);
    let h = s1 * s1 + cos(a.x) * cos(b.x) * s2 * s2;
    return 2.0 * 6371.0 * asin(min(sqrt(h), 1.0)) <= bitcast<f32>(info[4]);
}

// One workgroup: region[0] = Σ p over the region (only for the region score).
@compute @workgroup_size(256)
fn region_mass(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if (info[1] != 2u) {
        return;
    }
    var s = 0.0;
    let o = wid.z * prm.n; // this image's probs
    for (var n = lid; n < prm.n; n += 256u) {
        if (in_region(n)) {
            s += probs[o + n];
        }
    }
    red[lid] = s;
    for (var k = tree_start(lid, 128u); k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        region[wid.z] = red[0];
    }
}

// FinerCAM's comparison classes, at most this many (`ops::head::FINER_MAX`)
const FINER_MAX = 32u;
// the words of `info` an image (`ops::head::INFO_WORDS`)
const INFO_WORDS = 40u;
var<workgroup> picked: array<u32, FINER_MAX>;

// One workgroup: FinerCAM's comparison classes J and the sums S and N (only for that score).
@compute @workgroup_size(256)
fn finer_pick(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if (info[1] != 3u) {
        return;
    }
    let o = wid.z * prm.n; // this image's logits and probs
    let fb = wid.z * INFO_WORDS; // and finer words
    let c = info[2];
    let yc = logits[o + c];
    let kn = min(info[7], min(FINER_MAX, prm.n - 1u));
    for (var r = 0u; r < kn; r++) {
        // an invocation with no candidate left offers the largest f32, which any finite
        // distance beats
        var best = 3.4028235e38;
        var bi = 0xffffffffu;
        for (var n = lid; n < prm.n; n += 256u) {
            var taken = n == c;
            for (var q = 0u; q < r; q++) {
                taken = taken || picked[q] == n;
            }
            let d = abs(logits[o + n] - yc);
            if (!taken && d < best) {
                best = d;
                bi = n;
            }
        }
        red[lid] = best;
        red_i[lid] = bi;
        tree_argmin(lid);
        if (lid == 0u) {
            picked[r] = red_i[0];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        var s = 0.0;
        var num = 0.0;
        for (var q = 0u; q < kn; q++) {
            let j = picked[q];
            info[fb + 8u + q] = j;
            s += probs[o + j];
            num += probs[o + j] * (yc - logits[o + j]);
        }
        info[fb + 4u] = kn;
        info[fb + 5u] = bitcast<u32>(s);
        info[fb + 6u] = bitcast<u32>(num);
    }
}

// ∂F/∂y_n of the finer score for image z, from what finer_pick wrote
fn dfiner(n: u32, c: u32, z: u32) -> f32 {
    let o = z * prm.n;
    let fb = z * INFO_WORDS;
    var inj = false;
    for (var q = 0u; q < info[fb + 4u]; q++) {
        inj = inj || info[fb + 8u + q] == n;
    }
    let s = bitcast<f32>(info[fb + 5u]);
    let num = bitcast<f32>(info[fb + 6u]);
    let d = s + 1e-9;
    let p = probs[o + n];
    let jp = select(0.0, p, inj);
    let ds = jp - p * s;
    let dn = jp * (logits[o + c] - logits[o + n] - 1.0) - p * num + select(0.0, s, n == c);
    return (dn - num / d * ds) / d;
}

@compute @workgroup_size(256)
fn dlogits(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (n >= prm.n) {
        return;
    }
    let c = info[2];
    let o = wid.z * prm.n; // this image's probs and g
    var hit = 0.0;
    if (n == c) {
        hit = 1.0;
    }
    if (info[1] == 1u) {
        g[o + n] = hit;
    } else if (info[1] == 2u) {
        g[o + n] = probs[o + n] * (select(0.0, 1.0, in_region(n)) - region[wid.z]);
    } else if (info[1] == 3u) {
        g[o + n] = dfiner(n, c, wid.z);
    } else {
        g[o + n] = probs[o + c] * (hit - probs[o + n]);
    }
}

// Texel columns per `linear_backward` invocation: 4 on GPUs (`ops::head::Form::Lanes`), 8 on
// CPU adapters, where each row's turn costs about as much again as its texel fetches (on
// lavapipe the classifier's gradient over 31,145 cells took 16–24 ms a chunk with 4, 12–15 ms
// with 8, and 33–39 ms with 2, 2026-12-05, each invocation's columns adjacent then; with
// them 8 apart, as below, 4 and 8 take about the same: 16.9 and 16.1 ms for both chunks,
// 2026-12-06).
override BK: u32 = 4u;

// a_i += texel column kq + 8i (clamped to the last) of row r · gv, i < BK: one row of
// `linear_backward`
fn grad_row(a: ptr<function, array<vec4<f32>, 8>>, kq: u32, r: u32, gv: vec4<f32>) {
    let ql = (prm.k + 3u) / 4u - 1u;
    (*a)[0] = fma(textureLoad(w, vec2(min(kq, ql), r), 0), gv, (*a)[0]);
    (*a)[1] = fma(textureLoad(w, vec2(min(kq + 8u, ql), r), 0), gv, (*a)[1]);
    (*a)[2] = fma(textureLoad(w, vec2(min(kq + 16u, ql), r), 0), gv, (*a)[2]);
    (*a)[3] = fma(textureLoad(w, vec2(min(kq + 24u, ql), r), 0), gv, (*a)[3]);
    if (BK == 8u) {
        (*a)[4] = fma(textureLoad(w, vec2(min(kq + 32u, ql), r), 0), gv, (*a)[4]);
        (*a)[5] = fma(textureLoad(w, vec2(min(kq + 40u, ql), r), 0), gv, (*a)[5]);
        (*a)[6] = fma(textureLoad(w, vec2(min(kq + 48u, ql), r), 0), gv, (*a)[6]);
        (*a)[7] = fma(textureLoad(w, vec2(min(kq + 56u, ql), r), 0), gv, (*a)[7]);
    }
}

// a[q] for q < 8, picked by selects (an index into a function's array costs lavapipe more code)
fn texel_of(a: ptr<function, array<vec4<f32>, 8>>, q: u32) -> vec4<f32> {
    let lo = select(select((*a)[0], (*a)[1], q == 1u), select((*a)[2], (*a)[3], q == 3u), q >= 2u);
    let hi = select(select((*a)[4], (*a)[5], q == 5u), select((*a)[6], (*a)[7], q == 7u), q >= 6u);
    return select(lo, hi, q >= 4u);
}

// BK texel columns per invocation, 8 apart: a group of 8 invocations takes 8·BK adjacent
// columns, and at each load its 8 read 8 adjacent texels (128 bytes). Each g load serves 4·BK
// FMAs. On lavapipe, whose texel loads gather one texel a lane, the classifier's gradient over
// 31,145 cells took 16 ms where BK adjacent columns per invocation (texels BK apart at each
// load) took 32 (`cargo bench --bench kernels -- head`, 2-core EPYC VM, 2026-12-06). Every
// invocation runs the loop (past K on clamped columns, writing nothing): with subgroups of 8,
// `ops::head` rewrites it so that each lane loads the g of one of 8 rows and broadcasts it
// (the `@linear_backward steps` loop below).
@compute @workgroup_size(64)
fn linear_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let kq = wid.x * 64u * BK + (lid / 8u) * 8u * BK + lid % 8u;
    let r0 = wid.y * prm.seg_rows;
    let r1 = min(r0 + prm.seg_rows, prm.rows);
    var a: array<vec4<f32>, 8>;
    let go = wid.z * prm.n + prm.row0; // this image's g of the chunk's rows
    // @linear_backward steps
    for (var r = r0; r < r1; r++) {
        grad_row(&a, kq, r, vec4(g[go + r]));
    }
    let po = (wid.z * prm.nsegs + prm.seg0 + wid.y) * prm.k;
    // a loop lavapipe does not write out (see `linear`): Mesa 25 0.34 s of code generation
    // against 0.15 written out, Mesa 22.3 0.10 against 0.05
    for (var i = 0u; i < hidden(4u * BK, arrayLength(&partial)); i++) {
        let k = (kq + 8u * (i / 4u)) * 4u + i % 4u;
        if (k < prm.k) {
            partial[po + k] = texel_of(&a, i / 4u)[i % 4u];
        }
    }
}

@compute @workgroup_size(64)
fn sum_partials(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let k = wid.x * 64u + lid;
    if (k >= prm.k) {
        return;
    }
    var acc = 0.0;
    let o = wid.z * prm.nsegs; // this image's partials
    for (var s = 0u; s < prm.nsegs; s++) {
        acc += partial[(o + s) * prm.k + k];
    }
    df[wid.z * prm.k + k] = acc;
}
