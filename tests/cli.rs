//! The command line end to end on the test network (B0, 50 cells): files appear, JSON parses,
//! raw maps have every tensor with its shape; bad inputs give one-line errors and keep the
//! good outputs.

use combicam_gpu::model::weights::Layout;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary, run as on a server or in a container: no `XDG_RUNTIME_DIR`.
pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_combicam-gpu"));
    c.env_remove("XDG_RUNTIME_DIR");
    c
}

pub(crate) fn tmp(tag: &str) -> PathBuf {
    crate::common::fresh_dir(&format!("cli-{tag}"))
}

pub(crate) fn photo(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x + y) % 64 * 4) as u8,
        ])
    });
    img.save(path).unwrap();
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    println!(
        "$ {:?}\n{}{}",
        cmd,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The error line: exactly one line starting with "error:", no panic.
pub(crate) fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "must fail");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert!(!lines.is_empty(), "no error line in {err:?}");
    lines[0].to_string()
}

pub(crate) const TEST_NET: [&str; 4] = ["--test-weights", "b0", "--cells", "50"];

#[test]
fn explain_writes_every_output() {
    let d = tmp("explain");
    let img = d.join("street.png");
    photo(&img, 64, 48);
    let out = d.join("out");
    let o = run(bin()
        .arg("explain")
        .arg(&img)
        .args(TEST_NET)
        .arg("--out")
        .arg(&out)
        .arg("--save-raw")
        .arg("--json"));
    assert!(o.status.success());
    for f in [
        "street.combicam.png",
        "street.heatmap.png",
        "street.json",
        "street.cams.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let overlay = image::open(out.join("street.combicam.png")).unwrap();
    assert_eq!(
        (overlay.width(), overlay.height()),
        (64, 48),
        "overlay at the photo's resolution"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("street.json")).unwrap()).unwrap();
    assert_eq!(report["input_size"], serde_json::json!([300, 400]));
    assert_eq!(report["blocks"].as_array().unwrap().len(), 16);
    assert!(report["prediction"]["top"][0]["lat"].is_number());
    assert!(report["prediction"]["confidence_km"]["2500"].is_number());
    assert!(report["adapter"]["name"].is_string());
    let stdout: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stdout["target"], report["target"]);
    let (t, _) =
        combicam_gpu::model::weights::read_safetensors(&out.join("street.cams.safetensors"))
            .unwrap();
    assert_eq!(t["probs"].0, vec![50]);
    assert_eq!(t["logits"].0, vec![50]);
    assert_eq!(t["combicam"].0, vec![300, 400]);
    let cfg =
        combicam_gpu::model::config::efficientnet(0, combicam_gpu::model::config::Family::Visloc);
    let (_, _, sizes) = cfg.sizes(300, 400);
    for (l, s) in sizes.iter().enumerate() {
        assert_eq!(
            t[&format!("gradcam.{l:02}")].0,
            vec![s.0, s.1],
            "gradcam.{l:02}"
        );
    }
    assert_eq!(
        t.len(),
        3 + 16,
        "exactly probs, logits, combicam and gradcam.00-15"
    );
    let c = &t["combicam"].1;
    assert!(c.iter().all(|v| (0.0..=1.0).contains(v)) && c.contains(&1.0) && c.contains(&0.0));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn folder_with_a_corrupt_image_keeps_the_good_ones() {
    let d = tmp("folder");
    let imgs = d.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    photo(&imgs.join("a.png"), 40, 30);
    std::fs::write(
        imgs.join("b.jpg"),
        b"\xff\xd8\xff\xe0 this is not really a jpeg",
    )
    .unwrap();
    photo(&imgs.join("c.png"), 30, 40);
    let out = d.join("out");
    let o = run(bin()
        .arg("explain")
        .arg(&imgs)
        .args(TEST_NET)
        .arg("--out")
        .arg(&out)
        .args(["--blocks", "10-15"]));
    assert!(
        !o.status.success(),
        "a bad file makes the exit code non-zero"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("b.jpg") && !err.contains("panicked"), "{err}");
    for f in ["a.combicam.png", "a.json", "c.combicam.png", "c.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("b.") || n.contains(".tmp")),
        "{names:?}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let d = tmp("bad");
    let good = d.join("good.png");
    photo(&good, 40, 30);
    let trunc = d.join("trunc.jpg");
    let mut jpg = Vec::new();
    image::RgbImage::from_pixel(40, 30, image::Rgb([9, 99, 199]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(&trunc, &jpg[..jpg.len() / 2]).unwrap();
    std::fs::write(d.join("notes.txt"), b"hello").unwrap();
    std::fs::write(
        d.join("bad.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
    )
    .unwrap();
    let file = d.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = d.join("out");
    let s = |p: &Path| p.to_string_lossy().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["explain".into(), s(&good), "--blocks".into(), "5-40".into()],
            "block 40 does not exist",
        ),
        (
            vec!["explain".into(), s(&good), "--blocks".into(), "x".into()],
            "--blocks",
        ),
        (
            vec![
                "explain".into(),
                s(&good),
                "--out".into(),
                s(&file.join("sub")),
            ],
            "--out",
        ),
        (
            vec!["explain".into(), s(&good), "--target".into(), "50".into()],
            "--target 50 is out of range",
        ),
        (
            vec!["explain".into(), s(&d.join("missing.jpg"))],
            "missing.jpg",
        ),
        (vec!["explain".into(), s(&trunc)], "trunc.jpg"),
        (vec!["explain".into(), s(&d.join("notes.txt"))], "notes.txt"),
        (
            vec!["predict".into(), s(&good), "--top-k".into(), "many".into()],
            "invalid value",
        ),
        (
            vec!["explain".into(), s(&good), "--metrics".into(), s(&file)],
            "--report",
        ),
        (
            vec!["explain".into(), s(&good), "--batch".into(), "0".into()],
            "at least 1 masked copy",
        ),
        (
            vec!["evaluate".into(), s(&good), "--batch".into(), "0".into()],
            "at least 1 masked copy",
        ),
        (
            vec![
                "explain".into(),
                s(&good),
                "--report".into(),
                "--metrics".into(),
                s(&d.join("notes.txt")),
            ],
            "is not an `evaluate --json` file",
        ),
        (
            vec![
                "explain".into(),
                s(&good),
                "--report".into(),
                "--metrics".into(),
                s(&d.join("none.json")),
            ],
            "cannot read the metrics file",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = bin();
        cmd.args(&args).args(TEST_NET);
        if !args.iter().any(|a| a == "--out") {
            cmd.arg("--out").arg(&out);
        }
        let o = run(cmd.env_remove("COMBICAM_WEIGHTS"));
        let line = one_line_error(&o);
        assert!(
            line.contains(needle) || String::from_utf8_lossy(&o.stderr).contains(needle),
            "{args:?}: {line}"
        );
        println!("OK {args:?} → {line}");
    }
    // weights problems
    for (w, needle) in [
        (s(&d.join("bad.safetensors")), "not a valid safetensors"),
        (s(&d.join("nope.safetensors")), "cannot be read"),
    ] {
        let o = run(bin().args(["predict", &s(&good), "--weights", &w]));
        let line = one_line_error(&o);
        assert!(line.contains(needle), "{line}");
    }
    // two weights files in ./weights/: which one is meant?
    std::fs::create_dir_all(d.join("weights")).unwrap();
    std::fs::write(d.join("weights/a.pt"), b"x").unwrap();
    std::fs::write(d.join("weights/b.safetensors"), b"x").unwrap();
    let o = run(bin()
        .args(["predict", &s(&good)])
        .current_dir(&d)
        .env_remove("COMBICAM_WEIGHTS"));
    assert!(one_line_error(&o).contains("--weights PATH"));
    // weights with a NaN, and a --weights that is an image
    let nan = d.join("nan.safetensors");
    crate::weights::write_formula(&nan, Layout::Visloc, 10, safetensors::Dtype::F32, |l| {
        l.iter_mut()
            .find(|t| t.0 == "backbone._bn0.weight")
            .unwrap()
            .2[3] = f64::NAN;
    });
    for (w, needle) in [
        (
            s(&nan),
            "backbone._bn0.weight holds a non-finite value (NaN)",
        ),
        (s(&good), "is a PNG image, not weights"),
    ] {
        let o = run(bin().args(["predict", &s(&good), "--weights", &w]));
        let line = one_line_error(&o);
        assert!(line.contains(needle), "{line}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .map(|r| r.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "no output for failed runs: {leftovers:?}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn predict_json_has_the_documented_shape() {
    let d = tmp("predict");
    let img = d.join("p.png");
    photo(&img, 45, 30);
    let o = run(bin()
        .arg("predict")
        .arg(&img)
        .arg(&img)
        .args(TEST_NET)
        .args(["--json", "--top-k", "3"]));
    assert!(o.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2, "one object per image");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["top"].as_array().unwrap().len(), 3);
    for k in ["index", "probability", "lat", "lon"] {
        assert!(!v["top"][0][k].is_null(), "{k}");
    }
    for r in ["1", "25", "200", "750", "2500"] {
        assert!(v["confidence_km"][r].is_number(), "{r}");
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn timing_no_passes_is_no_error() {
    // `bench` without --slowest times no single dispatches: on an adapter with timestamps an
    // empty query set was a validation error (seen on the H200, 2026-12-04)
    let t = combicam_gpu::app::bench::time_passes(crate::common::gpu(), &[]).unwrap();
    assert!(t.is_empty());
}

#[test]
fn check_bench_and_compare_run() {
    let d = tmp("bench");
    let o = run(bin().args(["check", "--variant", "b0", "--size", "41x37"]));
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("check passed"));
    let j = d.join("b.json");
    let o = run(bin()
        .args([
            "bench",
            "--variant",
            "b0",
            "--cells",
            "50",
            "--size",
            "64x48",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--mixed",
            "4",
            "--json",
        ])
        .arg(&j));
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    assert_eq!(v["schema"], "combicam-bench/1");
    // --mixed: 4 distinct sizes around 64×48, timed against 4 of 64×48, memory not multiplied
    let m = &v["mixed"];
    let widths: Vec<u64> = m["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_u64().unwrap())
        .collect();
    assert_eq!(widths, [46, 47, 48, 49], "{m}");
    assert!(m["mixed"]["median_ms"].as_f64().unwrap() > 0.0);
    let ratio = m["mixed_gpu_bytes"].as_f64().unwrap() / m["same_gpu_bytes"].as_f64().unwrap();
    assert!(
        (1.0..1.3).contains(&ratio),
        "GPU memory of 4 sizes over one size: {ratio}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 images of 4 sizes"));
    assert!(
        v["results"][0]["phases"]["forward"]["median_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        v["results"][0]["families"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["family"] == "gemm")
    );
    // the dispatches per phase add up to the explain's
    let per_phase: u64 = v["results"][0]["phase_dispatches"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(per_phase, v["results"][0]["dispatches"].as_u64().unwrap());
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    let archived = results.join("lavapipe-2core-epyc.json");
    // the PyTorch reference (benches/pytorch_reference.py --json) reads as a column too
    let pytorch = results.join("pytorch-cpu-2core-epyc.json");
    let o = run(bin()
        .args(["bench", "compare"])
        .arg(&j)
        .arg(&archived)
        .arg(&pytorch));
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("64×48")
            && s.contains("300×450")
            && s.contains("explain ms")
            && s.contains("explain / first column")
            && s.contains("PyTorch"),
        "{s}"
    );
    let o = run(bin().args(["bench", "compare"]).arg(d.join("missing.json")));
    assert!(one_line_error(&o).contains("missing.json"));
    let _ = std::fs::remove_dir_all(d);
}

/// Rates are set against a GPU's published peak only when a whole word of its name matches.
#[test]
fn bench_knows_peaks_by_whole_name() {
    use combicam_gpu::app::bench::peak_of;
    let name = |n: &str| peak_of(n).map(|p| p.name);
    assert_eq!(name("NVIDIA H200"), Some("H200"));
    assert_eq!(name("NVIDIA H100 80GB HBM3"), Some("H100"));
    assert_eq!(name("NVIDIA H100 PCIe"), Some("H100 PCIe"));
    assert_eq!(name("NVIDIA GeForce RTX 4090"), Some("RTX 4090"));
    assert_eq!(name("Tesla T4"), Some("T4"));
    assert_eq!(name("NVIDIA L40S"), None);
    assert_eq!(name("llvmpipe (LLVM 15.0.6, 256 bits)"), None);
}

#[test]
fn no_adapter_gives_the_install_hint() {
    // GL is not compiled in, so restricting wgpu to it leaves no adapter
    let o = run(bin().arg("devices").env("WGPU_BACKEND", "gl"));
    let line = one_line_error(&o);
    assert!(line.contains("mesa-vulkan-drivers"), "{line}");
}

/// `predict` with the environment variable `var` set to the bad `value` fails with one line
/// that names the variable and contains `fix`, the way to a good value.
fn bad_environment_is_one_line((var, value): (&str, &str), fix: &str) {
    let o = run(bin()
        .args(["predict", "x.jpg", "--test-weights", "b0"])
        .env(var, value));
    let line = one_line_error(&o);
    assert!(line.contains(var) && line.contains(fix), "{line}");
}

#[test]
fn bad_device_environment_gives_one_line_errors() {
    bad_environment_is_one_line(("COMBICAM_DEVICE", "first"), "devices");
    bad_environment_is_one_line(("COMBICAM_KERNELS", "fast"), "`gpu`");
}

/// The raw maps (Grad-CAM and EigenCAM at blocks 10–15 of the test network, its head of 50
/// cells included) of one explain of the coffee photo with the environment variable `var` set
/// to `value` (`None`: unset), written under `d`.
fn raw_maps_under(d: &Path, (var, value): (&str, Option<&str>)) -> Vec<u8> {
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos/coffee.png");
    let out = d.join(value.unwrap_or("unset"));
    let mut c = bin();
    match value {
        Some(v) => c.env(var, v),
        None => c.env_remove(var),
    };
    let o = run(c
        .arg("explain")
        .arg(&img)
        .args(TEST_NET)
        .args([
            "--blocks",
            "10-15",
            "--method",
            "gradcam,eigencam",
            "--save-raw",
        ])
        .arg("--out")
        .arg(&out));
    let value = value.unwrap_or("unset");
    assert!(
        o.status.success(),
        "{var}={value}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(out.join("coffee.cams.safetensors")).unwrap()
}

/// The kernels' run-time guards (`COMBICAM_SHADER_CHECKS`) change no number: the raw maps of
/// each setting are the same bytes; a bad value is a one-line error.
#[test]
fn shader_checks_change_no_result() {
    let d = tmp("checks");
    let raw: Vec<Vec<u8>> = ["full", "bounds", "none"]
        .iter()
        .map(|&c| raw_maps_under(&d, ("COMBICAM_SHADER_CHECKS", Some(c))))
        .collect();
    assert!(
        raw[0] == raw[1] && raw[1] == raw[2],
        "the raw maps differ between settings"
    );
    println!(
        "full, bounds and none: {} bytes of raw maps, identical",
        raw[0].len()
    );
    bad_environment_is_one_line(("COMBICAM_SHADER_CHECKS", "off"), "`bounds`");
    let _ = std::fs::remove_dir_all(d);
}

/// The subgroup forms of the CPU-shaped GEMM and head change no number: the raw maps with
/// subgroups (where the device has them, as lavapipe on AVX2 has) and with
/// `COMBICAM_SUBGROUPS=off` are the same bytes; a bad value is a one-line error.
#[test]
fn subgroups_change_no_result() {
    let d = tmp("subgroups");
    let with = raw_maps_under(&d, ("COMBICAM_SUBGROUPS", None));
    let without = raw_maps_under(&d, ("COMBICAM_SUBGROUPS", Some("off")));
    assert!(
        with == without,
        "the raw maps differ with and without subgroups"
    );
    println!(
        "with and without subgroups: {} bytes of raw maps, identical",
        with.len()
    );
    bad_environment_is_one_line(("COMBICAM_SUBGROUPS", "on"), "`off`");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn no_runtime_dir_noise_without_xdg_runtime_dir() {
    // `bin()` removes XDG_RUNTIME_DIR; opening the adapter must not make Vulkan complain
    let o = run(bin().arg("devices"));
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("XDG_RUNTIME_DIR"));
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn no_weights_anywhere_uses_the_built_in_lite0() {
    // from a folder with no weights/, as after `cargo install`: the embedded trained Lite0
    let d = tmp("builtin");
    let out = d.join("out");
    let o = run(bin()
        .arg("explain")
        .arg(repo("tests/photos/coffee.png"))
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .current_dir(&d)
        .env_remove("COMBICAM_WEIGHTS"));
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("built-in EfficientNet-Lite0") && err.contains("mvmf_head.pt"),
        "{err}"
    );
    assert_eq!(
        err.matches("built-in EfficientNet-Lite0").count(),
        1,
        "said once"
    );
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(report["prediction"]["top"][0]["label"], "espresso");
    assert_eq!(report["input_size"], serde_json::json!([224, 336]));
    assert!(out.join("coffee.combicam.png").is_file());
    let _ = std::fs::remove_dir_all(d);
}

type Raw = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// `convert` a CERTH folder, then `explain --save-raw` with the folder and with the converted
/// file: the raw maps must be identical. Returns the converted file and both raw files' tensors.
fn convert_and_explain(release: &Path, d: &Path, img: &Path) -> (PathBuf, [Raw; 2]) {
    let converted = d.join("visloc.safetensors");
    let o = run(bin()
        .arg("convert")
        .arg(release)
        .arg("--out")
        .arg(&converted));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && converted.is_file(), "convert: {err}");
    assert!(err.contains("49 left out"), "{err}");
    let raw = |tag: &str, w: &Path| -> Raw {
        let out = d.join(tag);
        let o = run(bin()
            .arg("explain")
            .arg(img)
            .arg("--weights")
            .arg(w)
            .arg("--out")
            .arg(&out)
            .arg("--save-raw"));
        assert!(o.status.success(), "explain --weights {tag}");
        combicam_gpu::model::weights::read_safetensors(&out.join("street.cams.safetensors"))
            .unwrap()
            .0
    };
    let raws = [raw("dir", release), raw("converted", &converted)];
    assert_eq!(raws[0].len(), raws[1].len());
    for (k, v) in &raws[0] {
        assert!(v.1.iter().all(|x| x.is_finite()), "{k}: not finite");
        assert_eq!(
            v, &raws[1][k],
            "{k}: --weights DIR and the converted file differ"
        );
    }
    (converted, raws)
}

#[test]
fn certh_folder_and_its_conversion_give_the_same_maps() {
    let d = tmp("certh");
    let release = d.join("visloc");
    std::fs::create_dir_all(&release).unwrap();
    crate::checkpoint::write_certh_folder(&release, 50);
    let img = d.join("street.png");
    photo(&img, 64, 48);
    let (_, raws) = convert_and_explain(&release, &d, &img);
    println!("{} raw tensors identical", raws[0].len());
    // convert refuses to overwrite its input and to write a half file on bad input
    let o = run(bin()
        .arg("convert")
        .arg(release.join("mvmf_head.pt"))
        .arg("--out")
        .arg(d.join("head-only.safetensors")));
    assert!(one_line_error(&o).contains("pass efficientnet_backbone.pt as well"));
    assert!(
        !d.join("head-only.safetensors").exists(),
        "no half-written output"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn methods_fusions_and_targets_from_the_command_line() {
    let d = tmp("methods");
    let img = d.join("street.png");
    photo(&img, 64, 48);
    let out = d.join("out");
    let o = run(bin()
        .arg("explain")
        .arg(&img)
        .args(TEST_NET)
        .args([
            "--method",
            "gradcam,layercam",
            "--fusion",
            "max",
            "--save-raw",
            "--json",
        ])
        .arg("--out")
        .arg(&out));
    assert!(o.status.success());
    for f in [
        "street.gradcam.max.png",
        "street.gradcam.max.heatmap.png",
        "street.layercam.png",
        "street.layercam.heatmap.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let (raw, _) =
        combicam_gpu::model::weights::read_safetensors(&out.join("street.cams.safetensors"))
            .unwrap();
    for k in [
        "gradcam.00",
        "gradcam.15",
        "layercam.07",
        "gradcam.max.fused",
        "layercam.fused",
    ] {
        assert!(raw.contains_key(k), "{k} missing from the raw maps");
    }
    assert_eq!(raw["gradcam.max.fused"].0, vec![300, 400]);
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let methods = report["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    assert_eq!(methods[1]["method"], "layercam");
    assert_eq!(methods[1]["fusion"], "max");
    assert_eq!(methods[1]["blocks"].as_array().unwrap().len(), 16);
    assert!(methods[1]["blocks"][15]["peak"].as_f64().unwrap() >= 0.0);

    // the region score and a target by place, on the geolocation test network
    let o = run(bin()
        .arg("explain")
        .arg(&img)
        .args(TEST_NET)
        .args([
            "--score",
            "region:3000",
            "--target-latlon",
            "48.86,2.29",
            "--json",
        ])
        .arg("--out")
        .arg(&out));
    assert!(o.status.success());
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let target = report["target"].as_u64().unwrap();
    assert_eq!(report["explained"]["index"].as_u64().unwrap(), target);
    assert!(report["explained"]["lat"].is_number());
    let mass = report["region_mass"].as_f64().unwrap();
    assert!(mass >= report["explained"]["probability"].as_f64().unwrap() - 1e-7 && mass <= 1.0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mass within 3000 km"), "{err}");

    // bad requests: one line each, naming the fix
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--method", "gradcam,bogus"],
            "unknown CAM method \"bogus\": use gradcam",
        ),
        (
            vec!["--method", "scorecam", "--score", "region:100"],
            "not a region's mass: drop --score region:KM",
        ),
        (
            vec!["--method", "gradcam,gradcampp-official"],
            "last block only: pass --blocks 15",
        ),
        (
            vec!["--fusion", "median"],
            "unknown fusion rule \"median\": use sum",
        ),
        (vec!["--score", "area"], "use prob, logit or region:KM"),
        (vec!["--score", "region:-5"], "use prob, logit or region:KM"),
        (vec!["--target-latlon", "north"], "is not LAT,LON"),
        (
            vec!["--target-latlon", "91,0"],
            "latitude must be in -90..90",
        ),
    ];
    for (args, needle) in cases {
        let o = run(bin()
            .arg("explain")
            .arg(&img)
            .args(TEST_NET)
            .args(&args)
            .arg("--out")
            .arg(d.join("bad")));
        let line = one_line_error(&o);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    // geography on a network without cells
    for args in [
        vec!["--score", "region:100"],
        vec!["--target-latlon", "1,2"],
    ] {
        let o = run(bin()
            .arg("explain")
            .arg(&img)
            .args(["--test-weights", "lite0"])
            .args(&args)
            .arg("--out")
            .arg(d.join("bad")));
        let line = one_line_error(&o);
        assert!(
            line.contains("needs geolocation weights"),
            "{args:?}: {line}"
        );
    }
    assert!(!d.join("bad").exists(), "no output folder for refused runs");
    // the official Grad-CAM++ alone: the last block by default
    let o = run(bin()
        .arg("explain")
        .arg(&img)
        .args(TEST_NET)
        .args(["--method", "gradcampp-official", "--save-raw"])
        .arg("--out")
        .arg(&out));
    assert!(o.status.success());
    assert!(out.join("street.gradcampp-official.png").is_file());
    let (raw, _) =
        combicam_gpu::model::weights::read_safetensors(&out.join("street.cams.safetensors"))
            .unwrap();
    assert!(
        raw.contains_key("gradcampp-official.15") && !raw.contains_key("gradcampp-official.14")
    );
    let _ = std::fs::remove_dir_all(d);
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[test]
fn folders_recursive_sharded_resumed_and_interrupted() {
    let d = tmp("folders");
    let data = d.join("data");
    let names = ["a", "b", "sub/c", "sub/d", "sub/deep/e", "f"];
    for (i, n) in names.iter().enumerate() {
        let p = data.join(format!("{n}.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        photo(&p, 40 + i as u32, 30);
    }
    // the output folder inside the input folder: never scanned
    let out = data.join("out");
    let explain = |extra: &[&str]| {
        run(bin()
            .arg("explain")
            .arg(&data)
            .args(TEST_NET)
            .arg("--out")
            .arg(&out)
            .args(extra))
    };
    // three shards together: every image once, sub-folders kept
    for s in ["1/3", "2/3", "3/3"] {
        assert!(explain(&["--shard", s]).status.success());
    }
    let files = tree(&out);
    for n in names {
        assert!(
            files.contains(&format!("{n}.json")),
            "{n} missing: {files:?}"
        );
    }
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".json")).count(),
        names.len()
    );
    let index = std::fs::read_to_string(out.join("index.jsonl")).unwrap();
    assert_eq!(index.lines().count(), names.len());
    // resume: nothing rewritten, nothing explained
    let before: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(out.join(f)).unwrap().modified().unwrap())
        .collect();
    let o = explain(&["--resume"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("6 images already done"));
    assert_eq!(
        tree(&out),
        files,
        "the output folder was not scanned as input"
    );
    let after: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(out.join(f)).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "--resume rewrote outputs");
    // --no-recursive: the top folder only
    let flat = d.join("flat");
    let o = run(bin()
        .arg("explain")
        .arg(&data)
        .args(TEST_NET)
        .arg("--no-recursive")
        .arg("--out")
        .arg(&flat));
    assert!(o.status.success());
    assert_eq!(
        tree(&flat).iter().filter(|f| f.ends_with(".json")).count(),
        3
    );

    // Ctrl-C mid-folder: exit 130 after the current image, no temporary files, whole lines
    let many = d.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..24 {
        photo(&many.join(format!("p{i:02}.png")), 64, 48 + i);
    }
    let stop = d.join("stop");
    let mut child = bin()
        .arg("explain")
        .arg(&many)
        .args(TEST_NET)
        .arg("--out")
        .arg(&stop)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(stop.join("index.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 2
    {
        assert!(t0.elapsed().as_secs() < 120, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: sends SIGINT to our own child process
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    let left = tree(&stop);
    assert!(
        left.iter().all(|f| !f.contains(".tmp-")),
        "temporary files left: {left:?}"
    );
    let done = left.iter().filter(|f| f.ends_with(".json")).count();
    assert!(done < 24, "it stopped early ({done} of 24)");
    let index = std::fs::read_to_string(stop.join("index.jsonl")).unwrap();
    for l in index.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
    assert_eq!(index.lines().count(), done);
    // and --resume finishes the rest
    let o = run(bin()
        .arg("explain")
        .arg(&many)
        .args(TEST_NET)
        .arg("--out")
        .arg(&stop)
        .arg("--resume"));
    assert!(o.status.success());
    assert_eq!(
        tree(&stop).iter().filter(|f| f.ends_with(".json")).count(),
        24
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn extreme_aspect_ratio_says_how_far_to_crop() {
    // photos are resized to a fixed short side, so only the aspect ratio can make the model
    // input too large for the adapter's largest buffer: the error says what to crop to.
    // 600:1 needs over 4 GiB in one buffer: more than any adapter binds
    let d = tmp("pano");
    let img = d.join("pano.png");
    photo(&img, 2400, 4);
    let o = run(bin()
        .arg("explain")
        .arg(&img)
        .args(TEST_NET)
        .arg("--out")
        .arg(d.join("out")));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("aspect 600.0:1")
            && err.contains("crop the photo to an aspect ratio of at most"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn overlay_size_caps_the_pngs_only() {
    let d = tmp("overlay-size");
    let (big, small) = (d.join("wide.png"), d.join("small.png"));
    photo(&big, 300, 120);
    photo(&small, 80, 60);
    let out = d.join("out");
    let o = run(bin()
        .args(["explain", "--overlay-size", "100", "--out"])
        .arg(&out)
        .args(TEST_NET)
        .arg(&big)
        .arg(&small));
    assert!(o.status.success());
    let dims = |p: PathBuf| image::image_dimensions(p).unwrap();
    // the longest side becomes 100, the aspect kept; a smaller photo stays as it is
    assert_eq!(dims(out.join("wide.combicam.png")), (100, 40));
    assert_eq!(dims(out.join("wide.heatmap.png")), (100, 40));
    assert_eq!(dims(out.join("small.combicam.png")), (80, 60));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("wide.json")).unwrap()).unwrap();
    assert_eq!(v["original_size"], serde_json::json!([120, 300]));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn evaluate_the_built_in_model_on_the_photos() {
    // the trained Lite0 (no --weights): Combi-CAM must delete the class faster than a smooth
    // random map on the shipped photos (measured at 50 steps: 0.171 against 0.268)
    let d = tmp("evaluate");
    let j = d.join("m.json");
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos");
    let o = run(bin()
        .args([
            "evaluate",
            "--explainers",
            "combicam,random:3",
            "--steps",
            "10",
            "--json",
        ])
        .arg(&j)
        .arg(photos.join("coffee.png"))
        .arg(photos.join("chelsea.png")));
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("deletion AUC") && out.contains("combicam") && out.contains("random:3"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for im in images {
        let c = &im["explainers"]["combicam"];
        assert_eq!(c["deletion"].as_array().unwrap().len(), 11);
        assert_eq!(c["insertion"].as_array().unwrap().len(), 11);
        assert!(c["increase"].is_boolean());
        assert!(im["target"].is_u64());
    }
    let mean = |e: &str, m: &str| v["mean"][e][m].as_f64().unwrap();
    let (ours, random) = (
        mean("combicam", "deletion_auc"),
        mean("random:3", "deletion_auc"),
    );
    println!("deletion AUC: combicam {ours:.4}, smooth random {random:.4}");
    assert!(
        ours < random,
        "Combi-CAM {ours} does not beat a smooth random map {random}"
    );

    // bad requests: one line each, nothing written
    let bad = d.join("bad.json");
    for (args, want) in [
        (
            vec!["--explainers", "gradcam@99"],
            "block 99 does not exist",
        ),
        (vec!["--explainers", "median"], "METHOD[@BLOCKS][:FUSION]"),
        (vec!["--steps", "0"], "--steps 0"),
        (
            vec!["--json", "/nonexistent-folder/m.json"],
            "does not exist",
        ),
    ] {
        let mut cmd = bin();
        cmd.arg("evaluate").args(&args);
        if !args.contains(&"--json") {
            cmd.arg("--json").arg(&bad);
        }
        let o = run(cmd.arg(photos.join("coffee.png")));
        let line = one_line_error(&o);
        assert!(line.contains(want), "{args:?}: {line}");
        assert!(!bad.exists(), "{args:?} wrote {}", bad.display());
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn report_pages_link_only_files_that_exist() {
    let d = tmp("report");
    let (a, b) = (d.join("street.png"), d.join("sub").join("tower.png"));
    std::fs::create_dir_all(b.parent().unwrap()).unwrap();
    photo(&a, 90, 60);
    photo(&b, 60, 90);
    let out = d.join("out");
    let o = run(bin()
        .args([
            "explain",
            "--report",
            "--method",
            "gradcam,layercam",
            "--out",
        ])
        .arg(&out)
        .args(TEST_NET)
        .arg(&d));
    assert!(o.status.success());
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    for page in [
        out.join("street.report.html"),
        out.join("sub/tower.report.html"),
    ] {
        let html = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        // every image is a file beside the page, and nothing points outside the machine
        let srcs: Vec<&str> = html
            .split("src=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        // two fused rows (overlay, heat map, colour bar) and 16 blocks per method
        assert!(
            srcs.len() >= 2 * 3 + 2 * 16,
            "{} images in {}",
            srcs.len(),
            page.display()
        );
        for s in &srcs {
            assert!(
                dir.join(s).is_file(),
                "{}: {s} does not exist",
                page.display()
            );
        }
        // (the SVG namespace is a name, not a request)
        let bare = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !bare.contains("http://") && !bare.contains("https://"),
            "{}: a remote link",
            page.display()
        );
        assert!(!html.contains("<script"), "no script");
        assert!(
            html.contains("<svg") && html.contains("max |activation|"),
            "the per-block plot"
        );
        assert!(
            html.matches("alt=\"").count() >= srcs.len(),
            "every image has alt text"
        );
        let name = page.file_name().unwrap().to_string_lossy().to_string();
        assert!(index.contains(&name), "index.html links {name}");
    }
    let thumbs: Vec<&str> = index
        .split("src=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(thumbs.len(), 2);
    for t in thumbs {
        assert!(out.join(t).is_file(), "index thumbnail {t}");
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_batch_past_the_adapter_limits_is_lowered_and_said() {
    // B0 at 300×400 (visloc resizing): block 1's expansion is 11.5 MB per image, so no
    // adapter that binds 128 MiB takes 10,000 copies; Score-CAM at block 0 is 16 passes
    let d = tmp("batch-lowered");
    let img = d.join("p.png");
    photo(&img, 64, 48);
    let o = run(bin()
        .arg("explain")
        .arg(&img)
        .args(TEST_NET)
        .args([
            "--method", "scorecam", "--blocks", "0", "--batch", "10000", "--out",
        ])
        .arg(d.join("out")));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line = err.lines().find(|l| l.contains("--batch 10000 lowered to"));
    let line = line.unwrap_or_else(|| panic!("no note about the lowered batch in: {err}"));
    println!("{line}");
    assert!(d.join("out/p.scorecam.png").is_file());
    // the masked passes are part of the reported GPU time, and said apart
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/p.json")).unwrap()).unwrap();
    let t = &json["timings"];
    let (gpu, masked) = (
        t["gpu_s"].as_f64().unwrap(),
        t["masked_s"].as_f64().unwrap(),
    );
    println!("gpu_s {gpu}, masked_s {masked}");
    assert!(masked > 0.0 && gpu >= masked, "{t}");
}

#[test]
fn certh_folder_written_by_torch_explains_converts_and_predicts() {
    // tests/golden/pt/certh: efficientnet_backbone.pt, mvmf_head.pt and rrm_head.pt as
    // torch.save wrote them (make_torch_layout.py); zip 9.1-9.8.2 could not open the backbone
    let release = repo("tests/golden/pt/certh");
    let d = tmp("certh-torch");
    let img = d.join("street.png");
    photo(&img, 64, 48);
    let (converted, raws) = convert_and_explain(&release, &d, &img);
    assert_eq!(
        raws[0].len(),
        3 + 16,
        "probs, logits, combicam, gradcam.00-15"
    );
    // predict --background: search within the top cell (all_cells.pkl: every cell has the same
    // 5 background images), from the folder and from the converted file
    let golden = repo("tests/golden/retrieval");
    let mut answers = Vec::new();
    for w in [&release, &converted] {
        let o = run(bin()
            .arg("predict")
            .arg("--weights")
            .arg(w)
            .arg("--background")
            .arg(golden.join("background.hdf5"))
            .arg("--cells-assignments")
            .arg(golden.join("all_cells.pkl"))
            .arg("--json")
            .arg(&img));
        assert!(o.status.success(), "predict --weights {}", w.display());
        let line = String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap()
            .to_string();
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        let s = &j["search_within_cell"];
        assert!(s["lat"].is_number() && s["lon"].is_number(), "{j}");
        assert_eq!(s["cell_images"], 5, "{j}");
        answers.push(j);
    }
    for k in ["top", "search_within_cell"] {
        assert_eq!(
            answers[0][k], answers[1][k],
            "{k}: folder and converted file differ"
        );
    }
    println!(
        "torch-written CERTH folder: convert, explain ({} raw tensors) and predict --background ({}) agree with the converted file",
        raws[0].len(),
        answers[0]["search_within_cell"]
    );
    let _ = std::fs::remove_dir_all(d);
}
