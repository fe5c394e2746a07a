//! The fuzz targets' entry points: bytes in, through the same library calls the command line
//! makes, to the first error or value. Shared, by `#[path]`, by the targets in
//! `fuzz_targets/` (nightly, libFuzzer) and by the replay test `tests/fuzz.rs` (stable, in
//! the suite), so a corpus file means the same thing to both.
//!
//! Each entry returns the error the user would see, or `Ok` when the input was taken. The file
//! loaders read paths, as the command line gives them: the bytes are written to a private
//! scratch folder first, under the file name the command line would meet.
//!
//! The including crate declares the binary's source as `binary` (`src/main.rs`, for its dry
//! run) beside this module.

#![allow(dead_code)]

use combicam_gpu::model::weights::checkpoint::{self, OutDtype};
use combicam_gpu::model::weights::{self, Layout, LoadOptions, TensorSource};
use combicam_gpu::model::{config, search};
use combicam_gpu::preprocess;
use std::path::{Path, PathBuf};

/// The targets, as `fuzz/regressions/<name>/` and `cargo fuzz run <name>` name them.
pub const TARGETS: [&str; 6] = [
    "image",
    "checkpoint",
    "safetensors",
    "pickle",
    "hdf5",
    "cli",
];

/// Run target `name` on `bytes`.
pub fn run(name: &str, bytes: &[u8]) -> Result<(), String> {
    match name {
        "image" => image(bytes),
        "checkpoint" => checkpoint(bytes),
        "safetensors" => safetensors(bytes),
        "pickle" => pickle(bytes),
        "hdf5" => hdf5(bytes),
        "cli" => cli(bytes),
        other => panic!("no fuzz target {other:?}"),
    }
}

fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// This thread's scratch copy of `bytes`, named `name` (a process-and-thread private folder
/// under /dev/shm when it exists, else the temporary folder).
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "combicam-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

/// Photo bytes → decode (every format, the libjpeg-turbo decoder for JPEG) → EXIF orientation
/// → preprocessing at each family's rule (visloc B4, Lite0, timm TF B4: bilinear and bicubic
/// resizes, short sides 224 and 380).
pub fn image(bytes: &[u8]) -> Result<(), String> {
    let photo = preprocess::load_image_bytes(bytes, Path::new("photo")).map_err(msg)?;
    let rules = [
        (Layout::Visloc, config::Family::Visloc, 4),
        (Layout::EfficientnetPytorch, config::Family::Lite, 0),
        (Layout::Timm, config::Family::TimmTf, 4),
    ];
    for (layout, family, v) in rules {
        let how = weights::default_preprocessing(layout, &config::efficientnet(v, family));
        let pre = preprocess::preprocess_with(&photo, &how).map_err(msg)?;
        assert_eq!(pre.tensor.len(), 3 * pre.height * pre.width);
    }
    Ok(())
}

/// Every tensor as `convert` reads it, then the checks and BN folding of `--weights`: first
/// with the architecture detected, then (for the deep paths a file with few keys does not
/// reach) as visloc's B0 with its retrieval head.
fn weights_from(src: &dyn TensorSource) -> Result<(), String> {
    checkpoint::to_safetensors(src, OutDtype::F16, Default::default()).map_err(msg)?;
    let detected = weights::load_with(src, &LoadOptions::default());
    let as_b0 = LoadOptions {
        arch: Some("visloc_b0".into()),
        retrieval: true,
        ..Default::default()
    };
    let b0 = weights::load_with(src, &as_b0);
    detected.and(b0).map(|_| ()).map_err(msg)
}

/// A `.pt` / `.pth` (torch.save's zip, the legacy pickle stream) under CERTH's file name, as
/// `--weights` and `convert` open it.
pub fn checkpoint(bytes: &[u8]) -> Result<(), String> {
    let p = scratch("efficientnet_backbone.pt", bytes);
    let src = checkpoint::open(&[p]).map_err(msg)?;
    weights_from(&src)
}

/// A `.safetensors` file as `--weights` and `convert` open it: header, dtypes, offsets, the
/// checks.
pub fn safetensors(bytes: &[u8]) -> Result<(), String> {
    let p = scratch("weights.safetensors", bytes);
    let src = checkpoint::open(&[p]).map_err(msg)?;
    weights_from(&src)
}

/// visloc's `cells_assignments.pkl` as `predict --cells-assignments` reads it.
pub fn pickle(bytes: &[u8]) -> Result<(), String> {
    let p = scratch("cells_assignments.pkl", bytes);
    let a = search::Assignments::open(&p).map_err(msg)?;
    let rows: usize = a.cells.values().map(Vec::len).sum();
    assert!(a.cells.values().all(|r| r.is_sorted()));
    std::hint::black_box(rows);
    Ok(())
}

/// visloc's background collection (`back_coll_features.hdf5`) as `predict --background`
/// opens it, then its first and last rows as the search reads them.
pub fn hdf5(bytes: &[u8]) -> Result<(), String> {
    let p = scratch("back_coll_features.hdf5", bytes);
    let bg = search::Background::open(&p).map_err(msg)?;
    // one row past the end is an error, never a read
    assert!(bg.features(bg.n).is_err() && bg.location(bg.n).is_err());
    bg.read_ends().map_err(msg)?;
    if bg.n > 0 {
        assert_eq!(bg.features(0).map_err(msg)?.len(), bg.d);
    }
    Ok(())
}

/// Argument words of a command line: the input split at NUL bytes (each word may be any
/// bytes; non-UTF-8 ones stay as they are).
pub fn words(bytes: &[u8]) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    bytes
        .split(|&b| b == 0)
        .map(|w| std::ffi::OsStr::from_bytes(w).to_os_string())
        .collect()
}

/// Whether an argument may name a file outside the folder the target runs in (a path with a
/// `/`, `..`, `~`): such command lines are not run, so a fuzzer never walks or reads the whole
/// machine. Names inside the folder are read as the command line would read them.
fn leaves_folder(w: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let b = w.as_bytes();
    b.contains(&b'/') || b.windows(2).any(|p| p == b"..") || b.starts_with(b"~")
}

/// Whether a command line builds a random test network larger than the smallest ones: B7's
/// formula weights take seconds, longer than a fuzzer waits for an input, and they differ from
/// B0's only in size. Such command lines are not run.
fn builds_big_network(args: &[std::ffi::OsString]) -> bool {
    const SMALL: [&str; 3] = ["b0", "lite0", "tf_b0"];
    let s: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let named = s.windows(2).any(|p| {
        let (k, v) = (p[0].as_str(), p[1].as_str());
        matches!(k, "--test-weights" | "--variant") && !SMALL.contains(&v)
            || k == "--cells" && v.trim().parse::<u64>().map_or(true, |n| n > 1000)
    });
    let joined = s.iter().any(|a| {
        ["--test-weights=", "--variant=", "--cells="]
            .iter()
            .any(|k| a.starts_with(k))
    });
    // bench's default network is B4
    let bench = s.first().is_some_and(|c| c == "bench") && !s.iter().any(|a| a == "--variant");
    named || joined || bench
}

/// An argument vector through clap and every command's checks, stopping before any GPU work,
/// download or write (the binary's dry run).
pub fn cli(bytes: &[u8]) -> Result<(), String> {
    let args = words(bytes);
    if args.iter().any(|w| leaves_folder(w)) || builds_big_network(&args) {
        return Ok(());
    }
    let argv = std::iter::once("combicam-gpu".into()).chain(args);
    crate::binary::commands::dry_run(argv).map_err(|e| format!("{e:#}"))
}
