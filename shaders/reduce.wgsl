// reduce.wgsl: row reductions (global pools, Grad-CAM channel weights,
// SE gradient, statistics), and the global pool's gradient.
// Bindings: 0 prm, 1 x: (rows, len) f32 read from x[in_off + row·len + i], 2 y: same layout
//           as x (MODE 2) or the per-row gradient g: (rows) (pool_backward), 3 out: rw
// rows:  out[out_off + row] = R_i f(x, y) with MODE 0: mean x, 1: mean act(x),
//        2: Σ x·act(y), 3: max |x|, 4: max x, 5: min x, 6: mean act'(x)   (act: the prelude's)
// Batch (rows): workgroup z is the image; its x and y start z·rows·len after in_off, its out
//        z·rows after out_off. (pool_backward): its x and out start z·rows·len in, its g z·rows.
// pool_backward: out[r, i] = g[r]·inv_len·act'(x[r, i])   (gradient of mean act(z))

struct Params { rows: u32, len: u32, in_off: u32, out_off: u32, inv_len: f32, _p0: u32, _p1: u32, _p2: u32 }

override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// 8 rows per workgroup of 64, 8 invocations per row: one barrier, no tree.
var<workgroup> part: array<f32, 64>;

fn is_max_mode() -> bool {
    return MODE == 3u || MODE == 4u;
}

fn combine(a: f32, b: f32) -> f32 {
    if (is_max_mode()) {
        return max(a, b);
    }
    if (MODE == 5u) {
        return min(a, b);
    }
    return a + b;
}

// acc combined with f(x, y) at base + i
fn step(acc: f32, base: u32, i: u32) -> f32 {
    let v = x[base + i];
    switch MODE {
        case 0u: { return acc + v; }
        case 1u: { return acc + act(v); }
        case 2u: { return acc + v * act(y[base + i]); }
        case 3u: { return max(acc, abs(v)); }
        case 4u: { return max(acc, v); }
        case 6u: { return acc + dact(v); }
        default: { return min(acc, v); }
    }
}

@compute @workgroup_size(64)
fn rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = (wid.y * nwg.x + wid.x) * 8u + lid / 8u;
    let lane = lid % 8u;
    var acc = 0.0;
    if (is_max_mode()) {
        acc = -3.4028235e38;
    }
    if (MODE == 5u) {
        acc = 3.4028235e38;
    }
    if (row < prm.rows) {
        let base = prm.in_off + (wid.z * prm.rows + row) * prm.len;
        // four of the lane's elements a turn, in the same order as one a turn (the same
        // result, bit for bit): lavapipe ends an invocation's loops after 65,535 turns in
        // all, which one a turn passed on rows over 524,280 long (a block's whole gradient)
        var i = lane;
        for (; i + 24u < prm.len; i += 32u) {
            acc = step(acc, base, i);
            acc = step(acc, base, i + 8u);
            acc = step(acc, base, i + 16u);
            acc = step(acc, base, i + 24u);
        }
        for (; i < prm.len; i += 8u) {
            acc = step(acc, base, i);
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    if (lane == 0u && row < prm.rows) {
        var r = part[lid];
        // a loop lavapipe does not write out (the prelude's `hidden`)
        for (var j = 1u; j < hidden(8u, arrayLength(&out)); j++) {
            r = combine(r, part[lid + j]);
        }
        if (MODE == 0u || MODE == 1u || MODE == 6u) {
            r = r * prm.inv_len;
        }
        out[prm.out_off + wid.z * prm.rows + row] = r;
    }
}

@compute @workgroup_size(256)
fn pool_backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= prm.rows * prm.len) {
        return;
    }
    let r = idx / prm.len;
    let o = wid.z * prm.rows * prm.len + idx; // this image's
    out[o] = y[wid.z * prm.rows + r] * prm.inv_len * dact(x[o]);
}
