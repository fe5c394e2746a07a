//! Resampling of CAM maps on the CPU: the bilinear upsampling with align_corners = true that
//! the fusion kernels, the masked-copy kernels and the application's references share.

/// Bilinear, align_corners = true: source = dst·(in−1)/(out−1).
pub fn upsample(map: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let scale = |n_in: usize, n_out: usize| {
        if n_out > 1 {
            (n_in - 1) as f32 / (n_out - 1) as f32
        } else {
            0.0
        }
    };
    let (sh, sw) = (scale(h, out_h), scale(w, out_w));
    let mut out = vec![0f32; out_h * out_w];
    for oy in 0..out_h {
        let sy = sh * oy as f32;
        let y0 = (sy as usize).min(h - 1);
        let ly = sy - y0 as f32;
        let y1 = (y0 + 1).min(h - 1);
        for ox in 0..out_w {
            let sx = sw * ox as f32;
            let x0 = (sx as usize).min(w - 1);
            let lx = sx - x0 as f32;
            let x1 = (x0 + 1).min(w - 1);
            let v = |y: usize, x: usize| map[y * w + x];
            out[oy * out_w + ox] = (1.0 - ly) * ((1.0 - lx) * v(y0, x0) + lx * v(y0, x1))
                + ly * ((1.0 - lx) * v(y1, x0) + lx * v(y1, x1));
        }
    }
    out
}
