//! Heat-map colouring, blending and atomic writes, against OpenCV reference values.

use std::path::{Path, PathBuf};

use combicam_gpu::app::render::{heatmap_rgb, jet, overlay, write_bytes_atomic, write_png_atomic};
use combicam_gpu::error::Error;
use image::RgbImage;

/// tests/golden/jet.txt: `v r g b` per line, from
/// `cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_JET)` (BGR → RGB),
/// OpenCV 5.0.0.
#[test]
fn jet_equals_opencv_for_all_256_values() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/jet.txt"))
            .unwrap();
    let mut n = 0;
    for line in text.lines() {
        let v: Vec<u32> = line
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        let want = [v[1] as u8, v[2] as u8, v[3] as u8];
        assert_eq!(jet(v[0] as u8), want, "jet({})", v[0]);
        n += 1;
    }
    assert_eq!(n, 256);
    assert_eq!(jet(0), [0, 0, 128]);
    assert_eq!(jet(255), [128, 0, 0]);
}

/// (alpha, heat, photo, cv2.addWeighted(heat, alpha, photo, 1 - alpha, 0)) from OpenCV 5.0.0.
/// The 0.3/0.7 rows are values where a non-fused multiply-add would round differently.
const ADD_WEIGHTED: &[(f32, u8, u8, u8)] = &[
    (0.3, 11, 26, 21),
    (0.3, 17, 2, 6),
    (0.3, 17, 52, 41),
    (0.3, 17, 72, 55),
    (0.7, 3, 28, 11),
    (0.7, 6, 61, 23),
    (0.7, 6, 81, 29),
    (0.7, 11, 56, 25),
    (0.5, 1, 0, 0), // 0.5 rounds to even
    (0.5, 0, 1, 0),
    (0.5, 3, 0, 2), // 1.5 rounds to even
    (0.5, 1, 2, 2),
    (0.5, 255, 254, 254),
    (0.5, 255, 255, 255),
    (0.5, 0, 0, 0),
    (0.5, 200, 101, 150),
];

#[test]
fn overlay_matches_cv2_add_weighted() {
    for &(alpha, heat, photo, want) in ADD_WEIGHTED {
        let h = RgbImage::from_pixel(2, 1, image::Rgb([heat, heat, 0]));
        let p = RgbImage::from_pixel(2, 1, image::Rgb([photo, 0, photo]));
        let out = overlay(&p, &h, alpha);
        assert_eq!(out.dimensions(), (2, 1));
        let px = out.get_pixel(1, 0).0;
        assert_eq!(px[0], want, "alpha {alpha}, heat {heat}, photo {photo}");
        assert_eq!(
            px,
            [
                want,
                overlay_one(alpha, heat, 0),
                overlay_one(alpha, 0, photo)
            ]
        );
    }
    // Whole range, alpha 0.5: (a + b) / 2 with ties to even.
    for a in 0..=255u8 {
        for b in (0..=255u8).step_by(7) {
            let s = a as u32 + b as u32;
            let want = if s % 4 == 1 { s / 2 } else { s.div_ceil(2) } as u8;
            assert_eq!(overlay_one(0.5, a, b), want, "{a} {b}");
        }
    }
}

fn overlay_one(alpha: f32, heat: u8, photo: u8) -> u8 {
    let h = RgbImage::from_pixel(1, 1, image::Rgb([heat; 3]));
    let p = RgbImage::from_pixel(1, 1, image::Rgb([photo; 3]));
    overlay(&p, &h, alpha).get_pixel(0, 0).0[0]
}

#[test]
fn heatmap_same_size_quantises_like_numpy() {
    let map = [0.0, 0.5, 1.0, 0.999, 0.00392, 0.0039216, -0.1, 1.5];
    let img = heatmap_rgb(&map, 2, 4, 4, 2);
    // np.uint8(255 * m) truncates: 127.5 -> 127, 254.745 -> 254, 0.9996 -> 0, 1.000008 -> 1.
    let idx = [0u8, 127, 255, 254, 0, 1, 0, 255];
    for (i, &v) in idx.iter().enumerate() {
        assert_eq!(
            img.get_pixel(i as u32 % 4, i as u32 / 4).0,
            jet(v),
            "value {}",
            map[i]
        );
    }
}

#[test]
fn heatmap_upsampling_matches_torch_align_corners_false() {
    // uint8(255 * F.interpolate(m, size, mode="bilinear", align_corners=False)), torch 2.15.
    let m = [0.0, 1.0, 0.25, 0.75];
    let want: [[u8; 4]; 4] = [
        [0, 63, 191, 255],
        [15, 71, 183, 239],
        [47, 87, 167, 207],
        [63, 95, 159, 191],
    ];
    let img = heatmap_rgb(&m, 2, 2, 4, 4);
    for y in 0..4 {
        for x in 0..4 {
            assert_eq!(
                img.get_pixel(x, y).0,
                jet(want[y as usize][x as usize]),
                "({x}, {y})"
            );
        }
    }
    let m2: [f32; 15] = [
        0.5507979,
        0.7081478,
        0.29090473,
        0.5108276,
        0.89294696,
        0.8962931,
        0.12558532,
        0.20724288,
        0.051467203,
        0.44080985,
        0.029876212,
        0.4568332,
        0.64914405,
        0.2784873,
        0.6762549,
    ];
    let want2: [[u8; 7]; 4] = [
        [140, 163, 150, 74, 114, 172, 227],
        [195, 133, 80, 60, 58, 99, 155],
        [145, 98, 72, 95, 52, 77, 134],
        [7, 69, 130, 165, 98, 114, 172],
    ];
    let img = heatmap_rgb(&m2, 3, 5, 7, 4);
    assert_eq!(img.dimensions(), (7, 4));
    for y in 0..4 {
        for x in 0..7 {
            assert_eq!(
                img.get_pixel(x, y).0,
                jet(want2[y as usize][x as usize]),
                "({x}, {y})"
            );
        }
    }
}

// ---- atomic writes ----------------------------------------------------------------------------

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("combicam-render-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn expect_output_error(r: Result<(), Error>, path: &Path) {
    match r {
        Err(e @ Error::Output { .. }) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(!msg.contains('\n'), "{msg:?}");
            assert!(msg.contains(&path.display().to_string()), "{msg:?}");
        }
        other => panic!("{}: expected Error::Output, got {other:?}", path.display()),
    }
}

#[test]
fn png_round_trip_and_overwrite() {
    let dir = TempDir::new("png");
    let path = dir.0.join("out.png");
    let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
    write_png_atomic(&img, &path).unwrap();
    assert_eq!(image::open(&path).unwrap().to_rgb8(), img);
    let img2 = RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]));
    write_png_atomic(&img2, &path).unwrap();
    assert_eq!(image::open(&path).unwrap().to_rgb8(), img2);
    assert_eq!(dir.entries(), vec!["out.png".to_string()]);

    let json = dir.0.join("out.json");
    write_bytes_atomic(b"{\"a\": 1}\n", &json).unwrap();
    assert_eq!(std::fs::read(&json).unwrap(), b"{\"a\": 1}\n");
    assert_eq!(
        dir.entries(),
        vec!["out.json".to_string(), "out.png".to_string()]
    );
}

#[test]
fn write_into_missing_folder_fails_cleanly() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("no/such/folder/out.png");
    let img = RgbImage::new(2, 2);
    expect_output_error(write_png_atomic(&img, &path), &path);
    expect_output_error(write_bytes_atomic(b"x", &path), &path);
    assert!(dir.entries().is_empty(), "left behind: {:?}", dir.entries());
}

#[test]
fn write_below_a_file_fails_cleanly() {
    // A regular file where a folder is expected: fails even for root (unlike chmod 0o555).
    let dir = TempDir::new("notdir");
    std::fs::write(dir.0.join("file"), b"x").unwrap();
    let path = dir.0.join("file/out.png");
    expect_output_error(write_png_atomic(&RgbImage::new(2, 2), &path), &path);
    expect_output_error(write_bytes_atomic(b"x", &path), &path);
    assert_eq!(dir.entries(), vec!["file".to_string()]);
}

#[test]
fn write_over_a_folder_fails_and_leaves_no_temp_file() {
    let dir = TempDir::new("isdir");
    let path = dir.0.join("taken");
    std::fs::create_dir(&path).unwrap();
    expect_output_error(write_png_atomic(&RgbImage::new(2, 2), &path), &path);
    expect_output_error(write_bytes_atomic(b"x", &path), &path);
    assert_eq!(dir.entries(), vec!["taken".to_string()]);
}

#[cfg(unix)]
#[test]
fn write_into_read_only_folder_fails_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("ro");
    let ro = dir.0.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let path = ro.join("out.png");
    let r = write_png_atomic(&RgbImage::new(2, 2), &path);
    let writable_anyway = std::fs::metadata(&path).is_ok(); // root ignores the mode
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    if writable_anyway {
        r.unwrap();
        eprintln!("running with permission override (root): read-only case not testable");
    } else {
        expect_output_error(r, &path);
    }
    let left: Vec<_> = std::fs::read_dir(&ro)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().contains(".tmp-")),
        "{left:?}"
    );
}
