// depthwise.wgsl: depthwise k×k convolution with stride and zero padding, BN folded into
// (wt, bias). Forward, and its data gradient.
// Bindings: 0 prm, 1 wt: (C, K, K) f32 as an rgba32float texture of ⌈K·K/4⌉ × C texels,
//           channel c's K·K weights in row c, zero-padded (`gemm::GemmWeights`), 2 bias: (C)
//           f32, 3 x: (C, H, W) f32 (forward input, or the forward input's pre-activation z
//           for the backward), 4 out: rw,
//           5 res: (C, H, W) f32, 6 dy: (C, OH, OW) f32, 7 part: SE pool partial sums rw,
//           8 se_s: (C), 9 se_dm: (C), 10 se_zd: (C, OH, OW) f32 (backward with SE_IN)
//           x, res, dy and se_zd are read as vec4 chunks (see `chunk_of`)
// forward:  out[c,i,j] = bias[c] + Σ_{u,v} wt[c,u,v]·act(x[c, i·s−pad_t+u, j·s−pad_l+v]),
//           act = the prelude's act when prm.in_act (x is the expand conv's pre-activation), else identity.
// backward: out[c,y,x] = act'(x[c,y,x])·Σ_{(i,j,u,v): i·s−pad_t+u=y, j·s−pad_l+v=x} wt[c,u,v]·dy[c,i,j]
//           (+ res[c,y,x] when HAS_RES: the residual path's gradient). With SE_IN, dy is read
//           through the squeeze-excite's backward, dy' = (dy·se_s[c] + se_dm[c]/(OH·OW))·
//           act'(se_zd), in the exact operations of the SE pass it replaces.
// Batch: workgroup z is the image; x, out, part (forward), res, dy and se_zd (backward) hold
// the images one after another, plane = z·C + c; se_s holds C values an image, se_dm C
// rounded up to 4 (as se.wgsl writes them).
// An invocation owns TW = 8 consecutive columns of a band of prm.band rows (of the output in
// the forward, of dx in the backward) and slides down it: each step loads one row (S rows in
// the forward) into registers and adds it into a ring of accumulator rows, then stores the
// row the ring completes. So every input row is loaded once per band, the weights once.
// The paddings (pad_t zero rows above the image, pad_l columns left of it; below and right
// what OH, OW need) are uniforms, read into PAD_T and PAD_L at the top of each kernel.
// This file is a template: `ops::depthwise::source` sets K and S below and writes
// the loop at the two `@rows` markers, its body straight-line code over named registers (one
// body per step keeps the code small: lavapipe's first-use LLVM compile grows with it).
// As it stands it is valid WGSL whose kernels write nothing.

// in_act: 1 when x is the expand conv's pre-activation (act(x) in the forward, act'(x) in the
// backward), 0 when x is the block's input as it is. A uniform rather than an override
// constant, so that both share a pipeline (fewer kernels for lavapipe to generate on a first run).
struct Params { c: u32, h: u32, w: u32, oh: u32, ow: u32, k: u32, stride: u32, pad_t: u32, inv_ohw: f32, band: u32, pad_l: u32, in_act: u32 }

const K = 3u;
const S = 1u;

override HAS_RES: bool = false;
// forward: also write Σ act(out) over the invocation's outputs to part[idx] (idx = c·parts +
// band·strips + strip, parts = bands·strips): the squeeze-excite pool, which se.wgsl's forward
// adds up
override POOL: bool = false;
override SE_IN: bool = false;

const TW = 8u;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var wt: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> part: array<f32>;
@group(0) @binding(8) var<storage, read> se_s: array<f32>;
@group(0) @binding(9) var<storage, read> se_dm: array<f32>;
@group(0) @binding(10) var<storage, read> se_zd: array<vec4<f32>>;

// SE_IN: the invocation's channel's se_s[c] and se_dm[c]/(OH·OW), set once by `backward`
var<private> se_sc: f32;
var<private> se_mc: f32;

// act(v) where output (oi, oj) exists, else 0: a term of the SE pool
fn pool_term(v: f32, oi: u32, oj: u32) -> f32 {
    return select(0.0, act(v), oi < prm.oh && oj < prm.ow);
}

fn strip_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

// Invocation idx's tile of a (C, rows, cols) plane cut into bands of `th` rows and strips of TW
// columns: (channel, first row, first column); x = C marks an idx past the last tile.
fn tile_of(idx: u32, rows: u32, cols: u32, th: u32) -> vec3<u32> {
    let strips = (cols + TW - 1u) / TW;
    let per_c = ((rows + th - 1u) / th) * strips;
    if (idx >= prm.c * per_c) {
        return vec3(prm.c, 0u, 0u);
    }
    let rem = idx % per_c;
    return vec3(idx / per_c, (rem / strips) * th, (rem % strips) * TW);
}

// The input windows: a run of consecutive floats starting at flat index a (i32: a ≥ −8) is
// read as the aligned vec4 chunks that hold it (the tensors are bound as vec4 arrays, their
// buffers a multiple of 16 bytes long), then shifted into place. On a CPU adapter each storage
// load is a loop over the SIMD lanes, in the code and at run time, so a chunk of four floats
// costs about what one float did; the chunk index is clamped into the buffer, and a value
// outside the row it belongs to is never used (the callers zero it).
fn x_chunk(c: i32) -> vec4<f32> {
    return x[u32(clamp(c, 0, i32(arrayLength(&x)) - 1))];
}

fn dy_chunk(c: i32) -> vec4<f32> {
    return dy[u32(clamp(c, 0, i32(arrayLength(&dy)) - 1))];
}

fn zd_chunk(c: i32) -> vec4<f32> {
    return se_zd[u32(clamp(c, 0, i32(arrayLength(&se_zd)) - 1))];
}

fn res_chunk(c: i32) -> vec4<f32> {
    return res[u32(clamp(c, 0, i32(arrayLength(&res)) - 1))];
}

// act(v) when x is a pre-activation (prm.in_act), else v
fn xact(v: f32) -> f32 {
    if (prm.in_act != 0u) {
        return act(v);
    }
    return v;
}

// dy' = dy through the SE's backward with SE_IN (zd: the depthwise output's pre-activation
// at the same position), else dy
fn dyse(v: f32, zd: f32) -> f32 {
    if (SE_IN) {
        return (v * se_sc + se_mc) * dact(zd);
    }
    return v;
}

@compute @workgroup_size(64)
fn forward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let PAD_T = i32(prm.pad_t);
    let PAD_L = i32(prm.pad_l);
    let idx = strip_index(lid, wid, nwg);
    let tile = tile_of(idx, prm.oh, prm.ow, prm.band);
    let c = tile.x;
    if (c >= prm.c) {
        return;
    }
    let oi0 = tile.y; // first output row of the band
    let oj0 = tile.z;
    let j_lo = i32(oj0 * S) - PAD_L; // input column of the window's first slot
    let plane = wid.z * prm.c + c; // this image's channel c in the batch
    let pidx = idx + wid.z * (prm.c * ((prm.oh + prm.band - 1u) / prm.band) * ((prm.ow + TW - 1u) / TW));
    let base = plane * prm.h * prm.w;
    let b = bias[c];
    // generated (`forward_rows`): the K·K weights w_u_v; the ring a_m_j = b of ⌈K/S⌉ output
    // rows; the loop over output rows t from oi0 − (⌈K/S⌉ − 1): load the last S input rows of
    // row t's window, add them into the ring, store (and pool) row t when it is in the band,
    // shift the ring.
    //@rows forward
}

// act'(z)·g + r: a dx value from its gradient sum g, the forward input's pre-activation z
// (with prm.in_act) and the residual path's gradient r (with HAS_RES)
fn dx_of(g: f32, z: f32, r: f32) -> f32 {
    var v = g;
    if (prm.in_act != 0u) {
        v = v * dact(z);
    }
    if (HAS_RES) {
        v += r;
    }
    return v;
}

@compute @workgroup_size(64)
fn backward(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let PAD_T = i32(prm.pad_t);
    let PAD_L = i32(prm.pad_l);
    // the strips start q = pad_l mod S columns left of the image, so that x0 + PAD_L is a
    // multiple of S whatever the padding (one code for every pad_l)
    let q = prm.pad_l % S;
    let tile = tile_of(strip_index(lid, wid, nwg), prm.h, prm.w + q, prm.band);
    let c = tile.x;
    if (c >= prm.c) {
        return;
    }
    let y0 = tile.y; // first dx row of the band
    // first dx column of the strip (−q for the first): S divides x0 + PAD_L, so S divides
    // x0 + PAD_L − K + 1 + t exactly when it divides t − K + 1
    let x0 = i32(tile.z) - i32(q);
    // output (y, x0 + j) gets tap (u, v) from dy[(y + PAD_T − u) / S, (x0 + j + PAD_L − v) / S]
    // where S divides both; window slot t holds the dy column for x0 + PAD_L − (K − 1) + t.
    let t_lo = x0 + PAD_L - i32(K) + 1;
    let plane = wid.z * prm.c + c; // this image's channel c in the batch
    let dbase = plane * prm.oh * prm.ow;
    if (SE_IN) {
        se_sc = se_s[plane];
        se_mc = se_dm[wid.z * 4u * ((prm.c + 3u) / 4u) + c] * prm.inv_ohw;
    }
    // generated (`backward_rows`): the weights w_u_v; the ring a_u_j = 0 of K dx rows; the
    // loop over the dy rows t that reach the band: add row t into dx row t·S − PAD_T + u through
    // kernel row u, put_dx the S rows it completes when they are in the band, shift the ring.
    //@rows backward
}
