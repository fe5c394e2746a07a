// include/resample.wgsl: written once, spliced where a shader says `//@include resample`
// (cam_fusion.wgsl, masked.wgsl; `gpu::pipelines::shader_source`).
//
// Bilinear upsampling with align_corners = true (as `ops::resample::upsample`): output row oy
// of out_h reads source row oy·(h − 1)/(out_h − 1), blending the two rows around it, and
// likewise the columns. `taps` gives the four source indices and the two weights; the shader
// reads its own array there and `blend`s.
//
// The 256-lane min/max reduction of a workgroup: `minmax256` leaves min in lo[0], max in hi[0].

fn source_scale(n_in: u32, n_out: u32) -> f32 {
    if (n_out > 1u) {
        return f32(n_in - 1u) / f32(n_out - 1u);
    }
    return 0.0;
}

struct Taps {
    i00: u32,
    i01: u32,
    i10: u32,
    i11: u32,
    ly: f32,
    lx: f32,
}

// output (oy, ox) of out_h × out_w from an h × w map stored row-major at `off`
fn taps(off: u32, h: u32, w: u32, oy: u32, ox: u32, out_h: u32, out_w: u32) -> Taps {
    let sy = source_scale(h, out_h) * f32(oy);
    let sx = source_scale(w, out_w) * f32(ox);
    let y0 = min(u32(sy), h - 1u);
    let x0 = min(u32(sx), w - 1u);
    let y1 = min(y0 + 1u, h - 1u);
    let x1 = min(x0 + 1u, w - 1u);
    return Taps(off + y0 * w + x0, off + y0 * w + x1, off + y1 * w + x0, off + y1 * w + x1, sy - f32(y0), sx - f32(x0));
}

fn blend(t: Taps, v00: f32, v01: f32, v10: f32, v11: f32) -> f32 {
    return (1.0 - t.ly) * ((1.0 - t.lx) * v00 + t.lx * v01) + t.ly * ((1.0 - t.lx) * v10 + t.lx * v11);
}

// the largest finite f32: the start of a min (and, negated, of a max)
const F32_MAX = 3.4028235e38;

var<workgroup> lo: array<f32, 256>;
var<workgroup> hi: array<f32, 256>;

// every lane's (a, b) reduced over the workgroup of 256: min in lo[0], max in hi[0]
fn minmax256(lid: u32, a: f32, b: f32) {
    lo[lid] = a;
    hi[lid] = b;
    for (var s = tree_start(lid, 128u); s > 0u; s >>= 1u) {
        if (lid < s) {
            lo[lid] = min(lo[lid], lo[lid + s]);
            hi[lid] = max(hi[lid], hi[lid + s]);
        }
        workgroupBarrier();
    }
}
