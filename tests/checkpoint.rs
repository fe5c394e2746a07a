//! PyTorch checkpoints: files torch wrote (zip and legacy, every float dtype, strided, offset
//! and shared views, nested dicts) read to the right values; hostile or wrong files give one
//! clean error and run nothing; CERTH's two-file visloc folder loads, merges and converts.

use combicam_gpu::model::checkpoint::{self, OutDtype, PtFile};
use combicam_gpu::model::config::efficientnet;
use combicam_gpu::model::weights::{self, Formula, Layout, TensorSource};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

fn pt(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/pt")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("combicam-ckpt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn torch_written_files_read_to_the_right_values() {
    let (expected, _) = weights::read_safetensors(&pt("expected.safetensors")).unwrap();
    let mut files: HashMap<&str, Vec<(&String, &(Vec<usize>, Vec<f32>))>> = HashMap::new();
    for (k, v) in &expected {
        let (file, _) = k.split_once('/').unwrap();
        files.entry(file).or_default().push((k, v));
    }
    assert!(files.len() >= 7, "golden files missing: {:?}", files.keys());
    for (file, tensors) in files {
        let f = PtFile::open(&pt(&format!("{file}.pt"))).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (key, (shape, want)) in tensors {
            // nested dict keys: '/' in the golden names, '.' in the reader's
            let name = key.split_once('/').unwrap().1.replace('/', ".");
            assert_eq!(f.shape(&name).as_ref(), Some(shape), "{key}: shape");
            if !f.is_float(&name) {
                continue; // num_batches_tracked: an integer counter, not weights
            }
            let got = f.get_f32(&name).unwrap().unwrap().data;
            assert_eq!(&got, want, "{key}: values");
        }
        println!(
            "{file:<14} OK   every tensor equal to torch's (views gathered, dtypes converted)"
        );
    }
}

#[test]
fn hostile_and_wrong_files_give_one_clean_error() {
    let pwned = Path::new("/tmp/combicam_pwned");
    let _ = std::fs::remove_file(pwned);
    for (file, needle) in [
        // the os.system call is read as an object it does not know, never run
        ("evil.pt", "holds no tensors"),
        ("evil_plain.pt", "holds no tensors"),
        ("memo_bomb.pt", "memo bomb"),
        ("memo_bomb_zip.pt", "memo bomb"),
        ("no_tensors.pt", "holds no tensors"),
        ("truncated.pt", "not a readable PyTorch checkpoint"),
    ] {
        let e = weights::load_file(&pt(file)).expect_err(file).to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{file}: {e}");
        println!("{file:<18} OK: {e}");
    }
    assert!(!pwned.exists(), "a checkpoint's pickle ran code");
    // integer "weights" are refused by name
    let f = PtFile::open(&pt("int_weights.pt")).unwrap();
    let e = f.get("a.weight").err().unwrap().to_string();
    assert!(e.contains("a.weight") && e.contains("I64"), "{e}");
    // a valid checkpoint that is not an EfficientNet
    let e = weights::load_file(&pt("zip_f32.pt"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("holds no EfficientNet"), "{e}");
    // files of other kinds say what they are
    let d = tmpdir("kinds");
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos/coffee.png");
    std::fs::copy(&photo, d.join("model.pt")).unwrap();
    std::fs::write(d.join("notes.pth"), "weights are coming soon\n").unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(d.join("other.pt")).unwrap());
    zip.start_file("readme.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"no pickle here").unwrap();
    zip.finish().unwrap();
    for (file, needle) in [
        ("model.pt", "a PNG image"),
        ("notes.pth", "a text file"),
        ("other.pt", "not a readable PyTorch checkpoint"),
    ] {
        let e = weights::load_file(&d.join(file))
            .expect_err(file)
            .to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{file}: {e}");
        println!("{file:<18} OK: {e}");
    }
    let _ = std::fs::remove_dir_all(d);
}

// ---- a minimal torch.save (zip) writer, for checkpoints too large to commit -----------------

/// One tensor for [`torch_save`]: name, shape, storage class and little-endian bytes.
pub struct PtTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub storage: &'static str,
    pub bytes: Vec<u8>,
}

impl PtTensor {
    pub fn f32(name: &str, shape: Vec<usize>, v: &[f64]) -> Self {
        let bytes = v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect();
        PtTensor {
            name: name.into(),
            shape,
            storage: "FloatStorage",
            bytes,
        }
    }
    pub fn f64(name: &str, shape: Vec<usize>, v: &[f64]) -> Self {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        PtTensor {
            name: name.into(),
            shape,
            storage: "DoubleStorage",
            bytes,
        }
    }
    pub fn i64_scalar(name: &str, v: i64) -> Self {
        PtTensor {
            name: name.into(),
            shape: vec![],
            storage: "LongStorage",
            bytes: v.to_le_bytes().to_vec(),
        }
    }
}

fn pickle_str(p: &mut Vec<u8>, s: &str) {
    p.push(b'X'); // BINUNICODE
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

fn pickle_int(p: &mut Vec<u8>, v: usize) {
    p.push(b'J'); // BININT
    p.extend((v as i32).to_le_bytes());
}

fn pickle_tuple(p: &mut Vec<u8>, vs: &[usize]) {
    p.push(b'(');
    for &v in vs {
        pickle_int(p, v);
    }
    p.push(b't');
}

/// Write a state dict as `torch.save` does (zip: `<root>/data.pkl` with an OrderedDict of
/// `_rebuild_tensor_v2` calls whose storages are persistent ids, `<root>/data/<key>`).
pub fn torch_save(path: &Path, tensors: &[PtTensor]) {
    let root = path.file_stem().unwrap().to_string_lossy().to_string();
    let mut p = vec![0x80, 2];
    p.extend(b"ccollections\nOrderedDict\n)R(");
    for (i, t) in tensors.iter().enumerate() {
        pickle_str(&mut p, &t.name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        pickle_str(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", t.storage).as_bytes());
        pickle_str(&mut p, &i.to_string());
        pickle_str(&mut p, "cpu");
        pickle_int(&mut p, t.shape.iter().product());
        p.extend(b"tQ"); // tuple, BINPERSID
        pickle_int(&mut p, 0);
        pickle_tuple(&mut p, &t.shape);
        let mut stride = vec![1; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.shape[d + 1];
        }
        pickle_tuple(&mut p, &stride);
        p.extend(b"\x89ccollections\nOrderedDict\n)Rt"); // False, backward hooks
        p.push(b'R');
    }
    p.extend(b"u.");
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    z.start_file(format!("{root}/data.pkl"), opts).unwrap();
    z.write_all(&p).unwrap();
    z.start_file(format!("{root}/byteorder"), opts).unwrap();
    z.write_all(b"little").unwrap();
    for (i, t) in tensors.iter().enumerate() {
        z.start_file(format!("{root}/data/{i}"), opts).unwrap();
        z.write_all(&t.bytes).unwrap();
    }
    z.start_file(format!("{root}/version"), opts).unwrap();
    z.write_all(b"3\n").unwrap();
    z.finish().unwrap();
}

/// CERTH's visloc release laid out in `dir`: `efficientnet_backbone.pt` (efficientnet_pytorch
/// keys, with `_fc.*` and `num_batches_tracked`) and `mvmf_head.pt` (`mus`, `kappas` f64),
/// holding the formula network (B0, `cells` cells).
pub fn write_certh_folder(dir: &Path, cells: usize) {
    let cfg = efficientnet(0, weights::Layout::Visloc.family());
    let src = Formula::new(&cfg, Layout::Visloc, cells);
    let (mut backbone, mut head) = (Vec::new(), Vec::new());
    for name in src.names() {
        let t = src.get(&name).unwrap().unwrap();
        if let Some(k) = name.strip_prefix("backbone.") {
            backbone.push(PtTensor::f32(k, t.shape, &t.data));
            if let Some(bn) = k.strip_suffix(".running_var") {
                backbone.push(PtTensor::i64_scalar(
                    &format!("{bn}.num_batches_tracked"),
                    7,
                ));
            }
        } else if let Some(k) = name.strip_prefix("mvmf_head.") {
            head.push(if k.starts_with("mvmf.") {
                PtTensor::f64(k, t.shape, &t.data)
            } else {
                PtTensor::f32(k, t.shape, &t.data)
            });
        }
    }
    // the ImageNet classifier efficientnet_pytorch keeps: ignored when the head is there
    let fc: Vec<f64> = (0..1000 * cfg.head)
        .map(|i| (i % 7) as f64 * 0.01)
        .collect();
    backbone.push(PtTensor::f32("_fc.weight", vec![1000, cfg.head], &fc));
    backbone.push(PtTensor::f32("_fc.bias", vec![1000], &[0.0; 1000]));
    torch_save(&dir.join("efficientnet_backbone.pt"), &backbone);
    torch_save(&dir.join("mvmf_head.pt"), &head);
}

#[test]
fn certh_rrm_head_loads_with_the_folder() {
    let d = tmpdir("certh-rrm");
    write_certh_folder(&d, 50);
    let opts = weights::LoadOptions {
        retrieval: true,
        ..Default::default()
    };
    // without rrm_head.pt: a one-line error that names the file to add
    let e = weights::load_paths(std::slice::from_ref(&d), &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("rrm_head.pt"), "{e}");
    // rrm_head.pt as the official RetrievalModule's state dict: no prefix
    let cfg = efficientnet(0, weights::Layout::Visloc.family());
    let src = Formula::with_retrieval(&cfg, 50);
    let rrm: Vec<PtTensor> = src
        .names()
        .iter()
        .filter_map(|name| {
            let k = name.strip_prefix("rrm_head.")?;
            let t = src.get(name).unwrap().unwrap();
            Some(PtTensor::f32(k, t.shape, &t.data))
        })
        .collect();
    assert_eq!(rrm.len(), 8);
    torch_save(&d.join("rrm_head.pt"), &rrm);
    let w = weights::load_paths(std::slice::from_ref(&d), &opts).unwrap();
    let got = w.retrieval.expect("the retrieval head");
    let want = weights::formula_with_retrieval(0, 50).retrieval.unwrap();
    assert_eq!((got.d, got.h), (1280, 4096));
    assert_eq!(got.fc1_w, want.fc1_w);
    assert_eq!(got.fc2_w, want.fc2_w);
    assert_eq!(got.res_norm_b, want.res_norm_b);
    // and the head is left alone when not asked for
    let w = weights::load_paths(std::slice::from_ref(&d), &Default::default()).unwrap();
    assert!(w.retrieval.is_none());
    println!("rrm_head.pt: 8 tensors, equal to the formula's");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn certh_folder_loads_like_the_formula_and_converts() {
    let d = tmpdir("certh");
    let release = d.join("visloc");
    std::fs::create_dir_all(&release).unwrap();
    write_certh_folder(&release, 50);
    let want = weights::formula(0, Layout::Visloc, 50);
    let same = |w: &weights::Weights, what: &str| {
        assert_eq!(w.layout, Layout::Visloc, "{what}");
        assert_eq!(w.stem.w, want.stem.w, "{what}: stem");
        for (l, (a, b)) in w.blocks.iter().zip(&want.blocks).enumerate() {
            assert_eq!(a.project.w, b.project.w, "{what}: block {l}");
            assert_eq!(a.dw.b, b.dw.b, "{what}: block {l}");
        }
        assert_eq!(w.classifier.w, want.classifier.w, "{what}: head");
        match (&w.classifier.kind, &want.classifier.kind) {
            (weights::HeadKind::Geo { lat, .. }, weights::HeadKind::Geo { lat: l2, .. }) => {
                assert_eq!(lat, l2, "{what}: cell centres (f64)")
            }
            _ => panic!("{what}: visloc weights must give cells"),
        }
        println!("{what:<32} OK   every weight equal to the formula's");
    };
    // the folder, the two files, and the files in the other order
    same(
        &weights::load_paths(std::slice::from_ref(&release), &Default::default()).unwrap(),
        "--weights DIR",
    );
    let (bb, hd) = (
        release.join("efficientnet_backbone.pt"),
        release.join("mvmf_head.pt"),
    );
    same(
        &weights::load_paths(&[bb.clone(), hd.clone()], &Default::default()).unwrap(),
        "--weights backbone --weights head",
    );
    same(
        &weights::load_paths(&[hd.clone(), bb.clone()], &Default::default()).unwrap(),
        "--weights head --weights backbone",
    );
    // converted to one safetensors file
    let src = checkpoint::open(std::slice::from_ref(&release)).unwrap();
    let (bytes, n, skipped) =
        checkpoint::to_safetensors(&src, OutDtype::F32, HashMap::new()).unwrap();
    assert_eq!(
        skipped, 49,
        "the 49 num_batches_tracked counters are left out"
    );
    let out = d.join("visloc.safetensors");
    std::fs::write(&out, bytes).unwrap();
    same(&weights::load_file(&out).unwrap(), "converted safetensors");
    println!("converted: {n} tensors");
    // the backbone alone is efficientnet_pytorch with its own ImageNet classifier: it loads,
    // and the note says how to get geolocation
    let w = weights::load_file(&bb).unwrap();
    assert_eq!(w.layout, Layout::EfficientnetPytorch);
    assert!(
        w.notes.iter().any(|n| n.contains("mvmf_head.pt")),
        "{:?}",
        w.notes
    );
    // the same part twice
    let e = weights::load_paths(&[bb.clone(), bb.clone()], &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("pass each part of the model once"), "{e}");
    // a folder with only the head
    let half = d.join("half");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::copy(&hd, half.join("mvmf_head.pt")).unwrap();
    let e = weights::load_file(&half).err().unwrap().to_string();
    assert!(e.contains("without efficientnet_backbone.pt"), "{e}");
    let _ = std::fs::remove_dir_all(d);
}
