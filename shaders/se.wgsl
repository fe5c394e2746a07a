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

const MAX_SE: u32 = 1024u;
var<workgroup> hid: array<f32, 1024>;

// partial sum i of the row at `base`, zero past the row's end (adding it changes no sum:
// one that starts at +0 never becomes −0)
fn part_at(base: u32, i: u32) -> f32 {
    return select(0.0, part[base + min(i, prm.parts - 1u)], i < prm.parts);
}

// The sum of the row of partial sums at `base`, as reduce.wgsl's rows add a row: eight
// interleaved sums, combined in order
fn part_sum(base: u32) -> f32 {
    var s0 = 0.0; var s1 = 0.0; var s2 = 0.0; var s3 = 0.0;
    var s4 = 0.0; var s5 = 0.0; var s6 = 0.0; var s7 = 0.0;
    for (var i = 0u; i < prm.parts; i += 8u) {
        s0 += part_at(base, i); s1 += part_at(base, i + 1u);
        s2 += part_at(base, i + 2u); s3 += part_at(base, i + 3u);
        s4 += part_at(base, i + 4u); s5 += part_at(base, i + 5u);
        s6 += part_at(base, i + 6u); s7 += part_at(base, i + 7u);
    }
    return ((((((s0 + s1) + s2) + s3) + s4) + s5) + s6) + s7;
}

// One workgroup for the whole SE of one image.
@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mo = wid.z * prm.cmid; // this image's m and s
    let ro = wid.z * prm.cse; // and r
    // the squeeze: each channel's partial sums times 1/HW, added as the former reduction
    // pass added them, so that m is bit for bit what it gave
    for (var c = lid; c < prm.cmid; c += 256u) {
        m[mo + c] = part_sum((mo + c) * prm.parts) * prm.inv_hw;
    }
    storageBarrier();
    for (var j = lid; j < prm.cse; j += 256u) {
        var acc = b_r[j];
        for (var c = 0u; c < prm.cmid; c++) {
            acc += w_r[j * prm.cmid + c] * m[mo + c];
        }
        r[ro + j] = acc;
        hid[j] = acc * sigmoid(acc);
    }
    workgroupBarrier();
    for (var c = lid; c < prm.cmid; c += 256u) {
        var acc = b_x[c];
        for (var j = 0u; j < prm.cse; j++) {
            acc += w_x[c * prm.cse + j] * hid[j];
        }
        s[mo + c] = sigmoid(acc);
    }
}

@compute @workgroup_size(256)
fn backward(@builtin(local_invocation_index) lid: u32) {
    for (var c = lid; c < prm.cmid; c += 256u) {
        ds[c] = part_sum(c * prm.parts);
    }
    storageBarrier();
    for (var j = lid; j < prm.cse; j += 256u) {
        var acc = 0.0;
        for (var c = 0u; c < prm.cmid; c++) {
            let sc = s[c];
            acc += w_x[c * prm.cse + j] * ds[c] * sc * (1.0 - sc);
        }
        hid[j] = acc * dsilu(r[j]);
    }
    workgroupBarrier();
    for (var c = lid; c < prm.cmid; c += 256u) {
        var acc = 0.0;
        for (var j = 0u; j < prm.cse; j++) {
            acc += w_r[j * prm.cmid + c] * hid[j];
        }
        dm[c] = acc;
    }
}
