//! Loading: every tensor checked against the architecture, converted to f32, BN folded into
//! the convolutions; the files users pass (`load_paths`) and the built-in model.

use super::checkpoint;
use super::detect::{LoadOptions, detect_family, detect_layout, detect_variant};
use super::keys::{Layout, block_keys, top_keys};
use super::network::{BlockWeights, Classifier, Conv, HeadKind, Weights};
use super::source::{Element, RawTensor, SafetensorsFile, TensorSource};
use crate::error::{Error, Result};
use crate::model::config::{Family, ModelCfg};
use crate::model::retrieval::{RetrievalWeights, tensor_names};
use crate::preprocess::{Preprocessing, Resample};
use std::path::Path;

/// The image sizes EfficientNet-B0–B7 were trained at (timm's and efficientnet_pytorch's).
pub const B_IMAGE_SIZE: [u32; 8] = [224, 240, 260, 300, 380, 456, 528, 600];

/// What a family's reference code does to a photo, when the checkpoint does not say.
pub fn default_preprocessing(layout: Layout, cfg: &ModelCfg) -> Preprocessing {
    let v = cfg.variant;
    match (layout, cfg.family) {
        (_, Family::Lite) => Preprocessing {
            short_side: crate::model::config::LITE_IMAGE_SIZE[v] as u32,
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
    include_str!("../../../weights/imagenet_labels.txt")
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

/// Load and check every tensor, fold BN.
pub fn load(src: &dyn TensorSource) -> Result<Weights> {
    load_with(src, &LoadOptions::default())
}

/// [`load`] with what the caller knows (the architecture's name). The stages: detect the
/// layout, family and variant; find the classifier's size; load the backbone, the classifier
/// and (asked for) the retrieval head.
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
    let n = classifier_size(src, layout, &cfg)?;
    let ld = Loader {
        src,
        eps: cfg.bn_eps(),
    };
    let (stem, blocks, head_conv) = ld.backbone(layout, &cfg)?;
    let classifier = ld.classifier(layout, &cfg, n)?;
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
        classifier,
        source: src.describe(),
        notes,
        preprocessing,
        retrieval,
    })
}

/// The classifier's outputs N, from its weight's shape (N, K).
fn classifier_size(src: &dyn TensorSource, layout: Layout, cfg: &ModelCfg) -> Result<usize> {
    let fc_key = format!("{}.weight", top_keys(layout).fc);
    match src.shape(&fc_key) {
        Some(s) if s.len() == 2 && s[1] == cfg.head && s[0] > 0 => Ok(s[0]),
        Some(s) => Err(Error::weights(
            src.describe(),
            format!(
                "tensor {fc_key} has shape {s:?}, expected [N, {}]",
                cfg.head
            ),
        )),
        None => Err(Error::weights(
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
        )),
    }
}

impl Loader<'_> {
    /// The stem, every block and the head's conv, BN folded.
    fn backbone(&self, layout: Layout, cfg: &ModelCfg) -> Result<(Conv, Vec<BlockWeights>, Conv)> {
        let t = top_keys(layout);
        let stem = self.conv_bn(t.stem, [cfg.stem, 3, 3, 3], t.bn_stem)?;
        let mut blocks = Vec::new();
        for (i, b) in cfg.blocks.iter().enumerate() {
            let k = block_keys(layout, i, b);
            let cm = b.cmid();
            let expand = if b.expand != 1 {
                Some(self.conv_bn(&k.expand, [cm, b.cin, 1, 1], &k.bn_expand)?)
            } else {
                None
            };
            let se = if b.has_se() {
                Some((
                    self.conv_bias(&k.se_r, [b.cse, cm, 1, 1])?,
                    self.conv_bias(&k.se_x, [cm, b.cse, 1, 1])?,
                ))
            } else {
                None
            };
            blocks.push(BlockWeights {
                expand,
                dw: self.conv_bn(&k.dw, [cm, 1, b.k, b.k], &k.bn_dw)?,
                se,
                project: self.conv_bn(&k.project, [b.cout, cm, 1, 1], &k.bn_project)?,
            });
        }
        let last = cfg.blocks.last().unwrap().cout;
        let head_conv = self.conv_bn(t.head, [cfg.head, last, 1, 1], t.bn_head)?;
        Ok((stem, blocks, head_conv))
    }

    /// The classifier (N outputs) and what they mean: visloc's cells with their centres, or
    /// ImageNet's labels.
    fn classifier(&self, layout: Layout, cfg: &ModelCfg, n: usize) -> Result<Classifier> {
        let fc = top_keys(layout).fc;
        let w = self.tensor_f32(&format!("{fc}.weight"), &[n, cfg.head])?;
        let b: Vec<f32> = self
            .tensor(&format!("{fc}.bias"), &[n])?
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let kind = match layout {
            Layout::Visloc => {
                let mus = self.tensor("mvmf_head.mvmf.mus", &[2, n])?;
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
        Ok(Classifier { n, w, b, kind })
    }
}

/// visloc's retrieval head (`rrm_head.*`): d = the backbone's feature size, the hidden size
/// from `res.fc1.weight`.
fn load_retrieval(ld: &Loader, layout: Layout, d: usize) -> Result<RetrievalWeights> {
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
    let src = checkpoint::open(paths)?;
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
/// converted by build.rs and embedded in the binary (about 18.6 MB). Read and checked once per
/// process; later calls copy it.
pub fn builtin() -> Result<Weights> {
    static BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/builtin-lite0.safetensors"));
    static LOADED: std::sync::OnceLock<Weights> = std::sync::OnceLock::new();
    if let Some(w) = LOADED.get() {
        return Ok(w.clone());
    }
    let f = SafetensorsFile::from_bytes(BUILTIN_NAME.into(), BYTES.into())?;
    let src = checkpoint::Merged::new(vec![Box::new(f)])?;
    let w = load(&src)?;
    Ok(LOADED.get_or_init(|| w).clone())
}
