//! visloc's retrieval head and search within cell (issue 13): the head's kernels against their
//! CPU references on awkward shapes, the whole head on the formula B0 against PyTorch's
//! `RetrievalModule` (tests/golden/make_retrieval.py), the search against the official
//! pipeline (scikit-learn's DBSCAN) on synthetic HDF5/pickle files in the official formats,
//! `predict --background` end to end, and bad files.

use crate::cli::{bin, photo, tmp};
use crate::common::{check, gpu, rand, read, up, zeros};
use crate::model::golden;
use combicam_gpu::app::engine::Engine;
use combicam_gpu::model::plan::{PlanOptions, Score};
use combicam_gpu::model::retrieval::{LN_EPS, RetrievalGpu};
use combicam_gpu::model::search::{self, Assignments, Background, Method};
use combicam_gpu::model::weights::{self, HeadKind};
use combicam_gpu::ops::Tolerance;
use combicam_gpu::ops::retrieval::{self as op, After, cpu};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/retrieval")
}

#[test]
fn retrieval_kernels_match_cpu_on_awkward_shapes() {
    let g = gpu();
    // rows not a multiple of the workgroup, k below and above 256, odd sizes
    for (n, k, after) in [
        (37, 1283, After::Relu),
        (300, 5, After::Residual),
        (1, 257, After::Nothing),
        (70_000, 3, After::Relu),
    ] {
        let (w, b, x, r) = (
            rand(n * k, 1, -1.0, 1.0),
            rand(n, 2, -1.0, 1.0),
            rand(k, 3, -2.0, 2.0),
            rand(n, 4, -1.0, 1.0),
        );
        let (wb, bb, xb, rb, ob) = (up(&w), up(&b), up(&x), up(&r), zeros(n));
        let d = op::linear(
            g,
            "t.linear",
            after,
            &op::LinearArgs {
                n,
                k,
                x: &xb.buf,
                w: &wb.buf,
                b: &bb.buf,
                r: Some(&rb.buf),
                out: &ob.buf,
            },
        );
        g.run_now(&[&d]).unwrap();
        let want = cpu::linear(after, &w, &b, &x, Some(&r), n, k);
        // lavapipe: max|diff| 5.7e-6, 36% of this
        let tol = Tolerance::new(0.0, 3e-7 * (k as f32).sqrt() * 2.0);
        check(
            &format!("linear {after:?} {n}×{k}"),
            &read(&ob),
            &want,
            &[n],
            tol,
        );
    }
    for k in [7, 1283, 1792] {
        let x: Vec<f32> = rand(k, 5, -3.0, 5.0);
        let (gain, shift) = (rand(k, 6, 0.5, 1.5), rand(k, 7, -0.5, 0.5));
        let (xb, gb, sb, ob) = (up(&x), up(&gain), up(&shift), zeros(k));
        let d = op::layernorm(g, "t.ln", (k, LN_EPS), &xb.buf, (&gb.buf, &sb.buf), &ob.buf);
        g.run_now(&[&d]).unwrap();
        let want = cpu::layernorm(&x, &gain, &shift, LN_EPS);
        check(
            &format!("layernorm {k}"),
            &read(&ob),
            &want,
            &[k],
            // lavapipe: max|diff| 3.6e-7, 18% of this
            Tolerance::new(0.0, 2e-6),
        );
        let o2 = zeros(k);
        let d = op::l2norm(g, "t.l2", k, &xb.buf, &o2.buf);
        g.run_now(&[&d]).unwrap();
        check(
            &format!("l2norm {k}"),
            &read(&o2),
            &cpu::l2norm(&x),
            &[k],
            // 2 ulp: lavapipe measured 3.7e-9 absolute (50% of this), an H200 1 ulp (6e-8 at
            // 0.59)
            Tolerance::new(2.4e-7, 0.0),
        );
    }
}

/// The formula B0 (500 cells) with its retrieval head on the golden input: top cell, features
/// and embedding against PyTorch. Returns the engine's embedding and the weights.
fn model_embedding() -> (Vec<f32>, usize, weights::Weights) {
    let (gd, meta) = golden("retrieval/rrm_b0.safetensors");
    let (shape, x) = gd["input"].clone();
    let (h, w) = (shape[1], shape[2]);
    let wts = weights::formula_with_retrieval(0, 500);
    let rw = wts.retrieval.clone().expect("loaded with the head");
    let mut engine = Engine::new(crate::common::shared_gpu().clone(), wts.clone()).unwrap();
    let opts = PlanOptions::forward(0);
    let out = engine.run(&x, h, w, &opts, None, Score::Prob).unwrap();
    assert_eq!(out.argmax.to_string(), meta["top_cell"], "top cell");
    let features = gpu()
        .read(&engine.plan(h, w, &opts).unwrap().features)
        .unwrap();
    let fw = &gd["features"].1;
    check(
        "features",
        &features,
        fw,
        &[fw.len()],
        // lavapipe: max|diff| 1.2e-7, 19% of this
        Tolerance::new(0.0, 1e-6 * common_peak(fw)),
    );
    let emb = engine.embedding(h, w, &opts).unwrap();
    let want = &gd["embedding"].1;
    let d = want.len();
    // GPU head from our features, and the CPU reference from PyTorch's features
    check(
        "embedding (GPU, whole model)",
        &emb,
        want,
        &[d],
        // lavapipe: max|diff| 3.3e-8, 1.6% of the former 2e-6: ≈ 8% of this
        Tolerance::new(0.0, 4e-7),
    );
    check(
        "embedding (CPU head)",
        &rw.embed_cpu(fw),
        want,
        &[d],
        // lavapipe: max|diff| 3.7e-8, 19% of this
        Tolerance::new(0.0, 2e-7),
    );
    let alone = RetrievalGpu::new(gpu(), &rw)
        .unwrap()
        .embed(gpu(), fw)
        .unwrap();
    check(
        "embedding (GPU head)",
        &alone,
        want,
        &[d],
        // lavapipe: max|diff| 3.7e-8, 37% of this
        Tolerance::new(0.0, 1e-7),
    );
    let norm: f32 = emb.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "‖embedding‖ = {norm}");
    (emb, out.argmax, wts)
}

fn common_peak(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |a, x| a.max(x.abs()))
}

#[test]
fn search_within_cell_matches_the_official_pipeline() {
    let (emb, _, wts) = model_embedding();
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("retrieval_cases.json")).unwrap())
            .unwrap();
    let (gd, _) = golden("retrieval/rrm_b0.safetensors");
    let bg = Background::open(&dir().join("background.hdf5")).unwrap();
    assert_eq!((bg.n, bg.d), (50, 1280));
    let HeadKind::Geo { lat, lon } = &wts.classifier.kind else {
        panic!("visloc")
    };
    let mut n = 0;
    for c in cases["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let asg = Assignments::open(&dir().join(c["assignments"].as_str().unwrap())).unwrap();
        let q: Vec<f32> = match &c["query"] {
            serde_json::Value::String(s) if s == "model" => emb.clone(),
            serde_json::Value::String(s) => gd[s.as_str()].1.clone(),
            serde_json::Value::Array(v) => v.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            other => panic!("{name}: query {other}"),
        };
        let cell = c["cell"].as_u64().unwrap() as usize;
        let k = c["k"].as_u64().unwrap() as usize;
        let f = search::search_within_cell(
            &q,
            cell,
            (lat[cell], lon[cell]),
            &bg,
            &asg,
            k,
            search::EPS_KM,
        )
        .unwrap();
        let e = &c["expected"];
        let ints = |v: &serde_json::Value| -> Vec<usize> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        };
        println!(
            "{name}: ({:.6}, {:.6}) {:?}, neighbours {:?}, cluster {:?}",
            f.lat, f.lon, f.method, f.neighbours, f.cluster
        );
        assert_eq!(f.neighbours, ints(&e["neighbours"]), "{name}: neighbours");
        assert_eq!(f.cluster, ints(&e["cluster"]), "{name}: cluster");
        match e["method"].as_str().unwrap() {
            "cluster" => {
                assert_eq!(f.method, Method::Cluster, "{name}");
                let (la, lo) = (e["lat"].as_f64().unwrap(), e["lon"].as_f64().unwrap());
                assert!(
                    (f.lat - la).abs() < 1e-6 && (f.lon - lo).abs() < 1e-6,
                    "{name}: ({}, {}) against the official ({la}, {lo})",
                    f.lat,
                    f.lon
                );
            }
            _ => {
                assert_eq!(f.method, Method::CellCentre, "{name}");
                assert_eq!(
                    (f.lat, f.lon),
                    (lat[cell], lon[cell]),
                    "{name}: the cell centre"
                );
            }
        }
        n += 1;
    }
    assert!(n >= 10, "{n} cases");
}

#[test]
fn predict_with_a_background_gives_the_official_answer() {
    let d = tmp("rrm-predict");
    let img = d.join("street.png");
    photo(&img, 60, 45);
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("retrieval_cases.json")).unwrap())
            .unwrap();
    let case = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cli_all_cells")
        .unwrap();
    // predict on the formula B0 with the golden background, every cell → the same 5 rows
    let predict = |extra: &[&str]| {
        bin()
            .args(["predict", "--test-weights", "b0", "--cells", "500"])
            .arg("--background")
            .arg(dir().join("background.hdf5"))
            .arg("--cells-assignments")
            .arg(dir().join("all_cells.pkl"))
            .args(extra)
            .arg(&img)
            .output()
            .unwrap()
    };
    let o = predict(&["--json", "--embedding"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let s = &j["search_within_cell"];
    let e = &case["expected"];
    println!("{s}");
    assert_eq!(s["method"], "cluster");
    for key in ["lat", "lon"] {
        let (got, want) = (s[key].as_f64().unwrap(), e[key].as_f64().unwrap());
        assert!(
            (got - want).abs() < 1e-6,
            "{key}: {got} against the official {want}"
        );
    }
    assert_eq!(s["cluster"], e["cluster"]);
    assert_eq!(j["embedding"].as_array().unwrap().len(), 1280);
    // explain --embedding puts the same embedding in its JSON
    let out = d.join("out");
    let o = bin()
        .args([
            "explain",
            "--test-weights",
            "b0",
            "--cells",
            "500",
            "--embedding",
        ])
        .arg("--out")
        .arg(&out)
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("street.json")).unwrap()).unwrap();
    let (a, b) = (
        r["embedding"].as_array().unwrap(),
        j["embedding"].as_array().unwrap(),
    );
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
        .fold(0.0, f64::max);
    assert!(
        diff < 1e-6,
        "explain's embedding differs from predict's by {diff}"
    );
    // the human form prints the official script's two lines
    let o = predict(&[]);
    let text = String::from_utf8_lossy(&o.stdout);
    println!("{text}");
    assert!(o.status.success());
    assert!(text.contains(e["printed"].as_str().unwrap()), "{text}");
    let conf = j["confidence_km"]["25"].as_f64().unwrap();
    assert!(
        text.contains(&format!("Confidence: {:.1}%", 100.0 * conf)),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn bad_background_files_give_one_line_errors() {
    let d = tmp("rrm-bad");
    let img = d.join("street.png");
    photo(&img, 60, 45);
    // a pickle that would call os.system if it were executed (protocol 0: GLOBAL, REDUCE)
    std::fs::write(d.join("evil.pkl"), b"cos\nsystem\n(S'echo owned'\ntR.").unwrap();
    // a pickled list [1, 2] (protocol 2)
    std::fs::write(d.join("list.pkl"), b"\x80\x02]q\x00(K\x01K\x02e.").unwrap();
    // a pickled dict {1: 'x'} (protocol 2)
    std::fs::write(
        d.join("strs.pkl"),
        b"\x80\x02}q\x00K\x01X\x01\x00\x00\x00xq\x01s.",
    )
    .unwrap();
    let h5 = std::fs::read(dir().join("background.hdf5")).unwrap();
    std::fs::write(d.join("trunc.hdf5"), &h5[..h5.len() / 3]).unwrap();
    std::fs::write(d.join("text.hdf5"), b"not hdf5 at all").unwrap();
    let good_h5 = dir().join("background.hdf5");
    let good_pkl = dir().join("all_cells.pkl");
    let s = |p: &Path| p.to_string_lossy().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--background".into(),
                s(&good_h5),
                "--cells-assignments".into(),
                s(&d.join("evil.pkl")),
            ],
            "is not a readable pickle",
        ),
        (
            vec![
                "--background".into(),
                s(&good_h5),
                "--cells-assignments".into(),
                s(&d.join("list.pkl")),
            ],
            "other than a dict",
        ),
        (
            vec![
                "--background".into(),
                s(&good_h5),
                "--cells-assignments".into(),
                s(&d.join("strs.pkl")),
            ],
            "not a set of rows",
        ),
        (
            vec![
                "--background".into(),
                s(&good_h5),
                "--cells-assignments".into(),
                s(&d.join("none.pkl")),
            ],
            "cannot read it",
        ),
        (
            vec![
                "--background".into(),
                s(&d.join("trunc.hdf5")),
                "--cells-assignments".into(),
                s(&good_pkl),
            ],
            "not a readable HDF5 file",
        ),
        (
            vec![
                "--background".into(),
                s(&d.join("text.hdf5")),
                "--cells-assignments".into(),
                s(&good_pkl),
            ],
            // refused before the C library sees it
            "is not an HDF5 file (no HDF5 signature)",
        ),
        (
            vec![
                "--background".into(),
                s(&dir().join("no_labels.hdf5")),
                "--cells-assignments".into(),
                s(&good_pkl),
            ],
            "has no dataset `labels`",
        ),
        (
            vec![
                "--background".into(),
                s(&dir().join("bad_labels.hdf5")),
                "--cells-assignments".into(),
                s(&good_pkl),
            ],
            "expected (n, D) and (n, 2)",
        ),
        (
            vec![
                "--background".into(),
                s(&dir().join("int_features.hdf5")),
                "--cells-assignments".into(),
                s(&good_pkl),
            ],
            "holds int32, not floats",
        ),
        (
            vec!["--background".into(), s(&good_h5)],
            "--cells-assignments",
        ),
        (
            vec![
                "--background".into(),
                s(&good_h5),
                "--cells-assignments".into(),
                s(&good_pkl),
                "--top-k-neighbours".into(),
                "0".into(),
            ],
            "--top-k-neighbours 0",
        ),
    ];
    for (args, needle) in cases {
        let o = bin()
            .args(["predict", "--test-weights", "b0", "--cells", "500"])
            .args(&args)
            .arg(&img)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or_default();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: printed a prediction");
        println!("OK {:?} → {line}", &args[args.len().saturating_sub(2)..]);
    }
    // a background made for another model: 1280-d rows, B2's embedding is 1408-d
    let o = bin()
        .args([
            "predict",
            "--test-weights",
            "b2",
            "--cells",
            "500",
            "--background",
        ])
        .arg(&good_h5)
        .arg("--cells-assignments")
        .arg(&good_pkl)
        .arg(&img)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("1280-d features") && !err.contains("panicked"),
        "{err}"
    );
    // before any image: nothing printed, no failed-images summary
    assert!(
        o.stdout.is_empty() && !err.contains("images failed"),
        "{err}"
    );
    // the built-in ImageNet model has no retrieval head
    let o = bin()
        .env_remove("COMBICAM_WEIGHTS")
        .args(["predict", "--embedding"])
        .arg(&img)
        .current_dir(&d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no retrieval head"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn background_in_float16_chunked_and_gzipped_reads_the_same() {
    // what a published collection may hold: float16 features, float32 labels, chunked, gzip
    let a = Background::open(&dir().join("background.hdf5")).unwrap();
    let b = Background::open(&dir().join("background_f16_gzip.hdf5")).unwrap();
    assert_eq!((b.n, b.d), (8, a.d));
    for i in 0..b.n {
        let want: Vec<f32> = a
            .features(i)
            .unwrap()
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect();
        assert_eq!(b.features(i).unwrap(), want, "features row {i}");
        let (la, lo) = a.location(i).unwrap();
        assert_eq!(
            b.location(i).unwrap(),
            (la as f32 as f64, lo as f32 as f64),
            "labels row {i}"
        );
    }
    // a row past the end is a one-line error naming the mismatch, not a panic
    let e = b.features(8).err().unwrap().to_string();
    assert!(e.contains("has 8 rows"), "{e}");
    println!("float16/gzip background: 8 rows equal to the float32 file's, rounded");
}

/// The nesting walk that runs before serde-pickle, on pickles CPython wrote at every protocol
/// (tests/golden/retrieval/nesting/make.py): exact where containers are built by opcodes
/// (protocols 4 and 5 for sets), an upper bound where a set is a `set(list)` call (protocols
/// 0-3: one level more per set), never below the truth.
#[test]
fn pickle_nesting_walk() {
    use combicam_gpu::model::pickle_depth::max_depth;
    let dir = dir().join("nesting");
    let mut seen = 0;
    for depth in [2usize, 7, 40] {
        for proto in 0..=5 {
            let f = dir.join(format!("nest{depth}_p{proto}.pkl"));
            let got = max_depth(&std::fs::read(&f).unwrap());
            let exact = depth == 40 || proto >= 4;
            let ok = if exact {
                got == depth
            } else {
                (depth..=depth + 2).contains(&got)
            };
            assert!(
                ok,
                "{}: walk says {got}, the pickle nests {depth}",
                f.display()
            );
            seen += 1;
        }
    }
    // the committed cells tables, and the 200,000-deep pickles that overflowed serde-pickle
    for (f, want) in [("cells_assignments.pkl", 2), ("all_cells.pkl", 2)] {
        let got = max_depth(&std::fs::read(dir.parent().unwrap().join(f)).unwrap());
        assert!(got >= 1 && got <= want, "{f}: walk says {got}");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/pickle");
    for (f, want) in [
        ("stack-overflow-lists-200k-deep", 200_000),
        ("stack-overflow-tuples-200k-deep", 200_000),
    ] {
        assert_eq!(
            max_depth(&std::fs::read(root.join(f)).unwrap()),
            want,
            "{f}"
        );
    }
    println!("pickle nesting walk: {seen} CPython pickles and 4 more as expected");
}
