//! The catalogue of CAM methods and fusion rules. `TABLE` holds everything about a method
//! but its kernels: its name, its default fusion, where it is defined, and the family module
//! that computes it (`channel`: one weight per channel; `elementwise`: a weight per element;
//! masked passes: `app::scorecam`). Adding a gradient method is a variant below, one row of
//! `TABLE`, and its kernel and CPU reference in its family's module.

use crate::error::{Error, Result};

/// A gradient-based CAM method, computed at every selected block from the block output A and
/// its gradient g = ∂score/∂A that one forward and one backward give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Method {
    /// w_k = mean g; ReLU(Σ w_k A_k)
    GradCam,
    /// Grad-CAM++ as pytorch-grad-cam 1.5 computes it
    GradCamPP,
    /// w_k = Σ g·A / (Σ A + 1e-7)
    XGradCam,
    /// ReLU(Σ_k g_k ⊙ A_k)
    HiResCam,
    /// ReLU(Σ_k ReLU(g_k) ⊙ A_k)
    LayerCam,
    /// the official Combi-CAM repository's LayerCAM: gradients divided by the block's max
    LayerCamOfficial,
    /// the official repository's Grad-CAM++, on the last block only: a = g²/(2g² + h·g +
    /// 1e-10)·ReLU(g) with h = ∂(Σ g)/∂A, the head's Hessian-vector product
    GradCamPPOfficial,
    /// Score-CAM (pytorch-grad-cam): one masked forward pass per channel, no gradient
    ScoreCam,
    /// the official repository's Score-CAM: raw masks, the probabilities as weights
    ScoreCamOfficial,
}

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

/// The gradient methods defined at every block: the rows of `TABLE` neither masked nor
/// last-block-only (a test holds the two together).
pub const METHODS: [Method; 6] = [
    Method::GradCam,
    Method::GradCamPP,
    Method::XGradCam,
    Method::HiResCam,
    Method::LayerCam,
    Method::LayerCamOfficial,
];

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
    /// masked forward passes, no gradient (`app::scorecam`)
    Masked,
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

/// The method table: one row per method.
pub const TABLE: [MethodInfo; 9] = {
    use Family::*;
    use Method::*;
    const fn row(
        method: Method,
        name: &'static str,
        fusion: Fusion,
        last_block: bool,
        family: Family,
    ) -> MethodInfo {
        MethodInfo {
            method,
            name,
            fusion,
            last_block,
            family,
        }
    }
    [
        row(GradCam, "gradcam", Fusion::Sum, false, Channel),
        row(GradCamPP, "gradcampp", Fusion::Sum, false, Channel),
        row(XGradCam, "xgradcam", Fusion::Sum, false, Channel),
        row(HiResCam, "hirescam", Fusion::Sum, false, Elementwise),
        row(LayerCam, "layercam", Fusion::Max, false, Elementwise),
        row(
            LayerCamOfficial,
            "layercam-official",
            Fusion::Mean,
            false,
            Elementwise,
        ),
        row(
            GradCamPPOfficial,
            "gradcampp-official",
            Fusion::Sum,
            true,
            Channel,
        ),
        row(ScoreCam, "scorecam", Fusion::Sum, true, Masked),
        row(
            ScoreCamOfficial,
            "scorecam-official",
            Fusion::Sum,
            true,
            Masked,
        ),
    ]
};

impl Method {
    /// Its row of `TABLE`.
    pub fn info(self) -> &'static MethodInfo {
        TABLE
            .iter()
            .find(|i| i.method == self)
            .expect("every method has a row in TABLE")
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
        TABLE.iter().map(|i| i.method).find(|m| m.name() == t).ok_or_else(|| {
            Error::Input(format!(
                "unknown CAM method {s:?}: use {}, gradcampp-official (last block), scorecam, scorecam-official",
                METHODS.map(|m| m.name()).join(", "),
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

/// Whether any explainer is the official Grad-CAM++ (which needs the head's HVP).
pub fn needs_hvp(explainers: &[Explainer]) -> bool {
    explainers
        .iter()
        .any(|e| e.method == Method::GradCamPPOfficial)
}

/// The official Grad-CAM++ is defined on the last block only (of `nb`), and for the
/// probability score (`prob_score`): the one-line error otherwise.
pub fn check_official(
    explainers: &[Explainer],
    blocks: &[usize],
    nb: usize,
    prob_score: bool,
) -> Result<()> {
    if !needs_hvp(explainers) {
        return Ok(());
    }
    if blocks != [nb - 1] {
        return Err(Error::Input(format!(
            "gradcampp-official is defined on the last block only: pass --blocks {} and no other blocks",
            nb - 1
        )));
    }
    if !prob_score {
        return Err(Error::Input(
            "gradcampp-official differentiates the probability, as the official code does: drop --score".into(),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_the_tables_every_block_gradient_rows() {
        let rows: Vec<Method> = TABLE
            .iter()
            .filter(|i| i.family != Family::Masked && !i.last_block)
            .map(|i| i.method)
            .collect();
        assert_eq!(rows, METHODS.to_vec());
        for i in &TABLE {
            assert_eq!(Method::parse(i.name).unwrap(), i.method, "{}", i.name);
        }
    }
}
