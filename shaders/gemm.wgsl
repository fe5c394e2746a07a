// gemm.wgsl: pointwise (1×1) convolution as GEMM. Used for the expand, project and head
// convs (forward) and their data gradients (with Wᵀ).
// Bindings: 0 prm, 1 a: the weights (M, K) as an rgba32float texture of ceil(K/4) × M texels,
//           zero-padded past K (`ops::gemm::GemmWeights`), 2 x: (K, P) f32, 3 bias: (M) f32,
//           4 scale: (K) f32, 5 res: (M, P) f32, 6 y: (M, P) f32, 9 zd: (M, P) f32,
//           10 part: (M, parts) f32 rw, 11 x4: x again, as vec4 chunks (`pack_x`); res and
//           zd are bound as vec4 chunks (see `has_res`)
// Math: y[m,p] = Σ_k a[m,k]·T(x[k,p]) + bias[m] + res[m,p],
//       T(v) = v (IN_MODE 0) or act(v)·scale[k] (IN_MODE 1: the projection's input, its SE
//       scale, or ones without SE, fused into the loads; act: the prelude's).
// Row partials (flags bits 2–3, PART): part[part_off + (z·M + m)·parts + q] = the combined
//       term over the invocation's columns of row m, q its column group (`regs`: 8 columns,
//       parts = 8·⌈P/64⌉; `tiled`: 4 columns, parts = 16·⌈P/64⌉; empty past P), for the
//       batch's first part_n images. PART 1: Σ y·act(zd) (the projection's backward, for the
//       SE's ds = Σ_p du·act(z_d), se.wgsl); 2: Σ y (a block output's gradient, for Grad-CAM's
//       channel means); 3: max |y| (a block output, for max |A|) (cam_channel.wgsl
//       `from_parts`). Each spares a reduction pass over y of its own.
// Batch: workgroup z is the image of a batch. x, res, y (and xw/xt) hold the images one
// after another; scale holds K values per image (ones without SE are N·K long too).
// Three kernels, picked per adapter and K by `ops::gemm` (`Variant::for_k`):
//  * `pack_x` then `regs` (CPU adapters, e.g. lavapipe). On a software rasteriser a
//    storage-buffer load costs a per-lane loop while a texel fetch is one vector gather, so
//    `pack_x` first writes T(x) once into the rgba32float scratch texture xw (binding 8,
//    row k at linear texels k·P4 .. k·P4 + P4 − 1, P4 = ceil(P/4), PACK_W texels per texture
//    row), and `regs` reads it back as xt (binding 7) along with the weights. One `regs`
//    invocation owns 32 rows × 8 columns in registers; a workgroup is 8 invocations (one
//    SIMD group) covering 32 × 64. No workgroup memory in the k loop: each weight texel
//    feeds 8 FMAs, each activation texel 128. The rows are written out by hand (a looped
//    form over a register array was 1.4× slower there); they leave in one loop over the rows,
//    since 32 written-out stores were most of the kernel's code (lavapipe's LLVM took 4.6 s
//    over it on its first dispatch, against 0.3 s for the loop). Each turn picks its row from
//    the registers by a chain of 31 selects: they used to go through workgroup memory, but on
//    lavapipe (Mesa 22.3) each workgroup-memory access is a loop over the SIMD lanes, as a
//    storage access is: the selects took the GEMMs with K ≤ 144 6–15% faster (`cargo bench
//    --bench kernels -- gemm`, 2026-12-06, minima of alternating rounds), the long-K ones
//    unchanged, for no more code generation. Where the device has
//    subgroups of 8, `ops::gemm` (`Variant::RegsSubgroup`) rewrites the 32 `wrow` fetches as 4
//    fetches per lane broadcast across the subgroup (at the `@regs weights` marker) and stores
//    the rows as aligned vec4 chunks (include/gemm_subgroup_store.wgsl). Where the
//    adapter allows (`Gpu::image_reads`), `regs` reads `a` and `xt` as read-only storage
//    textures (`pipelines::image_reads` rewrites their declarations and loads): on lavapipe
//    the same texels came 13–25% faster that way over the B4 GEMMs (2026-12-05), for more
//    code to compile.
//  * `tiled` (GPUs): 64 × 64 tile per workgroup of 16 × 16, 4 × 4 outputs per invocation,
//    K step 32 through workgroup memory, the next step's loads in flight during this one's
//    FMAs.
//  * `slim` (GPUs, K ≥ 192): 32 × 32 tile per workgroup of 64 × 4, the K steps split over
//    the four groups of 64, their partial tiles added at the end (below); its wide form
//    (K ≥ 768 where the adapter allows 32 KiB of workgroup memory) has eight groups.

// flags: bit 0 = add bias, bit 1 = add res, bits 2–3 = PART (above), bit 4 = ROWS_FIRST
// (`regs`: the grid's x runs over the row blocks and its y over the column blocks, so that the
// workgroups that read one stretch of x run one after another while it is in cache; `ops::gemm`
// sets it where x is the larger operand, P > M: on lavapipe, whose threads take workgroups in
// x-then-y order, it took the 24→144 expansion at 150×225 from 12.9–14.1 to 11.8–12.7 ms and
// the 32→192 data gradient at 75×113 from 4.4–5.0 to 4.1–4.9 ms, 2026-12-06). For `regs`, uniform
// flags rather than override constants, so that every GEMM of a plan shares one pipeline (its
// only constant is ACT, for PART 1 in a ReLU6 model): on lavapipe each distinct pipeline costs
// LLVM code generation on its first dispatch. `tiled` takes them as the FLAGS constant.
struct Params { m: u32, k: u32, p: u32, flags: u32, part_off: u32, part_n: u32 }

override IN_MODE: u32 = 0u;
// Whether the epilogue can take PART 1 (Σ y·act(zd)). `regs` takes its flags as uniforms, and a
// CPU adapter runs every branch of the epilogue for every output under a mask, so the GEMMs
// without PART 1 (all but the projections' backward, every GEMM of a model without SE) run a
// pipeline without it: the zd load and act() of each output had cost B4's GEMM family about 4%
// of its time on lavapipe (2026-12-05)
override DOT_ACT: bool = true;
// `tiled` (GPUs, where a pipeline more costs little) takes the flags as this constant, so that
// its epilogue holds only the branches it takes; −1 (`regs`, `pack_x`): the uniform's
override FLAGS: i32 = -1;

fn flags() -> u32 {
    if (FLAGS >= 0) {
        return u32(FLAGS);
    }
    return prm.flags;
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var a: texture_2d<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var xt: texture_2d<f32>;
@group(0) @binding(8) var xw: texture_storage_2d<rgba32float, write>;
@group(0) @binding(9) var<storage, read> zd: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> part: array<f32>;
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;

const PACK_W = 4096u; // texels per row of the scratch texture (`ops::gemm::XPack`)

// this image's offsets in the batch (workgroup z), set by each entry point
var<private> xo: u32;  // x: z·K·P
var<private> yo: u32;  // y and res: z·M·P
var<private> so: u32;  // scale: z·K
var<private> to: u32;  // the packed texture: z·K·ceil(P/4) texels
var<private> zb: u32;  // the image (workgroup z)

fn set_batch(z: u32) {
    zb = z;
    xo = z * prm.k * prm.p;
    yo = z * prm.m * prm.p;
    so = z * prm.k;
    to = z * prm.k * ((prm.p + 3u) / 4u);
}

fn pack_coord(i: u32) -> vec2<u32> {
    return vec2(i % PACK_W, i / PACK_W);
}

// T(x[k, p]), zero for k ≥ K
fn load_x(k: u32, p: u32) -> f32 {
    if (k >= prm.k) {
        return 0.0;
    }
    let v = x[xo + k * prm.p + p];
    if (IN_MODE == 1u) {
        return act(v) * scale[so + k];
    }
    return v;
}

fn row_bias(m: u32) -> f32 {
    if ((flags() & 1u) != 0u) {
        return bias[m];
    }
    return 0.0;
}

fn part_kind() -> u32 {
    return (flags() >> 2u) & 3u;
}

// res and zd are bound as vec4 chunks (their buffers are a multiple of 16 bytes long): on a
// CPU adapter a storage load is a loop over the SIMD lanes whatever its width, so `regs` reads
// a row's 8 values as the three chunks that hold them (`chunks8`) rather than one by one. An
// adapter runs the loads of a branch its flags skip too (under a zero mask), so this matters
// to every `regs` GEMM, residual or not.
fn has_res() -> bool {
    return (flags() & 2u) != 0u;
}

fn dot_act() -> bool {
    return DOT_ACT && part_kind() == 1u;
}

// res at flat index o, 0 without the residual flag (`tiled`, `slim`)
fn res_at(o: u32) -> f32 {
    if (has_res()) {
        return res[o / 4u][o % 4u];
    }
    return 0.0;
}

// zd at flat index o, 0 without PART 1 (`tiled`, `slim`)
fn zd_at(o: u32) -> f32 {
    if (dot_act()) {
        return zd[o / 4u][o % 4u];
    }
    return 0.0;
}

// the 8 floats from flat index o on, from the chunks g0, g1, g2 that hold them
fn chunks8(g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, o: u32) -> Acc {
    let r = i32(o % 4u);
    return Acc(funnel(g0, g1, r), funnel(g1, g2, r));
}

fn res8(o: u32) -> Acc {
    let n = arrayLength(&res) - 1u;
    let q = o / 4u;
    return chunks8(res[min(q, n)], res[min(q + 1u, n)], res[min(q + 2u, n)], o);
}

fn zd8(o: u32) -> Acc {
    let n = arrayLength(&zd) - 1u;
    let q = o / 4u;
    return chunks8(zd[min(q, n)], zd[min(q + 1u, n)], zd[min(q + 2u, n)], o);
}

// y[m, p] = acc + b + rv; b = row_bias(m), loaded once per row by the caller; rv: res[m, p]
// with the residual flag, else 0; zv: zd[m, p] with PART 1.
// Returns the row partial's term (0 without PART).
fn epilogue(m: u32, p: u32, acc: f32, b: f32, rv: f32, zv: f32) -> f32 {
    let o = yo + m * prm.p + p;
    let v = acc + b + rv;
    y[o] = v;
    switch part_kind() {
        case 1u: {
            if (DOT_ACT) {
                return v * act(zv);
            }
            return 0.0;
        }
        case 2u: { return v; }
        case 3u: { return abs(v); }
        default: { return 0.0; }
    }
}

// a row partial with one more term: the max for PART 3, else the sum
fn part_add(acc: f32, t: f32) -> f32 {
    return select(acc + t, max(acc, t), part_kind() == 3u);
}

// With PART, the row partial of row m, column group q (of `parts`), for the first part_n
// images of the batch
fn put_part(m: u32, q: u32, parts: u32, v: f32) {
    if (part_kind() != 0u && zb < prm.part_n) {
        part[prm.part_off + (zb * prm.m + m) * parts + q] = v;
    }
}

// ---- regs -------------------------------------------------------------------------------

// One row's 8 accumulators (two vec4 over p).
alias Acc = array<vec4<f32>, 2>;
// Four k-rows of the 8 columns: xs[2·kk + j] holds x[k + kk, p0 + 4j .. p0 + 4j + 3].
alias XTile = array<vec4<f32>, 8>;

// xw[k, q] = T(x[k, 4q .. 4q + 3]), zero past P. An invocation packs PACK_RUN texels of row k
// (a CPU adapter's per-invocation costs and T's scale load paid once for them), reading x as
// vec4 chunks (x4: on a CPU adapter a storage load is a loop over the SIMD lanes whatever its
// width): texel q lies in chunks c and c + 1, the next in c + 1 and c + 2: one load a texel.
const PACK_RUN = 8u;

fn x4_at(c: u32) -> vec4<f32> { return x4[min(c, arrayLength(&x4) - 1u)]; }

@compute @workgroup_size(64)
fn pack_x(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let p4 = (prm.p + 3u) / 4u;
    let runs = (p4 + PACK_RUN - 1u) / PACK_RUN; // per row
    let k = idx / runs;
    if (k >= prm.k) {
        return;
    }
    set_batch(wid.z);
    let q_lo = (idx % runs) * PACK_RUN;
    var sk = 1.0;
    if (IN_MODE == 1u) {
        sk = scale[so + k];
    }
    let row = xo + k * prm.p; // flat index of x[k, 0]
    let r = i32(row % 4u);
    var c = row / 4u + q_lo;
    var lo = x4_at(c);
    // a loop lavapipe does not write out (the prelude's `hidden`): first-use code generation of
    // the two packing variants 0.49 → 0.17 s on Mesa 25, 0.24 → 0.09 on Mesa 22.3 (2-core EPYC
    // VM, 2026-12-06, medians of 3), their share of a B4 explain's GEMM time the same (0.246–
    // 0.272 of it against 0.247–0.264, three alternating `bench --quick --slowest 500`)
    for (var t = 0u; t < hidden(PACK_RUN, arrayLength(&x4)); t++) {
        let q = q_lo + t;
        let hi = x4_at(c + 1u);
        var v = funnel(lo, hi, r);
        let l = prm.p - 1u - min(q * 4u, prm.p - 1u); // the row's last column, from 4q
        v = select(vec4(0.0), v, vec4(0u, 1u, 2u, 3u) <= vec4(l));
        if (IN_MODE == 1u) {
            v = act4(v) * sk;
        }
        if (q < p4) {
            textureStore(xw, pack_coord(to + k * p4 + q), v);
        }
        lo = hi;
        c += 1u;
    }
}

var<private> q0: u32; // the invocation's first texel column

// T(x[k, 4·(q0 + dq) ..]) from the packed texture, zero for k ≥ K
fn load_x4(k: u32, dq: u32) -> vec4<f32> {
    let p4 = (prm.p + 3u) / 4u;
    let v = textureLoad(xt, pack_coord(to + min(k, prm.k - 1u) * p4 + min(q0 + dq, p4 - 1u)), 0);
    return select(vec4(0.0), v, k < prm.k);
}

// weights a[m, 4·kq .. 4·kq + 3], the row clamped to M − 1 (its result is not stored)
fn wrow(m: u32, kq: u32) -> vec4<f32> {
    return textureLoad(a, vec2(kq, min(m, prm.m - 1u)), 0);
}

fn row(c: ptr<function, Acc>, av: vec4<f32>, xs: XTile) {
    (*c)[0] = fma(vec4(av.x), xs[0], (*c)[0]);
    (*c)[1] = fma(vec4(av.x), xs[1], (*c)[1]);
    (*c)[0] = fma(vec4(av.y), xs[2], (*c)[0]);
    (*c)[1] = fma(vec4(av.y), xs[3], (*c)[1]);
    (*c)[0] = fma(vec4(av.z), xs[4], (*c)[0]);
    (*c)[1] = fma(vec4(av.z), xs[5], (*c)[1]);
    (*c)[0] = fma(vec4(av.w), xs[6], (*c)[0]);
    (*c)[1] = fma(vec4(av.w), xs[7], (*c)[1]);
}

fn store(m: u32, p0: u32, c: Acc) {
    if (m >= prm.m) {
        return;
    }
    let b = row_bias(m);
    let o = yo + m * prm.p + p0;
    var rv = Acc();
    if (has_res()) {
        rv = res8(o);
    }
    var zv = Acc();
    if (dot_act()) {
        zv = zd8(o);
    }
    var part_v = 0.0;
    for (var j = 0u; j < 8u; j++) {
        if (p0 + j < prm.p) {
            let e = epilogue(m, p0 + j, c[j / 4u][j % 4u], b, rv[j / 4u][j % 4u], zv[j / 4u][j % 4u]);
            part_v = part_add(part_v, e);
        }
    }
    put_regs_part(m, p0, part_v);
}

// `regs`' row partial of row m from the invocation at column p0: column group p0 / 8 of 8·⌈P/64⌉
fn put_regs_part(m: u32, p0: u32, v: f32) {
    put_part(m, p0 / 8u, ((prm.p + 63u) / 64u) * 8u, v);
}

// b where t, else a: one link of the chain by which `regs` picks a row's accumulators by index
fn pick(a: Acc, b: Acc, t: bool) -> Acc {
    return Acc(select(a[0], b[0], t), select(a[1], b[1], t));
}

//@regs store
@compute @workgroup_size(8, 1)
fn regs(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let rows_first = (prm.flags & 16u) != 0u; // ROWS_FIRST (above)
    let wx = select(wid.x, wid.y, rows_first);
    let p0 = (wx * 8u + lid.x) * 8u;
    let m0 = select(wid.y, wid.x, rows_first) * 32u;
    q0 = p0 / 4u;
    set_batch(wid.z);
    var c0: Acc; var c1: Acc; var c2: Acc; var c3: Acc; var c4: Acc; var c5: Acc; var c6: Acc; var c7: Acc;
    var c8: Acc; var c9: Acc; var c10: Acc; var c11: Acc; var c12: Acc; var c13: Acc; var c14: Acc; var c15: Acc;
    var c16: Acc; var c17: Acc; var c18: Acc; var c19: Acc; var c20: Acc; var c21: Acc; var c22: Acc; var c23: Acc;
    var c24: Acc; var c25: Acc; var c26: Acc; var c27: Acc; var c28: Acc; var c29: Acc; var c30: Acc; var c31: Acc;
    for (var kq = 0u; kq < (prm.k + 3u) / 4u; kq++) {
        let k = kq * 4u;
        //@regs weights
        let xs = XTile(
            load_x4(k, 0u), load_x4(k, 1u),
            load_x4(k + 1u, 0u), load_x4(k + 1u, 1u),
            load_x4(k + 2u, 0u), load_x4(k + 2u, 1u),
            load_x4(k + 3u, 0u), load_x4(k + 3u, 1u),
        );
        row(&c0, wrow(m0 + 0u, kq), xs); row(&c1, wrow(m0 + 1u, kq), xs);
        row(&c2, wrow(m0 + 2u, kq), xs); row(&c3, wrow(m0 + 3u, kq), xs);
        row(&c4, wrow(m0 + 4u, kq), xs); row(&c5, wrow(m0 + 5u, kq), xs);
        row(&c6, wrow(m0 + 6u, kq), xs); row(&c7, wrow(m0 + 7u, kq), xs);
        row(&c8, wrow(m0 + 8u, kq), xs); row(&c9, wrow(m0 + 9u, kq), xs);
        row(&c10, wrow(m0 + 10u, kq), xs); row(&c11, wrow(m0 + 11u, kq), xs);
        row(&c12, wrow(m0 + 12u, kq), xs); row(&c13, wrow(m0 + 13u, kq), xs);
        row(&c14, wrow(m0 + 14u, kq), xs); row(&c15, wrow(m0 + 15u, kq), xs);
        row(&c16, wrow(m0 + 16u, kq), xs); row(&c17, wrow(m0 + 17u, kq), xs);
        row(&c18, wrow(m0 + 18u, kq), xs); row(&c19, wrow(m0 + 19u, kq), xs);
        row(&c20, wrow(m0 + 20u, kq), xs); row(&c21, wrow(m0 + 21u, kq), xs);
        row(&c22, wrow(m0 + 22u, kq), xs); row(&c23, wrow(m0 + 23u, kq), xs);
        row(&c24, wrow(m0 + 24u, kq), xs); row(&c25, wrow(m0 + 25u, kq), xs);
        row(&c26, wrow(m0 + 26u, kq), xs); row(&c27, wrow(m0 + 27u, kq), xs);
        row(&c28, wrow(m0 + 28u, kq), xs); row(&c29, wrow(m0 + 29u, kq), xs);
        row(&c30, wrow(m0 + 30u, kq), xs); row(&c31, wrow(m0 + 31u, kq), xs);
    }
    // out one row per turn of a loop whose bound is a uniform (see the header), the turn's
    // row picked from the registers by a chain of selects
    for (var r = 0u; r < min(32u, prm.m - m0); r++) {
        var v = c0;
        v = pick(v, c1, r == 1u); v = pick(v, c2, r == 2u); v = pick(v, c3, r == 3u);
        v = pick(v, c4, r == 4u); v = pick(v, c5, r == 5u); v = pick(v, c6, r == 6u);
        v = pick(v, c7, r == 7u); v = pick(v, c8, r == 8u); v = pick(v, c9, r == 9u);
        v = pick(v, c10, r == 10u); v = pick(v, c11, r == 11u); v = pick(v, c12, r == 12u);
        v = pick(v, c13, r == 13u); v = pick(v, c14, r == 14u); v = pick(v, c15, r == 15u);
        v = pick(v, c16, r == 16u); v = pick(v, c17, r == 17u); v = pick(v, c18, r == 18u);
        v = pick(v, c19, r == 19u); v = pick(v, c20, r == 20u); v = pick(v, c21, r == 21u);
        v = pick(v, c22, r == 22u); v = pick(v, c23, r == 23u); v = pick(v, c24, r == 24u);
        v = pick(v, c25, r == 25u); v = pick(v, c26, r == 26u); v = pick(v, c27, r == 27u);
        v = pick(v, c28, r == 28u); v = pick(v, c29, r == 29u); v = pick(v, c30, r == 30u);
        v = pick(v, c31, r == 31u);
        store(m0 + r, p0, v);
    }
}

// y[m, p .. p + 3] (those within P) = acc through the epilogue; returns their row partial
// (`tiled`, `slim`)
fn store4(m: u32, p: u32, acc: vec4<f32>) -> f32 {
    let b = row_bias(m);
    var part_v = 0.0;
    for (var j = 0u; j < 4u; j++) {
        if (p + j < prm.p) {
            let o = yo + m * prm.p + p + j;
            part_v = part_add(part_v, epilogue(m, p + j, acc[j], b, res_at(o), zd_at(o)));
        }
    }
    return part_v;
}

// ---- tiled ------------------------------------------------------------------------------

// `slim`'s groups of 64 invocations, each with a share of the K steps, and the vec4s of each
// tile array (`tiled` uses 512 of them): 4 and 512 here, 8 and 1,024 in the wide form
// (`ops::gemm::slim_wide_source`, adapters with 32 KiB of workgroup memory)
const SLIM_G = 4u;
const TILE = 512u;

var<workgroup> tile_a: array<vec4<f32>, TILE>; // [kk][m / 4], 32 × 16
var<workgroup> tile_x: array<vec4<f32>, TILE>; // [kk][p / 4], 32 × 16

// The K step's weights: texel u of its `rows` rows (`tiled`: 64 rows × 8 texels, row u % 64,
// so that an SIMD group's writes below fall in distinct banks; `slim`: 32 rows × 4 texels),
// zero past M and K
fn a_texel(m0: u32, k0: u32, u: u32, rows: u32) -> vec4<f32> {
    let am = u % rows;
    let aq = k0 / 4u + u / rows;
    if (m0 + am < prm.m && aq < (prm.k + 3u) / 4u) {
        return textureLoad(a, vec2(aq, m0 + am), 0);
    }
    return vec4(0.0);
}

fn put_a(u: u32, v: vec4<f32>) {
    let am = u % 64u;
    let q = u / 64u;
    tile_a[(q * 4u) * 16u + am / 4u][am % 4u] = v.x;
    tile_a[(q * 4u + 1u) * 16u + am / 4u][am % 4u] = v.y;
    tile_a[(q * 4u + 2u) * 16u + am / 4u][am % 4u] = v.z;
    tile_a[(q * 4u + 3u) * 16u + am / 4u][am % 4u] = v.w;
}

// The K step's activations: value i of its k × `cols` block, row-major (`tiled`: 32 k × 64 p;
// `slim`: 16 k × 32 p), zero past P (and K, load_x)
fn x_value(k0: u32, p0: u32, i: u32, cols: u32) -> f32 {
    let xp = i % cols;
    if (p0 + xp < prm.p) {
        return load_x(k0 + i / cols, p0 + xp);
    }
    return 0.0;
}

fn put_x(i: u32, v: f32) {
    tile_x[(i / 64u) * 16u + (i % 64u) / 4u][i % 4u] = v;
}

// 64 × 64 outputs per workgroup of 16 × 16, 4 × 4 per invocation, K in steps of 32 through
// workgroup memory (16 KiB, the WebGPU default limit). The next step's loads are issued before
// the current step's FMAs, so that their latency hides behind them: on an H200 each step of a
// long-K GEMM (the projections of B4's last blocks, K = 1,632 over 150 positions, 15
// workgroups) was bound by its loads' latency, not by arithmetic.
@compute @workgroup_size(16, 16)
fn tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * 16u + tx;
    let p0 = wid.x * 64u;
    let m0 = wid.y * 64u;
    set_batch(wid.z);
    var acc = array<vec4<f32>, 4>();
    // this step's loads, in registers: 2 weight texels and 8 activations per invocation
    var a0 = a_texel(m0, 0u, t, 64u);
    var a1 = a_texel(m0, 0u, t + 256u, 64u);
    var x0 = x_value(0u, p0, t, 64u);
    var x1 = x_value(0u, p0, t + 256u, 64u);
    var x2 = x_value(0u, p0, t + 512u, 64u);
    var x3 = x_value(0u, p0, t + 768u, 64u);
    var x4 = x_value(0u, p0, t + 1024u, 64u);
    var x5 = x_value(0u, p0, t + 1280u, 64u);
    var x6 = x_value(0u, p0, t + 1536u, 64u);
    var x7 = x_value(0u, p0, t + 1792u, 64u);
    for (var k0 = 0u; k0 < prm.k; k0 += 32u) {
        put_a(t, a0);
        put_a(t + 256u, a1);
        put_x(t, x0);
        put_x(t + 256u, x1);
        put_x(t + 512u, x2);
        put_x(t + 768u, x3);
        put_x(t + 1024u, x4);
        put_x(t + 1280u, x5);
        put_x(t + 1536u, x6);
        put_x(t + 1792u, x7);
        workgroupBarrier();
        let kn = k0 + 32u;
        if (kn < prm.k) {
            a0 = a_texel(m0, kn, t, 64u);
            a1 = a_texel(m0, kn, t + 256u, 64u);
            x0 = x_value(kn, p0, t, 64u);
            x1 = x_value(kn, p0, t + 256u, 64u);
            x2 = x_value(kn, p0, t + 512u, 64u);
            x3 = x_value(kn, p0, t + 768u, 64u);
            x4 = x_value(kn, p0, t + 1024u, 64u);
            x5 = x_value(kn, p0, t + 1280u, 64u);
            x6 = x_value(kn, p0, t + 1536u, 64u);
            x7 = x_value(kn, p0, t + 1792u, 64u);
        }
        for (var kk = 0u; kk < 32u; kk++) {
            let a4 = tile_a[kk * 16u + ty];
            let x4v = tile_x[kk * 16u + tx];
            acc[0] = fma(vec4(a4.x), x4v, acc[0]);
            acc[1] = fma(vec4(a4.y), x4v, acc[1]);
            acc[2] = fma(vec4(a4.z), x4v, acc[2]);
            acc[3] = fma(vec4(a4.w), x4v, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + ty * 4u + i;
        if (m >= prm.m) {
            break;
        }
        // column group (p0 + 4·tx) / 4 of 16·⌈P/64⌉
        put_part(m, wid.x * 16u + tx, ((prm.p + 63u) / 64u) * 16u, store4(m, p0 + tx * 4u, acc[i]));
    }
}

// ---- slim -------------------------------------------------------------------------------

// `slim` (GPUs, K ≥ 192, `ops::gemm::SLIM_K`; made for the long-K GEMMs whose 64 × 64 tiles
// leave most of the device idle, such as the projections of B4's last blocks: K = 1,632 over
// 150 positions is 15 tiles of `tiled`): 32 × 32 outputs per workgroup of 64 × SLIM_G. The K
// steps are split over the workgroup's SLIM_G groups of 64 invocations, each group with 4 × 4
// outputs per invocation, K steps of 16 through its own 128 vec4s of tile_a and tile_x, the
// next step's loads in flight; at the end the partial tiles are added through workgroup
// memory, in group order. Four times the workgroups of `tiled`, and 1/SLIM_G of its steps each
// (the wide form: 8 groups, for the longest K, where even those workgroups leave a GPU's
// cores idle: B4's last projections have K = 1,632 and 2,688 over 150 positions). Row
// partials in `tiled`'s layout (4 columns a group, 16·⌈P/64⌉ groups a row): the last column of
// workgroups also writes the empty groups past its tiles.

// into the group's share of tile_a (from `base`), [kk][m / 4], 16 × 8
fn slim_put_a(base: u32, u: u32, v: vec4<f32>) {
    let am = u % 32u;
    let q = u / 32u;
    tile_a[base + (q * 4u) * 8u + am / 4u][am % 4u] = v.x;
    tile_a[base + (q * 4u + 1u) * 8u + am / 4u][am % 4u] = v.y;
    tile_a[base + (q * 4u + 2u) * 8u + am / 4u][am % 4u] = v.z;
    tile_a[base + (q * 4u + 3u) * 8u + am / 4u][am % 4u] = v.w;
}

// into the group's share of tile_x, [kk][p / 4], 16 × 8
fn slim_put_x(base: u32, i: u32, v: f32) {
    tile_x[base + (i / 32u) * 8u + (i % 32u) / 4u][i % 4u] = v;
}

// vec4 j of (SLIM_G − 1)·256 (the partial tiles of groups 1 on) in tile_a, then tile_x
fn spill(j: u32, v: vec4<f32>) {
    if (j < TILE) {
        tile_a[j] = v;
    } else {
        tile_x[j - TILE] = v;
    }
}

fn unspill(j: u32) -> vec4<f32> {
    if (j < TILE) {
        return tile_a[j];
    }
    return tile_x[j - TILE];
}

@compute @workgroup_size(64, SLIM_G)
fn slim(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = lid.x; // the invocation in its group
    let g = lid.y; // the group: 1/SLIM_G of the K steps
    let tx = t % 8u; // columns p0 + 4·tx ..
    let ty = t / 8u; // rows m0 + 4·ty ..
    let p0 = wid.x * 32u;
    let m0 = wid.y * 32u;
    set_batch(wid.z);
    let base = g * 128u;
    // every group takes `per` steps of 16 (the same count, for the barriers); loads past K
    // are zeros
    let per = ((prm.k + 15u) / 16u + SLIM_G - 1u) / SLIM_G;
    var k0 = g * per * 16u;
    var acc = array<vec4<f32>, 4>();
    // this step's loads, in registers: 2 weight texels and 8 activations per invocation
    // (constant-bound loops, unrolled by the compiler)
    var av: array<vec4<f32>, 2>;
    var xv: array<f32, 8>;
    for (var j = 0u; j < 2u; j++) {
        av[j] = a_texel(m0, k0, t + 64u * j, 32u);
    }
    for (var j = 0u; j < 8u; j++) {
        xv[j] = x_value(k0, p0, t + 64u * j, 32u);
    }
    for (var s = 0u; s < per; s++) {
        for (var j = 0u; j < 2u; j++) {
            slim_put_a(base, t + 64u * j, av[j]);
        }
        for (var j = 0u; j < 8u; j++) {
            slim_put_x(base, t + 64u * j, xv[j]);
        }
        workgroupBarrier();
        k0 += 16u;
        if (s + 1u < per) {
            for (var j = 0u; j < 2u; j++) {
                av[j] = a_texel(m0, k0, t + 64u * j, 32u);
            }
            for (var j = 0u; j < 8u; j++) {
                xv[j] = x_value(k0, p0, t + 64u * j, 32u);
            }
        }
        for (var kk = 0u; kk < 16u; kk++) {
            let a4 = tile_a[base + kk * 8u + ty];
            let x4v = tile_x[base + kk * 8u + tx];
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4(a4[i]), x4v, acc[i]);
            }
        }
        workgroupBarrier();
    }
    if (g > 0u) {
        for (var i = 0u; i < 4u; i++) {
            spill(((g - 1u) * 64u + t) * 4u + i, acc[i]);
        }
    }
    workgroupBarrier();
    if (g != 0u) {
        return;
    }
    for (var h = 0u; h + 1u < SLIM_G; h++) {
        for (var i = 0u; i < 4u; i++) {
            acc[i] += unspill((h * 64u + t) * 4u + i);
        }
    }
    let parts = ((prm.p + 63u) / 64u) * 16u;
    let q = wid.x * 8u + tx; // this invocation's column group
    let last = wid.x + 1u == (prm.p + 31u) / 32u;
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + ty * 4u + i;
        if (m >= prm.m) {
            break;
        }
        put_part(m, q, parts, store4(m, p0 + tx * 4u, acc[i]));
        if (last && q + 8u < parts) {
            put_part(m, q + 8u, parts, 0.0);
        }
    }
}
