//! `explain` over many photos: the output folder, each photo's output names and what
//! `--resume` skips, the decode / GPU / write pipeline (`runs::pipelined`), `index.jsonl`
//! and, with `--report`, `index.html`.

use super::engine::Engine;
use super::explain::{run_one, unique_stem, write_one};
use super::record::{ExplainOptions, Report, WriteContext};
use super::runs::{self, Finished, Input};
use super::write::{Item, html, png};
use crate::error::{Error, Result};
use crate::preprocess::{self, Preprocessing};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Create the output folder and check that it is writable, before any GPU work. Returns
/// whether it existed before (a folder the run made is removed again if nothing came of it).
pub fn prepare_out(out: &Path) -> Result<bool> {
    let existed = out.exists();
    std::fs::create_dir_all(out).map_err(|e| {
        Error::Input(format!(
            "cannot create output folder {} (choose another with --out): {e}",
            out.display()
        ))
    })?;
    let probe = out.join(format!(".combicam-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        Error::Input(format!(
            "output folder {} is not writable (choose another with --out): {e}",
            out.display()
        ))
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(existed)
}

/// A run of `explain` over `inputs` into `out`.
pub struct FolderRun<'a> {
    pub inputs: &'a [Input],
    pub out: &'a Path,
    /// skip the photos whose JSON report (written last) exists
    pub resume: bool,
    pub opts: &'a ExplainOptions,
    /// raised by Ctrl-C: the run stops between photos
    pub stop: &'a AtomicBool,
    /// this run made `out` (`prepare_out`): it is removed again if no photo succeeds
    pub made_out: bool,
}

/// How a folder run ended.
pub struct FolderEnd {
    pub finished: Finished,
    /// photos explained by this run
    pub succeeded: usize,
    /// photos `--resume` found done
    pub skipped: usize,
    /// the photos this run tried, in input order (`finished.errors` index them)
    pub todo: Vec<PathBuf>,
}

/// Decode and preprocess one photo; errors name it.
fn load(path: &Path, how: &Preprocessing) -> Result<(image::RgbImage, preprocess::Preprocessed)> {
    let photo = preprocess::load_image(path)?;
    let pre = preprocess::preprocess_with(&photo, how)
        .map_err(|e| Error::Input(format!("image {}: {e}", path.display())))?;
    Ok((photo, pre))
}

impl FolderRun<'_> {
    /// Each photo's output folder and stem, named in input order so that a resumed run
    /// names every photo as the first did.
    fn places(&self) -> Vec<(PathBuf, String)> {
        let mut used = std::collections::HashSet::new();
        self.inputs
            .iter()
            .map(|i| {
                let dir = self.out.join(&i.rel_dir);
                (dir, unique_stem(&i.path, &mut used, &i.rel_dir))
            })
            .collect()
    }

    /// With `--resume` and `--report`: the pages of the photos done before, which stay in
    /// `index.html`.
    fn resumed_pages(&self, places: &[(PathBuf, String)], todo: &[usize]) -> Vec<html::IndexEntry> {
        (0..self.inputs.len())
            .filter(|k| self.opts.report && !todo.contains(k))
            .filter_map(|k| {
                let ((dir, stem), rel) = (&places[k], &self.inputs[k].rel_dir);
                let page = format!("{stem}.report.html");
                dir.join(&page).is_file().then(|| {
                    let (overlay, _) = png::png_names(rel, stem, &self.opts.explainers[0]);
                    html::IndexEntry {
                        page: rel.join(page).display().to_string(),
                        thumb: overlay.display().to_string(),
                        title: stem.clone(),
                    }
                })
            })
            .collect()
    }

    /// Explain every photo not done yet: decoding, the GPU and writing overlap
    /// (`runs::pipelined`); each finished photo goes into `index.jsonl` (and `index.html`),
    /// then to `done(report, photo, progress bar)`. Errors skip their photo and are recorded
    /// in the index.
    pub fn run(
        &self,
        engine: &mut Engine,
        mut done: impl FnMut(&Report, &Path, &indicatif::ProgressBar) + Send,
    ) -> Result<FolderEnd> {
        let opts = self.opts;
        let how = engine.model.weights.preprocessing;
        let places = self.places();
        let todo: Vec<usize> = (0..self.inputs.len())
            .filter(|&k| {
                let (dir, stem) = &places[k];
                !(self.resume && dir.join(format!("{stem}.json")).is_file())
            })
            .collect();
        let mut index = runs::Index::new(self.out);
        let mut pages = self.resumed_pages(&places, &todo);
        let ctx = WriteContext::of(engine);
        let mut succeeded = 0;
        let images: Vec<&Path> = self.inputs.iter().map(|i| i.path.as_path()).collect();
        let finished = runs::pipelined(
            &todo,
            self.stop,
            |&k| images[k].display().to_string(),
            |&k| {
                let t = Instant::now();
                let (photo, pre) = load(images[k], &how)?;
                Ok((photo, pre, t.elapsed().as_secs_f64()))
            },
            |_, (photo, pre, decode_s)| Ok((run_one(engine, &pre, opts)?, photo, decode_s)),
            |&k, (run, photo, decode_s), pb| {
                let (path, (dir, stem)) = (images[k], &places[k]);
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::Input(format!(
                        "cannot create output folder {}: {e}",
                        dir.display()
                    ))
                })?;
                let item = Item {
                    ctx: &ctx,
                    image: path,
                    photo: &photo,
                    done: &run,
                    decode_s,
                    dir,
                    stem,
                    o: opts,
                };
                let report = write_one(&item)?;
                index.append(&serde_json::json!({
                    "image": path.display().to_string(),
                    "outputs": report.outputs,
                    "top": &report.prediction.top[0],
                    "timings": report.timings,
                }))?;
                if opts.report {
                    pages.push(html::IndexEntry::of(&report, &self.inputs[k].rel_dir, stem));
                    html::write_index(self.out, &pages)?;
                }
                done(&report, path, pb);
                succeeded += 1;
                Ok::<(), Error>(())
            },
        );
        if succeeded == 0 && self.made_out {
            // nothing to show: leave no empty folder behind (the errors are on stderr)
            let _ = std::fs::remove_dir_all(self.out);
        } else {
            for (k, msg) in &finished.errors {
                index.append_error(&images[todo[*k]].display().to_string(), msg)?;
            }
            index.finish()?;
        }
        Ok(FolderEnd {
            skipped: self.inputs.len() - todo.len(),
            todo: todo.iter().map(|&k| images[k].to_path_buf()).collect(),
            finished,
            succeeded,
        })
    }
}
