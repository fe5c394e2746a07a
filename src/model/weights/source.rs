//! Tensor sources: a named tensor (`RawTensor`), the `TensorSource` every weights format
//! reads through, safetensors files, and the float types weights come in.

use crate::error::{Error, Result};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// A named tensor, converted to f64 (BN folding, cell centres) or f32 (large matrices).
pub struct RawTensor<T = f64> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// Element types a loaded tensor may hold, for the finiteness check.
pub(super) trait Element: Copy {
    fn is_finite_value(self) -> bool;
    fn describe(self) -> String;
}

impl Element for f32 {
    fn is_finite_value(self) -> bool {
        self.is_finite()
    }
    fn describe(self) -> String {
        self.to_string()
    }
}

impl Element for f64 {
    fn is_finite_value(self) -> bool {
        self.is_finite()
    }
    fn describe(self) -> String {
        self.to_string()
    }
}

/// Where tensors come from: a safetensors file, or the test formula.
pub trait TensorSource {
    fn describe(&self) -> String;
    fn names(&self) -> Vec<String>;
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The tensor converted to f64 (exact for F32/F16/BF16/F64).
    fn get(&self, name: &str) -> Result<Option<RawTensor>>;
    /// The tensor converted straight to f32, with no f64 copy: for the large head matrix.
    fn get_f32(&self, name: &str) -> Result<Option<RawTensor<f32>>>;
    /// Whether the tensor holds floats (checkpoints also hold counters such as
    /// `num_batches_tracked`).
    fn is_float(&self, _name: &str) -> bool {
        true
    }
}

/// A safetensors file held in memory (or embedded in the binary), its header parsed once.
pub struct SafetensorsFile {
    path: String,
    bytes: std::borrow::Cow<'static, [u8]>,
    /// where the tensor data starts in `bytes`
    data_start: usize,
    meta: Metadata,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self> {
        let p = path.display().to_string();
        if path.is_dir() {
            return Err(Error::weights(
                &p,
                "is a directory; pass the .safetensors file",
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            Error::weights(&p, format!("cannot be read ({e}); check the path, or see weights/README.md for how to get weights"))
        })?;
        Self::from_bytes(p, bytes.into())
    }

    /// Bytes already in memory (`name` only names them in messages).
    pub fn from_bytes(name: String, bytes: std::borrow::Cow<'static, [u8]>) -> Result<Self> {
        let (header, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            Error::weights(&name, format!("is not a valid safetensors file ({e}); it may be truncated or another format: re-download or re-convert it (weights/README.md)"))
        })?;
        Ok(SafetensorsFile {
            path: name,
            bytes,
            data_start: 8 + header,
            meta,
        })
    }

    /// The file's free-form metadata (`__metadata__`).
    pub fn metadata(&self) -> HashMap<String, String> {
        self.meta.metadata().clone().unwrap_or_default()
    }
}

impl TensorSource for SafetensorsFile {
    fn describe(&self) -> String {
        self.path.clone()
    }
    fn names(&self) -> Vec<String> {
        self.meta.offset_keys()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.meta.info(name).map(|t| t.shape.clone())
    }
    fn get(&self, name: &str) -> Result<Option<RawTensor>> {
        self.decode(name, |v| v)
    }
    fn get_f32(&self, name: &str) -> Result<Option<RawTensor<f32>>> {
        self.decode(name, |v| v as f32)
    }
    fn is_float(&self, name: &str) -> bool {
        self.meta
            .info(name)
            .is_some_and(|t| matches!(t.dtype, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16))
    }
}

impl SafetensorsFile {
    /// Decode tensor `name` element by element through f64 (exact for every float dtype).
    fn decode<T>(&self, name: &str, to: fn(f64) -> T) -> Result<Option<RawTensor<T>>> {
        let Some(t) = self.meta.info(name) else {
            return Ok(None);
        };
        let (start, end) = t.data_offsets;
        let d = &self.bytes[self.data_start + start..self.data_start + end];
        let float = match t.dtype {
            Dtype::F32 => Float::F32,
            Dtype::F64 => Float::F64,
            Dtype::F16 => Float::F16,
            Dtype::BF16 => Float::BF16,
            other => {
                return Err(Error::weights(
                    &self.path,
                    format!(
                        "tensor {name} has dtype {other:?}; expected a float type (F32, F16, BF16 or F64): re-convert the weights"
                    ),
                ));
            }
        };
        Ok(Some(RawTensor {
            shape: t.shape.clone(),
            data: float.decode(d, to),
        }))
    }
}

/// The float element types weights come in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Float {
    F32,
    F64,
    F16,
    BF16,
}

impl Float {
    /// Little-endian elements converted through f64 (exact for every float type).
    pub(crate) fn decode<T>(self, b: &[u8], to: fn(f64) -> T) -> Vec<T> {
        match self {
            Float::F32 => b
                .chunks_exact(4)
                .map(|c| to(f32::from_le_bytes(c.try_into().unwrap()) as f64))
                .collect(),
            Float::F64 => b
                .chunks_exact(8)
                .map(|c| to(f64::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            Float::F16 => b
                .chunks_exact(2)
                .map(|c| to(half::f16::from_le_bytes([c[0], c[1]]).to_f64()))
                .collect(),
            Float::BF16 => b
                .chunks_exact(2)
                .map(|c| to(half::bf16::from_le_bytes([c[0], c[1]]).to_f64()))
                .collect(),
        }
    }
}

/// Tensors by name: (shape, values as f32).
pub type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Every tensor of a safetensors file as f32, and the file's metadata (tests read golden files with it).
pub fn read_safetensors(path: &Path) -> Result<(Tensors, HashMap<String, String>)> {
    let f = SafetensorsFile::open(path)?;
    let mut out = HashMap::new();
    for name in f.names() {
        let t = f.get_f32(&name)?.expect("listed by the header");
        out.insert(name, (t.shape, t.data));
    }
    Ok((out, f.metadata()))
}

/// `safetensors::serialize`, with `metadata` in the header in sorted key order. The crate takes
/// the metadata as a HashMap and writes it in that map's order, which changes from run to run:
/// the same tensors and metadata would give files that differ in those bytes. Only the
/// `__metadata__` object's bytes are rewritten (the crate writes it first, as compact JSON), in
/// place and at the same length; the tensors' entries and the data stay as the crate wrote them.
/// Where the header is not as expected, the crate's bytes stay as they are.
pub fn serialize_safetensors<'a, V: safetensors::View + 'a>(
    views: Vec<(String, V)>,
    metadata: HashMap<String, String>,
) -> std::result::Result<Vec<u8>, safetensors::SafeTensorError> {
    let sorted: std::collections::BTreeMap<&String, &String> = metadata.iter().collect();
    let sorted = serde_json::to_vec(&sorted).expect("strings are JSON");
    let mut bytes = safetensors::serialize(views, Some(metadata.clone()))?;
    const OPEN: &[u8] = b"{\"__metadata__\":";
    let at = 8 + OPEN.len();
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("a length first")) as usize;
    let theirs = bytes
        .get(at..at + sorted.len())
        .filter(|_| at + sorted.len() <= 8 + n);
    // the crate's metadata object: the same entries at the same length, followed by , or }
    let same = theirs.is_some_and(|t| {
        bytes[8..at] == *OPEN
            && matches!(bytes.get(at + sorted.len()), Some(b',' | b'}'))
            && serde_json::from_slice::<HashMap<String, String>>(t).ok() == Some(metadata)
    });
    if same {
        bytes[at..at + sorted.len()].copy_from_slice(&sorted);
    }
    Ok(bytes)
}
