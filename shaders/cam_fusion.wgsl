// cam_fusion.wgsl: the per-block maps of a CAM method fused into one map at the model input
// size, then min-max normalised.
// Bindings: 0 prm, 3 maps: (Σ h·w), 4 bmeta: per fused block vec4(map offset, h, w, block l),
//           5 fused: (H, W) rw, 6 mm: (2) [min, max] rw, 7 norm: (H, W) rw,
//           8 bnorm: per fused block (min, max) of its map (rules 2–4; written by stats),
//           9 stats: per model block l: map max at l, map mean at total + l (written by stats),
//           10 base: (H, W), added to the rule's result when BASE (FullGrad's input term),
//           11 gmeta: per group of fused blocks whose maps share a size vec4(offset in gsum,
//           h·w, first fused block, blocks), 12 gsum: (Σ_g h_g·w_g) rw
// fuse: u_b = bilinear_align_corners(map_b)(y, x), n_b = (u_b − min_b)/(max_b − min_b + 1e-7);
//   RULE 0 sum (Combi-CAM): Σ u_b;  1 mean: Σ u_b / B;  2 mean-normalised: Σ n_b / B;
//   3 max: max_b n_b;  4 product: Π_b n_b  (B = prm.total)
//   For rules 0 and 1 `fuse` reads the groups' sums (maps = gsum, bmeta per group): the
//   upsampling is linear and takes the same taps for maps of one size, so Σ_b up(map_b) =
//   Σ_g up(Σ_{b ∈ g} map_b), with a few upsampled maps for 32 (B4 has five sizes).
// stats: one workgroup per fused block b (block l = bmeta[b].w of `total` blocks): the map's
//   max and mean into stats[l] and stats[total + l], its (min, max) into bnorm[2b], bnorm[2b+1];
//   with prm.gtotal > 0, the workgroups after the nblocks-th add up the groups' maps into
//   gsum, one element an invocation (the same dispatch: neither reads what the other writes)
// Batch: workgroup z is the image; maps (or gsum; prm.mstride floats an image), fused and norm
//   (H·W), mm (2), bnorm (2·nblocks), stats (2·total), gsum (gtotal) and base (H·W) hold the
//   images one after another.
// minmax: mm = (min fused, max fused);  normalize: norm = (fused − min)/(max − min), or 0 when
// the map is flat: max − min ≤ 1e-5·max(|min|, |max|), where min-max would only stretch
// float32 rounding noise to [0, 1]

struct Params { out_h: u32, out_w: u32, nblocks: u32, total: u32, ngroups: u32, gtotal: u32, mstride: u32, _p: u32 }

override RULE: u32 = 0u;
override BASE: bool = false;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(3) var<storage, read> maps: array<f32>;
@group(0) @binding(4) var<storage, read> bmeta: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> fused: array<f32>;
@group(0) @binding(6) var<storage, read_write> mm: array<f32>;
@group(0) @binding(7) var<storage, read_write> norm: array<f32>;
@group(0) @binding(8) var<storage, read_write> bnorm: array<f32>;
@group(0) @binding(9) var<storage, read_write> stats: array<f32>;
@group(0) @binding(10) var<storage, read> base: array<f32>;
@group(0) @binding(11) var<storage, read> gmeta: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read_write> gsum: array<f32>;

//@include resample

@compute @workgroup_size(256)
fn fuse(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= prm.out_h * prm.out_w) {
        return;
    }
    let oy = idx / prm.out_w;
    let ox = idx % prm.out_w;
    let zo = wid.z * prm.mstride; // this image's maps
    let bo = wid.z * 2u * prm.nblocks; // and their ranges
    var acc = 0.0;
    if (RULE == 4u) {
        acc = 1.0;
    }
    for (var b = 0u; b < prm.nblocks; b++) {
        let md = bmeta[b];
        let off = md.x;
        let h = md.y;
        let w = md.z;
        let t = taps(zo + off, h, w, oy, ox, prm.out_h, prm.out_w);
        let u = blend(t, maps[t.i00], maps[t.i01], maps[t.i10], maps[t.i11]);
        let n = (u - bnorm[bo + 2u * b]) / (bnorm[bo + 2u * b + 1u] - bnorm[bo + 2u * b] + 1e-7);
        switch RULE {
            case 0u, 1u: { acc += u; }
            case 2u: { acc += n; }
            case 3u: { acc = select(max(acc, n), n, b == 0u); }
            default: { acc *= n; }
        }
    }
    if (RULE == 1u || RULE == 2u) {
        acc = acc / f32(prm.total);
    }
    if (BASE) {
        acc += base[wid.z * prm.out_h * prm.out_w + idx];
    }
    fused[wid.z * prm.out_h * prm.out_w + idx] = acc;
}

var<workgroup> sums: array<f32, 256>;

// gsum[e] = Σ over element e's group's blocks of their maps there (e < prm.gtotal), image z's
fn group_sum(e: u32, z: u32) {
    var g = 0u;
    for (var j = 1u; j < prm.ngroups; j++) {
        if (gmeta[j].x <= e) {
            g = j;
        }
    }
    let gm = gmeta[g];
    let i = e - gm.x;
    var s = 0.0;
    for (var b = gm.z; b < gm.z + gm.w; b++) {
        s += maps[z * prm.mstride + bmeta[b].x + i];
    }
    gsum[z * prm.gtotal + e] = s;
}

@compute @workgroup_size(256)
fn stats_of_maps(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = wid.y * nwg.x + wid.x;
    if (b >= prm.nblocks) {
        let e = (b - prm.nblocks) * 256u + lid;
        if (e < prm.gtotal) {
            group_sum(e, wid.z);
        }
        return;
    }
    let md = bmeta[b];
    let n = md.y * md.z;
    var a = F32_MAX;
    var c = -F32_MAX;
    var s = 0.0;
    let zo = wid.z * prm.mstride; // this image's maps
    for (var i = lid; i < n; i += 256u) {
        let v = maps[zo + md.x + i];
        a = min(a, v);
        c = max(c, v);
        s += v;
    }
    sums[lid] = s;
    minmax256(lid, a, c);
    for (var k = tree_start(lid, 128u); k > 0u; k >>= 1u) {
        if (lid < k) {
            sums[lid] = sums[lid] + sums[lid + k];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let so = wid.z * 2u * prm.total; // this image's statistics
        stats[so + md.w] = hi[0];
        stats[so + prm.total + md.w] = sums[0] / f32(n);
        let bo = wid.z * 2u * prm.nblocks; // and ranges
        bnorm[bo + 2u * b] = lo[0];
        bnorm[bo + 2u * b + 1u] = hi[0];
    }
}

@compute @workgroup_size(256)
fn minmax(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = prm.out_h * prm.out_w;
    var a = F32_MAX;
    var b = -F32_MAX;
    for (var i = lid; i < n; i += 256u) {
        let v = fused[wid.z * n + i];
        a = min(a, v);
        b = max(b, v);
    }
    minmax256(lid, a, b);
    if (lid == 0u) {
        mm[2u * wid.z] = lo[0];
        mm[2u * wid.z + 1u] = hi[0];
    }
}

@compute @workgroup_size(256)
fn normalize(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (idx >= prm.out_h * prm.out_w) {
        return;
    }
    let a = mm[2u * wid.z];
    let b = mm[2u * wid.z + 1u];
    let o = wid.z * prm.out_h * prm.out_w + idx; // this image's
    var v = 0.0;
    if (b - a > 1e-5 * max(abs(a), abs(b))) {
        let f = fused[o];
        // WGSL's division may be 2.5 ulp off (GPUs take a reciprocal): the peak is exactly 1,
        // and nothing leaves [0, 1]
        v = select(clamp((f - a) / (b - a), 0.0, 1.0), 1.0, f >= b);
    }
    norm[o] = v;
}
