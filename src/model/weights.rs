//! Weights: a tensor source (see `checkpoint`) or the deterministic test formula, in the
//! visloc, efficientnet_pytorch or timm key layout, checked against the architecture,
//! converted to f32, with BN folded into the convolutions.

use super::config::{BlockCfg, Family, ModelCfg, efficientnet, variants};
use super::detweights;
use crate::error::{Error, Result};
use crate::preprocess::{Preprocessing, Resample};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

/// Key layout of a weights file (after `checkpoint` gave each part its prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Layout {
    /// `backbone.*` (efficientnet_pytorch keys), `mvmf_head.*`, optional `rrm_head.*`
    Visloc,
    /// an efficientnet_pytorch (or efficientnet_lite_pytorch) state dict with its own
    /// classifier `_fc.*` (ImageNet), under `backbone.`
    EfficientnetPytorch,
    /// timm `efficientnet_bN` / `tf_efficientnet_*` state dict with `classifier.*` (ImageNet)
    Timm,
}

impl Layout {
    /// The family the key names imply when nothing else says (SE present).
    pub fn family(self) -> Family {
        match self {
            Layout::Visloc | Layout::EfficientnetPytorch => Family::Visloc,
            Layout::Timm => Family::Timm,
        }
    }
}

/// What the caller knows beyond the tensors.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--arch`, or a timm `config.json`'s `architecture`: decides the family where the keys
    /// cannot (timm `efficientnet_bN` and `tf_efficientnet_bN` have the same keys)
    pub arch: Option<String>,
    /// a timm `config.json`'s `pretrained_cfg`: the preprocessing the checkpoint was made for
    pub preprocessing: Option<Preprocessing>,
    /// also load visloc's retrieval head (`rrm_head.*`; an error when it is missing)
    pub retrieval: bool,
}

/// The image sizes EfficientNet-B0–B7 were trained at (timm's and efficientnet_pytorch's).
pub const B_IMAGE_SIZE: [u32; 8] = [224, 240, 260, 300, 380, 456, 528, 600];

/// What a family's reference code does to a photo, when the checkpoint does not say.
pub fn default_preprocessing(layout: Layout, cfg: &ModelCfg) -> Preprocessing {
    let v = cfg.variant;
    match (layout, cfg.family) {
        (_, Family::Lite) => Preprocessing {
            short_side: super::config::LITE_IMAGE_SIZE[v] as u32,
            ..Preprocessing::LITE
        },
        (Layout::Visloc, _) => Preprocessing::VISLOC,
        (Layout::EfficientnetPytorch, _) => Preprocessing {
            short_side: B_IMAGE_SIZE[v],
            ..Preprocessing::VISLOC
        },
        (Layout::Timm, _) => Preprocessing {
            short_side: B_IMAGE_SIZE[v],
            resample: Resample::Bicubic,
            ..Preprocessing::VISLOC
        },
    }
}

/// A model name as timm, efficientnet_pytorch or efficientnet_lite_pytorch spell it:
/// (family, variant). A timm tag after a dot (`.ra2_in1k`) is ignored.
pub fn parse_arch(name: &str) -> Option<(Family, usize)> {
    let base = name.trim().to_lowercase();
    let base = base.split('.').next().unwrap_or_default().replace('-', "_");
    let (family, digit) = if let Some(d) = base.strip_prefix("tf_efficientnet_lite") {
        (Family::Lite, d)
    } else if let Some(d) = base.strip_prefix("efficientnet_lite") {
        (Family::Lite, d)
    } else if let Some(d) = base.strip_prefix("tf_efficientnet_b") {
        (Family::TimmTf, d)
    } else if let Some(d) = base.strip_prefix("efficientnet_b") {
        (Family::Timm, d)
    } else if let Some(d) = base.strip_prefix("visloc_b") {
        (Family::Visloc, d)
    } else {
        return None;
    };
    let v: usize = digit.parse().ok()?;
    (v < variants(family)).then_some((family, v))
}

/// A convolution with BN folded in: w (Cout, Cin·k·k), b (Cout).
#[derive(Clone, Debug)]
pub struct Conv {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct BlockWeights {
    pub expand: Option<Conv>,
    pub dw: Conv,
    /// SE reduce (CSE, CMID) and expand (CMID, CSE), with their biases; None for Lite
    pub se: Option<(Conv, Conv)>,
    pub project: Conv,
}

/// What the classifier's outputs mean.
#[derive(Clone, Debug)]
pub enum HeadKind {
    /// visloc cells with their centres (degrees)
    Geo { lat: Vec<f64>, lon: Vec<f64> },
    /// ImageNet classes
    Labels(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Classifier {
    pub n: usize,
    /// (N, K)
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub kind: HeadKind,
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub cfg: ModelCfg,
    pub layout: Layout,
    pub stem: Conv,
    pub blocks: Vec<BlockWeights>,
    pub head_conv: Conv,
    pub classifier: Classifier,
    /// where they came from, for messages
    pub source: String,
    /// what the user should know about how the file was read (printed once on stderr)
    pub notes: Vec<String>,
    /// how photos are turned into the model's input
    pub preprocessing: Preprocessing,
    /// visloc's retrieval head, when loaded (`LoadOptions::retrieval`)
    pub retrieval: Option<std::sync::Arc<super::retrieval::RetrievalWeights>>,
}

/// A named tensor, converted to f64 (BN folding, cell centres) or f32 (large matrices).
pub struct RawTensor<T = f64> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// Element types a loaded tensor may hold, for the finiteness check.
trait Element: Copy {
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

/// The deterministic test network: every expected tensor from the formula.
pub struct Formula {
    tensors: Vec<(String, Vec<usize>)>,
}

impl Formula {
    pub fn new(cfg: &ModelCfg, layout: Layout, n_classes: usize) -> Self {
        Formula {
            tensors: expected(cfg, layout, n_classes),
        }
    }

    /// With visloc's retrieval head too (feature size → the official hidden size).
    pub fn with_retrieval(cfg: &ModelCfg, n_classes: usize) -> Self {
        let mut tensors = expected(cfg, Layout::Visloc, n_classes);
        for (name, shape) in super::retrieval::tensor_names(cfg.head, super::retrieval::HIDDEN) {
            tensors.push((name.to_string(), shape));
        }
        Formula { tensors }
    }
}

impl TensorSource for Formula {
    fn describe(&self) -> String {
        "deterministic test weights".into()
    }
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.0.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .map(|t| t.1.clone())
    }
    fn get(&self, name: &str) -> Result<Option<RawTensor>> {
        let Some(shape) = self.shape(name) else {
            return Ok(None);
        };
        let data = if name.ends_with("mvmf.mus") {
            detweights::tensor_f64(name, &shape)
        } else {
            detweights::tensor(name, &shape)
                .into_iter()
                .map(|v| v as f64)
                .collect()
        };
        Ok(Some(RawTensor { shape, data }))
    }
    fn get_f32(&self, name: &str) -> Result<Option<RawTensor<f32>>> {
        Ok(self.shape(name).map(|shape| RawTensor {
            data: detweights::tensor(name, &shape),
            shape,
        }))
    }
}

/// Key names of one block.
struct BlockKeys {
    expand: String,
    bn_expand: String,
    dw: String,
    bn_dw: String,
    se_r: String,
    se_x: String,
    project: String,
    bn_project: String,
}

fn block_keys(layout: Layout, i: usize, b: &BlockCfg) -> BlockKeys {
    match layout {
        Layout::Visloc | Layout::EfficientnetPytorch => {
            let p = format!("backbone._blocks.{i}.");
            BlockKeys {
                expand: p.clone() + "_expand_conv",
                bn_expand: p.clone() + "_bn0",
                dw: p.clone() + "_depthwise_conv",
                bn_dw: p.clone() + "_bn1",
                se_r: p.clone() + "_se_reduce",
                se_x: p.clone() + "_se_expand",
                project: p.clone() + "_project_conv",
                bn_project: p + "_bn2",
            }
        }
        Layout::Timm => {
            let p = format!("blocks.{}.{}.", b.stage, b.index);
            if b.expand == 1 {
                // depthwise-separable block: conv_dw, bn1, se, conv_pw (the projection), bn2
                BlockKeys {
                    expand: String::new(),
                    bn_expand: String::new(),
                    dw: p.clone() + "conv_dw",
                    bn_dw: p.clone() + "bn1",
                    se_r: p.clone() + "se.conv_reduce",
                    se_x: p.clone() + "se.conv_expand",
                    project: p.clone() + "conv_pw",
                    bn_project: p + "bn2",
                }
            } else {
                BlockKeys {
                    expand: p.clone() + "conv_pw",
                    bn_expand: p.clone() + "bn1",
                    dw: p.clone() + "conv_dw",
                    bn_dw: p.clone() + "bn2",
                    se_r: p.clone() + "se.conv_reduce",
                    se_x: p.clone() + "se.conv_expand",
                    project: p.clone() + "conv_pwl",
                    bn_project: p + "bn3",
                }
            }
        }
    }
}

struct TopKeys {
    stem: &'static str,
    bn_stem: &'static str,
    head: &'static str,
    bn_head: &'static str,
    fc: &'static str,
}

fn top_keys(layout: Layout) -> TopKeys {
    match layout {
        Layout::Visloc => TopKeys {
            stem: "backbone._conv_stem",
            bn_stem: "backbone._bn0",
            head: "backbone._conv_head",
            bn_head: "backbone._bn1",
            fc: "mvmf_head.mixture_weights.seq_model.0",
        },
        Layout::EfficientnetPytorch => TopKeys {
            stem: "backbone._conv_stem",
            bn_stem: "backbone._bn0",
            head: "backbone._conv_head",
            bn_head: "backbone._bn1",
            fc: "backbone._fc",
        },
        Layout::Timm => TopKeys {
            stem: "conv_stem",
            bn_stem: "bn1",
            head: "conv_head",
            bn_head: "bn2",
            fc: "classifier",
        },
    }
}

const BN_PARTS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

/// Every tensor the architecture needs, with its shape.
pub fn expected(cfg: &ModelCfg, layout: Layout, n_classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> = Vec::new();
    let bn = |v: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
        for part in BN_PARTS {
            v.push((format!("{p}.{part}"), vec![c]));
        }
    };
    let t = top_keys(layout);
    v.push((format!("{}.weight", t.stem), vec![cfg.stem, 3, 3, 3]));
    bn(&mut v, t.bn_stem, cfg.stem);
    for (i, b) in cfg.blocks.iter().enumerate() {
        let k = block_keys(layout, i, b);
        let cm = b.cmid();
        if b.expand != 1 {
            v.push((format!("{}.weight", k.expand), vec![cm, b.cin, 1, 1]));
            bn(&mut v, &k.bn_expand, cm);
        }
        v.push((format!("{}.weight", k.dw), vec![cm, 1, b.k, b.k]));
        bn(&mut v, &k.bn_dw, cm);
        if b.has_se() {
            v.push((format!("{}.weight", k.se_r), vec![b.cse, cm, 1, 1]));
            v.push((format!("{}.bias", k.se_r), vec![b.cse]));
            v.push((format!("{}.weight", k.se_x), vec![cm, b.cse, 1, 1]));
            v.push((format!("{}.bias", k.se_x), vec![cm]));
        }
        v.push((format!("{}.weight", k.project), vec![b.cout, cm, 1, 1]));
        bn(&mut v, &k.bn_project, b.cout);
    }
    let last = cfg.blocks.last().unwrap().cout;
    v.push((format!("{}.weight", t.head), vec![cfg.head, last, 1, 1]));
    bn(&mut v, t.bn_head, cfg.head);
    v.push((format!("{}.weight", t.fc), vec![n_classes, cfg.head]));
    v.push((format!("{}.bias", t.fc), vec![n_classes]));
    if layout == Layout::Visloc {
        v.push(("mvmf_head.mvmf.mus".into(), vec![2, n_classes]));
        v.push(("mvmf_head.mvmf.kappas".into(), vec![n_classes]));
    }
    v
}

/// Which layout a file has, from its key names.
pub fn detect_layout(src: &dyn TensorSource) -> Result<Layout> {
    let names = src.names();
    let has = |k: &str| names.iter().any(|n| n == k);
    if has("backbone._conv_stem.weight") {
        if !names.iter().any(|n| n.starts_with("mvmf_head.")) && has("backbone._fc.weight") {
            Ok(Layout::EfficientnetPytorch)
        } else {
            Ok(Layout::Visloc)
        }
    } else if has("conv_stem.weight") {
        Ok(Layout::Timm)
    } else if names.iter().any(|n| n.starts_with("mvmf_head.")) {
        Err(Error::weights(
            src.describe(),
            "holds only the visloc head: pass efficientnet_backbone.pt as well (--weights DIR, or --weights twice)",
        ))
    } else {
        Err(Error::weights(
            src.describe(),
            "is not an EfficientNet weights file: it has neither _conv_stem.weight (efficientnet_pytorch / visloc) nor conv_stem.weight (timm); see weights/README.md",
        ))
    }
}

/// The family: from `--arch` / config.json where given, else from the keys (no SE: Lite).
/// The second value is a note for the user when the keys alone could not tell.
fn detect_family(
    src: &dyn TensorSource,
    layout: Layout,
    opts: &LoadOptions,
) -> Result<(Family, Option<usize>, Option<String>)> {
    if let Some(a) = &opts.arch {
        let Some((family, v)) = parse_arch(a) else {
            return Err(Error::Input(format!(
                "unknown architecture {a:?}: use efficientnet_b0..b7, tf_efficientnet_b0..b7, efficientnet_lite0..4 (or tf_efficientnet_lite0..4), or visloc_b4"
            )));
        };
        return Ok((family, Some(v), None));
    }
    let has_se = src
        .names()
        .iter()
        .any(|n| n.contains("se_reduce") || n.contains("se.conv_reduce"));
    Ok(match (layout, has_se) {
        (_, false) => (Family::Lite, None, None),
        (Layout::Timm, true) => (
            Family::Timm,
            None,
            Some(
                "timm EfficientNet keys: assuming timm's efficientnet_bN (symmetric padding, BN eps 1e-5); for TF-ported weights (tf_efficientnet_bN) pass --arch or keep timm's config.json beside the file".into(),
            ),
        ),
        (l, true) => (l.family(), None, None),
    })
}

/// Which variant the file holds, from the stem width, the number of blocks and the last
/// block's width.
fn detect_variant(
    src: &dyn TensorSource,
    layout: Layout,
    family: Family,
    want: Option<usize>,
) -> Result<ModelCfg> {
    let names = src.names();
    let stem_key = format!("{}.weight", top_keys(layout).stem);
    let stem = src.shape(&stem_key).unwrap_or_default();
    let (blocks_prefix, dw_suffix) = match layout {
        Layout::Visloc | Layout::EfficientnetPytorch => {
            ("backbone._blocks.", "._depthwise_conv.weight")
        }
        Layout::Timm => ("blocks.", ".conv_dw.weight"),
    };
    let nblocks = names
        .iter()
        .filter(|n| n.starts_with(blocks_prefix) && n.ends_with(dw_suffix))
        .count();
    let head = src
        .shape(&format!("{}.weight", top_keys(layout).head))
        .unwrap_or_default();
    for v in 0..variants(family) {
        let cfg = efficientnet(v, family);
        let last = cfg.blocks.last().unwrap().cout;
        if stem.first() == Some(&cfg.stem)
            && cfg.blocks.len() == nblocks
            && head.get(1).is_none_or(|&c| c == last)
            && want.is_none_or(|w| w == v)
        {
            return Ok(cfg);
        }
    }
    let what = match want {
        Some(v) => format!(
            "the architecture given ({})",
            efficientnet(v, family).name()
        ),
        None => format!("any {family:?} EfficientNet"),
    };
    Err(Error::weights(
        src.describe(),
        format!(
            "matches no EfficientNet: {stem_key} has shape {stem:?} and there are {nblocks} blocks, which is not {what}"
        ),
    ))
}

struct Loader<'a> {
    src: &'a dyn TensorSource,
    eps: f64,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f64>> {
        self.checked(name, shape, self.src.get(name)?)
    }

    fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.checked(name, shape, self.src.get_f32(name)?)
    }

    /// The tensor's data, if it exists and has `shape`.
    fn checked<T: Element>(
        &self,
        name: &str,
        shape: &[usize],
        t: Option<RawTensor<T>>,
    ) -> Result<Vec<T>> {
        let t = t.ok_or_else(|| {
            Error::weights(
                self.src.describe(),
                format!("lacks {name} (expected shape {shape:?})"),
            )
        })?;
        if t.shape != shape {
            return Err(Error::weights(
                self.src.describe(),
                format!("tensor {name} has shape {:?}, expected {shape:?}", t.shape),
            ));
        }
        if let Some(i) = t.data.iter().position(|v| !v.is_finite_value()) {
            return Err(Error::weights(
                self.src.describe(),
                format!(
                    "tensor {name} holds a non-finite value ({}) at flat index {i}: the checkpoint is damaged or was saved after training diverged; use another file",
                    t.data[i].describe()
                ),
            ));
        }
        Ok(t.data)
    }

    /// Conv `prefix.weight` of `shape`, with BN `bn` folded: w·γ/√(σ²+ε), β − μ·γ/√(σ²+ε).
    fn conv_bn(&self, prefix: &str, shape: [usize; 4], bn: &str) -> Result<Conv> {
        let w = self.tensor(&format!("{prefix}.weight"), &shape)?;
        let c = shape[0];
        let g = self.tensor(&format!("{bn}.weight"), &[c])?;
        let beta = self.tensor(&format!("{bn}.bias"), &[c])?;
        let mean = self.tensor(&format!("{bn}.running_mean"), &[c])?;
        let var = self.tensor(&format!("{bn}.running_var"), &[c])?;
        let per = w.len() / c;
        let mut wf = vec![0f32; w.len()];
        let mut bf = vec![0f32; c];
        if let Some(o) = (0..c).find(|&o| var[o] + self.eps <= 0.0) {
            return Err(Error::weights(
                self.src.describe(),
                format!(
                    "tensor {bn}.running_var[{o}] = {} makes running_var + eps (eps {}) ≤ 0, so BN cannot be folded: the statistics are damaged; use another file",
                    var[o], self.eps
                ),
            ));
        }
        for o in 0..c {
            let s = g[o] / (var[o] + self.eps).sqrt();
            for j in 0..per {
                wf[o * per + j] = (w[o * per + j] * s) as f32;
            }
            bf[o] = (beta[o] - mean[o] * s) as f32;
        }
        Ok(Conv { w: wf, b: bf })
    }

    fn conv_bias(&self, prefix: &str, shape: [usize; 4]) -> Result<Conv> {
        let w = self.tensor(&format!("{prefix}.weight"), &shape)?;
        let b = self.tensor(&format!("{prefix}.bias"), &[shape[0]])?;
        Ok(Conv {
            w: w.into_iter().map(|v| v as f32).collect(),
            b: b.into_iter().map(|v| v as f32).collect(),
        })
    }
}

/// ImageNet class names, in index order.
pub fn imagenet_labels() -> Vec<String> {
    include_str!("../../weights/imagenet_labels.txt")
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

/// Load and check every tensor, fold BN.
pub fn load(src: &dyn TensorSource) -> Result<Weights> {
    load_with(src, &LoadOptions::default())
}

/// [`load`] with what the caller knows (the architecture's name).
pub fn load_with(src: &dyn TensorSource, opts: &LoadOptions) -> Result<Weights> {
    let layout = detect_layout(src)?;
    let (family, want, note) = detect_family(src, layout, opts)?;
    let has_se = src
        .names()
        .iter()
        .any(|n| n.contains("se_reduce") || n.contains("se.conv_reduce"));
    if has_se && !family.has_se() {
        return Err(Error::weights(
            src.describe(),
            format!(
                "has squeeze-excite tensors, which {} does not have: check --arch (or the config.json beside the file)",
                opts.arch.as_deref().unwrap_or("an EfficientNet-Lite")
            ),
        ));
    }
    let cfg = detect_variant(src, layout, family, want)?;
    let t = top_keys(layout);
    let fc_key = format!("{}.weight", t.fc);
    let n = match src.shape(&fc_key) {
        Some(s) if s.len() == 2 && s[1] == cfg.head && s[0] > 0 => s[0],
        Some(s) => {
            return Err(Error::weights(
                src.describe(),
                format!(
                    "tensor {fc_key} has shape {s:?}, expected [N, {}]",
                    cfg.head
                ),
            ));
        }
        None => {
            return Err(Error::weights(
                src.describe(),
                format!(
                    "lacks {fc_key} (expected shape [N, {}]): the head is missing{}",
                    cfg.head,
                    if layout == Layout::Visloc {
                        "; for visloc pass mvmf_head.pt as well (--weights DIR, or --weights twice)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    };
    let ld = Loader {
        src,
        eps: cfg.bn_eps(),
    };
    let stem = ld.conv_bn(t.stem, [cfg.stem, 3, 3, 3], t.bn_stem)?;
    let mut blocks = Vec::new();
    for (i, b) in cfg.blocks.iter().enumerate() {
        let k = block_keys(layout, i, b);
        let cm = b.cmid();
        let expand = if b.expand != 1 {
            Some(ld.conv_bn(&k.expand, [cm, b.cin, 1, 1], &k.bn_expand)?)
        } else {
            None
        };
        let se = if b.has_se() {
            Some((
                ld.conv_bias(&k.se_r, [b.cse, cm, 1, 1])?,
                ld.conv_bias(&k.se_x, [cm, b.cse, 1, 1])?,
            ))
        } else {
            None
        };
        blocks.push(BlockWeights {
            expand,
            dw: ld.conv_bn(&k.dw, [cm, 1, b.k, b.k], &k.bn_dw)?,
            se,
            project: ld.conv_bn(&k.project, [b.cout, cm, 1, 1], &k.bn_project)?,
        });
    }
    let last = cfg.blocks.last().unwrap().cout;
    let head_conv = ld.conv_bn(t.head, [cfg.head, last, 1, 1], t.bn_head)?;
    let w = ld.tensor_f32(&fc_key, &[n, cfg.head])?;
    let b: Vec<f32> = ld
        .tensor(&format!("{}.bias", t.fc), &[n])?
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let kind = match layout {
        Layout::Visloc => {
            let mus = ld.tensor("mvmf_head.mvmf.mus", &[2, n])?;
            HeadKind::Geo {
                lat: mus[..n].to_vec(),
                lon: mus[n..].to_vec(),
            }
        }
        Layout::Timm | Layout::EfficientnetPytorch => {
            let labels = imagenet_labels();
            HeadKind::Labels(if labels.len() == n {
                labels
            } else {
                (0..n).map(|i| format!("class {i}")).collect()
            })
        }
    };
    let mut notes: Vec<String> = note.into_iter().collect();
    if layout == Layout::EfficientnetPytorch && cfg.family != Family::Lite {
        notes.push(format!(
            "{} is an efficientnet_pytorch backbone with its own ImageNet classifier (_fc) and no visloc head: this explains ImageNet classes; for geolocation pass mvmf_head.pt as well",
            src.describe()
        ));
    }
    let preprocessing = opts
        .preprocessing
        .unwrap_or_else(|| default_preprocessing(layout, &cfg));
    let retrieval = if opts.retrieval {
        Some(std::sync::Arc::new(load_retrieval(&ld, layout, cfg.head)?))
    } else {
        None
    };
    Ok(Weights {
        cfg,
        layout,
        stem,
        blocks,
        head_conv,
        classifier: Classifier { n, w, b, kind },
        source: src.describe(),
        notes,
        preprocessing,
        retrieval,
    })
}

/// visloc's retrieval head (`rrm_head.*`): d = the backbone's feature size, the hidden size
/// from `res.fc1.weight`.
fn load_retrieval(
    ld: &Loader,
    layout: Layout,
    d: usize,
) -> Result<super::retrieval::RetrievalWeights> {
    use super::retrieval::{RetrievalWeights, tensor_names};
    let fc1 = "rrm_head.res.fc1.weight";
    let missing = || {
        Error::weights(
            ld.src.describe(),
            "has no retrieval head (rrm_head.* tensors): pass visloc's rrm_head.pt too, e.g. --weights DIR with efficientnet_backbone.pt, mvmf_head.pt and rrm_head.pt".to_string(),
        )
    };
    if layout != Layout::Visloc {
        return Err(missing());
    }
    let h = match ld.src.shape(fc1) {
        Some(s) if s.len() == 2 && s[1] == d && s[0] > 0 => s[0],
        Some(s) => {
            return Err(Error::weights(
                ld.src.describe(),
                format!(
                    "tensor {fc1} has shape {s:?}, expected [hidden, {d}] (the backbone's {d} features)"
                ),
            ));
        }
        None => return Err(missing()),
    };
    let t = tensor_names(d, h)
        .iter()
        .map(|(name, shape)| ld.tensor_f32(name, shape))
        .collect::<Result<Vec<_>>>()?;
    Ok(RetrievalWeights::from_tensors(d, h, t))
}

/// Load one weights file of any format (see `checkpoint::open_file`).
pub fn load_file(path: &Path) -> Result<Weights> {
    load_paths(&[path.to_path_buf()], &LoadOptions::default())
}

/// Load weights from the `--weights` values: files of any format or folders, merged. A
/// timm `config.json` beside a file names the architecture unless `opts` does.
pub fn load_paths(paths: &[std::path::PathBuf], opts: &LoadOptions) -> Result<Weights> {
    let src = super::checkpoint::open(paths)?;
    let mut opts = opts.clone();
    let config = paths.iter().find_map(|p| {
        let dir = if p.is_dir() { p.as_path() } else { p.parent()? };
        read_timm_config(&dir.join("config.json"))
    });
    if let Some((arch, pre)) = config {
        opts.arch = opts.arch.or(arch);
        opts.preprocessing = opts.preprocessing.or(pre);
    }
    load_with(&src, &opts)
}

/// timm's `config.json`: `{"architecture": "tf_efficientnet_b4", "pretrained_cfg":
/// {"test_input_size": [3, 380, 380], "interpolation": "bicubic", "mean": [..], "std": [..]}}`.
fn read_timm_config(path: &Path) -> Option<(Option<String>, Option<Preprocessing>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let arch = v["architecture"].as_str().map(str::to_string);
    let c = &v["pretrained_cfg"];
    let size = c["test_input_size"]
        .as_array()
        .or(c["input_size"].as_array())
        .and_then(|s| s.last()?.as_u64());
    let triple = |k: &str| -> Option<[f32; 3]> {
        let a = c[k].as_array()?;
        Some([
            a.first()?.as_f64()? as f32,
            a.get(1)?.as_f64()? as f32,
            a.get(2)?.as_f64()? as f32,
        ])
    };
    let pre = match (size, triple("mean"), triple("std")) {
        (Some(size), Some(mean), Some(std)) => Some(Preprocessing {
            short_side: size as u32,
            resample: if c["interpolation"].as_str() == Some("bilinear") {
                Resample::Bilinear
            } else {
                Resample::Bicubic
            },
            mean,
            std,
        }),
        _ => None,
    };
    Some((arch, pre))
}

/// What the built-in model is called in messages and reports.
pub const BUILTIN_NAME: &str =
    "built-in EfficientNet-Lite0 (ImageNet, efficientnet-lite0-57934424.pth)";

/// The built-in model: the trained ImageNet EfficientNet-Lite0 shipped in `weights/`,
/// converted by build.rs and embedded in the binary (about 18.6 MB).
pub fn builtin() -> Result<Weights> {
    static BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/builtin-lite0.safetensors"));
    let f = SafetensorsFile::from_bytes(BUILTIN_NAME.into(), BYTES.into())?;
    let src = super::checkpoint::Merged::new(vec![Box::new(f)])?;
    load(&src)
}

/// The deterministic test network (B`variant`, `n_classes` outputs).
pub fn formula(variant: usize, layout: Layout, n_classes: usize) -> Weights {
    formula_for(efficientnet(variant, layout.family()), layout, n_classes)
}

/// The deterministic test network of any architecture.
pub fn formula_for(cfg: ModelCfg, layout: Layout, n_classes: usize) -> Weights {
    let opts = LoadOptions {
        arch: Some(arch_name(&cfg)),
        preprocessing: None,
        retrieval: false,
    };
    load_with(&Formula::new(&cfg, layout, n_classes), &opts)
        .expect("formula weights match their own architecture")
}

/// The deterministic visloc test network B`variant` with its retrieval head.
pub fn formula_with_retrieval(variant: usize, n_classes: usize) -> Weights {
    let cfg = efficientnet(variant, Family::Visloc);
    let opts = LoadOptions {
        arch: Some(arch_name(&cfg)),
        preprocessing: None,
        retrieval: true,
    };
    load_with(&Formula::with_retrieval(&cfg, n_classes), &opts)
        .expect("formula weights match their own architecture")
}

/// The name `parse_arch` reads back as this configuration.
pub fn arch_name(cfg: &ModelCfg) -> String {
    match cfg.family {
        Family::Visloc => format!("visloc_b{}", cfg.variant),
        Family::Timm => format!("efficientnet_b{}", cfg.variant),
        Family::TimmTf => format!("tf_efficientnet_b{}", cfg.variant),
        Family::Lite => format!("efficientnet_lite{}", cfg.variant),
    }
}

/// Every tensor of a safetensors file as f32, and the file's metadata (tests read golden files with it).
pub fn read_safetensors(
    path: &Path,
) -> Result<(
    HashMap<String, (Vec<usize>, Vec<f32>)>,
    HashMap<String, String>,
)> {
    let f = SafetensorsFile::open(path)?;
    let mut out = HashMap::new();
    for name in f.names() {
        let t = f.get_f32(&name)?.expect("listed by the header");
        out.insert(name, (t.shape, t.data));
    }
    Ok((out, f.metadata()))
}
