//! Heat-map rendering (OpenCV JET, `cv2.addWeighted` blend) and atomic output files.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{Error, Result};

/// OpenCV's COLORMAP_JET lookup for an 8-bit value, as RGB.
///
/// The table is `cv2.applyColorMap(np.arange(256, dtype=np.uint8), cv2.COLORMAP_JET)`
/// (OpenCV 5.0.0) with BGR turned into RGB.
pub fn jet(v: u8) -> [u8; 3] {
    JET[v as usize]
}

/// Heat map in [0,1], (h, w) row-major at model resolution → RGB colormap image at (out_w, out_h), bilinear upsampling (align_corners=false is fine; say which) then 8-bit quantisation as the official code does (np.uint8(255*map)), then JET.
///
/// Upsampling is bilinear with **align_corners = false** (half-pixel centres, source coordinate
/// `(dst + 0.5)·in/out − 0.5` clamped at 0, as `torch.nn.functional.interpolate` and
/// `cv2.resize(INTER_LINEAR)` use), computed in f32. When `(out_h, out_w) == (h, w)` no
/// resampling happens, which is the official path (its map is already at model resolution).
/// Quantisation is `(255·m) as u8` in f32 (truncation, values clamped to [0, 1], NaN → 0).
///
/// Panics if `map.len() != h * w` (a caller bug, not an input error).
pub fn heatmap_rgb(map: &[f32], h: usize, w: usize, out_w: u32, out_h: u32) -> RgbImage {
    assert_eq!(
        map.len(),
        h * w,
        "heatmap_rgb: map has {} values, not {h}x{w}",
        map.len()
    );
    let (ow, oh) = (out_w as usize, out_h as usize);
    let mut out = RgbImage::new(out_w, out_h);
    if ow == 0 || oh == 0 {
        return out;
    }
    let quant = |m: f32| -> u8 { (255.0f32 * m.clamp(0.0, 1.0)) as u8 };
    if h == 0 || w == 0 {
        for p in out.pixels_mut() {
            p.0 = jet(0);
        }
        return out;
    }
    let values = resize_bilinear(map, h, w, oh, ow);
    for (p, &m) in out.pixels_mut().zip(&values) {
        p.0 = jet(quant(m));
    }
    out
}

/// A map (h, w) resized to (oh, ow) as the overlays are: bilinear with half-pixel centres
/// (OpenCV's `INTER_LINEAR`), the map itself when the size is the same. `--raw-size photo`
/// writes the fused maps this way at the photo's resolution.
pub fn resize_bilinear(map: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    assert_eq!(map.len(), h * w, "resize_bilinear: map is not {h}x{w}");
    if (oh, ow) == (h, w) {
        return map.to_vec();
    }
    if oh == 0 || ow == 0 {
        return Vec::new();
    }
    let taps = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|d| {
                let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src as usize).min(n_in - 1);
                let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
                let l1 = (src - i0 as f32).clamp(0.0, 1.0);
                (i0, i1, 1.0 - l1, l1)
            })
            .collect()
    };
    let ys = taps(h, oh);
    let xs = taps(w, ow);
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, wy0, wy1) in &ys {
        let (r0, r1) = (&map[y0 * w..(y0 + 1) * w], &map[y1 * w..(y1 + 1) * w]);
        for &(x0, x1, wx0, wx1) in &xs {
            out.push(wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]));
        }
    }
    out
}

/// Blend: out = alpha*heat + (1-alpha)*photo, rounded like cv2.addWeighted (saturating, round half to even).
///
/// Exactly `cv2.addWeighted(heat, alpha, photo, 1 - alpha, 0)` of OpenCV 5 on x86-64: alpha and
/// beta = 1 − alpha (taken in f64, as Python computes it) are f32; each channel is
/// `fma(heat, alpha, fma(photo, beta, 0))` in f32, then rounded **half to even** (OpenCV's
/// `cvRound`, not half away from zero) and saturated to 0..=255. With alpha = 0.5 (the official
/// overlay) every step is exact.
///
/// Panics if the two images differ in size (a caller bug).
pub fn overlay(photo: &RgbImage, heat: &RgbImage, alpha: f32) -> RgbImage {
    assert_eq!(
        photo.dimensions(),
        heat.dimensions(),
        "overlay: photo is {:?} but heat map is {:?}",
        photo.dimensions(),
        heat.dimensions()
    );
    let beta = (1.0f64 - alpha as f64) as f32;
    let (w, h) = photo.dimensions();
    // every (heat, photo) byte pair, once: mul_add is a library call without hardware FMA,
    // and a 12-megapixel photo has 36 million pairs
    let table: Vec<u8> = (0..65536u32)
        .map(|i| {
            let (a, b) = ((i >> 8) as f32, (i & 255) as f32);
            let t = b.mul_add(beta, 0.0);
            let v = a.mul_add(alpha, t).round_ties_even();
            v.clamp(0.0, 255.0) as u8 // NaN → 0
        })
        .collect();
    let data = heat
        .as_raw()
        .iter()
        .zip(photo.as_raw())
        .map(|(&a, &b)| table[(a as usize) << 8 | b as usize])
        .collect();
    RgbImage::from_raw(w, h, data).expect("size matches")
}

/// Write a PNG atomically: encode to `<path>.tmp-<pid>` in the same folder, then rename; on any error remove the temp file and return Error::output.
pub fn write_png_atomic(img: &RgbImage, path: &Path) -> Result<()> {
    write_atomic(path, |file| {
        use image::ImageEncoder;
        let mut buf = std::io::BufWriter::new(file);
        image::codecs::png::PngEncoder::new(&mut buf)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| format!("cannot encode the PNG ({e})"))?;
        buf.flush()
            .map_err(|e| format!("cannot write the PNG ({e})"))?;
        Ok(())
    })
}

/// Same atomic pattern for arbitrary bytes (used for JSON and safetensors outputs).
pub fn write_bytes_atomic(bytes: &[u8], path: &Path) -> Result<()> {
    write_atomic(path, |file| {
        let mut f: &std::fs::File = file;
        f.write_all(bytes)
            .map_err(|e| format!("cannot write the data ({e})"))
    })
}

/// `<path>.tmp-<pid>`, in the folder of `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&std::fs::File) -> std::result::Result<(), String>,
) -> Result<()> {
    const FIX: &str = "check that the folder exists, is writable and has free space";
    if path.file_name().is_none() {
        return Err(Error::output(
            path,
            "the path names no file; pass a file path",
        ));
    }
    if path.is_dir() {
        return Err(Error::output(
            path,
            "a folder already has this name; choose another file name",
        ));
    }
    let tmp = temp_path(path);
    let file = std::fs::File::create(&tmp).map_err(|e| {
        Error::output(
            path,
            format!("cannot create {} ({e}); {FIX}", tmp.display()),
        )
    })?;
    let result = fill(&file)
        .and_then(|()| {
            file.sync_all()
                .map_err(|e| format!("cannot flush the file ({e})"))
        })
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
                .map_err(|e| format!("cannot move {} into place ({e})", tmp.display()))
        });
    result.map_err(|reason| {
        let _ = std::fs::remove_file(&tmp);
        Error::output(path, format!("{reason}; {FIX}"))
    })
}

const JET: [[u8; 3]; 256] = [
    [0, 0, 128],
    [0, 0, 132],
    [0, 0, 136],
    [0, 0, 140],
    [0, 0, 144],
    [0, 0, 148],
    [0, 0, 152],
    [0, 0, 156],
    [0, 0, 160],
    [0, 0, 164],
    [0, 0, 168],
    [0, 0, 172],
    [0, 0, 176],
    [0, 0, 180],
    [0, 0, 184],
    [0, 0, 188],
    [0, 0, 192],
    [0, 0, 196],
    [0, 0, 200],
    [0, 0, 204],
    [0, 0, 208],
    [0, 0, 212],
    [0, 0, 216],
    [0, 0, 220],
    [0, 0, 224],
    [0, 0, 228],
    [0, 0, 232],
    [0, 0, 236],
    [0, 0, 240],
    [0, 0, 244],
    [0, 0, 248],
    [0, 0, 252],
    [0, 0, 255],
    [0, 4, 255],
    [0, 8, 255],
    [0, 12, 255],
    [0, 16, 255],
    [0, 20, 255],
    [0, 24, 255],
    [0, 28, 255],
    [0, 32, 255],
    [0, 36, 255],
    [0, 40, 255],
    [0, 44, 255],
    [0, 48, 255],
    [0, 52, 255],
    [0, 56, 255],
    [0, 60, 255],
    [0, 64, 255],
    [0, 68, 255],
    [0, 72, 255],
    [0, 76, 255],
    [0, 80, 255],
    [0, 84, 255],
    [0, 88, 255],
    [0, 92, 255],
    [0, 96, 255],
    [0, 100, 255],
    [0, 104, 255],
    [0, 108, 255],
    [0, 112, 255],
    [0, 116, 255],
    [0, 120, 255],
    [0, 124, 255],
    [0, 128, 255],
    [0, 132, 255],
    [0, 136, 255],
    [0, 140, 255],
    [0, 144, 255],
    [0, 148, 255],
    [0, 152, 255],
    [0, 156, 255],
    [0, 160, 255],
    [0, 164, 255],
    [0, 168, 255],
    [0, 172, 255],
    [0, 176, 255],
    [0, 180, 255],
    [0, 184, 255],
    [0, 188, 255],
    [0, 192, 255],
    [0, 196, 255],
    [0, 200, 255],
    [0, 204, 255],
    [0, 208, 255],
    [0, 212, 255],
    [0, 216, 255],
    [0, 220, 255],
    [0, 224, 255],
    [0, 228, 255],
    [0, 232, 255],
    [0, 236, 255],
    [0, 240, 255],
    [0, 244, 255],
    [0, 248, 255],
    [0, 252, 255],
    [2, 255, 254],
    [6, 255, 250],
    [10, 255, 246],
    [14, 255, 242],
    [18, 255, 238],
    [22, 255, 234],
    [26, 255, 230],
    [30, 255, 226],
    [34, 255, 222],
    [38, 255, 218],
    [42, 255, 214],
    [46, 255, 210],
    [50, 255, 206],
    [54, 255, 202],
    [58, 255, 198],
    [62, 255, 194],
    [66, 255, 190],
    [70, 255, 186],
    [74, 255, 182],
    [78, 255, 178],
    [82, 255, 174],
    [86, 255, 170],
    [90, 255, 166],
    [94, 255, 162],
    [98, 255, 158],
    [102, 255, 154],
    [106, 255, 150],
    [110, 255, 146],
    [114, 255, 142],
    [118, 255, 138],
    [122, 255, 134],
    [126, 255, 130],
    [130, 255, 126],
    [134, 255, 122],
    [138, 255, 118],
    [142, 255, 114],
    [146, 255, 110],
    [150, 255, 106],
    [154, 255, 102],
    [158, 255, 98],
    [162, 255, 94],
    [166, 255, 90],
    [170, 255, 86],
    [174, 255, 82],
    [178, 255, 78],
    [182, 255, 74],
    [186, 255, 70],
    [190, 255, 66],
    [194, 255, 62],
    [198, 255, 58],
    [202, 255, 54],
    [206, 255, 50],
    [210, 255, 46],
    [214, 255, 42],
    [218, 255, 38],
    [222, 255, 34],
    [226, 255, 30],
    [230, 255, 26],
    [234, 255, 22],
    [238, 255, 18],
    [242, 255, 14],
    [246, 255, 10],
    [250, 255, 6],
    [254, 255, 1],
    [255, 252, 0],
    [255, 248, 0],
    [255, 244, 0],
    [255, 240, 0],
    [255, 236, 0],
    [255, 232, 0],
    [255, 228, 0],
    [255, 224, 0],
    [255, 220, 0],
    [255, 216, 0],
    [255, 212, 0],
    [255, 208, 0],
    [255, 204, 0],
    [255, 200, 0],
    [255, 196, 0],
    [255, 192, 0],
    [255, 188, 0],
    [255, 184, 0],
    [255, 180, 0],
    [255, 176, 0],
    [255, 172, 0],
    [255, 168, 0],
    [255, 164, 0],
    [255, 160, 0],
    [255, 156, 0],
    [255, 152, 0],
    [255, 148, 0],
    [255, 144, 0],
    [255, 140, 0],
    [255, 136, 0],
    [255, 132, 0],
    [255, 128, 0],
    [255, 124, 0],
    [255, 120, 0],
    [255, 116, 0],
    [255, 112, 0],
    [255, 108, 0],
    [255, 104, 0],
    [255, 100, 0],
    [255, 96, 0],
    [255, 92, 0],
    [255, 88, 0],
    [255, 84, 0],
    [255, 80, 0],
    [255, 76, 0],
    [255, 72, 0],
    [255, 68, 0],
    [255, 64, 0],
    [255, 60, 0],
    [255, 56, 0],
    [255, 52, 0],
    [255, 48, 0],
    [255, 44, 0],
    [255, 40, 0],
    [255, 36, 0],
    [255, 32, 0],
    [255, 28, 0],
    [255, 24, 0],
    [255, 20, 0],
    [255, 16, 0],
    [255, 12, 0],
    [255, 8, 0],
    [255, 4, 0],
    [255, 0, 0],
    [252, 0, 0],
    [248, 0, 0],
    [244, 0, 0],
    [240, 0, 0],
    [236, 0, 0],
    [232, 0, 0],
    [228, 0, 0],
    [224, 0, 0],
    [220, 0, 0],
    [216, 0, 0],
    [212, 0, 0],
    [208, 0, 0],
    [204, 0, 0],
    [200, 0, 0],
    [196, 0, 0],
    [192, 0, 0],
    [188, 0, 0],
    [184, 0, 0],
    [180, 0, 0],
    [176, 0, 0],
    [172, 0, 0],
    [168, 0, 0],
    [164, 0, 0],
    [160, 0, 0],
    [156, 0, 0],
    [152, 0, 0],
    [148, 0, 0],
    [144, 0, 0],
    [140, 0, 0],
    [136, 0, 0],
    [132, 0, 0],
    [128, 0, 0],
];

/// The photo scaled down (area average) so that its longest side is at most `side` (0: as is).
pub fn fit(photo: &image::RgbImage, side: u32) -> std::borrow::Cow<'_, image::RgbImage> {
    let (w, h) = photo.dimensions();
    if side == 0 || w.max(h) <= side {
        return std::borrow::Cow::Borrowed(photo);
    }
    let s = side as f64 / w.max(h) as f64;
    let (nw, nh) = (
        ((w as f64 * s).round() as u32).max(1),
        ((h as f64 * s).round() as u32).max(1),
    );
    // an area average: fast, and right for shrinking
    std::borrow::Cow::Owned(image::imageops::thumbnail(photo, nw, nh))
}
