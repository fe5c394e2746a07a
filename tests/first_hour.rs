//! What a new user meets first: the console line says what was explained and what was
//! predicted, `--target` takes a label, folder runs pass over our own outputs and keep one
//! index line per image, a run where every image failed leaves nothing behind, errors name
//! the path once, tiny photos are warned about once, `--raw-size photo`, and a slow first
//! compile is explained.

use crate::cli::{TEST_NET, bin, one_line_error, photo, run, tmp};
use combicam_gpu::app::render::resize_bilinear;
use std::path::Path;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn index_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("index.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A first run on a machine (here: an empty Mesa shader cache) says why it took long, once;
/// a run that compiled quickly says nothing of it. The first run generates kernel code on
/// helper devices too (`COMBICAM_COMPILE_THREADS`, forced to 3 so that a 1-core machine
/// tests it as well); a cold run on the plan's device alone writes the same bytes.
#[test]
fn a_slow_first_compile_is_explained() {
    let d = tmp("cold");
    let coffee = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos/coffee.png");
    let explain = |cache: &str, devices: &str, out: &str| {
        let o = run(bin()
            .env("MESA_SHADER_CACHE_DIR", d.join(cache))
            .env("COMBICAM_COMPILE_THREADS", devices)
            .arg("explain")
            .arg(&coffee)
            .arg("--save-raw")
            .arg("--out")
            .arg(d.join(out)));
        assert!(o.status.success(), "{}", stderr(&o));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join(out).join("coffee.json")).unwrap())
                .unwrap();
        // Combi-CAM runs no masked passes
        assert_eq!(json["timings"]["masked_s"].as_f64(), Some(0.0));
        (stderr(&o), json["timings"]["compile_s"].as_f64().unwrap())
    };
    for which in ["cold", "warm"] {
        let (e, compile_s) = explain("mesa-cache", "3", "out");
        let said = e.matches("note: compiling the GPU kernels took").count();
        // the note follows the time the JSON reports (a fast machine's first run may stay under it)
        let slow = compile_s > crate::binary::commands::explain::SLOW_COMPILE_S;
        assert_eq!(
            said, slow as usize,
            "{which} run, compiling {compile_s:.2} s: {e}"
        );
        println!("{which} run: compiling {compile_s:.2} s, note said {said} time(s)");
        if which == "warm" {
            assert!(!slow, "the second run compiled for {compile_s:.2} s: {e}");
        }
    }
    let (_, alone_s) = explain("mesa-cache-alone", "1", "alone");
    println!("cold run on one device: compiling {alone_s:.2} s");
    // every tensor byte for byte, and the same metadata (whose key order in the file follows
    // a hash map's, so the files' bytes may differ)
    let raw = |out: &str| {
        let bytes = std::fs::read(d.join(out).join("coffee.cams.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, Vec<u8>)> = (st.tensors().into_iter())
            .map(|(n, t)| (n, t.data().to_vec()))
            .collect();
        tensors.sort();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        (tensors, meta.metadata().clone())
    };
    let (with, alone) = (raw("out"), raw("alone"));
    assert!(!with.0.is_empty());
    assert!(
        with == alone,
        "the raw maps differ between a cold run with helper devices and one without"
    );
    // a bad count is a one-line error that names the variable
    let o = run(bin()
        .env("COMBICAM_COMPILE_THREADS", "0")
        .arg("explain")
        .arg(&coffee)
        .arg("--out")
        .arg(d.join("bad")));
    let e = one_line_error(&o);
    assert!(!d.join("bad").exists(), "{e}");
    assert!(e.contains("COMBICAM_COMPILE_THREADS=\"0\""), "{e}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn the_console_says_what_was_explained_and_what_was_predicted() {
    // the built-in Lite0 on the shipped photo: labels, so --target can name a class
    let d = tmp("target");
    let coffee = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos/coffee.png");
    let explain = |extra: &[&str]| {
        run(bin()
            .current_dir(&d)
            .arg("explain")
            .arg(&coffee)
            .arg("--out")
            .arg(d.join("out"))
            .args(extra))
    };
    let o = explain(&[]);
    assert!(o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("→ explained \"espresso\" (p=0.") && e.contains("; the top prediction)"),
        "{e}"
    );
    // a label as the target: explained, and the top prediction beside it
    let o = explain(&["--target", "Bow Tie"]);
    assert!(o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("→ explained \"bow tie\" (p=0.")
            && e.contains("; target); top: \"espresso\" (p=0."),
        "{e}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/coffee.json")).unwrap()).unwrap();
    assert_eq!(json["target"], 457, "bow tie is ImageNet class 457");
    // a label in any case; a unique part of a label; ambiguous and unknown ones are
    // one-line errors
    let o = explain(&["--target", "ESPRESSO"]);
    assert!(stderr(&o).contains("explained \"espresso\" (p=0."));
    let o = explain(&["--target", "egyptian"]);
    assert!(stderr(&o).contains("explained \"Egyptian cat\" (p=0."));
    let err = one_line_error(&explain(&["--target", "cr"]));
    assert!(
        err.contains("--target \"cr\" is ambiguous") && err.contains("\"rock crab\" (119)"),
        "{err}"
    );
    let err = one_line_error(&explain(&["--target", "no such thing"]));
    assert!(err.contains("is not a label of this model"), "{err}");
    let err = one_line_error(&explain(&["--target", "1000"]));
    assert!(err.contains("--target 1000 is out of range"), "{err}");
    // geolocation weights have no labels: the error names the two ways to choose a cell
    let o = run(bin()
        .arg("explain")
        .arg(&coffee)
        .args(TEST_NET)
        .arg("--out")
        .arg(d.join("geo"))
        .args(["--target", "Paris"]));
    let err = one_line_error(&o);
    assert!(
        err.contains("give a cell index (0-49) or --target-latlon"),
        "{err}"
    );
    // predict says what it does
    let o = run(bin().current_dir(&d).arg("predict").arg(&coffee));
    assert!(o.status.success());
    assert!(stderr(&o).contains("so this predicts ImageNet classes"));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn folder_runs_keep_one_index_line_per_image_and_skip_our_outputs() {
    let d = tmp("folder");
    let data = d.join("photos");
    std::fs::create_dir_all(&data).unwrap();
    photo(&data.join("a.png"), 48, 40);
    photo(&data.join("b.png"), 40, 48);
    std::fs::write(data.join("broken.png"), b"not a png").unwrap();
    // outputs inside the photos folder, as the shipped examples once were
    let out = data.join("explained");
    let explain = || {
        run(bin()
            .arg("explain")
            .arg(&data)
            .args(TEST_NET)
            .arg("--out")
            .arg(&out))
    };
    let o = explain();
    assert!(!o.status.success(), "one image failed");
    let e = stderr(&o);
    // the error names the path once
    let broken = data.join("broken.png").display().to_string();
    let line = e.lines().find(|l| l.starts_with("error:")).unwrap();
    assert_eq!(line.matches(&broken).count(), 1, "{line}");
    let lines = index_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let err = lines
        .iter()
        .find(|l| l["image"] == broken.as_str())
        .unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("not a supported image")
    );
    // a second run without --resume, and a third into another folder: the overlays written
    // in the photos folder are not explained, and the index still has one line per image
    assert!(!explain().status.success());
    assert_eq!(index_lines(&out).len(), 3);
    let other = d.join("other");
    let o = run(bin()
        .arg("explain")
        .arg(&data)
        .args(TEST_NET)
        .arg("--out")
        .arg(&other));
    let e = stderr(&o);
    assert!(
        e.contains("note: passed over 1 files and folders this tool wrote"),
        "{e}"
    );
    let json = std::fs::read_dir(&other)
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(json, 2, "only a.png and b.png are explained");
    // every image failed: no folder left behind, no "outputs in"
    let none = d.join("none");
    let o = run(bin()
        .arg("explain")
        .arg(data.join("broken.png"))
        .args(TEST_NET)
        .arg("--out")
        .arg(&none));
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(!none.exists(), "an empty output folder was left behind");
    assert!(!e.contains("outputs in"), "{e}");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn tiny_photos_are_warned_about_once_and_raw_maps_come_at_the_photos_size() {
    let d = tmp("tiny");
    let (a, b) = (d.join("a.png"), d.join("b.png"));
    photo(&a, 1, 1);
    photo(&b, 9, 7);
    let out = d.join("out");
    let o = run(bin()
        .arg("explain")
        .arg(&a)
        .arg(&b)
        .args(TEST_NET)
        .arg("--out")
        .arg(&out)
        .args(["--raw-size", "photo"]));
    assert!(o.status.success(), "a 1×1 photo is explained");
    let e = stderr(&o);
    assert_eq!(e.matches("upscaled").count(), 1, "said once per run: {e}");
    for stem in ["a", "b"] {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap())
                .unwrap();
        let w = json["warnings"].as_array().unwrap();
        assert!(
            w.iter()
                .any(|w| w.as_str().unwrap().starts_with("upscaled")),
            "{stem}: {w:?}"
        );
    }
    // --raw-size photo implies --save-raw and adds the fused map at the photo's resolution
    let bytes = std::fs::read(out.join("b.cams.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let t = st.tensor(name).unwrap();
        (
            t.shape().to_vec(),
            bytemuck::pod_collect_to_vec::<u8, f32>(t.data()),
        )
    };
    let (s, fused) = f32s("combicam");
    let (sp, big) = f32s("combicam.photo");
    assert_eq!(sp, [7, 9], "the photo is 9 wide and 7 high");
    assert_eq!(
        big,
        resize_bilinear(&fused, s[0], s[1], 7, 9),
        "the overlays' bilinear rule"
    );
    // the default keeps the raw file at the model's input size only
    let o = run(bin()
        .arg("explain")
        .arg(&b)
        .args(TEST_NET)
        .arg("--out")
        .arg(d.join("plain"))
        .arg("--save-raw"));
    assert!(o.status.success());
    let bytes = std::fs::read(d.join("plain/b.cams.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensor("combicam.photo").is_err());
    let _ = std::fs::remove_dir_all(d);
}
