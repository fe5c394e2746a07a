//! Key layouts: the names each layout (visloc, efficientnet_pytorch, timm) gives every
//! tensor of an architecture.

use crate::model::config::{BlockCfg, Family, ModelCfg};

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

/// Key names of one block.
pub(super) struct BlockKeys {
    pub(super) expand: String,
    pub(super) bn_expand: String,
    pub(super) dw: String,
    pub(super) bn_dw: String,
    pub(super) se_r: String,
    pub(super) se_x: String,
    pub(super) project: String,
    pub(super) bn_project: String,
}

pub(super) fn block_keys(layout: Layout, i: usize, b: &BlockCfg) -> BlockKeys {
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

pub(super) struct TopKeys {
    pub(super) stem: &'static str,
    pub(super) bn_stem: &'static str,
    pub(super) head: &'static str,
    pub(super) bn_head: &'static str,
    pub(super) fc: &'static str,
}

pub(super) fn top_keys(layout: Layout) -> TopKeys {
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

pub(super) const BN_PARTS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

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
