//! What every output format implements, and what it is given for one photo.

use crate::app::record::{ExplainOptions, Explained, Report, WriteContext};
use crate::error::Result;
use image::RgbImage;
use std::path::{Path, PathBuf};

/// One photo's results and where its files go.
pub struct Item<'a> {
    pub ctx: &'a WriteContext,
    /// the photo's path (for the report and the metrics it names)
    pub image: &'a Path,
    pub photo: &'a RgbImage,
    pub done: &'a Explained,
    /// seconds decoding and preprocessing the photo took
    pub decode_s: f64,
    /// the output folder and the files' stem
    pub dir: &'a Path,
    pub stem: &'a str,
    pub o: &'a ExplainOptions,
}

/// An output format: the files it writes for one photo.
pub trait Format: Sync {
    /// Whether this run asks for it.
    fn wanted(&self, o: &ExplainOptions) -> bool;
    /// Write its files, each atomically; return their paths. `report` is the JSON report so
    /// far (its `outputs` list the files of the formats before this one).
    fn write(&self, it: &Item, report: &Report) -> Result<Vec<PathBuf>>;
    /// Whether its time is the report page's (`Timings::report_s`) rather than writing's.
    fn is_report_page(&self) -> bool {
        false
    }
}
