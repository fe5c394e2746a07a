//! `Explainer`: weights on a GPU device of its own, and the plans it has built, reused from
//! call to call as a folder run reuses them.

use crate::explanation::{Entry, Explanation};
use crate::inputs::{self, Photo};
use crate::py_err;
use combicam_gpu::app::engine::{self, Engine};
use combicam_gpu::app::explain::run_one;
use combicam_gpu::app::record::{ExplainOptions, WriteContext};
use combicam_gpu::app::setup::{self, ExplainChoice, WeightsChoice};
use combicam_gpu::gpu::Gpu;
use combicam_gpu::model::plan::{PlanOptions, Score};
use combicam_gpu::preprocess::Preprocessed;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Explains why an EfficientNet predicts what it predicts: Grad-CAM and its relatives at
/// every block from one forward and one backward pass on the GPU, fused into one map
/// (Combi-CAM).
///
/// `Explainer()` uses the built-in ImageNet EfficientNet-Lite0. `weights` takes what the
/// command line's `--weights` takes: a folder with CERTH's efficientnet_backbone.pt and
/// mvmf_head.pt (visloc), a .safetensors, .pt or .pth file, `hf:REPO` after `combicam-gpu
/// fetch`, or a list of files to merge. `arch` names the architecture where the files
/// cannot tell; `device` is an index from `combicam.devices()` (default: the best adapter);
/// `test_weights` (b0…b7, lite0…lite4, tf_b0…tf_b7) uses deterministic random weights, for
/// checks, with `cells` cells for visloc variants.
///
/// The weights load once, onto a device of this explainer's own. Calls from several threads
/// are safe: they take turns on the device. Two explainers run side by side.
#[pyclass(module = "combicam._native", name = "_Explainer", frozen, subclass)]
pub struct Explainer {
    engine: Mutex<Engine>,
    ctx: WriteContext,
    /// what was loaded, as the command line says it
    #[pyo3(get)]
    weights_info: String,
    /// the loader's notes (an assumed preprocessing, for example)
    #[pyo3(get)]
    notes: Vec<String>,
}

/// A str, os.PathLike, or a list or tuple of them, as paths.
fn weight_paths(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<PathBuf>> {
    let Some(obj) = obj else {
        return Ok(Vec::new());
    };
    if let Some(p) = inputs::path_of(obj)? {
        return Ok(vec![p]);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in obj.try_iter()? {
            match inputs::path_of(&item?)? {
                Some(p) => out.push(p),
                None => {
                    return Err(inputs::input_error(
                        "weights: every item of the list must be a path".into(),
                    ));
                }
            }
        }
        return Ok(out);
    }
    Err(inputs::input_error(
        "weights: give a path (file, folder or hf:REPO) or a list of paths".into(),
    ))
}

/// `methods` and `blocks` as the command line spells them: "gradcam,layercam" or a list;
/// "20-31", a list of ints, or one int.
fn list_text(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<String>> {
    let Some(obj) = obj else {
        return Ok(None);
    };
    if let Ok(s) = obj.extract::<String>() {
        return Ok(Some(s));
    }
    if let Ok(i) = obj.extract::<i64>() {
        return Ok(Some(index_text(i, what)?));
    }
    if let Ok(items) = obj.extract::<Vec<Bound<'_, PyAny>>>() {
        let mut parts = Vec::new();
        for it in items {
            if let Ok(s) = it.extract::<String>() {
                parts.push(s);
            } else if let Ok(i) = it.extract::<i64>() {
                parts.push(index_text(i, what)?);
            } else {
                return Err(inputs::input_error(format!(
                    "{what}: every item must be a str or an int"
                )));
            }
        }
        return Ok(Some(parts.join(",")));
    }
    Err(inputs::input_error(format!(
        "{what}: give a str (e.g. \"0-5,15\") or a list"
    )))
}

/// `explain`'s keywords as the command line's flags would give them.
fn explain_choice(
    methods: Option<&Bound<'_, PyAny>>,
    blocks: Option<&Bound<'_, PyAny>>,
    fusion: Option<String>,
    target: Option<&Bound<'_, PyAny>>,
    target_latlon: Option<String>,
    score: &str,
) -> PyResult<ExplainChoice> {
    Ok(ExplainChoice {
        methods: list_text(methods, "methods")?,
        fusion,
        blocks: list_text(blocks, "blocks")?,
        score: Some(score.to_string()),
        target: list_text(target, "target")?,
        target_latlon,
    })
}

/// An index as text; a negative one is an error (Python's habit of counting from the end
/// does not apply to blocks and outputs).
fn index_text(i: i64, what: &str) -> PyResult<String> {
    if i < 0 {
        return Err(inputs::input_error(format!(
            "{what}: {i} is negative; indices count from 0 (blocks: 0 is the first, ex.model[\"blocks\"] - 1 the last)"
        )));
    }
    Ok(i.to_string())
}

impl Explainer {
    fn options(
        &self,
        c: &ExplainChoice,
        top_k: usize,
        (eigen_smooth, aug_smooth, comparison): (bool, bool, u32),
    ) -> PyResult<ExplainOptions> {
        if !(1..=32).contains(&comparison) {
            return Err(inputs::input_error(format!(
                "comparison={comparison}: FinerCAM compares with 1 to 32 classes (default 3)"
            )));
        }
        let o = setup::explain_options(&self.ctx.weights, c).map_err(py_err)?;
        Ok(ExplainOptions {
            top_k,
            eigen_smooth,
            aug_smooth,
            comparison,
            ..o
        })
    }

    /// Run the plan on a preprocessed input, the GIL released.
    fn run(
        &self,
        py: Python<'_>,
        photo: Photo,
        pre: Preprocessed,
        opts: ExplainOptions,
        decode_s: f64,
    ) -> PyResult<Explanation> {
        let done = py
            .detach(|| {
                let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
                run_one(&mut engine, &pre, &opts)
            })
            .map_err(py_err)?;
        Ok(Explanation {
            done,
            photo: photo.image,
            name: photo.name,
            opts,
            ctx: self.ctx.clone(),
            decode_s,
        })
    }
}

/// Paths, or folders of images, for `evaluate`.
fn evaluate_inputs(images: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    let given = match inputs::path_of(images)? {
        Some(p) => vec![p],
        None => weight_paths(Some(images)).map_err(|_| {
            inputs::input_error("evaluate: give image paths or folders, a path or a list".into())
        })?,
    };
    let found = combicam_gpu::app::runs::collect(&given, true, None);
    let paths: Vec<PathBuf> = found.inputs.into_iter().map(|i| i.path).collect();
    if paths.is_empty() {
        return Err(inputs::input_error(format!("no images found in {given:?}")));
    }
    Ok(paths)
}

impl Explainer {
    /// `evaluate` without the GIL: the report as JSON.
    fn evaluate_paths(
        &self,
        paths: Vec<PathBuf>,
        list: &str,
        steps: usize,
        batch: Option<usize>,
        road: Option<f32>,
    ) -> PyResult<String> {
        use combicam_gpu::app::{eval, evaluation};
        if steps == 0 {
            return Err(inputs::input_error(
                "steps=0: the curves need at least 1 step (default 50)".into(),
            ));
        }
        if batch == Some(0) {
            return Err(inputs::input_error(
                "batch=0: give at least 1 masked copy per batch, or leave it out".into(),
            ));
        }
        let specs = eval::parse_specs(list).map_err(py_err)?;
        if specs.is_empty() {
            return Err(inputs::input_error(
                "explainers is empty: name at least one, e.g. combicam,gradcam@last".into(),
            ));
        }
        let w = &self.ctx.weights;
        evaluation::passes_per_image(&specs, (steps, road.is_some()), &w.cfg).map_err(py_err)?;
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        let mut images = Vec::new();
        for path in paths {
            let name = path.display().to_string();
            let photo = inputs::decode(path)?;
            let pre = inputs::preprocess(&photo, &w.preprocessing)?;
            let m = evaluation::image_metrics(
                &mut engine,
                &name,
                &pre,
                &specs,
                (steps, batch, road),
                &mut |_| {},
            )
            .map_err(py_err)?;
            images.push(m);
        }
        let report = evaluation::Report {
            steps,
            adapter: self.ctx.adapter.clone(),
            model: w.cfg.name(),
            weights: w.source.clone(),
            mean: evaluation::means(&images),
            images,
        };
        Ok(serde_json::to_string(&report).expect("a report serialises"))
    }
}

#[pymethods]
impl Explainer {
    #[new]
    #[pyo3(signature = (weights=None, *, arch=None, device=None, test_weights=None, cells=31145))]
    fn new(
        py: Python<'_>,
        weights: Option<&Bound<'_, PyAny>>,
        arch: Option<String>,
        device: Option<usize>,
        test_weights: Option<String>,
        cells: usize,
    ) -> PyResult<Self> {
        let choice = WeightsChoice {
            paths: weight_paths(weights)?,
            arch,
            test_weights,
            cells,
        };
        let (engine, said, notes) = py
            .detach(|| -> combicam_gpu::Result<_> {
                let loaded = setup::load_weights(&choice, false, "explains")?;
                let gpu = Arc::new(Gpu::new(device)?);
                let engine = Engine::new(gpu, loaded.weights)?;
                Ok((engine, loaded.said, loaded.notes))
            })
            .map_err(py_err)?;
        let ctx = WriteContext::of(&engine);
        Ok(Explainer {
            engine: Mutex::new(engine),
            ctx,
            weights_info: said,
            notes,
        })
    }

    /// Explain a photo: a path, an (H, W, 3) uint8 RGB array or a PIL image.
    ///
    /// `methods`: "gradcam" (default; with the sum fusion, Combi-CAM), gradcampp, xgradcam,
    /// hirescam, gradcam-elementwise, layercam, layercam-official, fem, eigencam,
    /// eigengradcam, kpcacam (blocks of at most 4,096 positions: alone and without `blocks`, those that fit), finercam (its 3 comparison classes, as pytorch-grad-cam's default),
    /// gradcampp-official and shapleycam (last block), scorecam, scorecam-official,
    /// ablationcam, fullgrad (FullGrad: every BN-folded conv's bias-gradient term and the
    /// input's, each channel normalised; sum fusion only); a
    /// comma-separated str or a list. `blocks`: "20-31",
    /// [5, 10, 15] or 15 (default: every block). `fusion`: sum, mean, mean-normalised, max,
    /// product. `target`: an output index or (ImageNet) a label; `target_latlon`: "LAT,LON"
    /// (geolocation). `score`: prob, logit or region:KM. `eigen_smooth`: each block map is
    /// the first principal component of the method's weighted activations (pytorch-grad-cam's
    /// eigen_smooth; the command line's --eigen-smooth). `aug_smooth`: every map averaged over
    /// six runs on the photo flipped or not × 0.9, 1.0, 1.1 (pytorch-grad-cam's aug_smooth;
    /// --aug-smooth). `comparison`: FinerCAM's comparison classes (--comparison, 1 to 32).
    /// `name`: what the report calls an array (default "<array>").
    #[pyo3(signature = (image, *, methods=None, blocks=None, fusion=None, target=None,
                        target_latlon=None, score="prob", top_k=5, eigen_smooth=false,
                        aug_smooth=false, comparison=3, name=None))]
    #[allow(clippy::too_many_arguments)]
    fn explain(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        methods: Option<&Bound<'_, PyAny>>,
        blocks: Option<&Bound<'_, PyAny>>,
        fusion: Option<String>,
        target: Option<&Bound<'_, PyAny>>,
        target_latlon: Option<String>,
        score: &str,
        top_k: usize,
        eigen_smooth: bool,
        aug_smooth: bool,
        comparison: u32,
        name: Option<String>,
    ) -> PyResult<Explanation> {
        let choice = explain_choice(methods, blocks, fusion, target, target_latlon, score)?;
        let opts = self.options(&choice, top_k, (eigen_smooth, aug_smooth, comparison))?;
        let t = Instant::now();
        let mut photo = inputs::photo(image)?;
        if let Some(n) = name {
            photo.name = PathBuf::from(n);
        }
        let how = self.ctx.weights.preprocessing;
        let pre = py.detach(|| inputs::preprocess(&photo, &how))?;
        let decode_s = t.elapsed().as_secs_f64();
        self.run(py, photo, pre, opts, decode_s)
    }

    /// Explain an already-normalised input, the pytorch-grad-cam habit: float32 (3, H, W)
    /// or (1, 3, H, W), numpy or torch. The overlay's photo is the input with the weights'
    /// normalisation undone. Same keywords as `explain`.
    #[pyo3(signature = (x, *, methods=None, blocks=None, fusion=None, target=None,
                        target_latlon=None, score="prob", top_k=5, eigen_smooth=false,
                        aug_smooth=false, comparison=3))]
    #[allow(clippy::too_many_arguments)]
    fn explain_tensor(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        methods: Option<&Bound<'_, PyAny>>,
        blocks: Option<&Bound<'_, PyAny>>,
        fusion: Option<String>,
        target: Option<&Bound<'_, PyAny>>,
        target_latlon: Option<String>,
        score: &str,
        top_k: usize,
        eigen_smooth: bool,
        aug_smooth: bool,
        comparison: u32,
    ) -> PyResult<Explanation> {
        let choice = explain_choice(methods, blocks, fusion, target, target_latlon, score)?;
        let opts = self.options(&choice, top_k, (eigen_smooth, aug_smooth, comparison))?;
        let pre = inputs::tensor(x)?;
        let how = self.ctx.weights.preprocessing;
        let photo = Photo {
            image: inputs::unnormalised(&pre, &how),
            name: PathBuf::from("<tensor>"),
        };
        self.run(py, photo, pre, opts, 0.0)
    }

    /// The top `top_k` outputs for a photo (path, array or PIL image), best first, from a
    /// forward pass alone.
    #[pyo3(signature = (image, top_k=5))]
    fn predict(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        top_k: usize,
    ) -> PyResult<Vec<Entry>> {
        let photo = inputs::photo(image)?;
        let how = self.ctx.weights.preprocessing;
        let pre = py.detach(|| inputs::preprocess(&photo, &how))?;
        let out = py
            .detach(|| {
                let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
                let opts = PlanOptions::forward(0);
                engine.run(&pre.tensor, pre.height, pre.width, &opts, None, Score::Prob)
            })
            .map_err(py_err)?;
        let p = engine::summarize(&self.ctx.weights, "", &out, top_k);
        Ok(p.top.iter().map(Entry::from).collect())
    }

    /// Faithfulness of explainers over photos, as `combicam-gpu evaluate --json` writes it:
    /// a dict with every image's deletion and insertion curves, their AUC, Average Drop and
    /// Increase in Confidence per explainer, and the means. `images`: paths or folders.
    /// `explainers`: METHOD[@BLOCKS][:FUSION] items, a comma-separated str or a list
    /// ("combicam", "gradcam@last", "layercam@all:max", "random", or "all"). `steps`: of
    /// the curves. `batch`: masked copies per submission (default: the adapter's).
    /// `road_noise`: ROAD's imputer noise σ (0: deterministic), or None for no ROAD (the
    /// command line's --road-noise and --no-road).
    #[pyo3(signature = (images, explainers=None, steps=50, batch=None, road_noise=Some(0.01)))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        explainers: Option<&Bound<'py, PyAny>>,
        steps: usize,
        batch: Option<usize>,
        road_noise: Option<f32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let list = list_text(explainers, "explainers")?
            .unwrap_or_else(|| "combicam,gradcam@last,random".into());
        if let Some(s) = road_noise {
            combicam_gpu::app::road::check_noise(s, "road_noise=").map_err(py_err)?;
        }
        let paths = evaluate_inputs(images)?;
        let json = py.detach(|| self.evaluate_paths(paths, &list, steps, batch, road_noise))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The model input `explain` makes of a photo: float32 (3, H, W), resized and normalised
    /// as the weights ask. `explain_tensor` of it explains the same input.
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        image: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, numpy::PyArray3<f32>>> {
        use numpy::IntoPyArray;
        let photo = inputs::photo(image)?;
        let how = self.ctx.weights.preprocessing;
        let pre = py.detach(|| inputs::preprocess(&photo, &how))?;
        Ok(
            numpy::ndarray::Array3::from_shape_vec((3, pre.height, pre.width), pre.tensor)
                .expect("3 × h × w values")
                .into_pyarray(py),
        )
    }

    /// Decode a photo file as `explain` does (EXIF orientation applied): uint8 (H, W, 3).
    #[staticmethod]
    fn load_photo<'py>(
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, numpy::PyArray3<u8>>> {
        use numpy::IntoPyArray;
        let Some(p) = inputs::path_of(path)? else {
            return Err(inputs::input_error("load_photo: give a path".into()));
        };
        let photo = inputs::load_path(py, p)?;
        let (w, h) = photo.image.dimensions();
        Ok(numpy::ndarray::Array3::from_shape_vec(
            (h as usize, w as usize, 3),
            photo.image.into_raw(),
        )
        .expect("h × w × 3 bytes")
        .into_pyarray(py))
    }

    /// The model: its name, its number of blocks and outputs, and its preprocessing.
    #[getter]
    fn model<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let w = &self.ctx.weights;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("name", w.cfg.name())?;
        d.set_item("blocks", w.cfg.blocks.len())?;
        d.set_item("outputs", w.classifier.n)?;
        d.set_item("source", w.source.clone())?;
        d.set_item("preprocessing", w.preprocessing.describe())?;
        Ok(d)
    }

    /// The adapter this explainer runs on, as `combicam.devices()` lists it.
    #[getter]
    fn adapter(&self) -> String {
        self.ctx.adapter.line()
    }

    /// GPU memory held now: weights and plans, in bytes.
    #[getter]
    fn gpu_memory(&self) -> u64 {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .gpu_bytes()
    }

    fn __repr__(&self) -> String {
        let w = &self.ctx.weights;
        format!(
            "<Explainer {} ({} outputs) on {}>",
            w.cfg.name(),
            w.classifier.n,
            self.ctx.adapter.line()
        )
    }
}
