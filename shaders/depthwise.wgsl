// depthwise.wgsl: depthwise k×k convolution with stride and zero padding, BN folded into
// (wt, bias). Forward, and its data gradient.
// Bindings: 0 prm, 1 wt: (C, K, K) f32, 2 bias: (C) f32, 3 x: (C, H, W) f32 (forward input,
//           or the forward input's pre-activation z for the backward), 4 out: rw,
//           5 res: (C, H, W) f32, 6 dy: (C, OH, OW) f32
// forward:  out[c,i,j] = bias[c] + Σ_{u,v} wt[c,u,v]·act(x[c, i·s−pad+u, j·s−pad+v]),
//           act = silu when IN_SILU (x is the expand conv's pre-activation), else identity.
// backward: out[c,y,x] = act'(x[c,y,x])·Σ_{(i,j,u,v): i·s−pad+u=y, j·s−pad+v=x} wt[c,u,v]·dy[c,i,j]
//           (+ res[c,y,x] when HAS_RES: the residual path's gradient).
// Each invocation owns a strip of TW = 8 consecutive outputs of one row in a0 .. a7. Per
// kernel row it loads the input window the strip needs once (with its SiLU) and the K
// weights once, then every tap reads registers.
// This file is a template: `ops::depthwise::source` sets K, S and PAD below and writes the
// kernel rows as straight-line code at the two `@rows` markers (loops over register arrays
// are not unrolled by every compiler; on lavapipe the looped form was 1.2–1.4× slower). As
// it stands (no rows) it is valid WGSL that only adds the bias.

struct Params { c: u32, h: u32, w: u32, oh: u32, ow: u32, k: u32, stride: u32, pad: u32 }

const K = 3u;
const S = 1u;
const PAD = 1;

override IN_SILU: bool = true;
override HAS_RES: bool = false;

const TW = 8u;

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

fn strip_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

// act(x[row + jj]) for input column jj, zero outside the row
fn xin(row: u32, jj: i32) -> f32 {
    var v = x[row + u32(clamp(jj, 0, i32(prm.w) - 1))];
    if (IN_SILU) {
        v = v * sigmoid(v);
    }
    return select(0.0, v, jj >= 0 && jj < i32(prm.w));
}

// dy[drow + tt / S] for a tt that S divides, zero outside the row
fn dyin(drow: u32, tt: i32) -> f32 {
    let oj = tt / i32(S);
    let v = dy[drow + u32(clamp(oj, 0, i32(prm.ow) - 1))];
    return select(0.0, v, tt >= 0 && oj < i32(prm.ow));
}

@compute @workgroup_size(64)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let strips = (prm.ow + TW - 1u) / TW;
    let idx = strip_index(lid, wid, nwg);
    if (idx >= prm.c * prm.oh * strips) {
        return;
    }
    let c = idx / (prm.oh * strips);
    let rem = idx % (prm.oh * strips);
    let oi = rem / strips;
    let oj0 = (rem % strips) * TW;
    let j_lo = i32(oj0 * S) - PAD; // input column of the window's first slot
    let i_lo = i32(oi * S) - PAD; // input row of kernel row 0
    let base = c * prm.h * prm.w;
    let wrow = c * K * K;
    let b = bias[c];
    var a0 = b; var a1 = b; var a2 = b; var a3 = b; var a4 = b; var a5 = b; var a6 = b; var a7 = b;
    // kernel row u: if (0 ≤ i_lo + u < H) { let row = base + (i_lo + u)·W; let v_t = xin(row, j_lo + t)
    //   for t < 7·S + K; let w_v = wt[wrow + u·K + v]; a_j = fma(w_v, v_{j·S+v}, a_j) for v = 0 .. K − 1 }
    //@rows forward
    let obase = (c * prm.oh + oi) * prm.ow;
    let acc = array<f32, TW>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var j = 0u; j < TW; j++) {
        if (oj0 + j < prm.ow) {
            out[obase + oj0 + j] = acc[j];
        }
    }
}

@compute @workgroup_size(64)
fn backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let strips = (prm.w + TW - 1u) / TW;
    let idx = strip_index(lid, wid, nwg);
    if (idx >= prm.c * prm.h * strips) {
        return;
    }
    let c = idx / (prm.h * strips);
    let rem = idx % (prm.h * strips);
    let yi = i32(rem / strips);
    let x0 = (rem % strips) * TW; // a multiple of TW, so S divides x0 + t exactly when it divides PAD − K + 1 + t
    // output column x0 + j gets tap v from dy column (x0 + j + PAD − v) / S when S divides it;
    // window slot t holds the dy column for x0 + PAD − (K − 1) + t.
    let t_lo = i32(x0) + PAD - i32(K) + 1;
    let dbase = c * prm.oh * prm.ow;
    let wrow = c * K * K;
    var a0 = 0.0; var a1 = 0.0; var a2 = 0.0; var a3 = 0.0; var a4 = 0.0; var a5 = 0.0; var a6 = 0.0; var a7 = 0.0;
    // kernel row u: let ti = yi + PAD − u; if (ti ≥ 0, S | ti, ti / S < OH) { let drow = dbase + (ti / S)·OW;
    //   let d_t = dyin(drow, t_lo + t) for the slots t < TW + K − 1 with S | PAD − K + 1 + t;
    //   let w_v = wt[wrow + u·K + v]; a_j = fma(w_v, d_{j+K−1−v}, a_j) for v = 0 .. K − 1 where d exists }
    //@rows backward
    let obase = (c * prm.h + u32(yi)) * prm.w;
    let acc = array<f32, TW>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var j = 0u; j < TW; j++) {
        let xx = x0 + j;
        if (xx < prm.w) {
            var g = acc[j];
            if (IN_SILU) {
                let z = x[obase + xx];
                let sg = sigmoid(z);
                g = g * sg * (1.0 + z * (1.0 - sg));
            }
            if (HAS_RES) {
                g += res[obase + xx];
            }
            out[obase + xx] = g;
        }
    }
}
