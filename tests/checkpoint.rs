//! PyTorch checkpoints: files torch wrote (zip and legacy, every float dtype, strided, offset
//! and shared views, nested dicts, awkward file names, CERTH's folder) read to the right values;
//! hostile or wrong files give one clean error and run nothing; CERTH's visloc folder loads,
//! merges and converts. Our torch.save writer reproduces torch's zip container byte for byte
//! (checked on every zip file torch wrote here), and a sweep of archive names, entry counts and
//! sizes through it must all load: zip 9.1-9.8.2 misread every archive whose folder name is 21
//! bytes long, CERTH's `efficientnet_backbone.pt` among them (see vendor/README.md).

use combicam_gpu::model::config::efficientnet;
use combicam_gpu::model::weights::checkpoint::{self, OutDtype, PtFile};
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
    crate::common::fresh_dir(&format!("ckpt-{tag}"))
}

#[test]
fn torch_written_files_read_to_the_right_values() {
    let (expected, _) = weights::read_safetensors(&pt("expected.safetensors")).unwrap();
    // the golden names by the .pt file they come from
    let mut files: HashMap<&str, Vec<&String>> = HashMap::new();
    for k in expected.keys() {
        let (file, _) = k.split_once('/').unwrap();
        files.entry(file).or_default().push(k);
    }
    assert!(files.len() >= 7, "golden files missing: {:?}", files.keys());
    for (file, tensors) in files {
        let f = PtFile::open(&pt(&format!("{file}.pt"))).unwrap_or_else(|e| panic!("{file}: {e}"));
        for key in tensors {
            let (shape, want) = &expected[key];
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

// ---- torch.save, byte for byte: the pickle of a state dict in torch's zip container ---------

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

/// CRC-32 (IEEE, reflected, as zip stores it), bytewise with a table.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        std::array::from_fn(|i| {
            (0..8).fold(i as u32, |c, _| {
                if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            })
        })
    });
    !data.iter().fold(!0u32, |c, &b| {
        t[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// The folder torch names inside the zip: the file name without its last extension, or
/// `archive` for a path that is not ASCII (torch then writes through a Python file object).
pub fn archive_name(path: &Path) -> String {
    let Some(name) = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| path.to_str().is_some_and(|p| p.is_ascii()))
    else {
        return "archive".into();
    };
    match name.rfind('.') {
        Some(dot) => name[..dot].to_string(),
        None => name.to_string(),
    }
}

/// torch.save's zip container (PyTorchStreamWriter on miniz, torch 2.15), read off the files in
/// tests/golden/pt (make_torch_layout.py): the records `<root>/data.pkl`, `.format_version`
/// ("1"), `.storage_alignment` ("64"), `byteorder` ("little"), `data/<key>` in the pickle's
/// order, `version` ("3\n"), `.data/serialization_id`; each stored, with a local header that has
/// zero version, time, CRC and sizes, flags 0x0808 (UTF-8, sizes in a data descriptor after the
/// data) or 0x0800 for an empty record (no descriptor), and an extra field `FB` + u16 length +
/// that many `Z`s (at least the 4-byte header) so that the data starts on a 64-byte boundary;
/// then the central directory (no extra fields), a ZIP64 end record (made by 0x031e, needs
/// 0x002d) and its locator even for small files, and the EOCD. Archives that would need ZIP64
/// fields are not reproduced.
pub fn torch_zip(
    root: &str,
    pickle: &[u8],
    storages: &[(String, &[u8])],
    serialization_id: &[u8],
) -> Vec<u8> {
    let mut records: Vec<(String, &[u8])> = vec![
        ("data.pkl".into(), pickle),
        (".format_version".into(), b"1"),
        (".storage_alignment".into(), b"64"),
        ("byteorder".into(), b"little"),
    ];
    records.extend(storages.iter().map(|(k, b)| (format!("data/{k}"), *b)));
    records.push(("version".into(), b"3\n"));
    records.push((".data/serialization_id".into(), serialization_id));
    let total: usize = records.iter().map(|r| r.1.len() + 200).sum();
    let (mut out, mut cd) = (Vec::with_capacity(total), Vec::new());
    let u16_ = |v: usize| u16::try_from(v).expect("needs ZIP64 fields: not reproduced");
    let u32_ = |v: usize| u32::try_from(v).expect("needs ZIP64 fields: not reproduced");
    for (name, data) in &records {
        let name = format!("{root}/{name}");
        let (offset, crc) = (out.len(), crc32(data));
        let flags: u16 = if data.is_empty() { 0x0800 } else { 0x0808 };
        let pad = (64 - (offset + 30 + name.len() + 4) % 64) % 64;
        out.extend(b"PK\x03\x04");
        out.extend([0u8; 2]); // version needed
        out.extend(flags.to_le_bytes());
        out.extend([0u8; 2 + 4 + 4 + 4 + 4]); // method, time+date, CRC, sizes
        out.extend(u16_(name.len()).to_le_bytes());
        out.extend(u16_(4 + pad).to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(b"FB");
        out.extend(u16_(pad).to_le_bytes());
        out.resize(out.len() + pad, b'Z');
        assert_eq!(out.len() % 64, 0);
        out.extend(*data);
        if !data.is_empty() {
            out.extend(b"PK\x07\x08");
            out.extend(crc.to_le_bytes());
            out.extend(u32_(data.len()).to_le_bytes());
            out.extend(u32_(data.len()).to_le_bytes());
        }
        cd.extend(b"PK\x01\x02");
        cd.extend([0u8; 4]); // version made by, needed
        cd.extend(flags.to_le_bytes());
        cd.extend([0u8; 2 + 4]); // method, time+date
        cd.extend(crc.to_le_bytes());
        cd.extend(u32_(data.len()).to_le_bytes());
        cd.extend(u32_(data.len()).to_le_bytes());
        cd.extend(u16_(name.len()).to_le_bytes());
        cd.extend([0u8; 2 + 2 + 2 + 2 + 4]); // extra, comment, disk, attributes
        cd.extend(u32_(offset).to_le_bytes());
        cd.extend(name.as_bytes());
    }
    let (n, cd_offset) = (records.len(), out.len());
    out.extend(&cd);
    let z64 = out.len();
    out.extend(b"PK\x06\x06");
    out.extend(44u64.to_le_bytes()); // size of the rest of the record
    out.extend(0x031eu16.to_le_bytes());
    out.extend(0x002du16.to_le_bytes());
    out.extend([0u8; 8]); // this disk, the CD's disk
    for v in [n, n, cd.len(), cd_offset] {
        out.extend((v as u64).to_le_bytes());
    }
    out.extend(b"PK\x06\x07");
    out.extend(0u32.to_le_bytes());
    out.extend((z64 as u64).to_le_bytes());
    out.extend(1u32.to_le_bytes()); // disks
    out.extend(b"PK\x05\x06");
    out.extend([0u8; 4]);
    out.extend(u16_(n).to_le_bytes());
    out.extend(u16_(n).to_le_bytes());
    out.extend(u32_(cd.len()).to_le_bytes());
    out.extend(u32_(cd_offset).to_le_bytes());
    out.extend([0u8; 2]); // comment
    out
}

/// The pickle `torch.save` writes for a state dict (protocol 2; an OrderedDict of
/// `_rebuild_tensor_v2` calls whose storages are persistent ids "0", "1", ... in order).
fn state_dict_pickle(tensors: &[PtTensor]) -> Vec<u8> {
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
    p
}

/// Write a state dict as `torch.save(sd, path)` does, in torch's exact zip layout; the random
/// serialization id is a hash of the pickle here (40 decimal digits, like torch's).
pub fn torch_save(path: &Path, tensors: &[PtTensor]) {
    let pickle = state_dict_pickle(tensors);
    let storages: Vec<(String, &[u8])> = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (i.to_string(), t.bytes.as_slice()))
        .collect();
    let h = crc32(&pickle) as u64;
    let id = format!("{:020}{:020}", h * 0x9E37_79B9, h ^ 0x5_DEEC_E66D);
    let bytes = torch_zip(&archive_name(path), &pickle, &storages, id.as_bytes());
    std::fs::write(path, bytes).unwrap();
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

// ---- files torch 2.15 wrote (tests/golden/pt/make_torch_layout.py) and a sweep of our own ----

/// The records of a zip file, in central-directory order, read by hand through the central
/// directory (not through the reader under test): (name, bytes).
fn zip_records(b: &[u8]) -> Vec<(String, &[u8])> {
    let le16 = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let le32 = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let e = b.len() - 22;
    assert_eq!(
        &b[e..e + 4],
        b"PK\x05\x06",
        "no EOCD at the end (torch writes no comment)"
    );
    let (n, mut p) = (le16(e + 10), le32(e + 16));
    (0..n)
        .map(|_| {
            assert_eq!(&b[p..p + 4], b"PK\x01\x02", "central header at {p}");
            let (size, nl, el, cl, off) = (
                le32(p + 20),
                le16(p + 28),
                le16(p + 30),
                le16(p + 32),
                le32(p + 42),
            );
            let name = String::from_utf8(b[p + 46..p + 46 + nl].to_vec()).unwrap();
            p += 46 + nl + el + cl;
            assert_eq!(
                &b[off..off + 4],
                b"PK\x03\x04",
                "{name}: local header at {off}"
            );
            let start = off + 30 + le16(off + 26) + le16(off + 28);
            (name, &b[start..start + size])
        })
        .collect()
}

/// Every zip file torch.save wrote under tests/golden/pt (not the hand-made hostile ones).
fn torch_zip_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "zip_f32.pt",
        "dtypes.pt",
        "views.pt",
        "nested.pt",
        "no_tensors.pt",
        "int_weights.pt",
        "layout.pt",
    ]
    .iter()
    .map(|f| pt(f))
    .collect();
    for dir in ["names", "certh"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(pt(dir))
            .unwrap_or_else(|e| panic!("tests/golden/pt/{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        v.extend(files);
    }
    assert!(v.len() >= 15, "golden files missing: {v:?}");
    v
}

#[test]
fn our_torch_zip_is_byte_identical_to_torch_save() {
    for path in torch_zip_files() {
        let torch = std::fs::read(&path).unwrap();
        let records = zip_records(&torch);
        let root = archive_name(&path);
        let want: Vec<String> = {
            let data = records
                .iter()
                .filter(|r| r.0.starts_with(&format!("{root}/data/")));
            let mut w: Vec<String> = ["data.pkl", ".format_version", ".storage_alignment"]
                .iter()
                .chain(&["byteorder"])
                .map(|r| format!("{root}/{r}"))
                .collect();
            w.extend(data.map(|r| r.0.clone()));
            w.extend([
                format!("{root}/version"),
                format!("{root}/.data/serialization_id"),
            ]);
            w
        };
        let names: Vec<&String> = records.iter().map(|r| &r.0).collect();
        assert_eq!(
            names,
            want.iter().collect::<Vec<_>>(),
            "{}: records",
            path.display()
        );
        // the same pickle, storages and serialization id through our writer
        let get = |r: &str| {
            records
                .iter()
                .find(|x| x.0 == format!("{root}/{r}"))
                .unwrap()
                .1
        };
        let storages: Vec<(String, &[u8])> = records
            .iter()
            .filter_map(|(n, b)| Some((n.strip_prefix(&format!("{root}/data/"))?.into(), *b)))
            .collect();
        let ours = torch_zip(
            &root,
            get("data.pkl"),
            &storages,
            get(".data/serialization_id"),
        );
        if let Some(at) = (0..ours.len().min(torch.len())).find(|&i| ours[i] != torch[i]) {
            panic!(
                "{}: our zip differs from torch's at byte {at} of {}: ours {:02x?}, torch {:02x?}",
                path.display(),
                torch.len(),
                &ours[at..(at + 16).min(ours.len())],
                &torch[at..(at + 16).min(torch.len())]
            );
        }
        assert_eq!(ours.len(), torch.len(), "{}: length", path.display());
        println!(
            "{:<32} OK   byte-identical ({} bytes, {} records, folder {root:?})",
            path.strip_prefix(pt("")).unwrap().display(),
            torch.len(),
            records.len()
        );
    }
}

/// A float32 tensor of the small dict: name, shape, value of element j.
type SmallF32 = (&'static str, Vec<usize>, fn(f32) -> f32);

/// The dict make_torch_layout.py saves as layout.pt and under every awkward name.
fn check_small(path: &Path) {
    let what = path.display();
    let f = PtFile::open(path).unwrap_or_else(|e| panic!("{what}: {e}"));
    let f32s: [SmallF32; 4] = [
        ("a.weight", vec![3, 4], |j| j * 0.25 - 1.0),
        ("a.bias", vec![3], |j| j * 0.5),
        ("empty", vec![0], |j| j),
        ("b.running_var", vec![5], |j| 1.0 + j / 8.0),
    ];
    for (name, shape, v) in f32s {
        let t = f
            .get_f32(name)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: no {name}"));
        let want: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|j| v(j as f32))
            .collect();
        assert_eq!((&t.shape, &t.data), (&shape, &want), "{what}: {name}");
    }
    let mus = f.get("mus").unwrap().unwrap();
    let want: Vec<f64> = (0..6).map(|j| j as f64 / 4.0).collect();
    assert_eq!(
        (&mus.shape, &mus.data),
        (&vec![2, 3], &want),
        "{what}: mus (f64)"
    );
    assert_eq!(f.shape("bn.num_batches_tracked"), Some(vec![]), "{what}");
    assert!(
        !f.is_float("bn.num_batches_tracked"),
        "{what}: an int64 counter"
    );
    assert_eq!(f.names().len(), 6, "{what}: {:?}", f.names());
}

#[test]
fn torch_files_under_awkward_names_read_right() {
    let mut n = 0;
    for dir in ["names", "names_legacy"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(pt(dir))
            .unwrap_or_else(|e| panic!("tests/golden/pt/{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 5, "{dir}: {files:?}");
        for path in &files {
            check_small(path);
            let name = path.file_name().unwrap().to_string_lossy();
            println!("{dir:<13} {name:<62} OK   6 tensors, values exact");
            n += 1;
        }
    }
    check_small(&pt("layout.pt"));
    println!("{:<76} OK   6 tensors, values exact", "layout.pt");
    assert_eq!(n, 10);
}

/// The formula value (../golden/detweights.py) of element `i` of the tensor `name`, `shape`.
fn formula_at(name: &str, shape: &[usize], i: usize) -> f64 {
    use combicam_gpu::model::detweights::{fnv1a64, range, unit};
    let (lo, hi) = range(name, shape, i);
    lo + (hi - lo) * unit(fnv1a64(name), i as u64)
}

/// The values make_torch_layout.py gives the CERTH folder: the formula under the prefixed key;
/// a tensor of 2+ dimensions is a view with all strides 1, so element (i, j, ...) is formula
/// value i + j + ...
fn certh_golden_values(key: &str, shape: &[usize]) -> Vec<f64> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|flat| {
            let i = if shape.len() < 2 {
                flat
            } else {
                let (mut rest, mut sum) = (flat, 0);
                for &d in shape.iter().rev() {
                    sum += rest % d;
                    rest /= d;
                }
                sum
            };
            formula_at(key, shape, i)
        })
        .collect()
}

#[test]
fn certh_folder_written_by_torch_loads_to_its_values() {
    let dir = pt("certh");
    let mut counters = 0;
    for (file, prefix, count) in [
        ("efficientnet_backbone.pt", "backbone.", 360),
        ("mvmf_head.pt", "mvmf_head.", 4),
        ("rrm_head.pt", "rrm_head.", 8),
    ] {
        let f = PtFile::open(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let names = f.names();
        assert_eq!(names.len(), count, "{file}: {names:?}");
        for name in &names {
            if !f.is_float(name) {
                assert!(name.ends_with("num_batches_tracked"), "{file}: {name}");
                counters += 1;
                continue;
            }
            let key = format!("{prefix}{name}");
            let t = f.get(name).unwrap().unwrap();
            let mut want = certh_golden_values(&key, &t.shape);
            if !name.starts_with("mvmf.") {
                // float32 in the file: the formula rounded once
                want.iter_mut().for_each(|v| *v = *v as f32 as f64);
            }
            assert_eq!(t.data, want, "{file}: {name} {:?}", t.shape);
        }
        println!(
            "{file:<26} OK   {} tensors equal to the formula (views gathered)",
            names.len()
        );
    }
    assert_eq!(counters, 49, "num_batches_tracked of B0's 49 BatchNorms");
    // the folder as --weights DIR: the visloc network with its 500 cells and the retrieval head
    let opts = weights::LoadOptions {
        retrieval: true,
        ..Default::default()
    };
    let w = weights::load_paths(std::slice::from_ref(&dir), &opts).unwrap();
    assert_eq!(w.layout, Layout::Visloc);
    let r = w.retrieval.as_ref().expect("the retrieval head");
    assert_eq!((r.d, r.h), (1280, 4096));
    match &w.classifier.kind {
        weights::HeadKind::Geo { lat, .. } => assert_eq!(lat.len(), 500),
        _ => panic!("visloc weights must give cells"),
    }
    println!("--weights certh/: visloc B0, 500 cells, retrieval head 1280 x 4096");
}

/// Element j of the sweep's tensor `t<k>` (make_torch_layout.py --check recomputes it).
fn sweep_value(k: usize, j: usize) -> f64 {
    ((k * 131 + j * 7) % 1009) as f64 / 8.0 - 63.0
}

/// A file stem of `len` bytes; 21 gives CERTH's `efficientnet_backbone`.
fn sweep_stem(len: usize) -> String {
    "efficientnet_backbone_mvmf_head_rrm_head_visloc_b4_0123456789abcdefghij"[..len].to_string()
}

#[test]
fn sweep_of_names_entry_counts_and_sizes_all_load() {
    // COMBICAM_KEEP_PT=DIR keeps a subset for make_torch_layout.py --check DIR (needs torch)
    let keep = std::env::var_os("COMBICAM_KEEP_PT").map(PathBuf::from);
    if let Some(k) = &keep {
        std::fs::create_dir_all(k).unwrap();
    }
    let d = tmpdir("sweep");
    let t0 = std::time::Instant::now();
    let (mut archives, mut tensors, mut bytes, mut kept) = (0, 0, 0usize, 0);
    let mut one = |stem: &str, sizes: &[usize], keep_it: bool| {
        let path = d.join(format!("{stem}.pt"));
        let ts: Vec<PtTensor> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let v: Vec<f64> = (0..n).map(|j| sweep_value(k, j)).collect();
                PtTensor::f32(&format!("t{k}"), vec![n], &v)
            })
            .collect();
        torch_save(&path, &ts);
        let f = PtFile::open(&path).unwrap_or_else(|e| {
            panic!(
                "stem {stem:?} ({} bytes), {} tensors: {e}",
                stem.len(),
                sizes.len()
            )
        });
        assert_eq!(f.names().len(), sizes.len(), "stem {stem:?}");
        for (k, &n) in sizes.iter().enumerate() {
            let t = f.get_f32(&format!("t{k}")).unwrap().unwrap();
            assert_eq!(t.shape, vec![n], "stem {stem:?}: t{k}");
            let bad = (0..n).find(|&j| t.data[j] as f64 != sweep_value(k, j));
            assert!(bad.is_none(), "stem {stem:?}: t{k}[{bad:?}] wrong");
        }
        if let (Some(k), true) = (&keep, keep_it) {
            std::fs::copy(&path, k.join(format!("{archives:04}.pt"))).unwrap();
            kept += 1;
        }
        std::fs::remove_file(&path).unwrap();
        archives += 1;
        tensors += sizes.len();
        bytes += 4 * sizes.iter().sum::<usize>();
    };
    // every stem length 1..=64, with entry counts and small sizes that move the paddings
    for len in 1..=64 {
        for count in [1, 2, 3, 7, 40] {
            let sizes: Vec<usize> = (0..count).map(|k| (k * 7 + len) % 23).collect();
            one(&sweep_stem(len), &sizes, count == 2 || len == 21);
        }
    }
    // entry counts 1..=800 under the short, the 21-byte and the longest stem
    let counts = (1..=48).chain([63, 64, 65, 100, 127, 128, 255, 256, 257, 500, 799, 800]);
    for count in counts {
        for len in [7, 21, 64] {
            let sizes: Vec<usize> = (0..count).map(|k| (k * 13 + count) % 37).collect();
            one(&sweep_stem(len), &sizes, count % 50 == 0 || count < 4);
        }
    }
    // sizes from 0 bytes to tens of MB: 0, 4, 60, 64, 68 bytes, 1 MiB, 16 MiB + 4, 40 MB
    let big = [0, 1, 15, 16, 17, 1 << 18, (1 << 22) + 1, 10_000_000];
    for len in [5, 21, 64] {
        one(&sweep_stem(len), &big, len == 21);
    }
    one(&sweep_stem(21), &[10_000_000], false);
    let _ = std::fs::remove_dir_all(d);
    println!(
        "{archives} archives, {tensors} tensors, {:.0} MB: every one loads with every value right ({:.1} s){}",
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        match &keep {
            Some(k) => format!("; {kept} kept in {}", k.display()),
            None => String::new(),
        }
    );
}
