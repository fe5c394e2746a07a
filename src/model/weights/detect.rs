//! Detection: the key layout, the family and the variant a tensor source holds, and what
//! the caller knows beyond the tensors (`LoadOptions`).

use super::keys::{Layout, top_keys};
use super::source::TensorSource;
use crate::error::{Error, Result};
use crate::model::config::{Family, ModelCfg, efficientnet, variants};
use crate::preprocess::Preprocessing;

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
pub(super) fn detect_family(
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
pub(super) fn detect_variant(
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
