// conv.wgsl: dense k×k convolution with stride and symmetric zero padding, BN folded
// into (wt, bias), optional SiLU. Used for the stem (never differentiated).
// Bindings: 0 prm, 1 x: (Cin, H, W) f32, 2 wt: the weights transposed to (Cin·K·K, Cout) as an
//           rgba32float texture of ceil(Cout/4) × Cin·K·K texels (`ops::conv::upload_weights`),
//           3 bias: (Cout) f32, 4 y: (Cout, OH, OW) f32
// Math: y[o,i,j] = act(bias[o] + Σ_{c,u,v} wt[o,c,u,v]·x[c, i·s−pad+u, j·s−pad+v])
// Each invocation owns a strip of TW = 8 outputs of one row for 8 output channels (two
// texels). Per input row of the window it loads the TW·S + K − S values once; each weight
// texel feeds 4 channels. K and S are pipeline constants so the window loops have fixed trips.

struct Params { cin: u32, h: u32, w: u32, cout: u32, oh: u32, ow: u32, k: u32, stride: u32, pad: u32, _p0: u32, _p1: u32, _p2: u32 }

override K: u32 = 3u;
override S: u32 = 2u;
override ACT: u32 = 1u; // 0: none, 1: silu

const TW = 8u;
const WIN = 20u; // ≥ (TW − 1)·S + K

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var wt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn emit(o: u32, at: u32, v: f32) {
    if (o < prm.cout) {
        var r = v + bias[o];
        if (ACT == 1u) {
            r = r / (1.0 + exp(-r));
        }
        y[o * prm.oh * prm.ow + at] = r;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let strips = (prm.ow + TW - 1u) / TW;
    let octs = (prm.cout + 7u) / 8u;
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (idx >= octs * prm.oh * strips) {
        return;
    }
    let oct = idx / (prm.oh * strips); // output channels 8·oct .. 8·oct + 7
    let rem = idx % (prm.oh * strips);
    let oi = rem / strips;
    let oj0 = (rem % strips) * TW;
    let pad = i32(prm.pad);
    let j_lo = i32(oj0 * S) - pad;
    let q0 = oct * 2u;
    let q1 = min(q0 + 1u, (prm.cout + 3u) / 4u - 1u);
    var lo: array<vec4<f32>, TW>; // channels 8·oct .. +3, per column
    var hi: array<vec4<f32>, TW>; // channels 8·oct + 4 .. +7
    for (var c = 0u; c < prm.cin; c++) {
        for (var u = 0u; u < K; u++) {
            let ii = i32(oi * S) - pad + i32(u);
            if (ii < 0 || ii >= i32(prm.h)) {
                continue;
            }
            let row = (c * prm.h + u32(ii)) * prm.w;
            var win: array<f32, WIN>;
            for (var t = 0u; t < (TW - 1u) * S + K; t++) {
                let jj = j_lo + i32(t);
                let v = x[row + u32(clamp(jj, 0, i32(prm.w) - 1))];
                win[t] = select(0.0, v, jj >= 0 && jj < i32(prm.w));
            }
            for (var v = 0u; v < K; v++) {
                let tap = (c * K + u) * K + v;
                let w0 = textureLoad(wt, vec2(q0, tap), 0);
                let w1 = textureLoad(wt, vec2(q1, tap), 0);
                for (var j = 0u; j < TW; j++) {
                    let xv = vec4(win[j * S + v]);
                    lo[j] = fma(w0, xv, lo[j]);
                    hi[j] = fma(w1, xv, hi[j]);
                }
            }
        }
    }
    let o0 = oct * 8u;
    for (var j = 0u; j < TW; j++) {
        let oj = oj0 + j;
        if (oj < prm.ow) {
            let at = oi * prm.ow + oj;
            for (var e = 0u; e < 4u; e++) {
                emit(o0 + e, at, lo[j][e]);
                emit(o0 + 4u + e, at, hi[j][e]);
            }
        }
    }
}
