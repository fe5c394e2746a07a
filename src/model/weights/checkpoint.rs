//! Opening weights as users have them: a safetensors file, a PyTorch `.pt`/`.pth` state dict,
//! a folder with CERTH's `efficientnet_backbone.pt` + `mvmf_head.pt`, or several such files,
//! merged into one [`TensorSource`] with the key names of the one-file layout.

use super::source::{Float, RawTensor, SafetensorsFile, TensorSource};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The files CERTH publishes for visloc, in the order they are merged.
pub const CERTH_FILES: [&str; 3] = ["efficientnet_backbone.pt", "mvmf_head.pt", "rrm_head.pt"];

/// A PyTorch checkpoint, read by `pytorch-reader` (its pickle is parsed, never executed).
pub struct PtFile {
    path: String,
    tensors: HashMap<String, pytorch_reader::Tensor>,
}

impl PtFile {
    pub fn open(path: &Path) -> Result<Self> {
        let p = path.display().to_string();
        let reader = pytorch_reader::PytorchReader::new(path).map_err(|e| {
            let e = e.to_string().replace('\n', " ");
            Error::weights(
                &p,
                format!("is not a readable PyTorch checkpoint ({e}); it may be truncated or damaged: re-download it"),
            )
        })?;
        if reader.is_empty() {
            return Err(Error::weights(
                &p,
                "is a PyTorch file that holds no tensors, only other Python objects (an optimizer state, a config, or code, which is never run); pass the model's state dict",
            ));
        }
        Ok(PtFile {
            path: p,
            tensors: reader.into_tensors(),
        })
    }

    fn decode<T>(&self, name: &str, to: fn(f64) -> T) -> Result<Option<RawTensor<T>>> {
        use pytorch_reader::DType;
        let Some(t) = self.tensors.get(name) else {
            return Ok(None);
        };
        let bytes = t.read().map_err(|e| {
            Error::weights(
                &self.path,
                format!("tensor {name} cannot be read ({e}); the file is damaged: re-download it"),
            )
        })?;
        let float = match t.dtype() {
            DType::F32 => Float::F32,
            DType::F64 => Float::F64,
            DType::F16 => Float::F16,
            DType::BF16 => Float::BF16,
            other => {
                return Err(Error::weights(
                    &self.path,
                    format!(
                        "tensor {name} has dtype {other:?}; expected a float type (F32, F16, BF16 or F64): this is not a model's weights"
                    ),
                ));
            }
        };
        // pytorch-reader returns contiguous, native-endian bytes: little-endian on every
        // target this builds for (it reads only little-endian files)
        Ok(Some(RawTensor {
            shape: t.shape().to_vec(),
            data: float.decode(&bytes, to),
        }))
    }
}

impl TensorSource for PtFile {
    fn describe(&self) -> String {
        self.path.clone()
    }
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape().to_vec())
    }
    fn get(&self, name: &str) -> Result<Option<RawTensor>> {
        self.decode(name, |v| v)
    }
    fn get_f32(&self, name: &str) -> Result<Option<RawTensor<f32>>> {
        self.decode(name, |v| v as f32)
    }
    fn is_float(&self, name: &str) -> bool {
        use pytorch_reader::DType;
        self.tensors.get(name).is_some_and(|t| {
            matches!(
                t.dtype(),
                DType::F32 | DType::F64 | DType::F16 | DType::BF16
            )
        })
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Safetensors,
    /// zip (PyTorch ≥ 1.6), legacy pickle stream, tar, or a plain pickle
    Pytorch,
    Other(&'static str),
}

fn sniff(path: &Path) -> Result<Kind> {
    use std::io::Read;
    let p = path.display().to_string();
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| {
            Error::weights(
                &p,
                format!("cannot be read ({e}); check the path, or see weights/README.md for how to get weights"),
            )
        })?;
    let starts = |s: &[u8]| head.starts_with(s);
    Ok(if head.is_empty() {
        Kind::Other("an empty file")
    } else if head.len() > 8 && head[8] == b'{' {
        Kind::Safetensors
    } else if starts(b"PK\x03\x04") || starts(&[0x80]) || head.get(257..262) == Some(b"ustar") {
        Kind::Pytorch
    } else if starts(b"\x89PNG") {
        Kind::Other("a PNG image")
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        Kind::Other("a JPEG image")
    } else if starts(b"GIF8")
        || starts(b"BM")
        || (starts(b"RIFF") && head.get(8..12) == Some(b"WEBP"))
    {
        Kind::Other("an image")
    } else if starts(b"PK") {
        Kind::Other("a zip archive of another kind")
    } else if head
        .iter()
        .all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7F).contains(&b) || b >= 0x80)
    {
        Kind::Other("a text file")
    } else {
        Kind::Other("of an unknown format")
    })
}

/// Open one file, whatever its format, as a tensor source (no renaming yet).
pub fn open_file(path: &Path) -> Result<Box<dyn TensorSource>> {
    let p = path.display().to_string();
    if path.is_dir() {
        return Err(Error::weights(&p, "is a directory here; pass a file"));
    }
    match sniff(path)? {
        Kind::Safetensors => Ok(Box::new(SafetensorsFile::open(path)?)),
        Kind::Pytorch => Ok(Box::new(PtFile::open(path)?)),
        Kind::Other(what) => {
            let named = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_lowercase);
            let said = match named.as_deref() {
                Some("safetensors") => "is not a valid safetensors file: it is",
                Some("pt" | "pth") => "is not a PyTorch checkpoint: it is",
                _ => "is",
            };
            Err(Error::weights(
                &p,
                format!(
                    "{said} {what}, not weights; --weights takes a .safetensors file, a PyTorch .pt/.pth state dict, or a folder with efficientnet_backbone.pt and mvmf_head.pt (weights/README.md)"
                ),
            ))
        }
    }
}

/// What one file holds, from its keys, and the prefix its keys get in the one-file layout.
fn role(names: &[String]) -> Option<(&'static str, &'static str)> {
    // (anchor key, prefix the keys get): the first anchor found decides
    const ANCHORS: [(&str, &str); 5] = [
        ("backbone._conv_stem.weight", ""),
        ("conv_stem.weight", ""),
        ("_conv_stem.weight", "backbone."),
        ("mixture_weights.seq_model.0.weight", "mvmf_head."),
        ("res.fc1.weight", "rrm_head."),
    ];
    ANCHORS
        .iter()
        .find(|(a, _)| names.iter().any(|n| n == a))
        .map(|&(a, p)| (a, p))
}

/// A wrapper prefix around a state dict (`state_dict.`, `model.`, `module.` from
/// DataParallel): the part of a key before a known anchor key. The anchors are tried in
/// order, each first as a whole key (no wrapper), then as the end of a dotted key.
fn wrapper(names: &[String]) -> String {
    const ANCHORS: [&str; 5] = [
        "backbone._conv_stem.weight",
        "_conv_stem.weight",
        "conv_stem.weight",
        "mixture_weights.seq_model.0.weight",
        "res.fc1.weight",
    ];
    for a in ANCHORS {
        if names.iter().any(|n| n == a) {
            return String::new();
        }
        let dotted = format!(".{a}");
        if let Some(n) = names
            .iter()
            .filter(|n| n.ends_with(&dotted))
            .min_by_key(|n| n.len())
        {
            return n[..n.len() - a.len()].to_string();
        }
    }
    String::new()
}

/// Several sources under one set of names: each file's keys, stripped of a wrapper
/// prefix and given the prefix of its role (`backbone.`, `mvmf_head.`, `rrm_head.`).
pub struct Merged {
    parts: Vec<Box<dyn TensorSource>>,
    /// merged name → (part, name inside that part)
    map: HashMap<String, (usize, String)>,
    names: Vec<String>,
    describe: String,
}

impl Merged {
    pub fn new(parts: Vec<Box<dyn TensorSource>>) -> Result<Self> {
        let mut map: HashMap<String, (usize, String)> = HashMap::new();
        let mut names = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let inner = part.names();
            let wrap = wrapper(&inner);
            let stripped: Vec<String> = inner
                .iter()
                .filter_map(|n| n.strip_prefix(&wrap).map(str::to_string))
                .collect();
            let Some((_, prefix)) = role(&stripped) else {
                let some: Vec<&str> = inner.iter().take(3).map(|s| s.as_str()).collect();
                return Err(Error::weights(
                    part.describe(),
                    format!(
                        "holds no EfficientNet or visloc head tensors (keys such as {some:?}); expected an efficientnet_pytorch, timm, visloc mvmf_head or rrm_head state dict"
                    ),
                ));
            };
            for (full, short) in inner.iter().zip(&stripped) {
                let merged = format!("{prefix}{short}");
                if let Some((j, _)) = map.get(&merged) {
                    return Err(Error::weights(
                        part.describe(),
                        format!(
                            "tensor {merged} is also in {}: pass each part of the model once",
                            parts[*j].describe()
                        ),
                    ));
                }
                map.insert(merged.clone(), (i, full.clone()));
                names.push(merged);
            }
        }
        names.sort();
        let describe = parts
            .iter()
            .map(|p| p.describe())
            .collect::<Vec<_>>()
            .join(" + ");
        Ok(Merged {
            parts,
            map,
            names,
            describe,
        })
    }
}

impl TensorSource for Merged {
    fn describe(&self) -> String {
        self.describe.clone()
    }
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let (i, n) = self.map.get(name)?;
        self.parts[*i].shape(n)
    }
    fn get(&self, name: &str) -> Result<Option<RawTensor>> {
        match self.map.get(name) {
            Some((i, n)) => self.parts[*i].get(n),
            None => Ok(None),
        }
    }
    fn get_f32(&self, name: &str) -> Result<Option<RawTensor<f32>>> {
        match self.map.get(name) {
            Some((i, n)) => self.parts[*i].get_f32(n),
            None => Ok(None),
        }
    }
    fn is_float(&self, name: &str) -> bool {
        self.map
            .get(name)
            .is_some_and(|(i, n)| self.parts[*i].is_float(n))
    }
}

/// Element type of a converted file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutDtype {
    F32,
    F16,
    BF16,
}

/// Write every float tensor of `src` into one safetensors file in the one-file layout
/// (`backbone.*`, `mvmf_head.*`, `rrm_head.*`, or timm's names), as `dtype`; the cell
/// centres and kappas (`mvmf_head.mvmf.*`) stay F64. Counters (`num_batches_tracked`) are
/// left out. Returns (tensors written, tensors left out).
pub fn to_safetensors(
    src: &dyn TensorSource,
    dtype: OutDtype,
    metadata: HashMap<String, String>,
) -> Result<(Vec<u8>, usize, usize)> {
    use safetensors::Dtype;
    let mut data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
    let mut skipped = 0;
    for name in src.names() {
        if !src.is_float(&name) {
            skipped += 1;
            continue;
        }
        let t = src.get(&name)?.expect("listed by the source");
        let keep_f64 = name.starts_with("mvmf_head.mvmf.");
        let (dt, bytes): (Dtype, Vec<u8>) = match (keep_f64, dtype) {
            (true, _) => (
                Dtype::F64,
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (false, OutDtype::F32) => (
                Dtype::F32,
                t.data
                    .iter()
                    .flat_map(|&v| (v as f32).to_le_bytes())
                    .collect(),
            ),
            (false, OutDtype::F16) => (
                Dtype::F16,
                t.data
                    .iter()
                    .flat_map(|&v| half::f16::from_f64(v).to_le_bytes())
                    .collect(),
            ),
            (false, OutDtype::BF16) => (
                Dtype::BF16,
                t.data
                    .iter()
                    .flat_map(|&v| half::bf16::from_f64(v).to_le_bytes())
                    .collect(),
            ),
        };
        data.push((name, t.shape, dt, bytes));
    }
    let views = data
        .iter()
        .map(|(n, s, d, b)| {
            safetensors::tensor::TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::weights(src.describe(), format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = super::source::serialize_safetensors(views, metadata)
        .map_err(|e| Error::weights(src.describe(), format!("cannot serialise: {e}")))?;
    Ok((bytes, data.len(), skipped))
}

/// The files behind `--weights` values: a folder is CERTH's (backbone + head, optional
/// retrieval head) or holds exactly one weights file.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if !p.is_dir() {
            files.push(p.clone());
            continue;
        }
        let certh: Vec<PathBuf> = CERTH_FILES.iter().map(|f| p.join(f)).collect();
        if certh[0].is_file() || certh[1].is_file() {
            for (f, name) in certh.iter().zip(CERTH_FILES).take(2) {
                if !f.is_file() {
                    return Err(Error::weights(
                        p.display(),
                        format!(
                            "is a visloc weights folder without {name}; download it next to the others (weights/README.md)"
                        ),
                    ));
                }
            }
            files.extend(certh.into_iter().filter(|f| f.is_file()));
            continue;
        }
        let found = weight_files_in(p);
        match found.len() {
            1 => files.extend(found),
            0 => {
                return Err(Error::weights(
                    p.display(),
                    "holds no weights (.safetensors, .pt, .pth, or efficientnet_backbone.pt with mvmf_head.pt); see weights/README.md",
                ));
            }
            _ => {
                return Err(Error::weights(
                    p.display(),
                    format!(
                        "holds several weights files ({}); pass one with --weights FILE",
                        found
                            .iter()
                            .map(|f| f.file_name().unwrap_or_default().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    Ok(files)
}

/// `.safetensors`, `.pt` and `.pth` files directly in `dir`, sorted.
pub fn weight_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|e| e == "safetensors" || e == "pt" || e == "pth")
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Open every file (after [`expand`]) and merge them under the one-file names.
pub fn open(paths: &[PathBuf]) -> Result<Merged> {
    let files = expand(paths)?;
    let parts = files
        .iter()
        .map(|f| open_file(f))
        .collect::<Result<Vec<_>>>()?;
    Merged::new(parts)
}
