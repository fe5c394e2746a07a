// cam_channel.wgsl: CAM methods that weight each channel of a block output A by one number
// computed from its gradient g = ∂score/∂A (FEM: from A alone), then map = ReLU(Σ_k w_k·A_k).
// Bindings: 0 prm, 1 blk: (C, HW) block output A, 2 grad: (C, HW) g, 3 w: channel weights rw
//           (read at w_off + c by `weighted_map`), 4 maps: (Σ h·w) rw, 5 hvp: (C, HW) h,
//           6 mx: max |A| per channel rw (MAXABS: written at mx_off + c)
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
//   With MAXABS also mx[mx_off + k] = max_p |A_k| from the same loads (the block's activation
//   statistic, otherwise a reduction pass of its own)
// weighted_map: maps[map_off + p] = max(0, Σ_c w[w_off + c]·blk[c, p])

// lanes: invocations per channel in channel_weights, 8 (8 channels a workgroup) or 64 (one):
// 64 where 8 would each take over lavapipe's 65,535 loop turns, which it would end silently
// (`cam::channel::lanes`: FEM's three passes from ~175,000 positions, Grad-CAM's one from
// ~520,000)
struct Params { c: u32, hw: u32, map_off: u32, w_off: u32, mx_off: u32, lanes: u32 }

override METHOD: u32 = 0u;
override MAXABS: bool = false;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> blk: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> maps: array<f32>;
@group(0) @binding(5) var<storage, read> hvp: array<f32>;
@group(0) @binding(6) var<storage, read_write> mx: array<f32>;

// 64 / prm.lanes channels per workgroup of 64, prm.lanes invocations per channel: one
// barrier per sum
var<workgroup> part: array<f32, 64>;

// Σ (or with `take_max`, the max) of the lanes' partials of this channel, in lane order
// (every lane gets it)
fn lane_combine(lid: u32, v: f32, take_max: bool) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    let first = lid - lid % prm.lanes;
    var s = 0.0;
    for (var j = 0u; j < prm.lanes; j++) {
        let x = part[first + j];
        s = select(s + x, max(s, x), take_max);
    }
    workgroupBarrier();
    return s;
}

fn lane_sum(lid: u32, v: f32) -> f32 {
    return lane_combine(lid, v, false);
}

@compute @workgroup_size(64)
fn channel_weights(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let lanes = prm.lanes;
    let c = (wid.y * nwg.x + wid.x) * (64u / lanes) + lid / lanes;
    let lane = lid % lanes;
    let live = c < prm.c;
    let base = c * prm.hw;
    // first pass: Σ A (gradcampp, xgradcam) and Σ g·A (xgradcam) or Σ g (gradcam)
    var sa = 0.0;
    var sg = 0.0;
    var ma = 0.0; // max |A|
    if (live) {
        for (var i = lane; i < prm.hw; i += lanes) {
            let g = grad[base + i];
            let a = blk[base + i];
            sa += a;
            ma = max(ma, abs(a));
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
    if (MAXABS) {
        let m = lane_combine(lid, ma, true);
        if (live && lane == 0u) {
            mx[prm.mx_off + c] = m;
        }
    }
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
        w[prm.w_off + c] = out;
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
    for (var c = 0u; c < prm.c; c++) {
        let a = vec4(w[prm.w_off + c]);
        let o = c * prm.hw;
        lo = fma(a, vec4(blk[o + p0], blk[o + min(p0 + 1u, last)], blk[o + min(p0 + 2u, last)], blk[o + min(p0 + 3u, last)]), lo);
        hi = fma(a, vec4(blk[o + min(p0 + 4u, last)], blk[o + min(p0 + 5u, last)], blk[o + min(p0 + 6u, last)], blk[o + min(p0 + 7u, last)]), hi);
    }
    for (var j = 0u; j < 8u; j++) {
        if (p0 + j < prm.hw) {
            maps[prm.map_off + p0 + j] = max(select(hi[j % 4u], lo[j % 4u], j < 4u), 0.0);
        }
    }
}
