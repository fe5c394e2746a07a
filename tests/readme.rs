//! Every example command of the README, run as written, in README order, in one scratch
//! folder that sees the clone's `tests/` and `benches/`: `combicam-gpu` is the built binary
//! (as after `cargo install --path .`). The visloc-only examples find test weights (the
//! formula B0 with 500 cells and its retrieval head) in `path/to/visloc/`, and the golden
//! background collection under the published file names. The lines that are not run are
//! listed in `NOT_RUN` with their reason, and the test fails when that list and the README
//! disagree. The Python snippet's tensor names and shapes are checked against the raw file
//! the example before it wrote.

use crate::cli::bin;
use combicam_gpu::model::config::{Family, efficientnet};
use combicam_gpu::model::weights::Formula;
use combicam_gpu::model::weights::checkpoint::{OutDtype, to_safetensors};
use std::path::{Path, PathBuf};

/// Lines of the README's code blocks that are not run, each with why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "cargo install --path .",
        "installs into ~/.cargo/bin: the test uses the built binary instead",
    ),
    ("cargo test --release", "this test is part of it"),
    (
        "pip install .",
        "tests/python.rs builds the same wheel with maturin, installs it, and its pytest suite runs the README's Python example",
    ),
    (
        "combicam-gpu fetch timm/efficientnet_b4.ra2_in1k",
        "needs the Hugging Face hub; tests/hub.rs runs fetch against a hub on 127.0.0.1",
    ),
    (
        "combicam-gpu explain tests/photos/coffee.png --weights hf:timm/efficientnet_b4.ra2_in1k",
        "needs the fetched model; tests/hub.rs runs --weights hf:REPO",
    ),
    (
        "combicam-gpu bench --json ours.json",
        "the full benchmark takes minutes on a CPU adapter; `bench --quick` is run",
    ),
    (
        "python benches/pytorch_reference.py --json pytorch.json",
        "needs PyTorch",
    ),
    (
        "python benches/pytorch_reference.py --device cuda --json pytorch-gpu.json",
        "needs PyTorch and an NVIDIA GPU",
    ),
    (
        "combicam-gpu bench compare ours.json pytorch.json benches/results/h200-vulkan-2026-12-04.json",
        "compares the runs above",
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The commands of the README's plain (```) code blocks: comments cut, continuations joined.
/// Also returns the text of the ```python blocks; ```text blocks are drawings, not commands.
fn examples(readme: &str) -> (Vec<String>, Vec<String>) {
    let (mut cmds, mut python) = (Vec::new(), Vec::new());
    let mut block: Option<(String, String)> = None;
    for line in readme.lines() {
        let t = line.trim_start();
        if let Some(lang) = t.strip_prefix("```") {
            match block.take() {
                None => block = Some((lang.trim().to_string(), String::new())),
                Some((lang, text)) if lang == "python" => python.push(text),
                // a drawing (the layout), not commands
                Some((lang, _)) if lang == "text" => {}
                Some((lang, text)) => {
                    assert!(lang.is_empty() || lang == "sh", "code block ```{lang}");
                    let joined = text.replace("\\\n", " ");
                    for l in joined.lines() {
                        let l = l.split("  #").next().unwrap().trim();
                        if !l.is_empty() {
                            cmds.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
                        }
                    }
                }
            }
        } else if let Some((_, text)) = block.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    (cmds, python)
}

/// Split a command line into words, honouring double quotes.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The scratch folder: `tests` and `benches` of the clone, visloc test weights in
/// `path/to/visloc/`, the background collection under its published names.
fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("combicam-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("path/to/visloc")).unwrap();
    for f in ["tests", "benches"] {
        std::os::unix::fs::symlink(repo().join(f), d.join(f)).unwrap();
    }
    let cfg = efficientnet(0, Family::Visloc);
    let src = Formula::with_retrieval(&cfg, 500);
    let (bytes, _, _) = to_safetensors(&src, OutDtype::F32, Default::default()).unwrap();
    std::fs::write(d.join("path/to/visloc/visloc.safetensors"), bytes).unwrap();
    let golden = repo().join("tests/golden/retrieval");
    std::fs::copy(
        golden.join("background.hdf5"),
        d.join("back_coll_features.hdf5"),
    )
    .unwrap();
    std::fs::copy(
        golden.join("all_cells.pkl"),
        d.join("cells_assignments.pkl"),
    )
    .unwrap();
    d
}

/// The binary for a README line, or None for a line that is not a combicam-gpu command.
fn command(line: &str, dir: &Path) -> Option<std::process::Command> {
    let mut w = words(line);
    let mut env = Vec::new();
    while w
        .first()
        .is_some_and(|x| x.contains('=') && !x.starts_with('-'))
    {
        let kv = w.remove(0);
        let (k, v) = kv.split_once('=').unwrap();
        env.push((k.to_string(), v.to_string()));
    }
    let args: Vec<String> = match w.first().map(String::as_str) {
        Some("combicam-gpu" | "./target/release/combicam-gpu") => w[1..].to_vec(),
        Some("cargo") if w.len() > 4 && w[..4] == ["cargo", "run", "--release", "--"] => {
            w[4..].to_vec()
        }
        _ => return None,
    };
    let mut c = bin();
    c.current_dir(dir).args(args).env_remove("COMBICAM_WEIGHTS");
    for (k, v) in env {
        c.env(k, v);
    }
    Some(c)
}

#[test]
fn every_readme_example_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let (cmds, python) = examples(&readme);
    let dir = scratch();
    let mut skipped = Vec::new();
    let mut ran = 0;
    for line in &cmds {
        if let Some((_, why)) = NOT_RUN.iter().find(|(l, _)| l == line) {
            println!("NOT RUN  {line}  ({why})");
            skipped.push(line.as_str());
            continue;
        }
        let mut c = command(line, &dir).unwrap_or_else(|| {
            panic!("README line {line:?} is neither a combicam-gpu command nor in NOT_RUN")
        });
        let t = std::time::Instant::now();
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && !err.contains("panicked"),
            "README example failed: {line}\n{}{err}",
            String::from_utf8_lossy(&o.stdout)
        );
        println!("OK {:5.1}s  {line}", t.elapsed().as_secs_f64());
        ran += 1;
    }
    for (l, _) in NOT_RUN {
        assert!(
            skipped.contains(l),
            "NOT_RUN names {l:?}, which the README no longer has"
        );
    }
    // the Python package's example runs in its pytest suite (python/tests/test_readme.py)
    let package: Vec<&String> = python
        .iter()
        .filter(|p| p.contains("import combicam"))
        .collect();
    assert_eq!(package.len(), 1, "one example of the Python package");
    // the other Python snippet reads the raw file the example above it wrote
    let raw: Vec<&String> = python
        .iter()
        .filter(|p| !p.contains("import combicam"))
        .collect();
    assert_eq!(raw.len(), 1, "one Python snippet reading a raw file");
    let snippet = raw[0];
    let file = snippet
        .split('"')
        .find(|s| s.ends_with(".cams.safetensors"))
        .expect("the snippet loads a raw file");
    let bytes = std::fs::read(dir.join(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // t["NAME"].shape for each NAME, against the shapes in the comment
    let names: Vec<&str> = snippet
        .split("t[\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    let comment = snippet
        .split("# ")
        .nth(1)
        .expect("a comment with the shapes");
    // every "(a, b)" of digits in the comment, in order
    let shapes: Vec<Vec<usize>> = comment
        .split('(')
        .filter_map(|s| s.split(')').next())
        .filter(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        })
        .map(|s| s.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .collect();
    assert_eq!(names.len(), shapes.len(), "{names:?} against {comment:?}");
    for (n, s) in names.iter().zip(&shapes) {
        let t = st
            .tensor(n)
            .unwrap_or_else(|_| panic!("the snippet's t[{n:?}] is not in {file}"));
        assert_eq!(t.shape(), &s[..], "the snippet's shape of {n}");
    }
    println!(
        "{ran} README commands ran, {} not run (named above); the Python snippet's {} tensors checked",
        skipped.len(),
        names.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}
