//! Decoding: a photo's bytes to 8-bit RGB as PIL's `Image.open(p).convert("RGB")` gives it,
//! EXIF orientation applied, within a memory bound.

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, RgbImage};
use std::io::Cursor;
use std::path::Path;

use crate::error::{Error, Result};

/// Most bytes a decoder may allocate for one image (the decoded pixels included).
const MAX_DECODE_BYTES: u64 = 1 << 30;
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
    if reader.format() == Some(image::ImageFormat::Png)
        && let Some(n) = png_bad_palette(bytes)
    {
        // png 0.18.1 (the newest) panics expanding such a palette; found by fuzzing
        return Err(Error::image(
            path,
            format!(
                "the PNG is damaged (its palette has {n} bytes, not 3 per colour); re-export or re-download it"
            ),
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
        // a decoder's own bug (a panic: png 0.18.1 had one) is this file's error, not a crash
        // of the run: the other images of a folder go on
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            DynamicImage::from_decoder(decoder)
        }));
        match decoded {
            Ok(r) => r.map_err(|e| decode_error(path, e))?,
            Err(_) => {
                return Err(Error::image(
                    path,
                    "the decoder failed on this file (a bug in it, reported above); re-export the picture as PNG or JPEG",
                ));
            }
        }
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

/// The length of a PNG's first palette chunk (`PLTE`) when it is not a multiple of 3, which
/// the PNG specification forbids, found by walking the chunks (length, type, data, CRC).
fn png_bad_palette(b: &[u8]) -> Option<usize> {
    let mut i = 8;
    while let Some(head) = b.get(i..i + 8) {
        let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
        match &head[4..] {
            b"PLTE" => return (!len.is_multiple_of(3)).then_some(len),
            b"IDAT" | b"IEND" => return None,
            _ => i = i.checked_add(12)?.checked_add(len)?,
        }
    }
    None
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
