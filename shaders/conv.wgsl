// conv.wgsl: dense k×k convolution with stride and symmetric zero padding, BN folded
// into (wt, bias), optional SiLU. Used for the stem (never differentiated).
// Bindings: 0 prm, 1 x: (Cin, H, W) f32, 2 wt: (Cout, Cin, K, K) f32, 3 bias: (Cout) f32,
//           4 y: (Cout, OH, OW) f32
// Math: y[o,i,j] = act(bias[o] + Σ_{c,u,v} wt[o,c,u,v]·x[c, i·s−pad+u, j·s−pad+v])

struct Params { cin: u32, h: u32, w: u32, cout: u32, oh: u32, ow: u32, k: u32, stride: u32, pad: u32, _p0: u32, _p1: u32, _p2: u32 }

override ACT: u32 = 1u; // 0: none, 1: silu

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    let total = prm.cout * prm.oh * prm.ow;
    if (idx >= total) {
        return;
    }
    let o = idx / (prm.oh * prm.ow);
    let rem = idx % (prm.oh * prm.ow);
    let oi = i32(rem / prm.ow);
    let oj = i32(rem % prm.ow);
    let k = i32(prm.k);
    var acc = bias[o];
    for (var c = 0u; c < prm.cin; c++) {
        for (var u = 0; u < k; u++) {
            let ii = oi * i32(prm.stride) - i32(prm.pad) + u;
            if (ii < 0 || ii >= i32(prm.h)) {
                continue;
            }
            for (var v = 0; v < k; v++) {
                let jj = oj * i32(prm.stride) - i32(prm.pad) + v;
                if (jj < 0 || jj >= i32(prm.w)) {
                    continue;
                }
                let xv = x[(c * prm.h + u32(ii)) * prm.w + u32(jj)];
                acc += wt[((o * prm.cin + c) * prm.k + u32(u)) * prm.k + u32(v)] * xv;
            }
        }
    }
    if (ACT == 1u) {
        acc = acc / (1.0 + exp(-acc));
    }
    y[idx] = acc;
}
