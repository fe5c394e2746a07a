// se.wgsl: squeeze-excite. The depthwise kernel writes the squeeze's partial sums of act(z_d)
// (depthwise.wgsl POOL); the forward adds them up; the channel scale is applied inside
// gemm.wgsl's projection loads (IN_MODE 1).
// Bindings: 0 prm, 1 w_r: (CSE, CMID), 2 b_r: (CSE), 3 w_xᵀ: (CSE, CMID), 4 b_x: (CMID),
//           5 m: (C4) pooled input, 6 r: (CSE) rw, 7 s: (CMID) rw, 8 ds: (CMID) rw,
//           9 dm: (C4) rw, 10 part: (CMID, PARTS) partial sums (forward: the depthwise
//           kernel's of act(z_d); backward: the projection GEMM's of du·act(z_d)),
//           11 rows_a, 12 rows_b: the vec4 rows of CPU adapters (VEC, below)
// forward:  m = Σ part / HW (written: the squeeze), r = w_r·m + b_r, s = sigmoid(w_x·silu(r) + b_x)
//           (batch, forward and backward: workgroup z is the image; part, m, r, s, ds and dm
//           hold the images one after another)
// backward: ds = Σ part (written: the projection's backward GEMM wrote the partial sums of
//           du·act(z_d), gemm.wgsl PART 1);  dq = ds·s(1−s);  dr = (w_xᵀ·dq)·silu'(r);  dm = w_rᵀ·dr
// Both weight matrices are (CSE, CMID), so that the invocations of a warp, which hold
// neighbouring channels c, read neighbouring floats in all four products (w_x as (CMID, CSE)
// had them CSE floats apart in s and dr: a line of memory each).
// The sums over C_mid (in r and dr) run on RL lanes, lane q adding c ≡ q (mod RL) in order,
// then the lanes in order (`row_dot`); a channel's long row of partial sums (m, ds) runs on
// `row_lanes` lanes (`lane_row_sum`); the others add in order.
// One workgroup of WG invocations does an image's SE: 1,024 on GPUs that allow it (a GPU runs
// one workgroup's chains of dependent loads four times shorter there), 256 elsewhere
// (`Gpu::wide_workgroup`).
// CPU adapters (VEC): a storage load is a loop over the SIMD lanes whatever its width, so the
// two dot products of each direction read vec4s, one lane a row: r (forward) and dr (backward)
// over C_mid from rows_a (CSE, C4), s and dm over C_SE from rows_b (CMID, CSE4) (`se::SeRows`:
// the forward's w_r and w_x, the backward's w_xᵀ and w_rᵀ, each row zero-padded to a multiple
// of 4), against m or dq and hid, zero-padded too. Each lane keeps four sums (terms ≡ 0..3
// mod 4), added ((x + y) + z) + w at the end (`se::cpu::lane_sum` with 4 lanes). The backward
// keeps dq in dm until dm is written. m and dm hold C4 = C_mid rounded up to 4 per image.
// The scale's gradient reaches the depthwise output as dz_d = (du·s + dm/HW)·act'(z_d), which
// depthwise.wgsl applies as its backward reads du (SE_IN). The SE's own activation is always
// SiLU.

struct Params { cmid: u32, cse: u32, hw: u32, parts: u32, inv_hw: f32 }

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> w_r: array<f32>;
@group(0) @binding(2) var<storage, read> b_r: array<f32>;
@group(0) @binding(3) var<storage, read> w_x: array<f32>;
@group(0) @binding(4) var<storage, read> b_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> r: array<f32>;
@group(0) @binding(7) var<storage, read_write> s: array<f32>;
@group(0) @binding(8) var<storage, read_write> ds: array<f32>;
@group(0) @binding(9) var<storage, read_write> dm: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> part: array<f32>;
@group(0) @binding(11) var<storage, read> rows_a: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> rows_b: array<vec4<f32>>;

// The shape, as the kernels read it: prm's, through a term lavapipe cannot fold (an array's
// length), so that it compiles one kernel for every shape rather than inlining each
// dispatch's uniform values into a kernel of its own (its inline-uniforms pass keeps such a
// variant where it halves the code, and keeps every variant it made)
var<private> sp: Params;

fn load_shape() {
    let n = arrayLength(&part);
    sp = prm;
    sp.cmid = min(prm.cmid, prm.cmid + n);
    sp.cse = min(prm.cse, prm.cse + n);
    sp.parts = min(prm.parts, prm.parts + n);
}

override WG: u32 = 256u;
// Lanes on each row of the two long dot products (over C_mid): 32 on GPUs, where no
// invocation should walk C_mid alone; 1 with the CPU-shaped kernels, where a workgroup's
// invocations run one SIMD group after another and each barrier switches through all of
// them: one lane a row needs no barrier a turn (`se::dot_lanes`)
override RL: u32 = 32u;
// the vec4 dot products of CPU adapters (above)
override VEC: bool = false;

const MAX_SE: u32 = 1024u;
var<workgroup> hid: array<vec4<f32>, 256>;

fn hid_at(j: u32) -> f32 {
    return hid[j / 4u][j % 4u];
}

fn set_hid(j: u32, v: f32) {
    hid[j / 4u][j % 4u] = v;
}

fn m_at(i: u32) -> f32 {
    return m[i / 4u][i % 4u];
}

fn set_m(i: u32, v: f32) {
    m[i / 4u][i % 4u] = v;
}

fn set_dm(c: u32, v: f32) {
    dm[c / 4u][c % 4u] = v;
}

// a vec4 lane's four sums, added in order
fn fold(a: vec4<f32>) -> f32 {
    return ((a.x + a.y) + a.z) + a.w;
}

// C_mid and C_SE rounded up to 4, in vec4s: a row of rows_a and of rows_b
fn cmid4() -> u32 {
    return (sp.cmid + 3u) / 4u;
}

fn cse4() -> u32 {
    return (sp.cse + 3u) / 4u;
}

// zeros in the pad of hid (j in [C_SE, 4·cse4())), before a workgroupBarrier
fn pad_hid(lid: u32) {
    let j = sp.cse + lid;
    if (j < 4u * cse4()) {
        set_hid(j, 0.0);
    }
}

// rows_a's row j · m from vec4 o (the forward's r). Two functions rather than one reading m or
// dm by a flag: an entry point that names dm must bind it, and the forward binds no dm.
fn dot_a_m(j: u32, o: u32) -> f32 {
    let n = cmid4();
    var acc = vec4(0.0);
    for (var q = 0u; q < n; q++) {
        acc += rows_a[j * n + q] * m[o + q];
    }
    return fold(acc);
}

// rows_a's row j · dq, kept in dm from vec4 o (the backward's dr)
fn dot_a_dq(j: u32, o: u32) -> f32 {
    let n = cmid4();
    var acc = vec4(0.0);
    for (var q = 0u; q < n; q++) {
        acc += rows_a[j * n + q] * dm[o + q];
    }
    return fold(acc);
}

// rows_b's row c · hid
fn dot_b(c: u32) -> f32 {
    let n = cse4();
    var acc = vec4(0.0);
    for (var q = 0u; q < n; q++) {
        acc += rows_b[c * n + q] * hid[q];
    }
    return fold(acc);
}

// partial sum i of the row at `base`, zero past the row's end (adding it changes no sum:
// one that starts at +0 never becomes −0)
fn part_at(base: u32, i: u32) -> f32 {
    return select(0.0, part[base + min(i, sp.parts - 1u)], i < sp.parts);
}

var<workgroup> lanes: array<f32, 1024>;

// The sum of `l` lanes' values from invocation lid on, in lane order, by the first of them;
// the others get 0. Every invocation must call it (it holds a barrier, unless l is 1).
fn lanes_sum(lid: u32, acc: f32, l: u32) -> f32 {
    if (l == 1u) {
        return acc;
    }
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

// A row's dot product from its RL lanes' partial sums (invocations RL·g .. RL·g + RL − 1 hold
// row g of WG / RL), added in lane order by the row's first invocation. `se::cpu::lane_sum`
// adds in the same order.
fn row_dot(lid: u32, acc: f32) -> f32 {
    return lanes_sum(lid, acc, RL);
}

// Lanes per channel for its row of partial sums: 1 for rows of at most 64, else as many as the
// workgroup spares a channel, a power of two up to 32
fn row_lanes() -> u32 {
    var l = 1u;
    if (sp.parts > 64u) {
        while (l < 32u && 2u * l * sp.cmid <= WG) {
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
        for (var i = q; i < sp.parts; i += 8u * l) {
            s0 += part_at(base, i); s1 += part_at(base, i + l);
            s2 += part_at(base, i + 2u * l); s3 += part_at(base, i + 3u * l);
            s4 += part_at(base, i + 4u * l); s5 += part_at(base, i + 5u * l);
            s6 += part_at(base, i + 6u * l); s7 += part_at(base, i + 7u * l);
        }
    }
    return lanes_sum(lid, ((((((s0 + s1) + s2) + s3) + s4) + s5) + s6) + s7, l);
}

// Element (j, c) of w_xᵀ (`of_x`, the forward's s) or of w_r (the backward's dm), both (CSE,
// CMID); every call passes a constant: a branch the whole workgroup takes alike
fn col_weight(of_x: bool, j: u32, c: u32) -> f32 {
    if (of_x) {
        return w_x[j * sp.cmid + c];
    }
    return w_r[j * sp.cmid + c];
}

// start + Σ_j M[j, c]·hid_j over C_SE, M as `col_weight` picks it: eight terms a turn, their
// loads first (in flight together), added in order
fn hid_dot(c: u32, of_x: bool, start: f32) -> f32 {
    var acc = start;
    var j = 0u;
    for (; j + 7u < sp.cse; j += 8u) {
        let t0 = col_weight(of_x, j, c) * hid_at(j);
        let t1 = col_weight(of_x, j + 1u, c) * hid_at(j + 1u);
        let t2 = col_weight(of_x, j + 2u, c) * hid_at(j + 2u);
        let t3 = col_weight(of_x, j + 3u, c) * hid_at(j + 3u);
        let t4 = col_weight(of_x, j + 4u, c) * hid_at(j + 4u);
        let t5 = col_weight(of_x, j + 5u, c) * hid_at(j + 5u);
        let t6 = col_weight(of_x, j + 6u, c) * hid_at(j + 6u);
        let t7 = col_weight(of_x, j + 7u, c) * hid_at(j + 7u);
        acc += t0; acc += t1; acc += t2; acc += t3;
        acc += t4; acc += t5; acc += t6; acc += t7;
    }
    for (; j < sp.cse; j++) {
        acc += col_weight(of_x, j, c) * hid_at(j);
    }
    return acc;
}

// One workgroup for the whole SE of one image. The two long dot products (over C_mid) give
// each row RL invocations, so that no invocation walks C_mid alone (on a GPU, a chain of
// C_mid dependent loads was most of the SE's time).
@compute @workgroup_size(WG)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    load_shape();
    let mo = wid.z * 4u * cmid4(); // this image's m (C4 an image)
    let so = wid.z * sp.cmid; // s, and the rows of part
    let ro = wid.z * sp.cse; // and r
    // the squeeze: each channel's partial sums times 1/HW
    let l = row_lanes();
    for (var c0 = 0u; c0 < sp.cmid; c0 += WG / l) {
        let c = c0 + lid / l;
        let t = lane_row_sum(lid, (so + c) * sp.parts, c < sp.cmid, l);
        if (lid % l == 0u && c < sp.cmid) {
            set_m(mo + c, t * prm.inv_hw);
        }
        if (l > 1u) {
            workgroupBarrier(); // lanes is written again next turn
        }
    }
    if (VEC) {
        // m's pad
        let c = sp.cmid + lid;
        if (c < 4u * cmid4()) {
            set_m(mo + c, 0.0);
        }
    }
    storageBarrier();
    if (VEC) {
        for (var j = lid; j < sp.cse; j += WG) {
            let v = b_r[j] + dot_a_m(j, mo / 4u);
            r[ro + j] = v;
            set_hid(j, v * sigmoid(v));
        }
        pad_hid(lid);
        workgroupBarrier(); // hid complete
        for (var c = lid; c < sp.cmid; c += WG) {
            s[so + c] = sigmoid(b_x[c] + dot_b(c));
        }
        return;
    }
    // r = w_r·m + b_r: WG / RL rows at a time, RL lanes on each row's C_mid terms (`row_dot`)
    for (var j0 = 0u; j0 < sp.cse; j0 += WG / RL) {
        let j = j0 + lid / RL;
        var acc = 0.0;
        if (j < sp.cse) {
            // eight terms a turn, their loads first (in flight together), added in order
            var c = lid % RL;
            for (; c + 7u * RL < sp.cmid; c += 8u * RL) {
                let t0 = w_r[j * sp.cmid + c] * m_at(mo + c);
                let t1 = w_r[j * sp.cmid + c + RL] * m_at(mo + c + RL);
                let t2 = w_r[j * sp.cmid + c + 2u * RL] * m_at(mo + c + 2u * RL);
                let t3 = w_r[j * sp.cmid + c + 3u * RL] * m_at(mo + c + 3u * RL);
                let t4 = w_r[j * sp.cmid + c + 4u * RL] * m_at(mo + c + 4u * RL);
                let t5 = w_r[j * sp.cmid + c + 5u * RL] * m_at(mo + c + 5u * RL);
                let t6 = w_r[j * sp.cmid + c + 6u * RL] * m_at(mo + c + 6u * RL);
                let t7 = w_r[j * sp.cmid + c + 7u * RL] * m_at(mo + c + 7u * RL);
                acc += t0; acc += t1; acc += t2; acc += t3;
                acc += t4; acc += t5; acc += t6; acc += t7;
            }
            for (; c < sp.cmid; c += RL) {
                acc += w_r[j * sp.cmid + c] * m_at(mo + c);
            }
        }
        let t = row_dot(lid, acc);
        if (lid % RL == 0u && j < sp.cse) {
            let v = b_r[j] + t;
            r[ro + j] = v;
            set_hid(j, v * sigmoid(v));
        }
        if (RL > 1u) {
            workgroupBarrier(); // lanes is written again next turn
        }
    }
    workgroupBarrier(); // hid complete
    for (var c = lid; c < sp.cmid; c += WG) {
        s[so + c] = sigmoid(hid_dot(c, true, b_x[c]));
    }
}

// the scale's gradient before the sigmoid: dq = ds·s(1 − s), at c of the batch's s and ds
fn dq(c: u32) -> f32 {
    let sc = s[c];
    return ds[c] * sc * (1.0 - sc);
}

@compute @workgroup_size(WG)
fn backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    load_shape();
    let mo = wid.z * 4u * cmid4(); // this image's dm (C4 an image)
    let so = wid.z * sp.cmid; // s, ds, and the rows of part
    let ro = wid.z * sp.cse; // and r
    // ds: each channel's partial sums (B4's blocks 2-5 at 300×450: 144 and 192 channels of
    // 2,128, on 4 lanes a channel with 1,024 invocations)
    let l = row_lanes();
    for (var c0 = 0u; c0 < sp.cmid; c0 += WG / l) {
        let c = c0 + lid / l;
        let t = lane_row_sum(lid, (so + c) * sp.parts, c < sp.cmid, l);
        if (lid % l == 0u && c < sp.cmid) {
            ds[so + c] = t;
            if (VEC) {
                set_dm(mo + c, dq(so + c)); // ds[so + c] just written by this invocation
            }
        }
        if (l > 1u) {
            workgroupBarrier(); // lanes is written again next turn
        }
    }
    if (VEC) {
        // dq's pad
        let c = sp.cmid + lid;
        if (c < 4u * cmid4()) {
            set_dm(mo + c, 0.0);
        }
    }
    storageBarrier();
    if (VEC) {
        for (var j = lid; j < sp.cse; j += WG) {
            set_hid(j, dot_a_dq(j, mo / 4u) * dsilu(r[ro + j]));
        }
        pad_hid(lid);
        storageBarrier(); // every read of dq in dm done
        workgroupBarrier(); // hid complete
        for (var c = lid; c < sp.cmid; c += WG) {
            set_dm(mo + c, dot_b(c));
        }
        return;
    }
    // dr = (w_xᵀ·dq)·silu'(r), as the forward's r: WG / RL rows at a time, RL lanes each
    for (var j0 = 0u; j0 < sp.cse; j0 += WG / RL) {
        let j = j0 + lid / RL;
        var acc = 0.0;
        if (j < sp.cse) {
            var c = lid % RL;
            for (; c + 7u * RL < sp.cmid; c += 8u * RL) {
                let t0 = w_x[j * sp.cmid + c] * dq(so + c);
                let t1 = w_x[j * sp.cmid + c + RL] * dq(so + c + RL);
                let t2 = w_x[j * sp.cmid + c + 2u * RL] * dq(so + c + 2u * RL);
                let t3 = w_x[j * sp.cmid + c + 3u * RL] * dq(so + c + 3u * RL);
                let t4 = w_x[j * sp.cmid + c + 4u * RL] * dq(so + c + 4u * RL);
                let t5 = w_x[j * sp.cmid + c + 5u * RL] * dq(so + c + 5u * RL);
                let t6 = w_x[j * sp.cmid + c + 6u * RL] * dq(so + c + 6u * RL);
                let t7 = w_x[j * sp.cmid + c + 7u * RL] * dq(so + c + 7u * RL);
                acc += t0; acc += t1; acc += t2; acc += t3;
                acc += t4; acc += t5; acc += t6; acc += t7;
            }
            for (; c < sp.cmid; c += RL) {
                acc += w_x[j * sp.cmid + c] * dq(so + c);
            }
        }
        let t = row_dot(lid, acc);
        if (lid % RL == 0u && j < sp.cse) {
            set_hid(j, t * dsilu(r[ro + j]));
        }
        if (RL > 1u) {
            workgroupBarrier(); // lanes is written again next turn
        }
    }
    workgroupBarrier(); // hid complete
    for (var c = lid; c < sp.cmid; c += WG) {
        set_dm(mo + c, hid_dot(c, false, 0.0));
    }
}
