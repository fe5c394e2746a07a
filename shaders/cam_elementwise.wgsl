// cam_elementwise.wgsl: CAM methods that weight every element of a block output A by its own
// gradient g = ∂score/∂A (no pooling), then sum over channels.
// Bindings: 0 prm, 1 blk: (C, HW) block output A, 2 grad: (C, HW) g, 3 gmax: max g over the
//           block, at gmax[gmax_off] (METHOD 2), 4 maps: (Σ h·w) rw
// map: maps[map_off + p] = max(0, Σ_c t(g[c, p], blk[c, p])) with (METHOD, pipeline constant)
//   0 hirescam:            t(g, a) = g·a
//   1 layercam:            t(g, a) = ReLU(g)·a
//   2 layercam-official:   t(g, a) = ReLU(g) / (max ReLU(g) + 1e-8)·a, max over the whole block
//   3 gradcam-elementwise: t(g, a) = ReLU(g·a)
// Batch: workgroup z is the image; blk and grad (C·HW) and maps (mstride) hold the images one
//   after another, and image z's block maximum is gmax[gmax_off + z] (`reduce` rows of one
//   value, the images one after another).

struct Params { c: u32, hw: u32, map_off: u32, gmax_off: u32, mstride: u32 }

override METHOD: u32 = 0u;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> blk: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> gmax: array<f32>;
@group(0) @binding(4) var<storage, read_write> maps: array<f32>;

// 4 consecutive positions per invocation
@compute @workgroup_size(64)
fn map(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p0 = ((wid.y * nwg.x + wid.x) * 64u + lid) * 4u;
    if (p0 >= prm.hw) {
        return;
    }
    let last = prm.hw - 1u;
    var scale = 1.0;
    if (METHOD == 2u) {
        scale = 1.0 / (max(gmax[prm.gmax_off + wid.z], 0.0) + 1e-8);
    }
    var acc = vec4(0.0);
    for (var c = 0u; c < prm.c; c++) {
        let o = (wid.z * prm.c + c) * prm.hw; // this image's channel c
        let i = vec4(o + p0, o + min(p0 + 1u, last), o + min(p0 + 2u, last), o + min(p0 + 3u, last));
        var g = vec4(grad[i.x], grad[i.y], grad[i.z], grad[i.w]);
        let a = vec4(blk[i.x], blk[i.y], blk[i.z], blk[i.w]);
        if (METHOD == 3u) {
            acc += max(g * a, vec4(0.0));
            continue;
        }
        if (METHOD != 0u) {
            g = max(g, vec4(0.0));
        }
        if (METHOD == 2u) {
            g = g * scale;
        }
        acc = fma(g, a, acc);
    }
    // a loop lavapipe does not write out (the prelude's `hidden`)
    for (var j = 0u; j < hidden(4u, arrayLength(&maps)); j++) {
        if (p0 + j < prm.hw) {
            maps[wid.z * prm.mstride + prm.map_off + p0 + j] = max(acc[j], 0.0);
        }
    }
}
