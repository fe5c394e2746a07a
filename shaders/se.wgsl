// se.wgsl: squeeze-excite. The depthwise kernel writes the squeeze's partial sums of act(z_d)
// (depthwise.wgsl POOL); the forward adds them up; the channel scale is applied inside
// gemm.wgsl's projection loads (IN_MODE 1).
// Bindings: 0 prm, 1 w_r: (CSE, CMID), 2 b_r: (CSE), 3 w_x: (CMID, CSE), 4 b_x: (CMID),
//           5 m: (CMID) pooled input, 6 r: (CSE) rw, 7 s: (CMID) rw, 8 ds: (CMID) rw,
//           9 dm: (CMID) rw, 10 part: (CMID, PARTS) partial sums (forward: the depthwise
//           kernel's of act(z_d); backward: the projection GEMM's of du·act(z_d))
// forward:  m = Σ part / HW (written: the squeeze), r = w_r·m + b_r, s = sigmoid(w_x·silu(r) + b_x)
//           (batch: workgroup z is the image; part, m, r and s hold the images one after
//           another)
// backward: ds = Σ part (written: the projection's backward GEMM wrote the partial sums of
//           du·act(z_d), gemm.wgsl PART 1);  dq = ds·s(1−s);  dr = (w_xᵀ·dq)·silu'(r);  dm = w_rᵀ·dr
// The sums over C_mid (in r and dr) run on 32 lanes, lane q adding c ≡ q (mod 32) in order,
// then the lanes in order (`row_dot`); a channel's long row of partial sums (m, ds) runs on
// `row_lanes` lanes (`lane_row_sum`); the others add in order.
// One workgroup of WG invocations does an image's SE: 1,024 on GPUs that allow it (a GPU runs
// one workgroup's chains of dependent loads four times shorter there), 256 elsewhere
// (`Gpu::wide_workgroup`).
// The scale's gradient reaches the depthwise output as dz_d = (du·s + dm/HW)·act'(z_d), which
// depthwise.wgsl applies as its backward reads du (SE_IN). The SE's own activation is always
// SiLU.

struct Params { cmid: u32, cse: u32, hw: u32, parts: u32, inv_hw: f32 }

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> w_r: array<f32>;
@group(0) @binding(2) var<storage, read> b_r: array<f32>;
@group(0) @binding(3) var<storage, read> w_x: array<f32>;
@group(0) @binding(4) var<storage, read> b_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> r: array<f32>;
@group(0) @binding(7) var<storage, read_write> s: array<f32>;
@group(0) @binding(8) var<storage, read_write> ds: array<f32>;
@group(0) @binding(9) var<storage, read_write> dm: array<f32>;
@group(0) @binding(10) var<storage, read> part: array<f32>;

override WG: u32 = 256u;

const MAX_SE: u32 = 1024u;
var<workgroup> hid: array<f32, 1024>;

// partial sum i of the row at `base`, zero past the row's end (adding it changes no sum:
// one that starts at +0 never becomes −0)
fn part_at(base: u32, i: u32) -> f32 {
    return select(0.0, part[base + min(i, prm.parts - 1u)], i < prm.parts);
}

var<workgroup> lanes: array<f32, 1024>;

// The sum of `l` lanes' values from invocation lid on, in lane order, by the first of them;
// the others get 0. Every invocation must call it (it holds a barrier).
fn lanes_sum(lid: u32, acc: f32, l: u32) -> f32 {
    lanes[lid] = acc;
    workgroupBarrier();
    var t = 0.0;
    if (lid % l == 0u) {
        for (var q = 0u; q < l; q++) {
            t += lanes[lid + q];
        }
    }
    return t;
}

// A row's dot product from its 32 lanes' partial sums (invocations 32·g .. 32·g + 31 hold row
// g of WG / 32), added in lane order by the row's first invocation. `se::cpu::lane_sum` adds
// in the same order.
fn row_dot(lid: u32, acc: f32) -> f32 {
    return lanes_sum(lid, acc, 32u);
}

// Lanes per channel for its row of partial sums: 1 for rows of at most 64, else as many as the
// workgroup spares a channel, a power of two up to 32
fn row_lanes() -> u32 {
    var l = 1u;
    if (prm.parts > 64u) {
        while (l < 32u && 2u * l * prm.cmid <= WG) {
            l *= 2u;
        }
    }
    return l;
}

// The sum of a channel's row of partial sums at `base` (none where `valid` is false) on `l`
// lanes: lane q adds the partials q + l·n in eight interleaved sums over n, combined in order,
// then the lanes in order (`lanes_sum`; with l = 1, eight interleaved sums, as reduce.wgsl's
// rows; `se::cpu::squeeze` adds in row order, the tests' tolerance covers the difference).
// Every invocation must call it.
fn lane_row_sum(lid: u32, base: u32, valid: bool, l: u32) -> f32 {
    let q = lid % l;
    var s0 = 0.0; var s1 = 0.0; var s2 = 0.0; var s3 = 0.0;
    var s4 = 0.0; var s5 = 0.0; var s6 = 0.0; var s7 = 0.0;
    if (valid) {
        for (var i = q; i < prm.parts; i += 8u * l) {
            s0 += part_at(base, i); s1 += part_at(base, i + l);
            s2 += part_at(base, i + 2u * l); s3 += part_at(base, i + 3u * l);
            s4 += part_at(base, i + 4u * l); s5 += part_at(base, i + 5u * l);
            s6 += part_at(base, i + 6u * l); s7 += part_at(base, i + 7u * l);
        }
    }
    return lanes_sum(lid, ((((((s0 + s1) + s2) + s3) + s4) + s5) + s6) + s7, l);
}

// One workgroup for the whole SE of one image. The two long dot products (over C_mid) give
// each row 32 invocations, so that no invocation walks C_mid alone (on a GPU, a chain of
// C_mid dependent loads was most of the SE's time).
@compute @workgroup_size(WG)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mo = wid.z * prm.cmid; // this image's m and s
    let ro = wid.z * prm.cse; // and r
    // the squeeze: each channel's partial sums times 1/HW
    let l = row_lanes();
    for (var c0 = 0u; c0 < prm.cmid; c0 += WG / l) {
        let c = c0 + lid / l;
        let t = lane_row_sum(lid, (mo + c) * prm.parts, c < prm.cmid, l);
        if (lid % l == 0u && c < prm.cmid) {
            m[mo + c] = t * prm.inv_hw;
        }
        workgroupBarrier();
    }
    storageBarrier();
    // r = w_r·m + b_r: WG / 32 rows at a time, 32 lanes on each row's C_mid terms (`row_dot`)
    for (var j0 = 0u; j0 < prm.cse; j0 += WG / 32u) {
        let j = j0 + lid / 32u;
        var acc = 0.0;
        if (j < prm.cse) {
            // eight terms a turn, their loads first (in flight together), added in order
            var c = lid % 32u;
            for (; c + 224u < prm.cmid; c += 256u) {
                let t0 = w_r[j * prm.cmid + c] * m[mo + c];
                let t1 = w_r[j * prm.cmid + c + 32u] * m[mo + c + 32u];
                let t2 = w_r[j * prm.cmid + c + 64u] * m[mo + c + 64u];
                let t3 = w_r[j * prm.cmid + c + 96u] * m[mo + c + 96u];
                let t4 = w_r[j * prm.cmid + c + 128u] * m[mo + c + 128u];
                let t5 = w_r[j * prm.cmid + c + 160u] * m[mo + c + 160u];
                let t6 = w_r[j * prm.cmid + c + 192u] * m[mo + c + 192u];
                let t7 = w_r[j * prm.cmid + c + 224u] * m[mo + c + 224u];
                acc += t0; acc += t1; acc += t2; acc += t3;
                acc += t4; acc += t5; acc += t6; acc += t7;
            }
            for (; c < prm.cmid; c += 32u) {
                acc += w_r[j * prm.cmid + c] * m[mo + c];
            }
        }
        let t = row_dot(lid, acc);
        if (lid % 32u == 0u && j < prm.cse) {
            let v = b_r[j] + t;
            r[ro + j] = v;
            hid[j] = v * sigmoid(v);
        }
        workgroupBarrier();
    }
    for (var c = lid; c < prm.cmid; c += WG) {
        var acc = b_x[c];
        var j = 0u;
        for (; j + 7u < prm.cse; j += 8u) {
            let t0 = w_x[c * prm.cse + j] * hid[j];
            let t1 = w_x[c * prm.cse + j + 1u] * hid[j + 1u];
            let t2 = w_x[c * prm.cse + j + 2u] * hid[j + 2u];
            let t3 = w_x[c * prm.cse + j + 3u] * hid[j + 3u];
            let t4 = w_x[c * prm.cse + j + 4u] * hid[j + 4u];
            let t5 = w_x[c * prm.cse + j + 5u] * hid[j + 5u];
            let t6 = w_x[c * prm.cse + j + 6u] * hid[j + 6u];
            let t7 = w_x[c * prm.cse + j + 7u] * hid[j + 7u];
            acc += t0; acc += t1; acc += t2; acc += t3;
            acc += t4; acc += t5; acc += t6; acc += t7;
        }
        for (; j < prm.cse; j++) {
            acc += w_x[c * prm.cse + j] * hid[j];
        }
        s[mo + c] = sigmoid(acc);
    }
}

// the scale's gradient before the sigmoid: dq = ds·s(1 − s)
fn dq(c: u32) -> f32 {
    let sc = s[c];
    return ds[c] * sc * (1.0 - sc);
}

@compute @workgroup_size(WG)
fn backward(@builtin(local_invocation_index) lid: u32) {
    // ds: each channel's partial sums (B4's blocks 2-5 at 300×450: 144 and 192 channels of
    // 2,128, on 4 lanes a channel with 1,024 invocations)
    let l = row_lanes();
    for (var c0 = 0u; c0 < prm.cmid; c0 += WG / l) {
        let c = c0 + lid / l;
        let t = lane_row_sum(lid, c * prm.parts, c < prm.cmid, l);
        if (lid % l == 0u && c < prm.cmid) {
            ds[c] = t;
        }
        workgroupBarrier();
    }
    storageBarrier();
    // dr = (w_xᵀ·dq)·silu'(r), as the forward's r: WG / 32 rows at a time, 32 lanes each
    for (var j0 = 0u; j0 < prm.cse; j0 += WG / 32u) {
        let j = j0 + lid / 32u;
        var acc = 0.0;
        if (j < prm.cse) {
            var c = lid % 32u;
            for (; c + 224u < prm.cmid; c += 256u) {
                let t0 = w_x[c * prm.cse + j] * dq(c);
                let t1 = w_x[(c + 32u) * prm.cse + j] * dq(c + 32u);
                let t2 = w_x[(c + 64u) * prm.cse + j] * dq(c + 64u);
                let t3 = w_x[(c + 96u) * prm.cse + j] * dq(c + 96u);
                let t4 = w_x[(c + 128u) * prm.cse + j] * dq(c + 128u);
                let t5 = w_x[(c + 160u) * prm.cse + j] * dq(c + 160u);
                let t6 = w_x[(c + 192u) * prm.cse + j] * dq(c + 192u);
                let t7 = w_x[(c + 224u) * prm.cse + j] * dq(c + 224u);
                acc += t0; acc += t1; acc += t2; acc += t3;
                acc += t4; acc += t5; acc += t6; acc += t7;
            }
            for (; c < prm.cmid; c += 32u) {
                acc += w_x[c * prm.cse + j] * dq(c);
            }
        }
        let t = row_dot(lid, acc);
        if (lid % 32u == 0u && j < prm.cse) {
            hid[j] = t * dsilu(r[j]);
        }
        workgroupBarrier();
    }
    for (var c = lid; c < prm.cmid; c += WG) {
        var acc = 0.0;
        var j = 0u;
        for (; j + 7u < prm.cse; j += 8u) {
            let t0 = w_r[j * prm.cmid + c] * hid[j];
            let t1 = w_r[(j + 1u) * prm.cmid + c] * hid[j + 1u];
            let t2 = w_r[(j + 2u) * prm.cmid + c] * hid[j + 2u];
            let t3 = w_r[(j + 3u) * prm.cmid + c] * hid[j + 3u];
            let t4 = w_r[(j + 4u) * prm.cmid + c] * hid[j + 4u];
            let t5 = w_r[(j + 5u) * prm.cmid + c] * hid[j + 5u];
            let t6 = w_r[(j + 6u) * prm.cmid + c] * hid[j + 6u];
            let t7 = w_r[(j + 7u) * prm.cmid + c] * hid[j + 7u];
            acc += t0; acc += t1; acc += t2; acc += t3;
            acc += t4; acc += t5; acc += t6; acc += t7;
        }
        for (; j < prm.cse; j++) {
            acc += w_r[j * prm.cmid + c] * hid[j];
        }
        dm[c] = acc;
    }
}
