// masked.wgsl: copies of one image (or of one of a few: --aug-smooth's six), modified on the
// GPU, for the masked forward passes of Score-CAM, AblationCAM and the faithfulness metrics. The mask kernels write every copy of a batch
// into the plan's batched input at once (workgroup z = copy n: input n·3·H·W ..), then the
// batched forward runs, then `take_score` keeps each copy's target score.
// Bindings: 0 prm, 1 x0: (originals, 3, H, W) the original normalised inputs, 2 input:
//           (3, H, W) rw, 3 job: u32 [target, C, bh, bw, value of copy 0, copy 1, …],
//           4 acts: (originals, C, bh, bw) a block output of each original, 5 mm:
//           (2·originals·C) rw per channel (min, max) of up(A_k),
//           6 rank: (H·W) u32 rank of each pixel, 7 other: (3, H, W) blurred input or (H, W) map,
//           8 logits, 9 probs: the forward's, (copies, classes), 10 scores: (2·copies) rw
// up(A_k): bilinear, align_corners = true, from (bh, bw) to (H, W), as in cam_fusion.wgsl.
// Score-CAM's and AblationCAM's copy values name an original and a channel: z·65536 + k
// (`original`, `channel`); z is 0 but for --aug-smooth's six originals.
// up_minmax: mm[2k], mm[2k+1] = min, max of up(A_k) over (H, W)  (one workgroup per channel,
//            k < job[1], the originals' channels one after another: job[1] = originals·C here)
// mask_cam:  input = x0_z·m, m = up(A_zk) for the copy's (z, k); NORMALISE: (m − min)/(max − min
//            + 1e-8)
// mask_rank: the first job[4 + copy] pixels by rank changed: MODE 0 (deletion) → 0, else x0;
//            MODE 1 (insertion) → x0, else other (the blurred input)
// mask_map:  input = x0·other[p] (a map at the input size, broadcast over the channels)
// ablate:    AblationCAM's copies of a block output rather than of the input: `input` bound to
//            block l's batched output, copy n = acts_z (C, bh, bw) with channel k set to 0 (none
//            when k ≥ C: the unablated score), (z, k) the copy's; the forward then runs from
//            block l + 1
// take_score: scores[2n] = logits[n, t], scores[2n + 1] = probs[n, t], t = job[0], for the
//            `copy` (prm.copy) copies n of the batch

struct Params { out_h: u32, out_w: u32, copy: u32, classes: u32 }

override NORMALISE: u32 = 1u;
override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read_write> input: array<f32>;
@group(0) @binding(3) var<storage, read> job: array<u32>;
@group(0) @binding(4) var<storage, read> acts: array<f32>;
@group(0) @binding(5) var<storage, read_write> mm: array<f32>;
@group(0) @binding(6) var<storage, read> rank: array<u32>;
@group(0) @binding(7) var<storage, read> other: array<f32>;
@group(0) @binding(8) var<storage, read> logits: array<f32>;
@group(0) @binding(9) var<storage, read> probs: array<f32>;
@group(0) @binding(10) var<storage, read_write> scores: array<f32>;

//@include resample

// up(A_k) at output pixel idx
fn up(k: u32, idx: u32) -> f32 {
    let h = job[2];
    let w = job[3];
    let t = taps(k * h * w, h, w, idx / prm.out_w, idx % prm.out_w, prm.out_h, prm.out_w);
    return blend(t, acts[t.i00], acts[t.i01], acts[t.i10], acts[t.i11]);
}

// the original (z) and the channel (k) a copy's value names
fn original(v: u32) -> u32 { return v >> 16u; }
fn channel(v: u32) -> u32 { return v & 0xffffu; }

fn pixel(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn up_minmax(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = wid.y * nwg.x + wid.x;
    if (k >= job[1]) {
        return;
    }
    let n = prm.out_h * prm.out_w;
    var a = F32_MAX;
    var b = -F32_MAX;
    for (var i = lid; i < n; i += 256u) {
        let u = up(k, i);
        a = min(a, u);
        b = max(b, u);
    }
    minmax256(lid, a, b);
    if (lid == 0u) {
        mm[2u * k] = lo[0];
        mm[2u * k + 1u] = hi[0];
    }
}

@compute @workgroup_size(256)
fn mask_cam(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = pixel(lid, wid, nwg);
    let n = prm.out_h * prm.out_w;
    if (p >= n) {
        return;
    }
    let v = job[4u + wid.z];
    let z = original(v);
    let k = z * job[1] + channel(v); // among every original's channels (acts, mm)
    var m = up(k, p);
    if (NORMALISE == 1u) {
        m = (m - mm[2u * k]) / (mm[2u * k + 1u] - mm[2u * k] + 1e-8);
    }
    let o = wid.z * 3u * n; // this copy in the batched input
    for (var c = 0u; c < 3u; c++) {
        input[o + c * n + p] = x0[(3u * z + c) * n + p] * m;
    }
}

@compute @workgroup_size(256)
fn mask_rank(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = pixel(lid, wid, nwg);
    let n = prm.out_h * prm.out_w;
    if (p >= n) {
        return;
    }
    let changed = rank[p] < job[4u + wid.z];
    let o = wid.z * 3u * n; // this copy in the batched input
    for (var c = 0u; c < 3u; c++) {
        let i = c * n + p;
        if (MODE == 0u) {
            input[o + i] = select(x0[i], 0.0, changed);
        } else {
            input[o + i] = select(other[i], x0[i], changed);
        }
    }
}

@compute @workgroup_size(256)
fn mask_map(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = pixel(lid, wid, nwg);
    let n = prm.out_h * prm.out_w;
    if (p >= n) {
        return;
    }
    for (var c = 0u; c < 3u; c++) {
        input[c * n + p] = x0[c * n + p] * other[p];
    }
}

@compute @workgroup_size(256)
fn ablate(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    _ = prm.copy; // unused here, bound as for every entry
    let i = pixel(lid, wid, nwg);
    let plane = job[2] * job[3];
    let n = job[1] * plane;
    if (i >= n) {
        return;
    }
    let v = job[4u + wid.z];
    input[wid.z * n + i] = select(acts[original(v) * n + i], 0.0, i / plane == channel(v));
}

@compute @workgroup_size(64)
fn take_score(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let n = wid.x * 64u + lid;
    if (n >= prm.copy) {
        return;
    }
    let t = n * prm.classes + job[0];
    scores[2u * n] = logits[t];
    scores[2u * n + 1u] = probs[t];
}
