//! Folder runs: inputs collected recursively with the output folder left out, shards that
//! partition a dataset, and an index whose torn last line is dropped.

use combicam_gpu::cam::runs::{self, Index, Input};
use std::path::PathBuf;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("combicam-runs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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
    let all = runs::collect(std::slice::from_ref(&d), true, Some(&d.join("out")));
    let names: Vec<String> = all
        .iter()
        .map(|i| i.path.strip_prefix(&d).unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a.png", "b.JPG", "sub/c.png", "sub/deep/d.webp"]);
    assert_eq!(all[3].rel_dir, PathBuf::from("sub/deep"));
    let flat = runs::collect(std::slice::from_ref(&d), false, None);
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
    let _ = std::fs::remove_dir_all(d);
}
