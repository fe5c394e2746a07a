//! Image decoding and torchvision preprocessing against PIL/torchvision golden data
//! (tests/golden/preprocess/make.py writes it).

use std::path::{Path, PathBuf};

use combicam_gpu::error::Error;
use combicam_gpu::preprocess::{
    MEAN, STD, load_image, load_image_bytes, load_image_bytes_with, preprocess,
    resize_pil_bilinear, resized_size,
};
use image::RgbImage;
use safetensors::{Dtype, SafeTensors};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/preprocess")
}

fn golden_bytes() -> Vec<u8> {
    std::fs::read(golden_dir().join("expected.safetensors")).expect("read expected.safetensors")
}

/// (shape, bytes) of a U8 array.
fn u8_array(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<u8>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("golden {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::U8, "{name}");
    (t.shape().to_vec(), t.data().to_vec())
}

fn f32_array(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("golden {name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), v)
}

fn golden_image(st: &SafeTensors, name: &str) -> RgbImage {
    let (shape, data) = u8_array(st, name);
    assert_eq!(shape.len(), 3, "{name}");
    assert_eq!(shape[2], 3, "{name}");
    RgbImage::from_raw(shape[1] as u32, shape[0] as u32, data).unwrap()
}

/// Panics with the number of differing values, the largest difference and where it is.
fn assert_same_pixels(what: &str, got: &RgbImage, want: &RgbImage) {
    assert_eq!(got.dimensions(), want.dimensions(), "{what}: size (w, h)");
    let w = want.width() as usize;
    let mut worst = (0i32, 0usize);
    let mut n_diff = 0usize;
    for (i, (&a, &b)) in got.as_raw().iter().zip(want.as_raw()).enumerate() {
        let d = (a as i32 - b as i32).abs();
        if d > 0 {
            n_diff += 1;
        }
        if d > worst.0 {
            worst = (d, i);
        }
    }
    if n_diff > 0 {
        let (d, i) = worst;
        let (px, c) = (i / 3, i % 3);
        panic!(
            "{what}: {n_diff} values differ; max |diff| = {d} at (x={}, y={}, channel {c}): got {}, want {}",
            px % w,
            px / w,
            got.as_raw()[i],
            want.as_raw()[i]
        );
    }
}

/// Cases: name in expected.safetensors and file. Every decode must equal PIL's bit for bit,
/// JPEGs included (libjpeg-turbo's decoder, as PIL uses).
const CASES: &[(&str, &str)] = &[
    ("rgb_noise", "rgb_noise_37x53.png"),
    ("photo_jpg", "photo_65x49.jpg"),
    ("exif6", "exif6_24x16.jpg"),
    ("gray", "gray_45x31.png"),
    ("la", "la_17x21.png"),
    ("rgba", "rgba_40x33.png"),
    ("palette", "palette_30x22.png"),
    ("bilevel", "bilevel_19x14.png"),
    ("gray16", "gray16_23x35.png"),
    ("rgb16", "rgb16_20x14.png"),
    ("webp", "small_20x15.webp"),
    ("bmp", "small_20x15.bmp"),
    ("tiff", "small_20x15.tiff"),
    ("gif", "small_20x15.gif"),
    // the JPEG corpus: every subsampling, progressive, restart markers, grey, CMYK with and
    // without an Adobe marker, YCCK, EXIF rotations, sizes that are no multiple of the MCU
    ("jpeg444", "jpeg_444_61x47.jpg"),
    ("jpeg422", "jpeg_422_53x39.jpg"),
    ("jpeg420", "jpeg_420_45x33.jpg"),
    ("jpeg420_oddw", "jpeg_420oddw_35x26.jpg"),
    ("jpeg_progressive", "jpeg_progressive_57x43.jpg"),
    ("jpeg_progressive444", "jpeg_progressive444_43x29.jpg"),
    ("jpeg_restart_blocks", "jpeg_restart_blocks_51x37.jpg"),
    ("jpeg_restart_rows", "jpeg_restart_rows_51x37.jpg"),
    (
        "jpeg_progressive_restart",
        "jpeg_progressive_restart_51x37.jpg",
    ),
    ("jpeg_gray", "jpeg_gray_37x29.jpg"),
    ("jpeg_cmyk", "jpeg_cmyk_41x31.jpg"),
    ("jpeg_cmyk_noadobe", "jpeg_cmyk_noadobe_41x31.jpg"),
    ("jpeg_ycck", "jpeg_ycck_41x31.jpg"),
    ("jpeg_exif3", "jpeg_exif3_24x16.jpg"),
    ("jpeg_exif8", "jpeg_exif8_24x16.jpg"),
    ("jpeg_1x1", "jpeg_1x1_1x1.jpg"),
    ("jpeg_7x5", "jpeg_7x5_7x5.jpg"),
];

#[test]
fn decode_matches_pil() {
    let bytes = golden_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for &(name, file) in CASES {
        let want = golden_image(&st, &format!("{name}.src"));
        let got = load_image(&golden_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_same_pixels(&format!("decode {file}"), &got, &want);
        println!(
            "decode {file:<38} OK   0 of {} values differ from PIL",
            want.as_raw().len()
        );
    }
}

#[test]
fn exif_orientation_is_optional() {
    let path = golden_dir().join("exif6_24x16.jpg");
    let bytes = std::fs::read(&path).unwrap();
    let upright = load_image_bytes(&bytes, &path).unwrap();
    let raw = load_image_bytes_with(&bytes, &path, false).unwrap();
    assert_eq!(raw.dimensions(), (24, 16));
    assert_eq!(upright.dimensions(), (16, 24));
    // Orientation 6: displaying means rotating the stored pixels 90° clockwise.
    assert_same_pixels("exif 6", &upright, &image::imageops::rotate90(&raw));
}

#[test]
fn resized_size_follows_torchvision() {
    assert_eq!(resized_size(450, 300, 300), (450, 300));
    assert_eq!(resized_size(300, 450, 300), (300, 450));
    assert_eq!(resized_size(4032, 3024, 300), (400, 300)); // int(300*4032/3024) = 400
    assert_eq!(resized_size(37, 53, 29), (29, 41)); // int(41.54)
    assert_eq!(resized_size(301, 190, 29), (45, 29)); // int(45.94)
    assert_eq!(resized_size(500, 500, 300), (300, 300));
    assert_eq!(resized_size(1, 7, 300), (300, 2100));
    assert_eq!(resized_size(0, 7, 300), (0, 0));
}

#[test]
fn resize_matches_pil_exactly() {
    let bytes = golden_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for name in st.names() {
        let Some((case, rest)) = name.split_once(".s") else {
            continue;
        };
        let Some(size) = rest.strip_suffix(".resized") else {
            continue;
        };
        let short: u32 = size.parse().unwrap();
        let src = golden_image(&st, &format!("{case}.src"));
        let want = golden_image(&st, name);
        let (w, h) = resized_size(src.width(), src.height(), short);
        assert_eq!((w, h), want.dimensions(), "{name}: torchvision size rule");
        assert_same_pixels(name, &resize_pil_bilinear(&src, w, h), &want);
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} resize cases found");
}

/// The synthetic pattern of make.py.
fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (x as i64, y as i64);
        image::Rgb(std::array::from_fn(|c| {
            ((x * x * 31 + y * 17 + c as i64 * 101 + x * y * 7 + (y * y * 13) % 97) % 256) as u8
        }))
    })
}

#[test]
fn resize_pattern_matches_pil_exactly() {
    let bytes = golden_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for name in st.names() {
        let Some(rest) = name.strip_prefix("pattern.") else {
            continue;
        };
        let (from, to) = rest.split_once(".to.").unwrap();
        let dims = |s: &str| -> (u32, u32) {
            let (a, b) = s.split_once('x').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        };
        let ((sw, sh), (w, h)) = (dims(from), dims(to));
        let want = golden_image(&st, name);
        assert_same_pixels(name, &resize_pil_bilinear(&pattern(sw, sh), w, h), &want);
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} pattern cases found");
}

#[test]
fn resize_degenerate_sizes() {
    let img = pattern(5, 4);
    assert_eq!(resize_pil_bilinear(&img, 0, 3).dimensions(), (0, 0));
    assert_eq!(
        resize_pil_bilinear(&RgbImage::new(0, 0), 3, 3).dimensions(),
        (0, 0)
    );
    assert_same_pixels("same size", &resize_pil_bilinear(&img, 5, 4), &img);
}

#[test]
fn tensor_matches_torchvision() {
    let bytes = golden_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for name in st.names() {
        let Some((case, rest)) = name.split_once(".s") else {
            continue;
        };
        let Some(size) = rest.strip_suffix(".tensor") else {
            continue;
        };
        let short: u32 = size.parse().unwrap();
        // the whole preprocessing: from the file itself where the case has one
        let src = match CASES.iter().find(|c| c.0 == case) {
            Some((_, file)) => load_image(&golden_dir().join(file)).unwrap(),
            None => golden_image(&st, &format!("{case}.src")),
        };
        let (shape, want) = f32_array(&st, name);
        let got = preprocess(&src, short).unwrap();
        assert_eq!(vec![3, got.height, got.width], shape, "{name}: shape");
        let (mut max, mut at) = (0f32, 0usize);
        for (i, (a, b)) in got.tensor.iter().zip(&want).enumerate() {
            if (a - b).abs() > max {
                (max, at) = ((a - b).abs(), i);
            }
        }
        eprintln!("{name}: max |ours - torchvision| = {max:e}");
        assert!(max <= 1e-6, "{name}: max |diff| {max:e} at flat index {at}");
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} tensor cases found");
}

#[test]
fn no_resampling_when_short_side_already_matches() {
    let bytes = golden_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let src = golden_image(&st, "rgb_noise.src"); // 37 x 53
    let p = preprocess(&src, 37).unwrap();
    assert_eq!((p.width, p.height), (37, 53));
    let plane = 37 * 53;
    for (i, px) in src.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            let want = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
            assert_eq!(p.tensor[c * plane + i], want);
        }
    }
}

#[test]
fn preprocess_rejects_bad_arguments() {
    for (img, short) in [(RgbImage::new(0, 0), 300), (pattern(4, 4), 0)] {
        match preprocess(&img, short) {
            Err(Error::Input(msg)) => assert!(!msg.contains('\n')),
            other => panic!("expected Error::Input, got {other:?}"),
        }
    }
}

// ---- bad inputs -------------------------------------------------------------------------------

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("combicam-preprocess-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `path`, expects Error::Image with a one-line reason that contains `needle`.
fn expect_image_error(path: &Path, needle: &str) -> String {
    match load_image(path) {
        Err(e @ Error::Image { .. }) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(!msg.contains('\n'), "multi-line message: {msg:?}");
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
            assert!(
                msg.contains(&path.display().to_string()),
                "message {msg:?} lacks the path"
            );
            msg
        }
        Err(e) => panic!("{}: expected Error::Image, got {e:?}", path.display()),
        Ok(img) => panic!(
            "{}: expected an error, decoded {:?}",
            path.display(),
            img.dimensions()
        ),
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG signature and IHDR claiming `w` x `h` 8-bit RGB, then an empty IDAT and IEND.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// A BMP header claiming `w` x `h` 24-bit pixels with no pixel data.
fn bmp_header_only(w: i32, h: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&54u32.to_le_bytes()); // file size (wrong on purpose: no pixels)
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out
}

#[test]
fn missing_file() {
    let dir = TempDir::new("missing");
    expect_image_error(&dir.0.join("nope.jpg"), "no such file");
}

#[test]
fn directory_instead_of_file() {
    let dir = TempDir::new("dir");
    expect_image_error(&dir.0, "folder");
}

#[test]
fn empty_file() {
    let dir = TempDir::new("empty");
    let p = dir.0.join("empty.jpg");
    std::fs::write(&p, b"").unwrap();
    expect_image_error(&p, "empty");
}

#[test]
fn not_an_image() {
    let dir = TempDir::new("text");
    let p = dir.0.join("notes.jpg");
    std::fs::write(&p, b"this is not a picture, just some text\n").unwrap();
    expect_image_error(&p, "not a supported image");
}

#[test]
fn truncated_jpeg() {
    let dir = TempDir::new("truncated");
    let full = std::fs::read(golden_dir().join("photo_65x49.jpg")).unwrap();
    for keep in [
        full.len() / 2,
        full.len() - 1,
        full.len() - 2,
        full.len() - 10,
        200,
        20,
    ] {
        let p = dir.0.join(format!("cut{keep}.jpg"));
        std::fs::write(&p, &full[..keep]).unwrap();
        expect_image_error(&p, "damaged or truncated");
    }
}

#[test]
fn jpeg_with_trailing_bytes_still_decodes() {
    let path = golden_dir().join("photo_65x49.jpg");
    let mut bytes = std::fs::read(&path).unwrap();
    let want = load_image_bytes(&bytes, &path).unwrap();
    bytes.extend_from_slice(b"\0\0maker trailer \xFF\xD8 junk");
    assert_same_pixels(
        "trailing bytes",
        &load_image_bytes(&bytes, &path).unwrap(),
        &want,
    );
}

#[test]
fn truncated_files_of_every_format() {
    let dir = TempDir::new("truncother");
    for file in [
        "rgb_noise_37x53.png",
        "gray16_23x35.png",
        "small_20x15.webp",
        "small_20x15.bmp",
        "small_20x15.tiff",
        "small_20x15.gif",
        "exif6_24x16.jpg",
    ] {
        let full = std::fs::read(golden_dir().join(file)).unwrap();
        let p = dir.0.join(format!("cut-{file}"));
        std::fs::write(&p, &full[..full.len() * 2 / 3]).unwrap();
        expect_image_error(&p, "");
    }
}

#[test]
fn zero_size_image() {
    let dir = TempDir::new("zero");
    for (name, bytes) in [
        ("zero.png", png_header_only(0, 5)),
        ("zero.bmp", bmp_header_only(0, 5)),
        ("zero.gif", b"GIF89a\0\0\0\0\0\0\0;".to_vec()),
    ] {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        expect_image_error(&p, "zero size");
    }
}

#[test]
fn huge_dimensions_are_refused() {
    let dir = TempDir::new("huge");
    for (name, bytes) in [
        ("huge.png", png_header_only(100_000, 100_000)),
        ("huge.bmp", bmp_header_only(60_000, 60_000)),
    ] {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        expect_image_error(&p, "too large");
    }
}
