//! Image loading and torchvision-exact preprocessing: PIL-style decode to RGB, Pillow's bilinear `Resize(short_side)`, `ToTensor`, `Normalize`.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};

/// ImageNet mean used by `Normalize` (RGB order).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation used by `Normalize` (RGB order).
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Most bytes a decoder may allocate for one image (the decoded pixels included).
const MAX_DECODE_BYTES: u64 = 1 << 30;
/// Most elements (3·H·W) of a preprocessed tensor; guards against absurd aspect ratios.
const MAX_TENSOR_ELEMS: u64 = 1 << 28;

const SUPPORTED: &str = "not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF); check the file";

/// Decoded photo, EXIF orientation applied, as 8-bit RGB.
///
/// Colour conversion follows PIL's `Image.open(p).convert("RGB")`: alpha is dropped (no
/// blending), grey is replicated, palettes are expanded. 16-bit data follows what Pillow does:
/// 16-bit greyscale (PIL mode `I;16`) is clipped, `min(v, 255)`; 16-bit RGB, RGBA and grey+alpha
/// keep the high byte, `v >> 8`. Floating-point images are clamped to [0, 1] and rounded.
///
/// Note: the official Combi-CAM code does *not* apply EXIF orientation (`Image.open` leaves it
/// alone); use [`load_image_bytes_with`] with `apply_orientation = false` to match it on
/// photos that carry a rotation tag.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = read_file(path)?;
    load_image_bytes(&bytes, path)
}

/// [`load_image`] for bytes already in memory; `path_for_errors` only names the image in errors.
pub fn load_image_bytes(bytes: &[u8], path_for_errors: &Path) -> Result<RgbImage> {
    load_image_bytes_with(bytes, path_for_errors, true)
}

/// Like [`load_image_bytes`], with EXIF orientation applied or not.
pub fn load_image_bytes_with(
    bytes: &[u8],
    path_for_errors: &Path,
    apply_orientation: bool,
) -> Result<RgbImage> {
    let path = path_for_errors;
    if bytes.is_empty() {
        return Err(Error::image(path, "the file is empty; check the file"));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::image(path, format!("cannot read the data ({e}); check the file")))?;
    if reader.format().is_none() {
        return Err(Error::image(path, SUPPORTED));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_has_end_marker(bytes) {
        // zune-jpeg decodes a cut stream without error; PIL raises "image file is truncated".
        return Err(Error::image(
            path,
            "the file is damaged or truncated (JPEG data ends before its end marker); \
             re-export or re-download it",
        ));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let format = reader.format();
    let zero_size = |w: u32, h: u32| {
        Error::image(
            path,
            format!("the image has zero size ({w}x{h}); use a picture with at least one pixel"),
        )
    };
    let mut decoder = reader.into_decoder().map_err(|e| {
        // Decoders refuse a zero width or height with a vague message; say what it is.
        match format.and_then(|f| header_dimensions(f, bytes)) {
            Some((w, h)) if w == 0 || h == 0 => zero_size(w, h),
            _ => decode_error(path, e),
        }
    })?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(zero_size(w, h));
    }
    // Some decoders treat `max_alloc` as advisory; refuse before allocating the pixels.
    let total = decoder.total_bytes();
    if total > MAX_DECODE_BYTES {
        return Err(Error::image(
            path,
            format!(
                "the image is too large to decode ({w}x{h}, {} MiB of pixels, limit {} MiB); \
                 downscale it first",
                total >> 20,
                MAX_DECODE_BYTES >> 20
            ),
        ));
    }
    // A damaged EXIF block must not stop a readable picture: fall back to no rotation.
    let orientation = if apply_orientation {
        decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms)
    } else {
        image::metadata::Orientation::NoTransforms
    };
    let mut img = if format == Some(image::ImageFormat::Jpeg) {
        // the pixels exactly as PIL decodes them (the `image` decoder only read the header)
        drop(decoder);
        DynamicImage::ImageRgb8(decode_jpeg(bytes).map_err(|reason| {
            Error::image(
                path,
                format!("the JPEG data is damaged ({reason}); re-export or re-download it"),
            )
        })?)
    } else {
        DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, e))?
    };
    img.apply_orientation(orientation);
    Ok(to_rgb8_like_pil(img))
}

/// JPEG pixels as PIL's `Image.open(f).convert("RGB")` gives them: libjpeg-turbo's decoder
/// (ISLOW IDCT, fancy upsampling, its fixed-point YCbCr→RGB; grey replicated). PIL reads every
/// 4-component JPEG (CMYK, or YCCK that libjpeg turns into CMYK) as inverted CMYK and converts
/// with R = round((255 − C)(255 − K)/255) on the inverted values, i.e. round(c·k/255) on the
/// values as stored.
fn decode_jpeg(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    use mozjpeg::ColorSpace;
    let decode = || -> std::io::Result<RgbImage> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        let (w, h) = (d.width() as u32, d.height() as u32);
        let rgb: Vec<u8> = match d.color_space() {
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => {
                let mut s = d.to_colorspace(ColorSpace::JCS_CMYK)?;
                let px: Vec<[u8; 4]> = s.read_scanlines()?;
                s.finish()?;
                let mul = |a: u8, k: u8| {
                    let t = a as u32 * k as u32 + 128;
                    (((t >> 8) + t) >> 8) as u8
                };
                px.iter()
                    .flat_map(|&[c, m, y, k]| [mul(c, k), mul(m, k), mul(y, k)])
                    .collect()
            }
            _ => {
                let mut s = d.rgb()?;
                let px: Vec<[u8; 3]> = s.read_scanlines()?;
                s.finish()?;
                px.into_iter().flatten().collect()
            }
        };
        RgbImage::from_raw(w, h, rgb).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "fewer rows than the header says",
            )
        })
    };
    // libjpeg's fatal errors unwind (without the panic hook) out of the decoder
    match std::panic::catch_unwind(decode) {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(one_line(&e.to_string())),
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .map(|m| one_line(m))
            .unwrap_or_else(|| "libjpeg error".into())),
    }
}

/// Width and height as written in a PNG, BMP or GIF header (only used to explain errors).
fn header_dimensions(format: image::ImageFormat, b: &[u8]) -> Option<(u32, u32)> {
    let be = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let le32 = |i: usize| Some(i32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let le16 = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as u32);
    match format {
        image::ImageFormat::Png if b.get(12..16) == Some(b"IHDR") => Some((be(16)?, be(20)?)),
        image::ImageFormat::Bmp if le32(14)? >= 40 => {
            Some((le32(18)?.unsigned_abs(), le32(22)?.unsigned_abs()))
        }
        image::ImageFormat::Gif => Some((le16(6)?, le16(8)?)),
        _ => None,
    }
}

/// Whether a JPEG stream reaches its EOI marker (FF D9) after its first scan: walks the
/// marker segments, then the entropy-coded data, where FF is always stuffed (FF 00) or a
/// restart marker (FF D0..D7). Bytes after EOI (maker trailers, MPF images) are ignored.
fn jpeg_has_end_marker(b: &[u8]) -> bool {
    let n = b.len();
    if n < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return false;
    }
    let mut pos = 2;
    let mut seen_scan = false;
    loop {
        // Next marker: FF (fill FFs allowed) then a code.
        // Stray bytes between segments are skipped, as libjpeg does (with a warning).
        while pos < n && b[pos] != 0xFF {
            pos += 1;
        }
        while pos < n && b[pos] == 0xFF {
            pos += 1;
        }
        if pos >= n {
            return false;
        }
        let code = b[pos];
        pos += 1;
        match code {
            0xD9 => return seen_scan,
            0x00 | 0xD0..=0xD7 if seen_scan => continue, // stuffed byte / restart marker
            0x01 | 0xD0..=0xD7 => continue,              // standalone markers
            _ => {
                if pos + 2 > n {
                    return false;
                }
                let len = u16::from_be_bytes([b[pos], b[pos + 1]]) as usize;
                if len < 2 || pos + len > n {
                    return false;
                }
                pos += len;
                if code == 0xDA {
                    // Entropy-coded data follows: skip to the next real marker.
                    seen_scan = true;
                    loop {
                        while pos < n && b[pos] != 0xFF {
                            pos += 1;
                        }
                        if pos + 1 >= n {
                            return false;
                        }
                        match b[pos + 1] {
                            0x00 | 0xD0..=0xD7 => pos += 2,
                            0xFF => pos += 1,
                            _ => break,
                        }
                    }
                }
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::image(path, "no such file; check the path"),
        std::io::ErrorKind::PermissionDenied => {
            Error::image(path, "permission denied; make the file readable")
        }
        _ => Error::image(path, format!("cannot open the file ({e}); check the path")),
    })?;
    if meta.is_dir() {
        return Err(Error::image(
            path,
            "this is a folder, not an image file; pass an image file",
        ));
    }
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            Error::image(path, "permission denied; make the file readable")
        }
        _ => Error::image(path, format!("cannot read the file ({e}); check the path")),
    })
}

fn decode_error(path: &Path, e: ImageError) -> Error {
    let detail = one_line(&e.to_string());
    match e {
        ImageError::Unsupported(_) => Error::image(path, format!("{SUPPORTED} ({detail})")),
        ImageError::Limits(_) => Error::image(
            path,
            format!(
                "the image is too large to decode within {} MiB ({detail}); downscale it first",
                MAX_DECODE_BYTES >> 20
            ),
        ),
        ImageError::IoError(_) | ImageError::Decoding(_) => Error::image(
            path,
            format!("the file is damaged or truncated ({detail}); re-export or re-download it"),
        ),
        ImageError::Parameter(_) | ImageError::Encoding(_) => Error::image(
            path,
            format!("cannot decode the image ({detail}); re-export it as PNG or JPEG"),
        ),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// PIL's `.convert("RGB")` for each layout the decoders produce.
fn to_rgb8_like_pil(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let n = w as usize * h as usize;
    let mut out = Vec::with_capacity(n * 3);
    match img {
        DynamicImage::ImageRgb8(b) => return b,
        DynamicImage::ImageRgba8(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend_from_slice(&p[..3]);
            }
        }
        DynamicImage::ImageLuma8(b) => {
            for &v in b.as_raw() {
                out.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLumaA8(b) => {
            for p in b.as_raw().chunks_exact(2) {
                out.extend_from_slice(&[p[0], p[0], p[0]]);
            }
        }
        // Pillow opens 16-bit greyscale as mode "I;16"; I;16 -> RGB clips at 255.
        DynamicImage::ImageLuma16(b) => {
            for &v in b.as_raw() {
                let c = v.min(255) as u8;
                out.extend_from_slice(&[c, c, c]);
            }
        }
        // Pillow unpacks 16-bit LA (as RGBA), RGB and RGBA by keeping the high byte.
        DynamicImage::ImageLumaA16(b) => {
            for p in b.as_raw().chunks_exact(2) {
                let c = (p[0] >> 8) as u8;
                out.extend_from_slice(&[c, c, c]);
            }
        }
        DynamicImage::ImageRgb16(b) => {
            for &v in b.as_raw() {
                out.push((v >> 8) as u8);
            }
        }
        DynamicImage::ImageRgba16(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend_from_slice(&[(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]);
            }
        }
        DynamicImage::ImageRgb32F(b) => {
            for &v in b.as_raw() {
                out.push(f32_to_u8(v));
            }
        }
        DynamicImage::ImageRgba32F(b) => {
            for p in b.as_raw().chunks_exact(4) {
                out.extend_from_slice(&[f32_to_u8(p[0]), f32_to_u8(p[1]), f32_to_u8(p[2])]);
            }
        }
        other => return other.to_rgb8(),
    }
    RgbImage::from_raw(w, h, out).expect("buffer length matches dimensions")
}

fn f32_to_u8(v: f32) -> u8 {
    // NaN maps to 0 through the saturating cast.
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

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

/// A normalised model input.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// (3, H, W) CHW, normalised.
    pub tensor: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// What a model's reference code does to a photo: torchvision `Resize(short_side, filter)`,
/// `ToTensor`, `Normalize(mean, std)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Preprocessing {
    pub short_side: u32,
    pub resample: Resample,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocessing {
    /// visloc (README, Numerics): short side 300, bilinear, ImageNet mean/std.
    pub const VISLOC: Preprocessing = Preprocessing {
        short_side: 300,
        resample: Resample::Bilinear,
        mean: MEAN,
        std: STD,
    };
    /// EfficientNet-Lite (timm's `tf_efficientnet_lite0` config): short side 224, bicubic,
    /// mean = std = 0.5.
    pub const LITE: Preprocessing = Preprocessing {
        short_side: 224,
        resample: Resample::Bicubic,
        mean: [0.5; 3],
        std: [0.5; 3],
    };

    /// One line for messages and reports.
    pub fn describe(&self) -> String {
        format!(
            "short side {}, {:?}, mean {:?}, std {:?}",
            self.short_side, self.resample, self.mean, self.std
        )
    }
}

/// torchvision Resize(short_side) (no resampling when the short side already equals it) +
/// ToTensor + Normalize with ImageNet's mean and std, bilinear: visloc's preprocessing.
///
/// Per element, in f32 as torch does: `(v / 255 - mean) / std`.
pub fn preprocess(img: &RgbImage, short_side: u32) -> Result<Preprocessed> {
    preprocess_with(
        img,
        &Preprocessing {
            short_side,
            ..Preprocessing::VISLOC
        },
    )
}

/// [`preprocess`] with any resize filter, size, mean and std.
pub fn preprocess_with(img: &RgbImage, p: &Preprocessing) -> Result<Preprocessed> {
    let short_side = p.short_side;
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::Input(format!(
            "cannot preprocess an empty image ({w}x{h}); use a picture with at least one pixel"
        )));
    }
    if short_side == 0 {
        return Err(Error::Input(
            "the resize target (short side) is 0; pass a positive size such as 300".into(),
        ));
    }
    let (nw, nh) = resized_size(w, h, short_side);
    if nw == 0 || nh == 0 || 3 * nw as u64 * nh as u64 > MAX_TENSOR_ELEMS {
        return Err(Error::Input(format!(
            "a {w}x{h} image resized to short side {short_side} gives {nw}x{nh}, which is \
             unusable or too large; crop it to a less extreme aspect ratio"
        )));
    }
    let resized;
    let src = if (nw, nh) == (w, h) {
        img
    } else {
        resized = resize_pil(img, nw, nh, p.resample);
        &resized
    };
    let (width, height) = (nw as usize, nh as usize);
    let plane = width * height;
    let mut tensor = vec![0f32; 3 * plane];
    for (i, px) in src.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            tensor[c * plane + i] = (px[c] as f32 / 255.0 - p.mean[c]) / p.std[c];
        }
    }
    Ok(Preprocessed {
        tensor,
        height,
        width,
    })
}
