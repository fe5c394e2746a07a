//! The overlay and heat-map PNGs of every method's fused map.

use super::format::{Format, Item};
use crate::app::record::{ExplainOptions, Report};
use crate::app::render::{fit, heatmap_rgb, overlay, write_png_atomic};
use crate::cam::methods::Explainer;
use crate::error::Result;
use std::path::{Path, PathBuf};

pub struct Png;

impl Format for Png {
    fn wanted(&self, _: &ExplainOptions) -> bool {
        true
    }

    fn write(&self, it: &Item, _: &Report) -> Result<Vec<PathBuf>> {
        let (h, w) = it.done.input_size;
        let shown = fit(it.photo, it.o.overlay_size);
        let mut files = Vec::new();
        for e in &it.done.out.explainers {
            let heat = heatmap_rgb(&e.fused, h, w, shown.width(), shown.height());
            let blended = overlay(&shown, &heat, it.o.alpha);
            let (p_overlay, p_heat) = png_names(it.dir, it.stem, &e.explainer);
            write_png_atomic(&blended, &p_overlay)?;
            write_png_atomic(&heat, &p_heat)?;
            files.extend([p_overlay, p_heat]);
        }
        Ok(files)
    }
}

/// The overlay and heat-map files of an explainer: `<stem>.combicam.png` and
/// `<stem>.heatmap.png` for Combi-CAM, else `<stem>.<method>[.<rule>].png` and
/// `<stem>.<method>[.<rule>].heatmap.png` (the rule when it is not the method's default).
pub fn png_names(out_dir: &Path, stem: &str, e: &Explainer) -> (PathBuf, PathBuf) {
    if *e == Explainer::COMBICAM {
        return (
            out_dir.join(format!("{stem}.combicam.png")),
            out_dir.join(format!("{stem}.heatmap.png")),
        );
    }
    let tag = e.fused_name();
    let tag = tag.trim_end_matches(".fused");
    (
        out_dir.join(format!("{stem}.{tag}.png")),
        out_dir.join(format!("{stem}.{tag}.heatmap.png")),
    )
}
