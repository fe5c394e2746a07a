//! What a front end settles before its first image: which weights, which score and target,
//! and the options of an explain run. The command line and the Python package both call
//! these, so they share their defaults and their one-line errors.

use super::check;
use super::engine::{parse_blocks, resolve_target};
use super::record::ExplainOptions;
use crate::cam::methods::{self, Explainer};
use crate::error::{Error, Result};
use crate::model::geo;
use crate::model::plan::Score;
use crate::model::weights::checkpoint::{CERTH_FILES, weight_files_in};
use crate::model::weights::{self, HeadKind, Layout, Weights};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which weights to load: `--weights`, `--arch`, `--test-weights` and `--cells`.
#[derive(Clone, Debug)]
pub struct WeightsChoice {
    /// files or folders, `hf:REPO` for a fetched hub model; none: `$COMBICAM_WEIGHTS`, else
    /// ./weights/, else the built-in Lite0
    pub paths: Vec<PathBuf>,
    /// the architecture, where the files cannot tell
    pub arch: Option<String>,
    /// deterministic random weights of this variant instead (for checks)
    pub test_weights: Option<String>,
    /// cells of the test weights' geolocation head
    pub cells: usize,
}

impl Default for WeightsChoice {
    fn default() -> Self {
        WeightsChoice {
            paths: Vec::new(),
            arch: None,
            test_weights: None,
            cells: 31145,
        }
    }
}

/// Loaded weights, with what a front end tells its user about them.
pub struct Loaded {
    pub weights: Weights,
    /// one line: what was loaded and how long it took
    pub said: String,
    /// the loader's notes (for example a preprocessing it assumed)
    pub notes: Vec<String>,
}

/// The built-in model's file in ./weights/ is the built-in model itself, not other weights.
const BUILTIN_FILE: &str = "efficientnet-lite0-57934424.pth";

/// Load the weights `c` names; with `retrieval`, visloc's retrieval head too. `does` says what
/// the caller does with them ("explains"), for the built-in model's line.
pub fn load_weights(c: &WeightsChoice, retrieval: bool, does: &str) -> Result<Loaded> {
    let t = Instant::now();
    if let Some(v) = &c.test_weights {
        let w = test_weights(v, c.cells, retrieval)?;
        let said = format!("weights: deterministic test weights {v} (for checks, not answers)");
        return Ok(loaded(w, said));
    }
    let paths: Vec<PathBuf> = if !c.paths.is_empty() {
        resolve_weights(&c.paths)?
    } else if let Some(p) = std::env::var_os("COMBICAM_WEIGHTS") {
        resolve_weights(&[PathBuf::from(p)])?
    } else {
        local_weights()?
    };
    if paths.is_empty() {
        if retrieval {
            return Err(Error::Input(
                "the built-in ImageNet model has no retrieval head: --embedding and --background need visloc weights, --weights DIR with efficientnet_backbone.pt, mvmf_head.pt and rrm_head.pt".into(),
            ));
        }
        let w = weights::builtin()?;
        let said = format!(
            "weights: none given, so this {does} ImageNet classes with the {} (loaded in \
             {:.2}s). For geolocation, pass the visloc weights: --weights DIR with \
             efficientnet_backbone.pt and mvmf_head.pt (weights/README.md)",
            weights::BUILTIN_NAME,
            t.elapsed().as_secs_f64()
        );
        return Ok(loaded(w, said));
    }
    let opts = weights::LoadOptions {
        arch: c.arch.clone(),
        preprocessing: None,
        retrieval,
    };
    let w = weights::load_paths(&paths, &opts)?;
    let said = format!(
        "weights: {} ({}, {:?} layout, {} outputs) loaded in {:.1}s",
        w.source,
        w.cfg.name(),
        w.layout,
        w.classifier.n,
        t.elapsed().as_secs_f64()
    );
    Ok(loaded(w, said))
}

fn loaded(weights: Weights, said: String) -> Loaded {
    let notes = weights.notes.clone();
    Loaded {
        weights,
        said,
        notes,
    }
}

/// Weight paths with `hf:REPO` resolved to the fetched snapshot.
pub fn resolve_weights(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| super::hub::resolve_weights_arg(p))
        .collect()
}

/// Weights in ./weights/ (run from a checkout or a folder laid out like one): CERTH's pair,
/// or one weights file; none means the built-in model.
fn local_weights() -> Result<Vec<PathBuf>> {
    let dir = Path::new("weights");
    if CERTH_FILES.iter().any(|f| dir.join(f).is_file()) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let found: Vec<PathBuf> = weight_files_in(dir)
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != BUILTIN_FILE))
        .collect();
    match found.len() {
        0 | 1 => Ok(found),
        _ => Err(Error::Input(format!(
            "several weights files in ./weights/ ({}); choose with --weights PATH",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn variant_index(v: &str) -> Option<usize> {
    let t = v.trim().to_lowercase();
    let d = t
        .trim_start_matches("efficientnet-")
        .trim_start_matches("efficientnet_")
        .trim_start_matches('b');
    d.parse::<usize>().ok().filter(|&i| i < 8)
}

/// Deterministic random weights: visloc b0…b7 with `cells` cells, else any variant
/// `check::test_network` knows.
pub fn test_weights(variant: &str, cells: usize, retrieval: bool) -> Result<Weights> {
    // visloc has 31,145; a head of 10^9 cells would not fit in memory
    const MAX_CELLS: usize = 200_000;
    if cells == 0 || cells > MAX_CELLS {
        return Err(Error::Input(format!(
            "--cells {cells}: give 1 to {MAX_CELLS} (visloc has 31145)"
        )));
    }
    match variant_index(variant) {
        Some(v) if retrieval => Ok(weights::formula_with_retrieval(v, cells)),
        Some(v) => Ok(weights::formula(v, Layout::Visloc, cells)),
        None if retrieval => Err(Error::Input(format!(
            "--test-weights {variant} has no retrieval head: use a visloc variant (b0 … b7)"
        ))),
        None => check::test_network(variant),
    }
}

/// `prob`, `logit` or `region:KM`.
pub fn parse_score(s: &str) -> Result<Score> {
    let t = s.trim().to_lowercase();
    match t.as_str() {
        "prob" | "probability" => Ok(Score::Prob),
        "logit" => Ok(Score::Logit),
        _ => match t.strip_prefix("region:").map(|k| k.trim().parse::<f32>()) {
            Some(Ok(km)) if km.is_finite() && km >= 0.0 => Ok(Score::Region(km)),
            _ => Err(Error::Input(format!(
                "--score {s:?} is not a score: use prob, logit or region:KM (e.g. region:200)"
            ))),
        },
    }
}

/// The cell whose centre is nearest to "LAT,LON" (haversine).
pub fn nearest_cell(w: &Weights, s: &str) -> Result<usize> {
    let HeadKind::Geo { lat, lon } = &w.classifier.kind else {
        return Err(Error::Input(format!(
            "--target-latlon needs geolocation weights (cells with centres); {} classifies images",
            w.source
        )));
    };
    let parsed: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let [la, lo] = parsed[..] else {
        return Err(Error::Input(format!(
            "--target-latlon {s:?} is not LAT,LON in degrees, e.g. 48.858,2.294"
        )));
    };
    if !(-90.0..=90.0).contains(&la) || !(-180.0..=180.0).contains(&lo) {
        return Err(Error::Input(format!(
            "--target-latlon {s:?}: latitude must be in -90..90 and longitude in -180..180"
        )));
    }
    let d = |i: usize| geo::haversine_km(la, lo, lat[i], lon[i]);
    Ok((0..lat.len())
        .min_by(|&a, &b| d(a).total_cmp(&d(b)))
        .expect("a head has at least one cell"))
}

/// What to explain and how: `--method`, `--fusion`, `--blocks`, `--score`, `--target` and
/// `--target-latlon` as the command line takes them.
#[derive(Clone, Debug, Default)]
pub struct ExplainChoice {
    pub methods: Option<String>,
    pub fusion: Option<String>,
    pub blocks: Option<String>,
    /// default: prob
    pub score: Option<String>,
    pub target: Option<String>,
    pub target_latlon: Option<String>,
}

/// The options of an explain run on `w`, checked before any output exists: a region score
/// needs geolocation weights, the target must exist, the official Grad-CAM++ and Score-CAM
/// their blocks and score. Every other field has the command line's default.
pub fn explain_options(w: &Weights, c: &ExplainChoice) -> Result<ExplainOptions> {
    let explainers = methods::parse_explainers(c.methods.as_deref(), c.fusion.as_deref())?;
    let score_text = c.score.as_deref().unwrap_or("prob");
    let score = parse_score(score_text)?;
    let is_geo = matches!(w.classifier.kind, HeadKind::Geo { .. });
    if matches!(score, Score::Region(_)) && !is_geo {
        return Err(Error::Input(format!(
            "--score {score_text} needs geolocation weights (cells with centres); {} classifies images: use --score prob or logit",
            w.source
        )));
    }
    let target = match (&c.target_latlon, &c.target) {
        (Some(s), _) => Some(nearest_cell(w, s)?),
        (None, Some(t)) => Some(resolve_target(w, t)?),
        (None, None) => None,
    };
    let nb = w.cfg.blocks.len();
    let (blocks, score_blocks) = default_blocks(&explainers, c.blocks.as_deref(), nb)?;
    methods::check_official(&explainers, &blocks, nb, score.code().0)?;
    super::scorecam::check_score(&explainers, score)?;
    if let Some(t) = target
        && t >= w.classifier.n
    {
        return Err(Error::Input(format!(
            "--target {t} is out of range: the model has {} outputs (0-{})",
            w.classifier.n,
            w.classifier.n - 1
        )));
    }
    let fit_kpca = c.blocks.is_none()
        && explainers
            .iter()
            .filter(|e| !e.method.is_score_cam())
            .all(|e| e.method == methods::Method::KpcaCam);
    Ok(ExplainOptions {
        blocks,
        fit_kpca,
        score_blocks,
        explainers,
        eigen_smooth: false,
        aug_smooth: false,
        comparison: 3,
        target,
        score,
        alpha: 0.5,
        overlay_size: 0,
        batch: 0,
        report: false,
        metrics: None,
        embedding: false,
        save_raw: false,
        raw_at_photo_size: false,
        top_k: 5,
    })
}

/// The blocks of the gradient methods and of Score-CAM: `--blocks` for both; else every
/// block, or the last one when every gradient method is the official Grad-CAM++ (defined
/// there only), and the last one for Score-CAM (one masked pass per channel).
fn default_blocks(
    explainers: &[Explainer],
    given: Option<&str>,
    nb: usize,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let only_last = explainers
        .iter()
        .filter(|e| !e.method.is_score_cam())
        .all(|e| e.method.last_block_by_default());
    let given = given.map(|s| parse_blocks(s, nb)).transpose()?;
    let score_blocks = given.clone().unwrap_or(vec![nb - 1]);
    let blocks = match given {
        Some(b) => b,
        None if only_last => vec![nb - 1],
        None => (0..nb).collect(),
    };
    Ok((blocks, score_blocks))
}
