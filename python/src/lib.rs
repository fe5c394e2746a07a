//! `combicam._native`: the engine of combicam-gpu for Python. Everything here converts
//! arguments and results; the work is the library's (`combicam_gpu::app`), the same code the
//! command line runs, so the numbers are the command line's bit for bit.
//!
//! - `explainer`: `Explainer`, the weights on one GPU device and the plans it has built;
//! - `explanation`: `Explanation` (one photo's maps, prediction and files) and `Entry`;
//! - `inputs`: photos and tensors from paths, numpy arrays, PIL images and torch tensors.

mod explainer;
mod explanation;
mod inputs;

use pyo3::prelude::*;
use pyo3::types::PyList;

/// The Python exception of a library error, from the classes `combicam/_errors.py` defines:
/// `ImageError`, `WeightsError`, `GpuError`, `InputError` and `OutputError`, all
/// `combicam.Error`, each also a built-in one (`ValueError`, `RuntimeError`, `OSError`) so
/// that plain `except ValueError` works too. The message is the command line's.
pub(crate) fn py_err(e: combicam_gpu::Error) -> PyErr {
    use combicam_gpu::Error as E;
    let kind = match &e {
        E::Image { .. } => "ImageError",
        E::Weights { .. } => "WeightsError",
        E::Gpu(_) => "GpuError",
        E::Input(_) => "InputError",
        E::Output { .. } => "OutputError",
    };
    raise(kind, e.to_string())
}

/// An exception of class `kind` from `combicam._errors` carrying `msg`.
pub(crate) fn raise(kind: &str, msg: String) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("combicam._errors")
            .and_then(|m| m.getattr(kind))
            .and_then(|cls| cls.call1((msg.clone(),)));
        match made {
            Ok(obj) => PyErr::from_value(obj),
            Err(e) => e,
        }
    })
}

/// The adapters `device=N` chooses from, best first: a list of dicts (index, name, backend,
/// device_type, driver, driver_info). Empty when there is none.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = py.detach(combicam_gpu::gpu::adapters);
    let json = py.import("json")?;
    let out = PyList::empty(py);
    for (s, _) in list {
        let text = serde_json::to_string(&s).expect("an adapter summary serialises");
        out.append(json.call_method1("loads", (text,))?)?;
    }
    Ok(out)
}

/// The images in a folder and its sub-folders, sorted, this tool's outputs passed over (as
/// the command line's folder runs take them).
#[pyfunction]
fn _collect(folder: std::path::PathBuf) -> Vec<String> {
    let found = combicam_gpu::app::runs::collect(&[folder], true, None);
    found
        .inputs
        .into_iter()
        .map(|i| i.path.display().to_string())
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<explainer::Explainer>()?;
    m.add_class::<explanation::Explanation>()?;
    m.add_class::<explanation::Entry>()?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(_collect, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
