//! Weights: the test formula equals the Python one; both layouts load; every float dtype
//! loads; bad files give one-line errors that name the tensor and the expected shape.

use combicam_gpu::model::config::{Family, efficientnet};
use combicam_gpu::model::detweights;
use combicam_gpu::model::weights::{self, Formula, Layout, TensorSource, expected};
use safetensors::{Dtype, tensor::TensorView};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

pub fn tmpdir(tag: &str) -> PathBuf {
    crate::common::fresh_dir(&format!("test-{tag}"))
}

#[test]
fn formula_equals_python() {
    let want: Vec<f64> = std::fs::read_to_string(golden("detweights_check.txt"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let h = detweights::fnv1a64("test");
    assert_eq!(h, 0xf9e6e6ef197c2b25);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(detweights::unit(h, i as u64), *w, "u(test, {i})");
    }
    println!("formula OK: u(test, 0..5) equal to tests/golden/detweights.py");
}

/// Write the formula's tensors (B0, `n` classes) to a safetensors file, converting to `dtype`,
/// with `edit` applied to the list first.
pub fn write_formula(
    path: &Path,
    layout: Layout,
    n: usize,
    dtype: Dtype,
    edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f64>)>),
) {
    let cfg = efficientnet(0, layout.family());
    let src = Formula::new(&cfg, layout, n);
    let mut list: Vec<(String, Vec<usize>, Vec<f64>)> = src
        .names()
        .into_iter()
        .map(|name| {
            let t = src.get(&name).unwrap().unwrap();
            (name, t.shape, t.data)
        })
        .collect();
    edit(&mut list);
    let bytes: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = list
        .into_iter()
        .map(|(name, shape, data)| {
            let dt = if name.ends_with("mus") {
                Dtype::F64
            } else {
                dtype
            };
            let raw: Vec<u8> = match dt {
                Dtype::F32 => data
                    .iter()
                    .flat_map(|&v| (v as f32).to_le_bytes())
                    .collect(),
                Dtype::F64 => data.iter().flat_map(|&v| v.to_le_bytes()).collect(),
                Dtype::F16 => data
                    .iter()
                    .flat_map(|&v| half::f16::from_f64(v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => data
                    .iter()
                    .flat_map(|&v| half::bf16::from_f64(v).to_le_bytes())
                    .collect(),
                Dtype::I64 => data
                    .iter()
                    .flat_map(|&v| (v as i64).to_le_bytes())
                    .collect(),
                _ => unreachable!(),
            };
            (name, shape, dt, raw)
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, d, r)| (n.clone(), TensorView::new(*d, s.clone(), r).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn every_float_dtype_loads_and_matches_the_formula() {
    let dir = tmpdir("dtypes");
    let reference = weights::formula(0, Layout::Visloc, 10);
    for (dt, tol) in [
        (Dtype::F32, 0.0),
        (Dtype::F64, 1e-6),
        (Dtype::F16, 2e-2),
        (Dtype::BF16, 1e-1),
    ] {
        let p = dir.join(format!("w_{dt:?}.safetensors"));
        write_formula(&p, Layout::Visloc, 10, dt, |_| {});
        let w = weights::load_file(&p).unwrap();
        assert_eq!(w.cfg.variant, 0);
        assert_eq!(w.classifier.n, 10);
        let err = w.blocks[3]
            .project
            .w
            .iter()
            .zip(&reference.blocks[3].project.w)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
            .fold(0f32, f32::max);
        assert!(err <= tol, "{dt:?}: relative error {err} > {tol}");
        println!("{dt:?} OK   max rel err {err:.2e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn timm_layout_is_detected_and_names_map() {
    let dir = tmpdir("timm");
    let p = dir.join("timm.safetensors");
    write_formula(&p, Layout::Timm, 1000, Dtype::F32, |_| {});
    let w = weights::load_file(&p).unwrap();
    assert_eq!(w.layout, Layout::Timm);
    assert_eq!(w.cfg.family, Family::Timm);
    match &w.classifier.kind {
        weights::HeadKind::Labels(l) => assert_eq!(l[0], "tench"),
        _ => panic!("timm weights must give ImageNet labels"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn load_err(
    tag: &str,
    edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<f64>)>),
    dtype: Dtype,
) -> String {
    let dir = tmpdir(tag);
    let p = dir.join("w.safetensors");
    write_formula(&p, Layout::Visloc, 10, dtype, edit);
    let e = weights::load_file(&p).expect_err("must fail").to_string();
    let _ = std::fs::remove_dir_all(dir);
    assert!(!e.contains('\n'), "one line: {e}");
    println!("error OK: {e}");
    e
}

#[test]
fn bad_weights_give_clear_errors() {
    let e = load_err(
        "missing",
        |l| l.retain(|t| t.0 != "backbone._blocks.3._bn1.running_var"),
        Dtype::F32,
    );
    assert!(
        e.contains("lacks backbone._blocks.3._bn1.running_var (expected shape [144])"),
        "{e}"
    );
    let e = load_err(
        "shape",
        |l| {
            let t = l
                .iter_mut()
                .find(|t| t.0 == "backbone._blocks.2._depthwise_conv.weight")
                .unwrap();
            t.1 = vec![144, 1, 5, 3];
            t.2.resize(144 * 15, 0.0);
        },
        Dtype::F32,
    );
    assert!(e.contains("backbone._blocks.2._depthwise_conv.weight has shape [144, 1, 5, 3], expected [144, 1, 3, 3]"), "{e}");
    let e = load_err("dtype", |_| {}, Dtype::I64);
    assert!(
        e.contains("dtype I64") && e.contains("expected a float type"),
        "{e}"
    );
    let e = load_err(
        "nohead",
        |l| l.retain(|t| !t.0.starts_with("mvmf_head.mixture")),
        Dtype::F32,
    );
    assert!(e.contains("head is missing"), "{e}");
}

#[test]
fn non_finite_weights_and_bad_bn_statistics_are_refused() {
    let set = |name: &'static str, i: usize, v: f64| {
        move |l: &mut Vec<(String, Vec<usize>, Vec<f64>)>| {
            l.iter_mut().find(|t| t.0 == name).unwrap().2[i] = v;
        }
    };
    let e = load_err(
        "nan",
        set("backbone._blocks.5._depthwise_conv.weight", 7, f64::NAN),
        Dtype::F32,
    );
    assert!(
        e.contains("backbone._blocks.5._depthwise_conv.weight")
            && e.contains("non-finite value (NaN) at flat index 7"),
        "{e}"
    );
    let e = load_err(
        "inf",
        set(
            "mvmf_head.mixture_weights.seq_model.0.weight",
            3,
            f64::INFINITY,
        ),
        Dtype::F16,
    );
    assert!(
        e.contains("mvmf_head.mixture_weights.seq_model.0.weight") && e.contains("inf"),
        "{e}"
    );
    let e = load_err("mus", set("mvmf_head.mvmf.mus", 1, f64::NAN), Dtype::F32);
    assert!(e.contains("mvmf_head.mvmf.mus"), "{e}");
    // visloc eps is 1e-3: a variance of -1e-3 makes the fold divide by zero
    let e = load_err(
        "var",
        set("backbone._blocks.2._bn1.running_var", 4, -1e-3),
        Dtype::F64,
    );
    assert!(
        e.contains("backbone._blocks.2._bn1.running_var[4]") && e.contains("≤ 0"),
        "{e}"
    );
}

#[test]
fn extra_tensors_are_ignored() {
    let dir = tmpdir("extra");
    let p = dir.join("w.safetensors");
    write_formula(&p, Layout::Visloc, 10, Dtype::F32, |l| {
        l.push((
            "backbone._fc.weight".into(),
            vec![1000, 1280],
            vec![0.0; 1280000],
        ));
        l.push((
            "rrm_head.fc1.weight".into(),
            vec![4, 1280],
            vec![0.0; 4 * 1280],
        ));
    });
    assert!(weights::load_file(&p).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn broken_files_give_clear_errors() {
    let dir = tmpdir("broken");
    let p = dir.join("w.safetensors");
    write_formula(&p, Layout::Visloc, 10, Dtype::F32, |_| {});
    let bytes = std::fs::read(&p).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        (
            "garbage",
            b"this is not a safetensors file at all".to_vec(),
            "not a valid safetensors file",
        ),
        ("empty", vec![], "not a valid safetensors file"),
    ];
    for (tag, data, needle) in cases {
        let q = dir.join(format!("{tag}.safetensors"));
        std::fs::write(&q, data).unwrap();
        let e = weights::load_file(&q).expect_err("must fail").to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{tag}: {e}");
        println!("{tag:<10} OK: {e}");
    }
    let e = weights::load_file(&dir.join("nope.safetensors"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot be read") && e.contains("weights/README.md"),
        "{e}"
    );
    // a folder is taken when it holds one weights file (or CERTH's pair)
    let e = weights::load_file(&dir).err().unwrap().to_string();
    assert!(e.contains("holds several weights files"), "{e}");
    let empty = dir.join("empty-folder");
    std::fs::create_dir_all(&empty).unwrap();
    let e = weights::load_file(&empty).err().unwrap().to_string();
    assert!(e.contains("holds no weights"), "{e}");
    // a safetensors file that is not an EfficientNet
    let views = vec![(
        "foo".to_string(),
        TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
    )];
    let q = dir.join("other.safetensors");
    safetensors::serialize_to_file(views, None, &q).unwrap();
    let e = weights::load_file(&q).err().unwrap().to_string();
    assert!(e.contains("holds no EfficientNet"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn b4_architecture_matches_the_contract() {
    let cfg = efficientnet(4, Family::Visloc);
    assert_eq!((cfg.stem, cfg.blocks.len(), cfg.head), (48, 32, 1792));
    let (_, _, sizes) = cfg.sizes(300, 450);
    assert_eq!(sizes[0], (150, 225));
    assert_eq!(sizes[2], (75, 113));
    assert_eq!(sizes[6], (38, 57));
    assert_eq!(sizes[10], (19, 29));
    assert_eq!(sizes[22], (10, 15));
    let n: usize = expected(&cfg, Layout::Visloc, 31145)
        .iter()
        .filter(|t| t.0.starts_with("backbone"))
        .map(|t| t.1.iter().product::<usize>())
        .sum();
    println!("B4 backbone parameters: {n}");
    assert!((17_000_000..18_000_000).contains(&n), "{n}");
}

#[test]
fn timm_family_comes_from_arch_or_config_json() {
    use combicam_gpu::model::config::PadRule;
    use combicam_gpu::model::weights::LoadOptions;
    let dir = tmpdir("arch");
    let p = dir.join("model.safetensors");
    write_formula(&p, Layout::Timm, 1000, Dtype::F32, |_| {});
    let arch = |a: &str| LoadOptions {
        arch: Some(a.into()),
        preprocessing: None,
        retrieval: false,
    };
    // the keys alone cannot tell efficientnet_b0 from tf_efficientnet_b0: timm's own, and a note
    let w = weights::load_file(&p).unwrap();
    assert_eq!(
        (w.cfg.family, w.cfg.stem_pad),
        (Family::Timm, PadRule::Symmetric)
    );
    assert!(
        w.notes.iter().any(|n| n.contains("--arch")),
        "{:?}",
        w.notes
    );
    // --arch, with a timm tag
    let w = weights::load_paths(
        std::slice::from_ref(&p),
        &arch("tf_efficientnet_b0.ns_jft_in1k"),
    )
    .unwrap();
    assert_eq!(
        (w.cfg.family, w.cfg.stem_pad),
        (Family::TimmTf, PadRule::TfSame)
    );
    assert!(w.notes.is_empty());
    assert_eq!(w.cfg.bn_eps(), 1e-3);
    // wrong architectures are refused, not run
    for (a, needle) in [
        (
            "tf_efficientnet_b3",
            "not the architecture given (tf_efficientnet_b3)",
        ),
        ("efficientnet_lite0", "has squeeze-excite tensors"),
        ("resnet50", "unknown architecture"),
    ] {
        let e = weights::load_paths(std::slice::from_ref(&p), &arch(a))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{a}: {e}");
        println!("--arch {a:<20} OK: {e}");
    }
    // timm's config.json beside the file names the architecture and the preprocessing
    std::fs::write(
        dir.join("config.json"),
        r#"{"architecture": "tf_efficientnet_b0", "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}"#,
    )
    .unwrap();
    let w = weights::load_file(&p).unwrap();
    assert_eq!(w.cfg.family, Family::TimmTf);
    assert_eq!(w.preprocessing.mean, [0.5; 3]);
    assert_eq!(w.preprocessing.short_side, 224);
    let _ = std::fs::remove_dir_all(dir);
}

/// What this tool writes as safetensors (`convert`, `--save-raw`) is the same bytes for the same
/// tensors and metadata, run after run: the crate takes the metadata as a HashMap, whose order
/// changes with each map; the header holds it in sorted key order, the rest of the file is the
/// crate's own (its tensor order: larger dtypes first), and it reads back with every tensor and
/// metadata entry (values with quotes, newlines and non-ASCII text too).
#[test]
fn safetensors_output_is_byte_for_byte_reproducible() {
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = ["t0", "A", "0", "t3", "__x"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let dt = if i % 2 == 0 { Dtype::F32 } else { Dtype::F64 };
            let v: Vec<u8> = (0..8 * (i + 1)).map(|b| (b * 7 + i) as u8).collect();
            (n.to_string(), dt, vec![8 * v.len() / dt.bitsize()], v)
        })
        .collect();
    let meta = || -> std::collections::HashMap<String, String> {
        (0..9)
            .map(|k| (format!("key{k}"), format!("value \"{k}\"\n ✓")))
            .collect()
    };
    let views = || -> Vec<(String, TensorView)> {
        data.iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect()
    };
    let first = weights::serialize_safetensors(views(), meta()).unwrap();
    for _ in 0..20 {
        let again = weights::serialize_safetensors(views(), meta()).unwrap();
        assert!(again == first, "two writes of the same tensors differ");
    }
    let (n, info) = safetensors::SafeTensors::read_metadata(&first).unwrap();
    let header = std::str::from_utf8(&first[8..8 + n]).unwrap();
    let keys: Vec<usize> = (0..9)
        .map(|k| header.find(&format!("\"key{k}\"")).unwrap())
        .collect();
    assert!(keys.is_sorted(), "metadata keys out of order in {header}");
    let m = info.metadata().as_ref().unwrap();
    assert_eq!(m.len(), 9);
    assert_eq!(m["key3"], "value \"3\"\n ✓");
    // past the metadata object, the crate's bytes
    let theirs = safetensors::serialize(views(), Some(meta())).unwrap();
    let end = header.find("},").unwrap() + 8;
    assert_eq!((first.len(), &first[end..]), (theirs.len(), &theirs[end..]));
    let st = safetensors::SafeTensors::deserialize(&first).unwrap();
    for (name, dt, shape, bytes) in &data {
        let t = st.tensor(name).unwrap();
        assert_eq!(
            (t.dtype(), t.shape(), t.data()),
            (*dt, &shape[..], &bytes[..]),
            "{name}"
        );
    }
}
