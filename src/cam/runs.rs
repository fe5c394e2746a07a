//! Runs over real folders: the inputs (recursive, `--out` never scanned, sub-folders kept in
//! the output layout), shards for job arrays, resuming, and `index.jsonl`, the record of
//! finished images, appended one whole line at a time.

use crate::error::{Error, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Image files a folder may hold.
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jfif",
];

/// One image to process and the sub-folder of `--out` its outputs go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    /// relative to `--out`: empty for images named directly, their folder relative to the
    /// folder given otherwise
    pub rel_dir: PathBuf,
}

/// The images named on the command line, folders expanded (recursively unless
/// `recursive` is false), sorted by path; `exclude` (the output folder) is never scanned.
pub fn collect(inputs: &[PathBuf], recursive: bool, exclude: Option<&Path>) -> Vec<Input> {
    let exclude = exclude.and_then(|e| e.canonicalize().ok());
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            walk(p, p, recursive, exclude.as_deref(), &mut out);
        } else {
            out.push(Input {
                path: p.clone(),
                rel_dir: PathBuf::new(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk(root: &Path, dir: &Path, recursive: bool, exclude: Option<&Path>, out: &mut Vec<Input>) {
    if exclude.is_some_and(|e| dir.canonicalize().is_ok_and(|d| d == e)) {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                walk(root, &p, recursive, exclude, out);
            }
        } else if p.extension().is_some_and(|e| {
            IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
        }) {
            let rel_dir = p
                .parent()
                .and_then(|d| d.strip_prefix(root).ok())
                .map(Path::to_path_buf)
                .unwrap_or_default();
            out.push(Input { path: p, rel_dir });
        }
    }
}

/// `I/N` (1 ≤ I ≤ N).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::Input(format!(
            "--shard {s:?} is not I/N with 1 ≤ I ≤ N, e.g. 2/8 (for a job array of N tasks: --shard $((SLURM_ARRAY_TASK_ID+1))/N)"
        ))
    };
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Shard `i` of `n`: of the inputs sorted by path, the k-th (0-based) belongs to shard
/// (k mod n) + 1. The shards are disjoint and together hold every input.
pub fn shard(inputs: Vec<Input>, (i, n): (usize, usize)) -> Vec<Input> {
    inputs
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % n + 1 == i)
        .map(|(_, x)| x)
        .collect()
}

/// `<out>/index.jsonl`: one JSON line per finished image. Each line goes out in one write of
/// the whole line; a line a crash cut short is removed when the index is opened again. The
/// file is made when the first image finishes.
pub struct Index {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl Index {
    pub fn new(out: &Path) -> Index {
        Index {
            file: None,
            path: out.join("index.jsonl"),
        }
    }

    fn open(path: &Path) -> Result<std::fs::File> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::output(path, e))?;
        // drop a torn last line (no newline after it)
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(|e| Error::output(path, e))?;
        if !text.is_empty() && text.last() != Some(&b'\n') {
            let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64)
                .map_err(|e| Error::output(path, e))?;
            file.seek(SeekFrom::End(0))
                .map_err(|e| Error::output(path, e))?;
        }
        Ok(file)
    }

    pub fn append(&mut self, line: &serde_json::Value) -> Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(|e| Error::output(&self.path, e))?;
        bytes.push(b'\n');
        if self.file.is_none() {
            self.file = Some(Self::open(&self.path)?);
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&bytes)
            .and_then(|_| file.flush())
            .map_err(|e| Error::output(&self.path, e))
    }
}
