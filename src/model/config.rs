//! EfficientNet B0–B7 architecture from the width/depth multipliers, and the per-family
//! numerics (BN eps, padding rule).

/// Which code the weights were trained with: decides BN eps and key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// `efficientnet_pytorch` 0.7.0 as used by visloc: eps 1e-3, symmetric (k−1)/2 padding.
    Visloc,
    /// timm `efficientnet_bN`: eps 1e-5, symmetric padding ((s−1)+(k−1))/2 = (k−1)/2 here.
    Timm,
}

impl Family {
    pub fn bn_eps(self) -> f64 {
        match self {
            Family::Visloc => 1e-3,
            Family::Timm => 1e-5,
        }
    }
}

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
    /// squeeze channels: max(1, ⌊cin·0.25⌋)
    pub cse: usize,
}

impl BlockCfg {
    pub fn cmid(&self) -> usize {
        self.cin * self.expand
    }
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
    pub fn pad(&self) -> usize {
        (self.k - 1) / 2
    }
    /// The depthwise conv of this block on an ih×iw input.
    pub fn dw_shape(&self, ih: usize, iw: usize) -> crate::ops::depthwise::DwShape {
        crate::ops::depthwise::DwShape {
            c: self.cmid(),
            h: ih,
            w: iw,
            k: self.k,
            stride: self.stride,
            pad: self.pad(),
        }
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
}

impl ModelCfg {
    pub fn bn_eps(&self) -> f64 {
        self.family.bn_eps()
    }
    pub fn name(&self) -> String {
        format!("efficientnet-b{}", self.variant)
    }

    /// Spatial size after the stem and after every block, for an H×W input.
    pub fn sizes(&self, h: usize, w: usize) -> (usize, usize, Vec<(usize, usize)>) {
        let stem = (
            crate::ops::conv::out_size(h, 3, 2, 1),
            crate::ops::conv::out_size(w, 3, 2, 1),
        );
        let mut cur = stem;
        let mut out = Vec::new();
        for b in &self.blocks {
            cur = (
                crate::ops::conv::out_size(cur.0, b.k, b.stride, b.pad()),
                crate::ops::conv::out_size(cur.1, b.k, b.stride, b.pad()),
            );
            out.push(cur);
        }
        (stem.0, stem.1, out)
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

pub fn efficientnet(variant: usize, family: Family) -> ModelCfg {
    assert!(variant < 8, "EfficientNet variants are B0..B7");
    let (width, depth) = MULTIPLIERS[variant];
    let mut blocks = Vec::new();
    for (stage, &(r, k, s, e, i, o)) in BASE.iter().enumerate() {
        let cin = round_filters(i, width);
        let cout = round_filters(o, width);
        let repeats = (depth * r as f64).ceil() as usize;
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
                cse: (bin / 4).max(1),
            });
        }
    }
    ModelCfg {
        variant,
        stem: round_filters(32, width),
        blocks,
        head: round_filters(1280, width),
        family,
    }
}
