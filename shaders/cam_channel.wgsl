// cam_channel.wgsl: CAM methods that weight each channel of a block output A by one number
// computed from its gradient g = ∂score/∂A (FEM: from A alone), then map = ReLU(Σ_k w_k·A_k).
// Bindings: 0 prm, 1 blk: (C, HW) block output A, 2 grad: (C, HW) g, 3 w: channel weights rw
//           (read at w_off + c by `weighted_map`), 4 maps: (Σ h·w) rw, 5 hvp: (C, HW) h,
//           7 table: from_parts' blocks (u32), 8 gparts, 9 aparts: row partials of g and A
//           (the GEMMs' PART 2 and 3, gemm.wgsl), 10 amax: max |A| per block rw
// channel_weights, per channel k (sums over the HW positions; METHOD, pipeline constant):
//   0 gradcam:   w_k = Σ g / HW
//   1 gradcampp: a = g² / (2g² + (Σ A_k)·g³ + 1e-6), a = 0 where g = 0;  w_k = Σ ReLU(g)·a
//   2 xgradcam:  w_k = Σ (g·A) / (Σ A_k + 1e-7)
//   3 gradcampp-official: w_k = Σ g²/(2g² + h·g + 1e-10)·ReLU(g), h = hvp (the head's
//     Hessian-vector product ∂(Σ g)/∂A; last block only)
//   4 fem:       w_k = (number of positions with A_k > m + 2·s) / HW, m = Σ A_k / HW,
//     s = sqrt(Σ (A_k − m)² / HW) (the population std, two passes as numpy's np.std)
//   5 shapleycam: w_k = Σ (g − ½·h) / HW, h = hvp (the head's Hessian-vector product H·A;
//     last block only)
// weighted_map: maps[map_off + p] = max(0, Σ_c w[w_off + c]·blk[c, p]) (weighted_map_lanes: the
//   same, 32 lanes a position, on GPUs for blocks of at most 4,096 positions)
// from_parts: one workgroup per row of `table` (8 words: block l, C, HW, parts, offset of its
//   rows in gparts and aparts, w_off, whether gparts holds its rows, lanes): amax[l] = max over
//   A's partials (max_p |A_k| over every channel k), and where the gradient's partials are
//   there, Grad-CAM's w[w_off + k] = Σ g's partials of channel k / HW. Every block's activation
//   statistic and every Grad-CAM weight in one dispatch, from partials the GEMMs that made A
//   and g wrote, instead of a pass over A and g per block.
// Batch: workgroup z is the image; blk, grad, hvp (C·HW), w (wstride), maps (mstride), the
//   partials' rows (C an image within a block's, as the GEMMs write them) and amax (nb) hold
//   the images one after another.

// lanes: invocations per channel in channel_weights, 8 (8 channels a workgroup), 64 (one) or,
// with the GPU-shaped kernels on blocks of 8,192 positions or more, CW_WG (one; 1,024, or 256
// where the adapter allows no more: `Gpu::wide_workgroup`). 64 where 8 would each take over
// lavapipe's 65,535 loop turns, which it would end silently (`cam::channel::lanes`: FEM's three
// passes from ~175,000 positions, Grad-CAM's one from ~520,000)
struct Params { c: u32, hw: u32, map_off: u32, w_off: u32, lanes: u32, wstride: u32, mstride: u32, nb: u32 }

override METHOD: u32 = 0u;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> blk: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> maps: array<f32>;
@group(0) @binding(5) var<storage, read> hvp: array<f32>;
@group(0) @binding(7) var<storage, read> table: array<u32>;
@group(0) @binding(8) var<storage, read> gparts: array<f32>;
@group(0) @binding(9) var<storage, read> aparts: array<f32>;
@group(0) @binding(10) var<storage, read_write> amax: array<f32>;

// channel_weights' workgroup: 64 invocations, 64 / prm.lanes channels of prm.lanes lanes; or,
// on GPUs for blocks of many positions, one channel of CW_WG lanes (`cam::channel::lanes`)
override CW_WG: u32 = 64u;
var<workgroup> part: array<f32, 1024>;
var<workgroup> part32: array<f32, 32>;

// Σ of the lanes' partials of this channel, in lane order (every lane gets it); past 64 lanes,
// each 32 in order, then those sums in order
fn lane_sum(lid: u32, v: f32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    var s = 0.0;
    if (prm.lanes <= 64u) {
        let first = lid - lid % prm.lanes;
        for (var j = 0u; j < prm.lanes; j++) {
            s += part[first + j];
        }
    } else {
        if (lid % 32u == 0u) {
            var t = 0.0;
            for (var j = 0u; j < 32u; j++) {
                t += part[lid + j];
            }
            part32[lid / 32u] = t;
        }
        workgroupBarrier();
        for (var j = 0u; j < prm.lanes / 32u; j++) {
            s += part32[j];
        }
    }
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(CW_WG)
fn channel_weights(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let lanes = prm.lanes;
    let c = (wid.y * nwg.x + wid.x) * (CW_WG / lanes) + lid / lanes;
    let lane = lid % lanes;
    let live = c < prm.c;
    let base = (wid.z * prm.c + c) * prm.hw; // this image's channel c
    // first pass: Σ A (gradcampp, xgradcam) and Σ g·A (xgradcam) or Σ g (gradcam)
    var sa = 0.0;
    var sg = 0.0;
    if (live) {
        for (var i = lane; i < prm.hw; i += lanes) {
            let g = grad[base + i];
            let a = blk[base + i];
            sa += a;
            if (METHOD == 2u) {
                sg += g * a;
            } else if (METHOD == 5u) {
                sg += g - 0.5 * hvp[base + i];
            } else {
                sg += g;
            }
        }
    }
    // every invocation reaches the barriers, live or not
    let total_a = lane_sum(lid, sa);
    let total_g = lane_sum(lid, sg);
    var out = 0.0;
    if (METHOD == 0u || METHOD == 5u) {
        out = total_g / f32(prm.hw);
    } else if (METHOD == 2u) {
        out = total_g / (total_a + 1e-7);
    } else if (METHOD == 4u) {
        let n = f32(prm.hw);
        let mean = total_a / n;
        var s = 0.0;
        if (live) {
            for (var i = lane; i < prm.hw; i += lanes) {
                let d = blk[base + i] - mean;
                s += d * d;
            }
        }
        let th = mean + 2.0 * sqrt(lane_sum(lid, s) / n);
        var above = 0.0;
        if (live) {
            for (var i = lane; i < prm.hw; i += lanes) {
                above += select(0.0, 1.0, blk[base + i] > th);
            }
        }
        out = lane_sum(lid, above) / n;
    } else if (METHOD == 3u) {
        var s = 0.0;
        if (live) {
            for (var i = lane; i < prm.hw; i += lanes) {
                let g = grad[base + i];
                let g2 = g * g;
                s += g2 / (2.0 * g2 + hvp[base + i] * g + 1e-10) * max(g, 0.0);
            }
        }
        out = lane_sum(lid, s);
    } else {
        var s = 0.0;
        if (live) {
            for (var i = lane; i < prm.hw; i += lanes) {
                let g = grad[base + i];
                let g2 = g * g;
                let aij = select(0.0, g2 / (2.0 * g2 + total_a * g2 * g + 1e-6), g != 0.0);
                s += max(g, 0.0) * aij;
            }
        }
        out = lane_sum(lid, s);
    }
    if (live && lane == 0u) {
        w[wid.z * prm.wstride + prm.w_off + c] = out;
    }
}

// 8 consecutive positions per invocation: each weight load serves 8 FMAs.
@compute @workgroup_size(64)
fn weighted_map(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p0 = ((wid.y * nwg.x + wid.x) * 64u + lid) * 8u;
    if (p0 >= prm.hw) {
        return;
    }
    let last = prm.hw - 1u;
    var lo = vec4(0.0); // positions p0 .. p0 + 3
    var hi = vec4(0.0); // p0 + 4 .. p0 + 7
    let wo = wid.z * prm.wstride + prm.w_off; // this image's weights
    for (var c = 0u; c < prm.c; c++) {
        let a = vec4(w[wo + c]);
        let o = (wid.z * prm.c + c) * prm.hw;
        lo = fma(a, vec4(blk[o + p0], blk[o + min(p0 + 1u, last)], blk[o + min(p0 + 2u, last)], blk[o + min(p0 + 3u, last)]), lo);
        hi = fma(a, vec4(blk[o + min(p0 + 4u, last)], blk[o + min(p0 + 5u, last)], blk[o + min(p0 + 6u, last)], blk[o + min(p0 + 7u, last)]), hi);
    }
    // a loop lavapipe does not write out (the prelude's `hidden`)
    for (var j = 0u; j < hidden(8u, arrayLength(&maps)); j++) {
        if (p0 + j < prm.hw) {
            maps[wid.z * prm.mstride + prm.map_off + p0 + j] = max(select(hi[j % 4u], lo[j % 4u], j < 4u), 0.0);
        }
    }
}

var<workgroup> wm: array<f32, 256>;

// GPUs, blocks of at most 4,096 positions (`cam::channel::weighted_map`): 8 positions per
// workgroup, 32 lanes per position over the channels (lane q adds the c ≡ q (mod 32) in
// order, then the position's first lane adds the lanes in order), so that no invocation walks
// all C channels alone: B4's last blocks have 448 channels over 150 positions, 19 invocations
// for the 8-position form.
@compute @workgroup_size(256)
fn weighted_map_lanes(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = (wid.y * nwg.x + wid.x) * 8u + lid / 32u;
    let lane = lid % 32u;
    var acc = 0.0;
    if (p < prm.hw) {
        for (var c = lane; c < prm.c; c += 32u) {
            acc = fma(w[wid.z * prm.wstride + prm.w_off + c], blk[(wid.z * prm.c + c) * prm.hw + p], acc);
        }
    }
    wm[lid] = acc;
    workgroupBarrier();
    if (lane == 0u && p < prm.hw) {
        var s = 0.0;
        for (var q = 0u; q < 32u; q++) {
            s += wm[lid + q];
        }
        maps[wid.z * prm.mstride + prm.map_off + p] = max(s, 0.0);
    }
}

// from_parts' scratch: each invocation's partial max and sum, then its running block max
// invocations in `from_parts`' workgroup: 1,024 on GPUs that allow it, else 256
// (`Gpu::wide_workgroup`)
override FP_WG: u32 = 256u;
var<workgroup> fp_max: array<f32, 1024>;
var<workgroup> fp_sum: array<f32, 1024>;

// partial i of the row at `base` of A's partials (`act`) or g's, 0 past the row's end
fn fp_part(act: bool, base: u32, i: u32, parts: u32) -> f32 {
    let o = base + min(i, parts - 1u);
    if (act) {
        return select(0.0, aparts[o], i < parts);
    }
    return select(0.0, gparts[o], i < parts);
}

// One workgroup per row of the table; `lanes` (a power of two, table word 7) invocations per
// channel, FP_WG / lanes channels at a time: each lane strides over the channel's partials,
// and the channel's first lane combines the lanes in order.
@compute @workgroup_size(FP_WG)
fn from_parts(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if (wid.x >= prm.c) { // prm.c: the table's rows
        return;
    }
    let t = wid.x * 8u;
    let l = table[t];
    let c = table[t + 1u];
    let hw = table[t + 2u];
    let parts = table[t + 3u];
    let off = table[t + 4u];
    let w_off = table[t + 5u];
    let has_g = table[t + 6u] != 0u;
    let lanes = table[t + 7u];
    let lane = lid % lanes;
    var block_max = 0.0;
    for (var k0 = 0u; k0 < c; k0 += FP_WG / lanes) {
        let k = k0 + lid / lanes;
        var m = 0.0;
        var s = 0.0;
        if (k < c) {
            let base = off + (wid.z * c + k) * parts; // this image's row of channel k
            // four partials a turn, their loads first (in flight together), combined in
            // order; past the row's end 0, which changes neither the max nor the sum
            for (var i = lane; i < parts; i += 4u * lanes) {
                let a0 = fp_part(true, base, i, parts);
                let a1 = fp_part(true, base, i + lanes, parts);
                let a2 = fp_part(true, base, i + 2u * lanes, parts);
                let a3 = fp_part(true, base, i + 3u * lanes, parts);
                m = max(max(max(max(m, a0), a1), a2), a3);
                if (has_g) {
                    let g0 = fp_part(false, base, i, parts);
                    let g1 = fp_part(false, base, i + lanes, parts);
                    let g2 = fp_part(false, base, i + 2u * lanes, parts);
                    let g3 = fp_part(false, base, i + 3u * lanes, parts);
                    s += g0; s += g1; s += g2; s += g3;
                }
            }
        }
        fp_max[lid] = m;
        fp_sum[lid] = s;
        workgroupBarrier();
        if (lane == 0u && k < c) {
            var cm = 0.0;
            var cs = 0.0;
            for (var j = 0u; j < lanes; j++) {
                cm = max(cm, fp_max[lid + j]);
                cs += fp_sum[lid + j];
            }
            block_max = max(block_max, cm);
            if (has_g) {
                w[wid.z * prm.wstride + w_off + k] = cs / f32(hw);
            }
        }
        workgroupBarrier();
    }
    fp_max[lid] = block_max;
    workgroupBarrier();
    if (lid == 0u) {
        var b = 0.0;
        for (var i = 0u; i < FP_WG; i++) {
            b = max(b, fp_max[i]);
        }
        amax[wid.z * prm.nb + l] = b;
    }
}
