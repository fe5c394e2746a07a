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

/// How a folder run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub failed: usize,
    /// `stop` was raised (Ctrl-C): the images already on the GPU were finished, no other began
    pub stopped: bool,
}

/// A folder run in three stages on three threads: decoding (and preprocessing) of image i+1,
/// the GPU work of image i on the calling thread, rendering and writing of image i−1. Each
/// queue holds one item, so memory does not grow with the folder. Results, errors and the
/// progress bar come out in input order; an error skips its image, with one line on stderr.
pub fn pipelined<I, D, G, E>(
    items: &[I],
    stop: &std::sync::atomic::AtomicBool,
    name: impl Fn(&I) -> String + Sync,
    decode: impl Fn(&I) -> std::result::Result<D, E> + Sync,
    mut gpu: impl FnMut(&I, D) -> std::result::Result<G, E>,
    mut write: impl FnMut(&I, G, &indicatif::ProgressBar) -> std::result::Result<(), E> + Send,
) -> Finished
where
    I: Sync,
    D: Send,
    G: Send,
    E: std::fmt::Display + Send,
{
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::mpsc::sync_channel;
    let pb = indicatif::ProgressBar::new(items.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]",
        )
        .unwrap(),
    );
    if items.len() < 2 {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (name, decode) = (&name, &decode);
    let (mut failed, mut done) = (0, 0);
    std::thread::scope(|s| {
        let (to_gpu, decoded) = sync_channel::<(usize, std::result::Result<D, E>)>(1);
        let (to_writer, finished) = sync_channel::<(usize, std::result::Result<G, E>)>(1);
        s.spawn(move || {
            for (k, item) in items.iter().enumerate() {
                if stop.load(SeqCst) || to_gpu.send((k, decode(item))).is_err() {
                    break;
                }
            }
        });
        let pbw = pb.clone();
        let writer = s.spawn(move || {
            let (mut failed, mut done) = (0, 0);
            for (k, r) in finished {
                done += 1;
                let item = &items[k];
                if let Err(e) = r.and_then(|g| write(item, g, &pbw)) {
                    failed += 1;
                    let msg = format!("error: {}: {e:#}", name(item)).replace('\n', " ");
                    pbw.suspend(|| eprintln!("{msg}"));
                }
                pbw.inc(1);
            }
            (failed, done)
        });
        for (k, d) in decoded {
            if stop.load(SeqCst) {
                break;
            }
            let item = &items[k];
            pb.set_message(name(item));
            if to_writer.send((k, d.and_then(|d| gpu(item, d)))).is_err() {
                break;
            }
        }
        drop(to_writer);
        (failed, done) = writer.join().expect("the writer thread panicked");
    });
    pb.finish_and_clear();
    Finished {
        failed,
        stopped: done < items.len(),
    }
}
