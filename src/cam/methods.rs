//! The catalogue of CAM methods and fusion rules. `TABLE` holds everything about a method
//! but its kernels: its name, its default fusion, where it is defined, and the family module
//! that computes it (`channel`: one weight per channel; `elementwise`: a weight per element;
//! `eigen`: the first principal component;
//! masked passes: `app::scorecam`). Adding a gradient method is one line of `method_table!`
//! (which declares the `Method` variant and its `TABLE` row together) and its kernel and CPU
//! reference in its family's module.

use crate::error::{Error, Result};
use crate::ops::hvp::Direction;

/// How the selected blocks' maps become one map (then min-max normalised).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Fusion {
    /// Σ of the upsampled maps (Combi-CAM)
    Sum,
    /// Σ / B
    Mean,
    /// mean of the maps each min-max normalised first (pytorch-grad-cam)
    MeanNormalised,
    /// element-wise max of the normalised maps (torchcam, LayerCAM)
    Max,
    /// element-wise product of the normalised maps (RefineCAM)
    Product,
}

pub const FUSIONS: [Fusion; 5] = [
    Fusion::Sum,
    Fusion::Mean,
    Fusion::MeanNormalised,
    Fusion::Max,
    Fusion::Product,
];

/// The module that computes a method's map at a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// one weight per channel from the gradient, then Σ_k w_k A_k (`cam::channel`)
    Channel,
    /// a weight per element (`cam::elementwise`)
    Elementwise,
    /// the first principal component of the block (`cam::eigen`)
    Eigen,
    /// masked forward passes, no gradient (`app::scorecam`)
    Masked,
    /// terms the backward makes at every BN-folded conv and at the input (`cam::fullgrad`)
    Full,
}

/// Everything about a method but its kernels.
#[derive(Clone, Copy, Debug)]
pub struct MethodInfo {
    pub method: Method,
    /// its `--method` name and the stem of its outputs
    pub name: &'static str,
    /// the fusion it uses unless `--fusion` says otherwise
    pub fusion: Fusion,
    /// defined, or by default computed, at the last block only (the official Grad-CAM++; one
    /// pass per channel makes every block costly for Score-CAM)
    pub last_block: bool,
    pub family: Family,
}

/// The method table: one row per method, which declares both the `Method` variant and its
/// `TABLE` row. Columns: variant, `--method` name and output stem, default fusion, last
/// block only, family.
macro_rules! method_table {
    ($($(#[$doc:meta])* $v:ident: $name:literal, $fusion:ident, $last:literal, $family:ident;)*) => {
        /// A CAM method, computed at every selected block from the block output A and its
        /// gradient g = ∂score/∂A that one forward and one backward give (masked passes for
        /// the Score-CAMs).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum Method {
            $($(#[$doc])* $v,)*
        }

        /// Every method's row, in `Method`'s order.
        pub const TABLE: &[MethodInfo] = &[$(MethodInfo {
            method: Method::$v,
            name: $name,
            fusion: Fusion::$fusion,
            last_block: $last,
            family: Family::$family,
        },)*];
    };
}

method_table! {
    /// w_k = mean g; ReLU(Σ w_k A_k)
    GradCam: "gradcam", Sum, false, Channel;
    /// Grad-CAM++ as pytorch-grad-cam 1.5 computes it
    GradCamPP: "gradcampp", Sum, false, Channel;
    /// w_k = Σ g·A / (Σ A + 1e-7)
    XGradCam: "xgradcam", Sum, false, Channel;
    /// ReLU(Σ_k g_k ⊙ A_k)
    HiResCam: "hirescam", Sum, false, Elementwise;
    /// Σ_k ReLU(g_k ⊙ A_k) (pytorch-grad-cam's GradCAMElementWise)
    GradCamElementwise: "gradcam-elementwise", Sum, false, Elementwise;
    /// FEM (pytorch-grad-cam's, k = 2): w_k = the share of positions where A_k > mean(A_k) +
    /// 2·std(A_k); no gradient
    Fem: "fem", Sum, false, Channel;
    /// ReLU(Σ_k ReLU(g_k) ⊙ A_k)
    LayerCam: "layercam", Max, false, Elementwise;
    /// FinerCAM (pytorch-grad-cam's, α = 1): Grad-CAM of its own score, Σ_j p_j(y_c −
    /// y_j)/(Σ_j p_j + 1e-9) over the `--comparison` classes j nearest to c by logit
    FinerCam: "finercam", Sum, false, Channel;
    /// EigenCAM: the centred activations projected on their first principal direction, the
    /// sign by Seg-Eigen-CAM's rule; no gradient
    EigenCam: "eigencam", Sum, false, Eigen;
    /// EigenGradCAM: the same of g ⊙ A
    EigenGradCam: "eigengradcam", Sum, false, Eigen;
    /// KPCA-CAM (pytorch-grad-cam's): kernel PCA's first component of the centred A (sigmoid
    /// kernel, γ = 1/C, scikit-learn's KernelPCA defaults), at blocks of at most 4,096
    /// positions; no gradient
    KpcaCam: "kpcacam", Sum, false, Eigen;
    /// the official Combi-CAM repository's LayerCAM: gradients divided by the block's max
    LayerCamOfficial: "layercam-official", Mean, false, Elementwise;
    /// the official repository's Grad-CAM++, on the last block only: a = g²/(2g² + h·g +
    /// 1e-10)·ReLU(g) with h = ∂(Σ g)/∂A, the head's Hessian-vector product
    GradCamPPOfficial: "gradcampp-official", Sum, true, Channel;
    /// ShapleyCAM (pytorch-grad-cam's), on the last block only: w_k = mean (g − ½·H·A), H·A
    /// the head's Hessian-vector product along A
    ShapleyCam: "shapleycam", Sum, true, Channel;
    /// Score-CAM (pytorch-grad-cam): one masked forward pass per channel, no gradient
    ScoreCam: "scorecam", Sum, true, Masked;
    /// the official repository's Score-CAM: raw masks, the probabilities as weights
    ScoreCamOfficial: "scorecam-official", Sum, true, Masked;
    /// AblationCAM (pytorch-grad-cam's, the ablated channel set to 0): w_k = (y − y_k)/y, y_k
    /// the score with channel k of the block output set to 0 and the network run on from the
    /// next block (one masked pass per channel, no gradient)
    AblationCam: "ablationcam", Sum, true, Masked;
    /// FullGrad (pytorch-grad-cam's): |x ⊙ ∂y/∂x| and |b ⊙ ∂y/∂z| at every BN-folded conv
    /// output z, each channel min-max normalised and summed; block l's map holds the terms at
    /// its resolution (its depthwise and projection, the next block's expansion; the stem at
    /// block 0, the head at the last), the input term joins the fused sum
    FullGrad: "fullgrad", Sum, false, Full;
}

/// Whether a row is a gradient method defined at every block.
const fn every_block_gradient(i: &MethodInfo) -> bool {
    !i.last_block && !matches!(i.family, Family::Masked | Family::Full)
}

const fn count_every_block() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < TABLE.len() {
        if every_block_gradient(&TABLE[i]) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The gradient methods defined at every block, in table order: the rows neither masked nor
/// last-block-only, nor FullGrad (whose maps are of the whole backward, not of a block's A
/// and g).
pub const METHODS: [Method; count_every_block()] = {
    let mut out = [Method::GradCam; count_every_block()];
    let (mut i, mut n) = (0, 0);
    while i < TABLE.len() {
        if every_block_gradient(&TABLE[i]) {
            out[n] = TABLE[i].method;
            n += 1;
        }
        i += 1;
    }
    out
};

impl Method {
    /// Its row of `TABLE`.
    pub fn info(self) -> &'static MethodInfo {
        &TABLE[self as usize] // the macro writes the rows in the variants' order
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Made of masked forward passes (`app::scorecam`) rather than the plan's backward.
    pub fn is_score_cam(self) -> bool {
        self.info().family == Family::Masked
    }

    /// Defined, or by default computed, at the last block only.
    pub fn last_block_by_default(self) -> bool {
        self.info().last_block
    }

    /// The fusion a method uses unless `--fusion` says otherwise.
    pub fn default_fusion(self) -> Fusion {
        self.info().fusion
    }

    /// The module that computes its map.
    pub fn family(self) -> Family {
        self.info().family
    }

    pub fn parse(s: &str) -> Result<Method> {
        let t = s.trim().to_lowercase().replace('_', "-");
        let t = match t.as_str() {
            "grad-cam" => "gradcam",
            "gradcam++" | "grad-cam++" => "gradcampp",
            other => other,
        }
        .to_string();
        TABLE
            .iter()
            .map(|i| i.method)
            .find(|m| m.name() == t)
            .ok_or_else(|| {
                let names: Vec<String> = TABLE
                    .iter()
                    .map(|i| match i.last_block && i.family != Family::Masked {
                        true => format!("{} (last block)", i.name),
                        false => i.name.to_string(),
                    })
                    .collect();
                Error::Input(format!(
                    "unknown CAM method {s:?}: use {}",
                    names.join(", ")
                ))
            })
    }
}

impl Fusion {
    pub fn name(self) -> &'static str {
        match self {
            Fusion::Sum => "sum",
            Fusion::Mean => "mean",
            Fusion::MeanNormalised => "mean-normalised",
            Fusion::Max => "max",
            Fusion::Product => "product",
        }
    }

    /// The value of `RULE` in shaders/cam_fusion.wgsl.
    pub fn code(self) -> u32 {
        match self {
            Fusion::Sum => 0,
            Fusion::Mean => 1,
            Fusion::MeanNormalised => 2,
            Fusion::Max => 3,
            Fusion::Product => 4,
        }
    }

    pub fn parse(s: &str) -> Result<Fusion> {
        let t = s.trim().to_lowercase().replace('_', "-");
        let t = if t == "mean-normalized" {
            "mean-normalised".to_string()
        } else {
            t
        };
        FUSIONS
            .iter()
            .copied()
            .find(|f| f.name() == t)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown fusion rule {s:?}: use {}",
                    FUSIONS.map(|f| f.name()).join(", ")
                ))
            })
    }
}

/// One method with its fusion rule: what a plan computes and an output is named after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Explainer {
    pub method: Method,
    pub fusion: Fusion,
}

impl Explainer {
    /// Grad-CAM fused by the sum: Combi-CAM, the default.
    pub const COMBICAM: Explainer = Explainer {
        method: Method::GradCam,
        fusion: Fusion::Sum,
    };

    /// `m` with its default fusion.
    pub fn of(m: Method) -> Explainer {
        Explainer {
            method: m,
            fusion: m.default_fusion(),
        }
    }

    /// The fused map's name in outputs: `combicam` for Combi-CAM (its meaning is kept),
    /// else the method's name, with the rule when it is not the method's default.
    pub fn fused_name(&self) -> String {
        if *self == Explainer::COMBICAM {
            "combicam".into()
        } else if self.fusion == self.method.default_fusion() {
            format!("{}.fused", self.method.name())
        } else {
            format!("{}.{}.fused", self.method.name(), self.fusion.name())
        }
    }
}

impl Method {
    /// The direction of the head's Hessian-vector product the method reads, if any.
    pub fn hvp_direction(self) -> Option<Direction> {
        match self {
            Method::GradCamPPOfficial => Some(Direction::Ones),
            Method::ShapleyCam => Some(Direction::Activations),
            _ => None,
        }
    }
}

/// The directions of the head's Hessian-vector products the explainers read.
pub fn needs_hvp(explainers: &[Explainer]) -> Vec<Direction> {
    let mut dirs: Vec<Direction> = Vec::new();
    for d in explainers.iter().filter_map(|e| e.method.hvp_direction()) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// The methods from the head's Hessian-vector product are defined on the last block only
/// (of `nb`); the official Grad-CAM++ for the probability score alone, ShapleyCAM for the
/// probability or the logit (`score_mode`: `Score::code`'s, 0 and 1): the one-line error
/// otherwise.
pub fn check_official(
    explainers: &[Explainer],
    blocks: &[usize],
    nb: usize,
    score_mode: u32,
) -> Result<()> {
    for e in explainers
        .iter()
        .filter(|e| e.method.hvp_direction().is_some())
    {
        let name = e.method.name();
        if blocks != [nb - 1] {
            return Err(Error::Input(format!(
                "{name} is defined on the last block only: pass --blocks {} and no other blocks",
                nb - 1
            )));
        }
        match (e.method, score_mode) {
            (_, 0) | (Method::ShapleyCam, 1) => {}
            (Method::ShapleyCam, _) => {
                return Err(Error::Input(
                    "shapleycam differentiates the probability or the logit: use --score prob or --score logit".into(),
                ));
            }
            _ => {
                return Err(Error::Input(format!(
                    "{name} differentiates the probability, as the official code does: drop --score"
                )));
            }
        }
    }
    Ok(())
}

/// `--method a,b --fusion RULE` as explainers (defaults: Combi-CAM).
pub fn parse_explainers(methods: Option<&str>, fusion: Option<&str>) -> Result<Vec<Explainer>> {
    let fusion = fusion.map(Fusion::parse).transpose()?;
    let list: Vec<Method> = match methods {
        Some(s) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Method::parse)
            .collect::<Result<_>>()?,
        None => vec![Method::GradCam],
    };
    if list.is_empty() {
        return Err(Error::Input(
            "--method is empty: name at least one method, e.g. gradcam".into(),
        ));
    }
    let mut out: Vec<Explainer> = Vec::new();
    for m in list {
        let e = Explainer {
            method: m,
            fusion: fusion.unwrap_or(m.default_fusion()),
        };
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// How far apart each image's share of a CAM phase's buffers lies when the phase runs over a
/// batch of images (workgroup z = the image; the block outputs and gradients are C·HW an
/// image, the fused maps H·W): the channel weights of all selected blocks, the maps of all
/// selected blocks (or, for a rule that fuses the groups' sums, those sums: the launchers
/// switch), and the model's blocks (`act_maxabs`, FullGrad-free statistics). All zero for one
/// image: every image then finds its share at 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageStrides {
    pub weights: usize,
    pub maps: usize,
    pub blocks: usize,
}
