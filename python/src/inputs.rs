//! Photos and tensors from what Python holds: a path (str or os.PathLike), an H×W×3 uint8
//! numpy array, a PIL image, a torch tensor; every other thing is an `InputError` that says
//! what would do.

use crate::raise;
use combicam_gpu::preprocess::{self, Preprocessed, Preprocessing};
use image::RgbImage;
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use std::path::PathBuf;

/// A photo to explain, and the name its report gives it.
pub struct Photo {
    pub image: RgbImage,
    /// the path, or `<array>` / `<PIL image>`
    pub name: PathBuf,
}

/// A path from a str or an os.PathLike, else None.
pub fn path_of(obj: &Bound<'_, PyAny>) -> PyResult<Option<PathBuf>> {
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.hasattr("__fspath__")? {
        let os = obj.py().import("os")?;
        let p: PathBuf = os.call_method1("fspath", (obj,))?.extract()?;
        return Ok(Some(p));
    }
    Ok(None)
}

/// Decode a photo file (EXIF orientation applied, as the command line does). Releases the GIL.
pub fn load_path(py: Python<'_>, path: PathBuf) -> PyResult<Photo> {
    py.detach(|| decode(path))
}

/// `load_path` where the GIL is already released (a missing file is an ImageNotFoundError).
pub fn decode(path: PathBuf) -> PyResult<Photo> {
    if !path.exists() {
        return Err(raise(
            "ImageNotFoundError",
            format!(
                "cannot use image {}: no such file; check the path",
                path.display()
            ),
        ));
    }
    let image = preprocess::load_image(&path).map_err(crate::py_err)?;
    Ok(Photo { image, name: path })
}

/// The photo `obj` holds: a path, an (H, W, 3) uint8 array, or a PIL image (converted to RGB).
pub fn photo(obj: &Bound<'_, PyAny>) -> PyResult<Photo> {
    let py = obj.py();
    if let Some(p) = path_of(obj)? {
        return load_path(py, p);
    }
    let (arr, name) = if is_pil(obj)? {
        let rgb = obj.call_method1("convert", ("RGB",))?;
        let np = py.import("numpy")?;
        (np.call_method1("asarray", (rgb,))?, "<PIL image>")
    } else {
        (obj.clone(), "<array>")
    };
    let Ok(a) = arr.cast::<PyArrayDyn<u8>>() else {
        return Err(input_error(format!(
            "a photo is a path, a PIL image or an (H, W, 3) uint8 RGB array; got {}",
            describe(&arr)
        )));
    };
    let shape = a.shape().to_vec();
    let (h, w) = match shape[..] {
        [h, w, 3] if h > 0 && w > 0 => (h, w),
        _ => {
            return Err(input_error(format!(
                "a photo array must be (H, W, 3) uint8 RGB with H, W ≥ 1; got shape {shape:?} (for grey images: np.stack([g] * 3, axis=-1))"
            )));
        }
    };
    let (h32, w32) = (u32::try_from(h), u32::try_from(w));
    let (Ok(h32), Ok(w32)) = (h32, w32) else {
        return Err(input_error(format!(
            "a photo of {h}×{w} pixels is too large"
        )));
    };
    let bytes: Vec<u8> = a.readonly().as_array().iter().copied().collect();
    let image = RgbImage::from_raw(w32, h32, bytes).expect("h × w × 3 bytes");
    Ok(Photo {
        image,
        name: PathBuf::from(name),
    })
}

fn is_pil(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let t = obj.get_type();
    let module: String = t.getattr("__module__")?.extract().unwrap_or_default();
    Ok(module.starts_with("PIL.") && obj.hasattr("convert")?)
}

/// "numpy.ndarray of shape (2, 3) and dtype float64", or the type's name.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    let shape = obj.getattr("shape").map(|s| s.to_string()).ok();
    let dtype = obj.getattr("dtype").map(|s| s.to_string()).ok();
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into());
    match (shape, dtype) {
        (Some(s), Some(d)) => format!("{ty} of shape {s} and dtype {d}"),
        _ => ty,
    }
}

pub fn input_error(msg: String) -> PyErr {
    raise("InputError", msg)
}

/// Preprocess a photo as the weights ask (torchvision's Resize, ToTensor, Normalize).
pub fn preprocess(photo: &Photo, how: &Preprocessing) -> PyResult<Preprocessed> {
    preprocess::preprocess_with(&photo.image, how)
        .map_err(|e| input_error(format!("image {}: {e}", photo.name.display())))
}

/// An already-normalised model input: float32 (3, H, W) or (1, 3, H, W), numpy or torch
/// (moved to the CPU), every value finite.
pub fn tensor(obj: &Bound<'_, PyAny>) -> PyResult<Preprocessed> {
    let arr = if obj.hasattr("detach")? && obj.hasattr("cpu")? && obj.hasattr("numpy")? {
        obj.call_method0("detach")?
            .call_method0("cpu")?
            .call_method0("numpy")?
    } else {
        obj.clone()
    };
    let Ok(a) = arr.cast::<PyArrayDyn<f32>>() else {
        return Err(input_error(format!(
            "explain_tensor takes a float32 array (3, H, W) or (1, 3, H, W), already normalised; got {} (convert with x.astype(np.float32))",
            describe(&arr)
        )));
    };
    let shape = a.shape().to_vec();
    let (h, w) = match shape[..] {
        [3, h, w] | [1, 3, h, w] if h > 0 && w > 0 => (h, w),
        _ => {
            return Err(input_error(format!(
                "explain_tensor takes one image, (3, H, W) or (1, 3, H, W) with H, W ≥ 1; got shape {shape:?}"
            )));
        }
    };
    if (h * w) as u64 > preprocess::MAX_INPUT_PIXELS {
        return Err(input_error(format!(
            "a {h}×{w} input is over {} pixels; resize it first",
            preprocess::MAX_INPUT_PIXELS
        )));
    }
    let values: Vec<f32> = a.readonly().as_array().iter().copied().collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let (c, y, x) = (i / (h * w), i / w % h, i % w);
        return Err(input_error(format!(
            "the tensor holds {} at channel {c}, row {y}, column {x}: every value must be finite",
            values[i]
        )));
    }
    Ok(Preprocessed {
        tensor: values,
        height: h,
        width: w,
    })
}

/// A tensor's photo for overlays: the normalisation undone, rounded and clamped to 0..255.
pub fn unnormalised(pre: &Preprocessed, how: &Preprocessing) -> RgbImage {
    let (h, w) = (pre.height, pre.width);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = |c: usize| {
            let v = pre.tensor[c * h * w + y as usize * w + x as usize];
            ((v * how.std[c] + how.mean[c]) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        };
        image::Rgb([at(0), at(1), at(2)])
    })
}
