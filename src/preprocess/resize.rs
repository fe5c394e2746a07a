//! Pillow-exact resizing (Resample.c, 8 bits per channel): torchvision's `Resize` on a PIL
//! image.

use image::RgbImage;

/// Size after torchvision Resize(short_side) on a PIL image: (width, height).
///
/// The short side becomes `short_side`, the long side `int(short_side * long / short)`
/// (truncation; exact for all `u32` inputs since it equals integer floor division here).
pub fn resized_size(w: u32, h: u32, short_side: u32) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    if short == 0 {
        return (0, 0);
    }
    let new_long = (short_side as u64 * long as u64 / short as u64).min(u32::MAX as u64) as u32;
    if w <= h {
        (short_side, new_long)
    } else {
        (new_long, short_side)
    }
}

// ---------------------------------------------------------------------------------------------
// Pillow Resample.c, 8 bits per channel.

/// Pillow: `#define PRECISION_BITS (32 - 8 - 2)`.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's resampling filters that torchvision's `Resize` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Resample {
    /// `bilinear_filter` (triangle), support 1
    Bilinear,
    /// `bicubic_filter` (a = −0.5), support 2
    Bicubic,
}

impl Resample {
    fn support(self) -> f64 {
        match self {
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    /// Pillow's filter functions, in its double arithmetic.
    fn filter(self, x: f64) -> f64 {
        let x = if x < 0.0 { -x } else { x };
        match self {
            Resample::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Per output index: first source index, number of taps, and fixed-point weights (`ksize` each).
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    kk: Vec<i32>,
}

/// Pillow's `precompute_coeffs` with the box (0, in_size) followed by `normalize_coeffs_8bpc`.
fn precompute_coeffs(in_size: u32, out_size: u32, filter: Resample) -> Coeffs {
    // in0 = 0.0f, in1 = (float)in_size; (double)(in1 - in0) / outSize
    let in0 = 0.0f32;
    let in1 = in_size as f32;
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut kk = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        let mut ww = 0.0f64;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero, as `as i64` does.
        let mut xmin = (center - support + 0.5) as i64;
        if xmin < 0 {
            xmin = 0;
        }
        let mut xmax = (center + support + 0.5) as i64;
        if xmax > in_size as i64 {
            xmax = in_size as i64;
        }
        let xmax = (xmax - xmin).max(0) as usize;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter.filter(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for kx in k.iter_mut().take(xmax) {
            if ww != 0.0 {
                *kx /= ww;
            }
        }
        let dst = &mut kk[xx * ksize..(xx + 1) * ksize];
        for x in 0..ksize {
            let v = if x < xmax { k[x] } else { 0.0 };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            dst[x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin as usize, xmax));
    }
    Coeffs { ksize, bounds, kk }
}

/// Pillow's `clip8`: `clip8_lookups[in >> PRECISION_BITS]`, i.e. clamp to 0..=255.
#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's Image.resize(size, BILINEAR) for 8-bit RGB, bit-exact (see [`resize_pil`]).
pub fn resize_pil_bilinear(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    resize_pil(src, w, h, Resample::Bilinear)
}

/// PIL's Image.resize(size, filter) for 8-bit RGB, bit-exact (antialiased filter, PIL's
/// fixed-point arithmetic, horizontal pass then vertical pass as Pillow does).
///
/// Returns an empty image when `w`, `h` or the source is zero-sized (PIL raises instead).
pub fn resize_pil(src: &RgbImage, w: u32, h: u32, filter: Resample) -> RgbImage {
    let (sw, sh) = src.dimensions();
    if w == 0 || h == 0 || sw == 0 || sh == 0 {
        return RgbImage::new(0, 0);
    }
    if (sw, sh) == (w, h) {
        // Image.resize returns a copy when the size and the box are unchanged.
        return src.clone();
    }
    let need_horizontal = w != sw;
    let need_vertical = h != sh;
    let half = 1i32 << (PRECISION_BITS - 1);

    let vert = precompute_coeffs(sh, h, filter);
    // Rows of the source that the vertical pass reads.
    let ybox_first = vert.bounds[0].0;
    let ybox_last = {
        let (ymin, ymax) = vert.bounds[h as usize - 1];
        ymin + ymax
    };

    // Horizontal pass over the needed rows only (Pillow >= 7), giving `tmp` (rows, cols).
    let (tmp, tmp_w, row_offset): (std::borrow::Cow<'_, [u8]>, usize, usize) = if need_horizontal {
        let hz = precompute_coeffs(sw, w, filter);
        let rows = ybox_last - ybox_first;
        let (w_us, sw_us) = (w as usize, sw as usize);
        let raw = src.as_raw();
        let mut out = vec![0u8; rows * w_us * 3];
        for yy in 0..rows {
            let in_row = &raw[(yy + ybox_first) * sw_us * 3..(yy + ybox_first + 1) * sw_us * 3];
            let out_row = &mut out[yy * w_us * 3..(yy + 1) * w_us * 3];
            for xx in 0..w_us {
                let (xmin, xmax) = hz.bounds[xx];
                let k = &hz.kk[xx * hz.ksize..xx * hz.ksize + xmax];
                let (mut s0, mut s1, mut s2) = (half, half, half);
                for (x, &kx) in k.iter().enumerate() {
                    let p = &in_row[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    s0 = s0.wrapping_add((p[0] as i32).wrapping_mul(kx));
                    s1 = s1.wrapping_add((p[1] as i32).wrapping_mul(kx));
                    s2 = s2.wrapping_add((p[2] as i32).wrapping_mul(kx));
                }
                out_row[xx * 3] = clip8(s0);
                out_row[xx * 3 + 1] = clip8(s1);
                out_row[xx * 3 + 2] = clip8(s2);
            }
        }
        (std::borrow::Cow::Owned(out), w_us, ybox_first)
    } else {
        (
            std::borrow::Cow::Borrowed(src.as_raw().as_slice()),
            sw as usize,
            0,
        )
    };

    if !need_vertical {
        return RgbImage::from_raw(w, h, tmp.into_owned()).expect("size matches");
    }

    // Vertical pass: bounds shifted by the first row kept by the horizontal pass.
    let mut out = vec![0u8; h as usize * tmp_w * 3];
    for yy in 0..h as usize {
        let (ymin, ymax) = vert.bounds[yy];
        let ymin = ymin - row_offset;
        let k = &vert.kk[yy * vert.ksize..yy * vert.ksize + ymax];
        let out_row = &mut out[yy * tmp_w * 3..(yy + 1) * tmp_w * 3];
        for xx in 0..tmp_w {
            let (mut s0, mut s1, mut s2) = (half, half, half);
            for (y, &ky) in k.iter().enumerate() {
                let p = &tmp[((y + ymin) * tmp_w + xx) * 3..((y + ymin) * tmp_w + xx) * 3 + 3];
                s0 = s0.wrapping_add((p[0] as i32).wrapping_mul(ky));
                s1 = s1.wrapping_add((p[1] as i32).wrapping_mul(ky));
                s2 = s2.wrapping_add((p[2] as i32).wrapping_mul(ky));
            }
            out_row[xx * 3] = clip8(s0);
            out_row[xx * 3 + 1] = clip8(s1);
            out_row[xx * 3 + 2] = clip8(s2);
        }
    }
    RgbImage::from_raw(w, h, out).expect("size matches")
}

// ---------------------------------------------------------------------------------------------
