//! `<stem>.json`, the report of one photo: written last, so that its presence means the
//! photo is complete (`--resume`).

use crate::app::record::Report;
use crate::app::render::write_bytes_atomic;
use crate::error::{Error, Result};
use std::path::Path;

/// Write `report` to `path` (which its `outputs` already list last).
pub fn write(report: &Report, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::output(path, e))?;
    write_bytes_atomic(&json, path)
}
