//! One photo's explanation as Python sees it: numpy maps, the prediction as `Entry` objects,
//! and the command line's overlay, raw maps and files, made by the same library functions.

use crate::py_err;
use combicam_gpu::app::engine::{self, TopEntry};
use combicam_gpu::app::explain::write_one;
use combicam_gpu::app::record::{self, ExplainOptions, Explained, WriteContext};
use combicam_gpu::app::render::{self, fit, heatmap_rgb, resize_bilinear};
use combicam_gpu::app::write::Item;
use image::RgbImage;
use numpy::ndarray::{Array1, Array2, Array3};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};

/// One output of the model: a class (label) or a geolocation cell (lat, lon), with its
/// probability. `str(entry)` is the label, or "cell N (lat, lon)".
#[pyclass(module = "combicam", frozen, get_all, skip_from_py_object)]
#[derive(Clone)]
pub struct Entry {
    /// the output's index (class or cell)
    pub index: usize,
    /// its softmax probability
    pub probability: f32,
    /// the ImageNet label, for classifiers
    pub label: Option<String>,
    /// the cell centre's latitude, for geolocation models
    pub lat: Option<f64>,
    /// the cell centre's longitude
    pub lon: Option<f64>,
}

impl From<&TopEntry> for Entry {
    fn from(e: &TopEntry) -> Self {
        Entry {
            index: e.index,
            probability: e.probability,
            label: e.label.clone(),
            lat: e.lat,
            lon: e.lon,
        }
    }
}

#[pymethods]
impl Entry {
    fn __str__(&self) -> String {
        match (&self.label, self.lat, self.lon) {
            (Some(l), _, _) => l.clone(),
            (None, Some(la), Some(lo)) => format!("cell {} ({la:+.3}, {lo:+.3})", self.index),
            _ => format!("output {}", self.index),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Entry(index={}, {}, probability={:.4})",
            self.index,
            match (&self.label, self.lat, self.lon) {
                (Some(l), _, _) => format!("label={l:?}"),
                (None, Some(la), Some(lo)) => format!("lat={la:.4}, lon={lo:.4}"),
                _ => "no label".into(),
            },
            self.probability
        )
    }
}

/// One photo's explanation: every method's block maps and fused map, the prediction, and
/// the command line's overlay and files. Made by `Explainer.explain`.
#[pyclass(module = "combicam", frozen)]
pub struct Explanation {
    pub done: Explained,
    pub photo: RgbImage,
    pub name: PathBuf,
    pub opts: ExplainOptions,
    pub ctx: WriteContext,
    pub decode_s: f64,
}

fn map2<'py>(py: Python<'py>, v: &[f32], h: usize, w: usize) -> Bound<'py, PyArray2<f32>> {
    Array2::from_shape_vec((h, w), v.to_vec())
        .expect("a map holds h × w values")
        .into_pyarray(py)
}

impl Explanation {
    /// The explainer whose fused map `name` names (default: the first asked for).
    fn fused_of(&self, name: Option<&str>) -> PyResult<&[f32]> {
        let ex = &self.done.out.explainers;
        match name {
            None => Ok(&ex[0].fused),
            Some(n) => ex
                .iter()
                .find(|e| e.explainer.fused_name() == n || e.explainer.method.name() == n)
                .map(|e| &e.fused[..])
                .ok_or_else(|| {
                    let names: Vec<String> = ex.iter().map(|e| e.explainer.fused_name()).collect();
                    crate::inputs::input_error(format!(
                        "no fused map {n:?} in this explanation; it has {}",
                        names.join(", ")
                    ))
                }),
        }
    }

    fn report_json(&self) -> String {
        let r = record::report(
            &self.ctx,
            &self.name,
            &self.photo,
            &self.done,
            self.decode_s,
            &self.opts,
        );
        serde_json::to_string(&r).expect("a report serialises")
    }
}

#[pymethods]
impl Explanation {
    /// The first method's fused map (Combi-CAM by default): float32 (H, W) in [0, 1], at the
    /// model's input size.
    #[getter]
    fn fused<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        let (h, w) = self.done.input_size;
        map2(py, &self.done.out.explainers[0].fused, h, w)
    }

    /// Every method's fused map by its raw-file name ("combicam", "layercam.fused", ...).
    #[getter]
    fn fused_maps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (h, w) = self.done.input_size;
        let d = PyDict::new(py);
        for e in &self.done.out.explainers {
            d.set_item(e.explainer.fused_name(), map2(py, &e.fused, h, w))?;
        }
        Ok(d)
    }

    /// Per method, per block: float32 (h_l, w_l), after ReLU and unnormalised, as the raw
    /// file's `<method>.NN`. `maps["gradcam"][15]`.
    #[getter]
    fn maps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = &self.done.out;
        let d = PyDict::new(py);
        for e in &out.explainers {
            let name = e.explainer.method.name();
            if d.contains(name)? {
                continue;
            }
            let blocks = PyDict::new(py);
            for (l, m) in e.maps.iter().enumerate() {
                if let Some(m) = m {
                    let (mh, mw) = out.map_sizes[l];
                    blocks.set_item(l, map2(py, m, mh, mw))?;
                }
            }
            d.set_item(name, blocks)?;
        }
        Ok(d)
    }

    /// Softmax probabilities, float32 (N,).
    #[getter]
    fn probs<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        Array1::from(self.done.out.probs.clone()).into_pyarray(py)
    }

    /// Logits, float32 (N,).
    #[getter]
    fn logits<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        Array1::from(self.done.out.logits.clone()).into_pyarray(py)
    }

    /// The top outputs, best first (`top_k` of `explain`), as `Entry` objects.
    #[getter]
    fn prediction(&self) -> Vec<Entry> {
        let w = &self.ctx.weights;
        let p = engine::summarize(w, "", &self.done.out, self.opts.top_k);
        p.top.iter().map(Entry::from).collect()
    }

    /// Geolocation models: the probability mass within r km of the top cell's centre, by r
    /// ({1: …, 25: …, 200: …, 750: …, 2500: …}, as the JSON's `confidence_km`); None for
    /// classifiers.
    #[getter]
    fn confidence_km(&self) -> Option<std::collections::BTreeMap<u32, f64>> {
        let p = engine::summarize(&self.ctx.weights, "", &self.done.out, 1);
        p.confidence_km.map(|m| {
            m.into_iter()
                .filter_map(|(r, p)| r.parse::<u32>().ok().map(|r| (r, p)))
                .collect()
        })
    }

    /// What was explained: the top output, or the one `target` named.
    #[getter]
    fn target(&self) -> Entry {
        let w = &self.ctx.weights;
        Entry::from(&engine::entry(w, &self.done.out, self.done.out.target))
    }

    /// The model's input size (H, W): the size of `fused`.
    #[getter]
    fn input_size(&self) -> (usize, usize) {
        self.done.input_size
    }

    /// The photo's size (H, W).
    #[getter]
    fn photo_size(&self) -> (usize, usize) {
        (self.photo.height() as usize, self.photo.width() as usize)
    }

    /// The JSON report the command line writes (`<stem>.json`), as a dict.
    #[getter]
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (self.report_json(),))
    }

    /// A fused map resized to `size` = (H, W) (default: the photo's) by the overlays'
    /// bilinear rule, as `--raw-size photo` writes it. `name`: which method's (default: the
    /// first).
    #[pyo3(signature = (size=None, name=None))]
    fn fused_at<'py>(
        &self,
        py: Python<'py>,
        size: Option<(usize, usize)>,
        name: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (oh, ow) = size.unwrap_or_else(|| self.photo_size());
        if oh == 0 || ow == 0 {
            return Err(crate::inputs::input_error(format!(
                "fused_at(({oh}, {ow})): give a size of at least 1×1"
            )));
        }
        let (h, w) = self.done.input_size;
        let big = resize_bilinear(self.fused_of(name)?, h, w, oh, ow);
        Ok(map2(py, &big, oh, ow))
    }

    /// The command line's overlay: the jet-coloured fused map over the photo, uint8 (photo H,
    /// W, 3). `alpha`: the heat map's weight (0: photo only, 1: heat map only); `size`: the
    /// longest side (0: the photo's own).
    #[pyo3(signature = (alpha=0.5, name=None, size=0))]
    fn overlay<'py>(
        &self,
        py: Python<'py>,
        alpha: f32,
        name: Option<&str>,
        size: u32,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(crate::inputs::input_error(format!(
                "alpha {alpha} is outside 0..1"
            )));
        }
        let (h, w) = self.done.input_size;
        let shown = fit(&self.photo, size);
        let heat = heatmap_rgb(self.fused_of(name)?, h, w, shown.width(), shown.height());
        Ok(rgb_array(py, &render::overlay(&shown, &heat, alpha)))
    }

    /// The command line's heat map PNG as an array: uint8 (photo H, W, 3).
    #[pyo3(signature = (name=None, size=0))]
    fn heatmap<'py>(
        &self,
        py: Python<'py>,
        name: Option<&str>,
        size: u32,
    ) -> PyResult<Bound<'py, PyArray3<u8>>> {
        let (h, w) = self.done.input_size;
        let shown = fit(&self.photo, size);
        let heat = heatmap_rgb(self.fused_of(name)?, h, w, shown.width(), shown.height());
        Ok(rgb_array(py, &heat))
    }

    /// Write the command line's files for this photo into the folder `out` (made if needed):
    /// overlay and heat-map PNGs, the JSON report, and with `raw` the raw maps
    /// (`<stem>.cams.safetensors`), with `report` the HTML page. `stem`: the files' stem
    /// (default: the photo's file stem). Returns the paths written.
    #[pyo3(signature = (out, raw=false, report=false, stem=None, alpha=0.5))]
    fn save(
        &self,
        py: Python<'_>,
        out: &Bound<'_, PyAny>,
        raw: bool,
        report: bool,
        stem: Option<String>,
        alpha: f32,
    ) -> PyResult<Vec<String>> {
        let Some(dir) = crate::inputs::path_of(out)? else {
            return Err(crate::inputs::input_error(
                "save(out): give a folder path".into(),
            ));
        };
        if !(0.0..=1.0).contains(&alpha) {
            return Err(crate::inputs::input_error(format!(
                "alpha {alpha} is outside 0..1"
            )));
        }
        if dir.exists() && !dir.is_dir() {
            return Err(crate::raise(
                "OutputError",
                format!(
                    "cannot write into {}: it is a file, not a folder; give a folder path",
                    dir.display()
                ),
            ));
        }
        let stem = stem.unwrap_or_else(|| default_stem(&self.name));
        let o = ExplainOptions {
            save_raw: raw,
            report,
            alpha,
            ..self.opts.clone()
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return Err(crate::raise(
                "OutputError",
                format!(
                    "cannot create the folder {}: {e}; give a folder that can be made",
                    dir.display()
                ),
            ));
        }
        py.detach(|| {
            let it = Item {
                ctx: &self.ctx,
                image: &self.name,
                photo: &self.photo,
                done: &self.done,
                decode_s: self.decode_s,
                dir: &dir,
                stem: &stem,
                o: &o,
            };
            write_one(&it).map(|r| r.outputs)
        })
        .map_err(py_err)
    }

    fn __repr__(&self) -> String {
        let t = self.target();
        let (h, w) = self.done.input_size;
        let names: Vec<String> = self
            .done
            .out
            .explainers
            .iter()
            .map(|e| e.explainer.fused_name())
            .collect();
        format!(
            "<Explanation of {}: {} ({}) at {h}×{w}, maps: {}>",
            self.name.display(),
            t.__str__(),
            t.probability,
            names.join(", ")
        )
    }
}

fn rgb_array<'py>(py: Python<'py>, img: &RgbImage) -> Bound<'py, PyArray3<u8>> {
    let (w, h) = img.dimensions();
    Array3::from_shape_vec((h as usize, w as usize, 3), img.as_raw().clone())
        .expect("h × w × 3 bytes")
        .into_pyarray(py)
}

/// The photo's file stem, or "image" for arrays.
fn default_stem(name: &Path) -> String {
    let s = name.to_string_lossy();
    if s.starts_with('<') {
        return "image".into();
    }
    name.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}
