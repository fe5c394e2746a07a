// conv.wgsl: dense k×k convolution with stride and zero padding (pad_t rows above, pad_l
// columns left; below and right what OH, OW need), BN folded
// into (wt, bias), optional activation (prelude's act). Used for the stem; its data gradient
// (`backward_input`, at the end) serves FullGrad only.
// Bindings: 0 prm, 1 x: (Cin, H, W) f32, 2 wt: the weights transposed to (Cin·K·K, Cout) as an
//           rgba32float texture of ceil(Cout/4) × Cin·K·K texels (`ops::conv::upload_weights`),
//           3 bias: (Cout) f32, 4 y: (Cout, OH, OW) f32
// Math: y[o,i,j] = act(bias[o] + Σ_{c,u,v} wt[o,c,u,v]·x[c, i·s−pad_t+u, j·s−pad_l+v])
// Batch: workgroup z is the image of a batch; x and y hold the images one after another.
// Each invocation owns a strip of TW = 8 outputs of one row for 8 output channels (two
// texels). Per input row of the window it loads the TW·S + K − S values once; each weight
// texel feeds 4 channels. This file is a template: `ops::conv::source` sets K and S and writes
// the body at `@body`: loops over the input channels and the kernel rows (bound by uniforms,
// so that they stay loops) around straight-line code for one row of the window (on lavapipe a
// looped row was slower).
// As it stands it is valid WGSL that writes nothing.

struct Params { cin: u32, h: u32, w: u32, cout: u32, oh: u32, ow: u32, k: u32, stride: u32, pad_t: u32, pad_l: u32, _p1: u32, _p2: u32 }

const K = 3u;
const S = 2u;
override APPLY_ACT: bool = true; // act() of the prelude, or none

const TW = 8u;

var<private> xoff: u32; // this image's x and y in the batch (workgroup z)
var<private> yoff: u32;

// chunk c of x (x is bound as vec4 chunks, its buffer a multiple of 16 bytes long), clamped
// into the buffer: a window row is read as the chunks that hold it (`ops::window`), since on a
// CPU adapter each storage load is a loop over the SIMD lanes whatever its width
fn x_chunk(c: i32) -> vec4<f32> {
    return x[u32(clamp(c, 0, i32(arrayLength(&x)) - 1))];
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var wt: texture_2d<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// bias[o], o clamped to the last channel (an o past it is not stored)
fn bias_at(o: u32) -> f32 {
    return bias[min(o, prm.cout - 1u)];
}

fn emit(o: u32, at: u32, v: f32, b: f32) {
    if (o < prm.cout) {
        var r = v + b;
        if (APPLY_ACT) {
            r = act(r);
        }
        y[yoff + o * prm.oh * prm.ow + at] = r;
    }
}

// the invocation's 8 columns × 8 channels: out_acc[16·lid + 2j] channels 0..3 of column j,
// + 1 channels 4..7
var<workgroup> out_acc: array<vec4<f32>, 1024>;

fn store_strip(o: u32, o0: u32, oi: u32, oj0: u32) {
    // the 8 channels' biases, loaded once
    let bl = vec4(bias_at(o0), bias_at(o0 + 1u), bias_at(o0 + 2u), bias_at(o0 + 3u));
    let bh = vec4(bias_at(o0 + 4u), bias_at(o0 + 5u), bias_at(o0 + 6u), bias_at(o0 + 7u));
    // the bound hidden (the prelude's `hidden`; y is never empty): with min(TW, ..), which told
    // Mesa 25's lavapipe that it turns at most 8 times, it wrote the loop out, two thirds of the
    // kernel's code (its LLVM IR 51,700 lines, 24,300 with this), 1.31–1.38 s of first-use code
    // generation against 0.50 s (Mesa 22.3: 0.26–0.27 against 0.17–0.20; a 2-core Xeon VM,
    // 2026-12-06; the run time the same within noise)
    for (var j = 0u; j < min(hidden(TW, arrayLength(&y)), prm.ow - oj0); j++) {
        let at = oi * prm.ow + oj0 + j;
        let l = out_acc[o + 2u * j];
        let h = out_acc[o + 2u * j + 1u];
        for (var e = 0u; e < 4u; e++) {
            emit(o0 + e, at, l[e], bl[e]);
            emit(o0 + 4u + e, at, h[e], bh[e]);
        }
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
    xoff = wid.z * prm.cin * prm.h * prm.w;
    yoff = wid.z * prm.cout * prm.oh * prm.ow;
    let oct = idx / (prm.oh * strips); // output channels 8·oct .. 8·oct + 7
    let rem = idx % (prm.oh * strips);
    let oi = rem / strips;
    let oj0 = (rem % strips) * TW;
    let pad_t = i32(prm.pad_t);
    let j_lo = i32(oj0 * S) - i32(prm.pad_l);
    let q0 = oct * 2u;
    let q1 = min(q0 + 1u, (prm.cout + 3u) / 4u - 1u);
    // generated: accumulators l_j, h_j (column oj0 + j; channels 8·oct .. +3 and +4 .. +7);
    // for each input channel c and kernel row u whose input row is inside the image, the
    // window v_t = x[row + j_lo + t] (zero outside the row), t < 7·S + K, read as the chunks
    // that hold it, then per tap v the texels w0 = wt[q0, tap],
    // w1 = wt[q1, tap] and l_j = fma(w0, v_{j·S+v}, l_j), h_j = fma(w1, v_{j·S+v}, h_j); then
    // the accumulators to out_acc and `store_strip`.
    //@body
}

// backward_input (FullGrad's gradient at the input): dx[c, y, x] = Σ_{o,u,v} wt[o,c,u,v]·
// g'[o, i, j] over the taps with i·S − pad_t + u = y and j·S − pad_l + v = x, where
// g' = g·act'(z) with APPLY_ACT (g is the gradient at act(z), z the pre-activation), else g.
// An invocation per element of dx. Bindings: 2 wt (as above), 5 g: (Cout, OH, OW),
// 6 z: (Cout, OH, OW), 7 dx: (Cin, H, W) written. Batch: workgroup z is the image, as above.
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read> zpre: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn backward_input(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (idx >= prm.cin * prm.h * prm.w) {
        return;
    }
    let go = wid.z * prm.cout * prm.oh * prm.ow; // this image's g and z
    let c = idx / (prm.h * prm.w);
    let yx = idx % (prm.h * prm.w);
    let yy = i32(yx / prm.w) + i32(prm.pad_t);
    let xx = i32(yx % prm.w) + i32(prm.pad_l);
    var acc = 0.0;
    for (var u = 0u; u < K; u++) {
        let t = yy - i32(u);
        if (t < 0 || t % i32(S) != 0 || u32(t) / S >= prm.oh) {
            continue;
        }
        let i = u32(t) / S;
        for (var v = 0u; v < K; v++) {
            let q = xx - i32(v);
            if (q < 0 || q % i32(S) != 0 || u32(q) / S >= prm.ow) {
                continue;
            }
            let j = u32(q) / S;
            let tap = (c * K + u) * K + v;
            for (var o4 = 0u; o4 < (prm.cout + 3u) / 4u; o4++) {
                let wv = textureLoad(wt, vec2(o4, tap), 0);
                for (var e = 0u; e < 4u; e++) {
                    let o = o4 * 4u + e;
                    if (o < prm.cout) {
                        let at = go + (o * prm.oh + i) * prm.ow + j;
                        var gv = g[at];
                        if (APPLY_ACT) {
                            gv *= dact(zpre[at]);
                        }
                        acc = fma(wv[e], gv, acc);
                    }
                }
            }
        }
    }
    dx[wid.z * prm.cin * prm.h * prm.w + idx] = acc;
}
