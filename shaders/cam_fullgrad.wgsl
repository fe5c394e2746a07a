// cam_fullgrad.wgsl: FullGrad's terms (pytorch-grad-cam's FullGrad), summed into a map.
// A term is one tensor v (C, HW) of the backward: at every BN-folded conv output z with bias
// b, v = |b ⊙ ∂y/∂z|; at the input x, v = |x ⊙ ∂y/∂x|. Each channel of v is min-max
// normalised over its positions, (v − min_c)/(1e-7 + (max_c − min_c)) (pytorch-grad-cam's
// `scale_input_across_batch_and_channels` before its resize), and the channels are summed.
// Bindings: 0 prm, 1 g: (C, HW) the gradient as the backward holds it, 2 bias: (C),
//           3 s: (C) the SE's scale, 4 dm: (C) the gradient at the SE's pooled input,
//           5 z: (C, HW) a pre-activation (MODE 1, 2) or the input x (MODE 3),
//           6 mm: (2C) per channel (min, max) of v, rw, 7 map: the maps, rw
// MODE: how ∂y/∂z is read from g: 0 g itself; 1 (g·s_c + dm_c/HW)·act'(z) (the depthwise
//   output through the SE and the activation, as shaders/depthwise.wgsl's backward reads it);
//   2 g·act'(z) (the stem); 3 the input term, v = |g·z|, no bias.
// minmax: a workgroup per channel: mm[2c], mm[2c + 1] = min, max of v_c.
// accumulate: an invocation per position i: map[map_off + i] = (FIRST ? 0 : map[map_off + i])
//   + Σ_c (v_c(i) − min_c)/(1e-7 + (max_c − min_c)).
// Batch: workgroup z is the image; g and z (C·HW), s (C), dm (C rounded up to 4, as se.wgsl
//   writes it), mm (mmstride) and map (mstride) hold the images one after another.

struct Params { c: u32, hw: u32, map_off: u32, mstride: u32, mmstride: u32, _p0: u32, _p1: u32, _p2: u32 }

override MODE: u32 = 0u;
override FIRST: bool = true;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> s: array<f32>;
@group(0) @binding(4) var<storage, read> dm: array<f32>;
@group(0) @binding(5) var<storage, read> z: array<f32>;
@group(0) @binding(6) var<storage, read_write> mm: array<f32>;
@group(0) @binding(7) var<storage, read_write> map: array<f32>;

// v_c(i) of image zi
fn value(c: u32, i: u32, zi: u32) -> f32 {
    let at = (zi * prm.c + c) * prm.hw + i;
    switch MODE {
        case 1u: {
            let sc = s[zi * prm.c + c];
            let dmc = dm[zi * 4u * ((prm.c + 3u) / 4u) + c];
            return abs(bias[c] * (g[at] * sc + dmc / f32(prm.hw)) * dact(z[at]));
        }
        case 2u: {
            return abs(bias[c] * g[at] * dact(z[at]));
        }
        case 3u: {
            return abs(g[at] * z[at]);
        }
        default: {
            return abs(bias[c] * g[at]);
        }
    }
}

var<workgroup> lo: array<f32, 256>;
var<workgroup> hi: array<f32, 256>;

@compute @workgroup_size(256)
fn minmax(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = wid.y * nwg.x + wid.x;
    if (c >= prm.c) {
        return; // uniform across the workgroup
    }
    var a = 3.0e38;
    var b = -3.0e38;
    for (var i = lid; i < prm.hw; i += 256u) {
        let v = value(c, i, wid.z);
        a = min(a, v);
        b = max(b, v);
    }
    lo[lid] = a;
    hi[lid] = b;
    for (var step = tree_start(lid, 128u); step > 0u; step >>= 1u) {
        workgroupBarrier();
        if (lid < step) {
            lo[lid] = min(lo[lid], lo[lid + step]);
            hi[lid] = max(hi[lid], hi[lid + step]);
        }
    }
    if (lid == 0u) {
        mm[wid.z * prm.mmstride + 2u * c] = lo[0];
        mm[wid.z * prm.mmstride + 2u * c + 1u] = hi[0];
    }
}

@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= prm.hw) {
        return;
    }
    let mo = wid.z * prm.mmstride; // this image's ranges
    var acc = 0.0;
    for (var c = 0u; c < prm.c; c++) {
        // the max and the clamp keep compilers from reassociating 1e-7 + (max − min) into
        // (1e-7 + max) − min (0 for a flat channel, lavapipe did) and a value recomputed
        // with another rounding from leaving [min, max]
        let a = mm[mo + 2u * c];
        let range = max(mm[mo + 2u * c + 1u] - a, 0.0);
        acc += clamp(value(c, i, wid.z) - a, 0.0, range) / (1e-7 + range);
    }
    let at = wid.z * prm.mstride + prm.map_off + i;
    if (!FIRST) {
        acc += map[at];
    }
    map[at] = acc;
}
