//! Folder runs: inputs collected recursively with the output folder and our own outputs left
//! out, shards that partition a dataset, and an index with one whole line per image.

use combicam_gpu::app::runs::{self, Index, Input};
use std::path::PathBuf;

fn tmp(tag: &str) -> PathBuf {
    crate::common::fresh_dir(&format!("runs-{tag}"))
}

#[test]
fn inputs_shards_and_index() {
    let d = tmp("inputs");
    for f in [
        "a.png",
        "b.JPG",
        "notes.txt",
        "sub/c.png",
        "sub/deep/d.webp",
        "out/x.png",
    ] {
        let p = d.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
    let all = runs::collect(std::slice::from_ref(&d), true, Some(&d.join("out"))).inputs;
    let names: Vec<String> = all
        .iter()
        .map(|i| i.path.strip_prefix(&d).unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a.png", "b.JPG", "sub/c.png", "sub/deep/d.webp"]);
    assert_eq!(all[3].rel_dir, PathBuf::from("sub/deep"));
    let flat = runs::collect(std::slice::from_ref(&d), false, None).inputs;
    assert_eq!(flat.len(), 2, "no sub-folders without recursion");
    // shards partition the sorted inputs
    for n in 1..=5 {
        let mut seen: Vec<Input> = Vec::new();
        for i in 1..=n {
            let s = runs::shard(all.clone(), (i, n));
            assert!(
                s.iter().all(|x| !seen.contains(x)),
                "shards {i}/{n} overlap"
            );
            seen.extend(s);
        }
        seen.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(seen, all, "shards of {n} cover everything once");
    }
    for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
        let e = runs::parse_shard(bad).err().unwrap().to_string();
        assert!(e.contains("is not I/N"), "{bad}: {e}");
    }
    // the index: whole lines; a torn last line (a crash mid-write) is dropped on reopening
    let out = d.join("idx");
    std::fs::create_dir_all(&out).unwrap();
    let mut idx = Index::new(&out);
    idx.append(&serde_json::json!({"image": "a"})).unwrap();
    drop(idx);
    let path = out.join("index.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"image\": \"b\", \"outp");
    std::fs::write(&path, &text).unwrap();
    let mut idx = Index::new(&out);
    idx.append(&serde_json::json!({"image": "c"})).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["image"], "c");
    // the last line of an image wins: a run again leaves one line per image, an error too
    let mut idx = Index::new(&out);
    idx.append(&serde_json::json!({"image": "a", "outputs": ["again"]}))
        .unwrap();
    idx.append_error("d", "cannot use image d: not an image")
        .unwrap();
    idx.finish().unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let images: Vec<&str> = lines.iter().map(|l| l["image"].as_str().unwrap()).collect();
    assert_eq!(images, ["c", "a", "d"], "one line per image, the last one");
    assert_eq!(lines[1]["outputs"][0], "again");
    assert!(lines[2]["error"].as_str().unwrap().contains("not an image"));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn folder_scans_pass_over_our_outputs() {
    for (name, ours) in [
        ("coffee.combicam.png", true),
        ("coffee.heatmap.png", true),
        ("coffee.gradcampp.png", true),
        ("coffee.layercam.max.heatmap.png", true),
        ("coffee.scorecam-official.png", true),
        ("coffee.report.html", true),
        ("coffee.report.png", true),
        ("coffee.report", true),
        ("index.html", true),
        ("index.jsonl", true),
        ("coffee.png", false),
        ("report.png", false),
        ("heatmap.png", false),
        ("photo.v2.png", false),
        ("a.b.c.jpg", false),
    ] {
        assert_eq!(runs::is_our_output(name), ours, "{name}");
    }
    // a folder with an earlier run's outputs beside and below the photos
    let d = tmp("ours");
    for f in [
        "a.png",
        "a.combicam.png",
        "a.heatmap.png",
        "explained/b.report.png",
        "explained/c.png",
        "old-run/x.png",
        "old-run/index.jsonl",
        "old-run/x.combicam.png",
    ] {
        let p = d.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
    let found = runs::collect(std::slice::from_ref(&d), true, None);
    let names: Vec<String> = found
        .inputs
        .iter()
        .map(|i| i.path.strip_prefix(&d).unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a.png", "explained/c.png"]);
    assert_eq!(
        found.skipped_outputs, 4,
        "two PNGs, a screenshot, a run folder"
    );
    // named directly, a file is used whatever its name
    let direct = runs::collect(&[d.join("a.combicam.png")], true, None);
    assert_eq!(direct.inputs.len(), 1);
    let _ = std::fs::remove_dir_all(d);
}
