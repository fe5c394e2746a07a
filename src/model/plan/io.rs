//! What a plan is asked for (the score, the options) and what a run gives back.

use crate::cam::methods::Explainer;

/// What the Grad-CAM score is.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Score {
    /// softmax probability of the target (the official algorithm)
    Prob,
    Logit,
    /// the probability mass within this many km of the target cell's centre (geolocation)
    Region(f32),
    /// FinerCAM's: Σ_j p_j(y_c − y_j)/(Σ_j p_j + 1e-9) over the this many classes j ≠ c whose
    /// logits are nearest to c's (pytorch-grad-cam's `FinerWeightedTarget`, α = 1)
    Finer(u32),
}

impl Score {
    /// (info[1], info[4]) as the head kernels read them.
    pub(crate) fn code(self) -> (u32, u32) {
        match self {
            Score::Prob => (0, 0),
            Score::Logit => (1, 0),
            Score::Region(km) => (2, km.to_bits()),
            Score::Finer(k) => (3, k),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// record the backward and the CAM phase (explain); false: forward only (predict)
    pub backward: bool,
    /// blocks whose maps are fused, ascending
    pub blocks: Vec<usize>,
    /// the CAM methods and their fusion rules (Combi-CAM by default)
    pub explainers: Vec<Explainer>,
    /// masked copies per batch (Score-CAM, the metrics; see `Plan::run_masked`), within the
    /// adapter's limits: 0, none; `AUTO_BATCH`, the default for the plan's size
    /// (`Plan::default_batch`)
    pub masked: usize,
    /// `--eigen-smooth`: each method's map is the first principal component of its weighted
    /// activations (`cam::eigen::Input`) rather than their sum over channels
    pub eigen_smooth: bool,
    /// images the forward, the backward and the CAM phase run at once (`Plan::run_images`;
    /// `--aug-smooth`'s six), 1 for one image. More than one only where `batches_images`
    pub images: usize,
}

impl PlanOptions {
    /// `masked`: as many copies per batch as `Plan::default_batch` gives at the plan's size.
    /// One value for every size, so an engine keeps one plan per run (re-recorded per size)
    /// rather than one per batch that the sizes give.
    pub const AUTO_BATCH: usize = usize::MAX;

    /// The forward alone (predict), with `masked` copies per submission (0: none).
    pub fn forward(masked: usize) -> PlanOptions {
        PlanOptions {
            backward: false,
            blocks: vec![],
            explainers: vec![],
            masked,
            eigen_smooth: false,
            images: 1,
        }
    }

    /// Whether a plan of these options can run several images at once (`images`): every
    /// kernel of its backward and CAM phase takes a batch (workgroup z = the image); masked
    /// copies (Score-CAM, AblationCAM) share the forward's batch, so a plan has one or the
    /// other.
    pub fn batches_images(&self) -> bool {
        let masked = |e: &Explainer| e.method.is_score_cam();
        self.backward && self.masked == 0 && !self.explainers.iter().any(masked)
    }
}

/// One explainer's results after a run.
#[derive(Clone, Debug)]
pub struct ExplainerOutput {
    pub explainer: Explainer,
    /// per block: the map (post-ReLU, unnormalised) at (h, w), for fused blocks
    pub maps: Vec<Option<Vec<f32>>>,
    /// the fused map at (H, W), normalised to [0, 1]
    pub fused: Vec<f32>,
    /// min and max of the fused map before normalisation
    pub fused_range: (f32, f32),
    pub map_max: Vec<Option<f32>>,
    pub map_mean: Vec<Option<f32>>,
}

/// Everything read back after one run.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub target: usize,
    pub argmax: usize,
    pub probs: Vec<f32>,
    pub logits: Vec<f32>,
    /// per block: the Grad-CAM map (post-ReLU, unnormalised) at (h, w), for fused blocks
    pub maps: Vec<Option<Vec<f32>>>,
    pub map_sizes: Vec<(usize, usize)>,
    /// (H, W), normalised to [0, 1]
    pub combicam: Vec<f32>,
    /// min and max of the fused sum before normalisation
    pub fused_range: (f32, f32),
    pub act_maxabs: Vec<f32>,
    pub map_max: Vec<Option<f32>>,
    pub map_mean: Vec<Option<f32>>,
    /// every explainer's results, in the order of `PlanOptions::explainers` (the fields above
    /// repeat the first one's)
    pub explainers: Vec<ExplainerOutput>,
    /// wall-clock seconds of the submission and of the read-back
    pub gpu_seconds: f64,
    pub readback_seconds: f64,
    /// of `gpu_seconds`: Score-CAM's and AblationCAM's masked passes (`app::explain`)
    pub masked_seconds: f64,
}

impl Output {
    /// The first explainer's results as the output's own (Combi-CAM by default).
    pub fn mirror_first(&mut self) {
        if let Some(first) = self.explainers.first() {
            self.maps = first.maps.clone();
            self.combicam = first.fused.clone();
            self.fused_range = first.fused_range;
            self.map_max = first.map_max.clone();
            self.map_mean = first.map_mean.clone();
        }
    }
}
