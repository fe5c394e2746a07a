//! The output writers, one file per format, and their registry. A new format is one file
//! implementing `Format` and one line in `FORMATS`.
//!
//! - `png`: each method's overlay and heat map;
//! - `raw`: `--save-raw`, the maps as safetensors;
//! - `html`: `--report`, the page of per-block figures, and `index.html`;
//! - `json`: the report, always, and last.

mod format;
pub mod html;
pub mod json;
pub mod png;
pub mod raw;

pub use format::{Format, Item};

/// The formats in the order they are written. The JSON report (`json`) follows them, always.
pub const FORMATS: &[&dyn Format] = &[&png::Png, &raw::Raw, &html::Html];
