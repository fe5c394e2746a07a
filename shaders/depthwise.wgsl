// depthwise.wgsl: depthwise k×k convolution with stride and symmetric zero padding,
// BN folded into (wt, bias). Forward, and its data gradient.
// Bindings: 0 prm, 1 wt: (C, K, K) f32, 2 bias: (C) f32, 3 x: (C, H, W) f32 (forward input,
//           or the forward input's pre-activation z for the backward), 4 out: rw,
//           5 res: (C, H, W) f32, 6 dy: (C, OH, OW) f32
// forward:  out[c,i,j] = bias[c] + Σ_{u,v} wt[c,u,v]·act(x[c, i·s−pad+u, j·s−pad+v]),
//           act = silu when IN_SILU (x is the expand conv's pre-activation), else identity.
// backward: out[c,y,x] = act'(x[c,y,x])·Σ_{(i,j,u,v): i·s−pad+u=y, j·s−pad+v=x} wt[c,u,v]·dy[c,i,j]
//           (+ res[c,y,x] when HAS_RES: the residual path's gradient).

struct Params { c: u32, h: u32, w: u32, oh: u32, ow: u32, k: u32, stride: u32, pad: u32 }

override IN_SILU: bool = true;
override HAS_RES: bool = false;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    let ohw = prm.oh * prm.ow;
    if (idx >= prm.c * ohw) {
        return;
    }
    let c = idx / ohw;
    let rem = idx % ohw;
    let oi = i32(rem / prm.ow);
    let oj = i32(rem % prm.ow);
    let k = i32(prm.k);
    let base = c * prm.h * prm.w;
    var acc = bias[c];
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
            var xv = x[base + u32(ii) * prm.w + u32(jj)];
            if (IN_SILU) {
                xv = xv * sigmoid(xv);
            }
            acc += wt[(c * prm.k + u32(u)) * prm.k + u32(v)] * xv;
        }
    }
    out[idx] = acc;
}

@compute @workgroup_size(256)
fn backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    let hw = prm.h * prm.w;
    if (idx >= prm.c * hw) {
        return;
    }
    let c = idx / hw;
    let rem = idx % hw;
    let yi = i32(rem / prm.w);
    let xj = i32(rem % prm.w);
    let k = i32(prm.k);
    let s = i32(prm.stride);
    let obase = c * prm.oh * prm.ow;
    var acc = 0.0;
    for (var u = 0; u < k; u++) {
        let ti = yi + i32(prm.pad) - u;
        if (ti < 0 || ti % s != 0) {
            continue;
        }
        let oi = ti / s;
        if (oi >= i32(prm.oh)) {
            continue;
        }
        for (var v = 0; v < k; v++) {
            let tj = xj + i32(prm.pad) - v;
            if (tj < 0 || tj % s != 0) {
                continue;
            }
            let oj = tj / s;
            if (oj >= i32(prm.ow)) {
                continue;
            }
            acc += wt[(c * prm.k + u32(u)) * prm.k + u32(v)] * dy[obase + u32(oi) * prm.ow + u32(oj)];
        }
    }
    if (IN_SILU) {
        let z = x[idx];
        let sg = sigmoid(z);
        acc = acc * sg * (1.0 + z * (1.0 - sg));
    }
    if (HAS_RES) {
        acc += res[idx];
    }
    out[idx] = acc;
}
