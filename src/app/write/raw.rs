//! `--save-raw`: `<stem>.cams.safetensors`, the raw maps.

use super::format::{Format, Item};
use crate::app::record::{ExplainOptions, Report};
use crate::app::render::{resize_bilinear, write_bytes_atomic};
use crate::error::{Error, Result};
use crate::model::plan::Output;
use safetensors::{Dtype, tensor::TensorView};
use std::path::PathBuf;

pub struct Raw;

impl Format for Raw {
    fn wanted(&self, o: &ExplainOptions) -> bool {
        o.save_raw
    }

    fn write(&self, it: &Item, _: &Report) -> Result<Vec<PathBuf>> {
        let (h, w) = it.done.input_size;
        let p_raw = it.dir.join(format!("{}.cams.safetensors", it.stem));
        let photo_size =
            it.o.raw_at_photo_size
                .then(|| (it.photo.height() as usize, it.photo.width() as usize));
        write_bytes_atomic(&raw_safetensors(&it.done.out, h, w, photo_size)?, &p_raw)?;
        Ok(vec![p_raw])
    }
}

/// `probs`, `logits` (N); per method m, `m.NN` (h_l, w_l) for the fused blocks (after ReLU,
/// unnormalised; `gradcam.NN` for Grad-CAM) and its fused map (H, W), normalised to [0, 1]
/// (`combicam` for Combi-CAM, else `m.fused`, or `m.RULE.fused` for a rule other than the
/// method's default). With `photo` = (H', W'), each fused map also as `<name>.photo`
/// (H', W'): resized to the photo's resolution by the overlays' bilinear rule.
pub fn raw_safetensors(
    out: &Output,
    h: usize,
    w: usize,
    photo: Option<(usize, usize)>,
) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        (
            "probs".into(),
            vec![out.probs.len()],
            bytemuck::cast_slice(&out.probs).to_vec(),
        ),
        (
            "logits".into(),
            vec![out.logits.len()],
            bytemuck::cast_slice(&out.logits).to_vec(),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for e in &out.explainers {
        tensors.push((
            e.explainer.fused_name(),
            vec![h, w],
            bytemuck::cast_slice(&e.fused).to_vec(),
        ));
        if let Some((ph, pw)) = photo {
            let big = resize_bilinear(&e.fused, h, w, ph, pw);
            tensors.push((
                format!("{}.photo", e.explainer.fused_name()),
                vec![ph, pw],
                bytemuck::cast_slice(&big).to_vec(),
            ));
        }
        // a method's block maps do not depend on the fusion rule: written once
        if !seen.insert(e.explainer.method) {
            continue;
        }
        for (l, m) in e.maps.iter().enumerate() {
            if let Some(m) = m {
                let (mh, mw) = out.map_sizes[l];
                tensors.push((
                    format!("{}.{l:02}", e.explainer.method.name()),
                    vec![mh, mw],
                    bytemuck::cast_slice(m).to_vec(),
                ));
            }
        }
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = std::collections::HashMap::from([
        ("target".to_string(), out.target.to_string()),
        ("producer".to_string(), "combicam-gpu".to_string()),
    ]);
    crate::model::weights::serialize_safetensors(views, meta)
        .map_err(|e| Error::Input(format!("cannot encode raw maps: {e}")))
}
