//! EfficientNet B0–B7 architecture from the width/depth multipliers, and the per-family
//! numerics (BN eps, padding rule).

/// Which code the weights were trained with: decides BN eps, activation, SE and padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// `efficientnet_pytorch` 0.7.0 as used by visloc: eps 1e-3, symmetric (k−1)/2 padding.
    Visloc,
    /// timm `efficientnet_bN`: eps 1e-5, symmetric padding ((s−1)+(k−1))/2 = (k−1)/2 here.
    Timm,
    /// timm `tf_efficientnet_bN` (TF ports, incl. noisy student): eps 1e-3, TF "SAME" padding.
    TimmTf,
    /// EfficientNet-Lite0–4: ReLU6, no SE, eps 1e-3, TF "SAME" padding, fixed stem and head.
    Lite,
}

pub use crate::ops::Act;

impl Family {
    pub fn bn_eps(self) -> f64 {
        match self {
            Family::Visloc | Family::TimmTf | Family::Lite => 1e-3,
            Family::Timm => 1e-5,
        }
    }
    pub fn act(self) -> Act {
        match self {
            Family::Lite => Act::Relu6,
            _ => Act::Silu,
        }
    }
    pub fn has_se(self) -> bool {
        self != Family::Lite
    }
}

pub use crate::ops::pad::{PadRule, pad_out, pads_2d, tf_same};

/// One MBConv block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCfg {
    pub stage: usize,
    /// index inside its stage (timm names blocks `blocks.{stage}.{index}`)
    pub index: usize,
    pub cin: usize,
    pub cout: usize,
    pub expand: usize,
    pub k: usize,
    pub stride: usize,
    /// squeeze channels: max(1, ⌊cin·0.25⌋); 0 when the block has no squeeze-excite
    pub cse: usize,
    /// how its depthwise conv pads
    pub pad: PadRule,
}

impl BlockCfg {
    pub fn cmid(&self) -> usize {
        self.cin * self.expand
    }
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
    pub fn has_se(&self) -> bool {
        self.cse > 0
    }
    /// (pad top, pad left, out h, out w) of the depthwise conv on an ih×iw input.
    pub fn pads(&self, ih: usize, iw: usize) -> (usize, usize, usize, usize) {
        pads_2d(ih, iw, self.k, self.stride, self.pad)
    }
    /// The depthwise conv of this block on an ih×iw input.
    pub fn dw_shape(&self, ih: usize, iw: usize) -> crate::ops::depthwise::DwShape {
        crate::ops::depthwise::DwShape::new(self.cmid(), ih, iw, self.k, self.stride, self.pad)
    }

    /// The squeeze-excite of this block over `hw` depthwise outputs.
    pub fn se_shape(&self, hw: usize) -> crate::ops::se::SeShape {
        crate::ops::se::SeShape {
            cmid: self.cmid(),
            cse: self.cse,
            hw,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelCfg {
    pub variant: usize,
    pub stem: usize,
    pub blocks: Vec<BlockCfg>,
    pub head: usize,
    pub family: Family,
    /// how the stem conv pads
    pub stem_pad: PadRule,
}

impl ModelCfg {
    pub fn bn_eps(&self) -> f64 {
        self.family.bn_eps()
    }
    pub fn name(&self) -> String {
        match self.family {
            Family::Visloc => format!("efficientnet-b{}", self.variant),
            Family::Timm => format!("efficientnet_b{}", self.variant),
            Family::TimmTf => format!("tf_efficientnet_b{}", self.variant),
            Family::Lite => format!("efficientnet-lite{}", self.variant),
        }
    }

    /// The stem conv (3×3, stride 2) on an H×W input: (pad top, pad left, out h, out w).
    pub fn stem_pads(&self, h: usize, w: usize) -> (usize, usize, usize, usize) {
        pads_2d(h, w, 3, 2, self.stem_pad)
    }

    /// Spatial size after the stem and after every block, for an H×W input.
    pub fn sizes(&self, h: usize, w: usize) -> (usize, usize, Vec<(usize, usize)>) {
        let (_, _, sh, sw) = self.stem_pads(h, w);
        let mut cur = (sh, sw);
        let mut out = Vec::new();
        for b in &self.blocks {
            let (_, _, oh, ow) = b.pads(cur.0, cur.1);
            cur = (oh, ow);
            out.push(cur);
        }
        (sh, sw, out)
    }

    /// Forward multiply-adds for an H×W input, backbone only.
    pub fn macs(&self, h: usize, w: usize) -> f64 {
        let (sh, sw, sizes) = self.sizes(h, w);
        let mut macs = (sh * sw * self.stem * 27) as f64;
        let mut prev = (sh, sw);
        for (b, &(oh, ow)) in self.blocks.iter().zip(&sizes) {
            let (ih, iw) = prev;
            let cm = b.cmid();
            if b.expand != 1 {
                macs += (ih * iw * b.cin * cm) as f64;
            }
            macs += (oh * ow * cm * b.k * b.k) as f64
                + (2 * cm * b.cse) as f64
                + (oh * ow * cm * b.cout) as f64;
            prev = (oh, ow);
        }
        macs + (prev.0 * prev.1 * self.blocks.last().unwrap().cout * self.head) as f64
    }
}

/// (width, depth) multipliers of efficientnet_pytorch / timm.
pub const MULTIPLIERS: [(f64, f64); 8] = [
    (1.0, 1.0),
    (1.0, 1.1),
    (1.1, 1.2),
    (1.2, 1.4),
    (1.4, 1.8),
    (1.6, 2.2),
    (1.8, 2.6),
    (2.0, 3.1),
];

/// Base stages: (repeats, kernel, stride, expand, in, out).
const BASE: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// efficientnet_pytorch `round_filters` (divisor 8).
pub fn round_filters(f: usize, width: f64) -> usize {
    let f = f as f64 * width;
    let mut new = (((f + 4.0) as usize) / 8 * 8).max(8);
    if (new as f64) < 0.9 * f {
        new += 8;
    }
    new
}

/// (width, depth) multipliers of EfficientNet-Lite0–4.
pub const LITE_MULTIPLIERS: [(f64, f64); 5] =
    [(1.0, 1.0), (1.0, 1.1), (1.1, 1.2), (1.2, 1.4), (1.4, 1.8)];

/// The image size EfficientNet-Lite0–4 were trained at (the short side photos are resized to).
pub const LITE_IMAGE_SIZE: [usize; 5] = [224, 240, 260, 280, 300];

impl Family {
    /// How the family's convs pad: symmetric for efficientnet_pytorch and timm's
    /// `efficientnet_*`; TF "SAME" at the actual input size for the TF ports and every Lite
    /// (what TensorFlow computes for the trained weights; efficientnet_lite_pytorch agrees
    /// when built with `image_size` = the input's (H, W)).
    pub fn padding(self) -> PadRule {
        match self {
            Family::Visloc | Family::Timm => PadRule::Symmetric,
            Family::TimmTf | Family::Lite => PadRule::TfSame,
        }
    }
}

/// How many variants a family has (B0–B7, Lite0–4).
pub fn variants(family: Family) -> usize {
    match family {
        Family::Lite => LITE_MULTIPLIERS.len(),
        _ => MULTIPLIERS.len(),
    }
}

pub fn efficientnet(variant: usize, family: Family) -> ModelCfg {
    assert!(variant < variants(family), "no such EfficientNet variant");
    let pad = family.padding();
    let lite = family == Family::Lite;
    let (width, depth) = if lite {
        LITE_MULTIPLIERS[variant]
    } else {
        MULTIPLIERS[variant]
    };
    let mut blocks = Vec::new();
    for (stage, &(r, k, s, e, i, o)) in BASE.iter().enumerate() {
        let cin = round_filters(i, width);
        let cout = round_filters(o, width);
        // Lite keeps the first and last stage at one block
        let fixed = lite && (stage == 0 || stage == BASE.len() - 1);
        let repeats = if fixed {
            r
        } else {
            (depth * r as f64).ceil() as usize
        };
        for j in 0..repeats {
            let bin = if j == 0 { cin } else { cout };
            blocks.push(BlockCfg {
                stage,
                index: j,
                cin: bin,
                cout,
                expand: e,
                k,
                stride: if j == 0 { s } else { 1 },
                cse: if family.has_se() { (bin / 4).max(1) } else { 0 },
                pad,
            });
        }
    }
    ModelCfg {
        variant,
        // Lite: stem 32 and head 1280 whatever the width
        stem: if lite { 32 } else { round_filters(32, width) },
        blocks,
        head: if lite {
            1280
        } else {
            round_filters(1280, width)
        },
        family,
        stem_pad: pad,
    }
}
