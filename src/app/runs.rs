//! Runs over real folders: the inputs (recursive, `--out` and this tool's own outputs never
//! scanned, sub-folders kept in the output layout), shards for job arrays, resuming, and
//! `index.jsonl`, the record of each image's result, one whole line per image.

use crate::error::{Error, Result};
use std::io::Write;
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
/// `recursive` is false), sorted by path. `exclude` (the output folder) is never scanned, and
/// neither is anything this tool writes ([`is_our_output`]); files named directly are kept.
pub fn collect(inputs: &[PathBuf], recursive: bool, exclude: Option<&Path>) -> Collected {
    let exclude = exclude.and_then(|e| e.canonicalize().ok());
    let mut c = Collected::default();
    for p in inputs {
        if p.is_dir() {
            walk(p, p, recursive, exclude.as_deref(), &mut c);
        } else {
            c.inputs.push(Input {
                path: p.clone(),
                rel_dir: PathBuf::new(),
            });
        }
    }
    c.inputs.sort_by(|a, b| a.path.cmp(&b.path));
    c
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Collected {
    pub inputs: Vec<Input>,
    /// files and folders passed over because this tool wrote them
    pub skipped_outputs: usize,
}

/// Whether a file or folder name is one this tool writes: `<stem>.combicam.png`,
/// `<stem>.heatmap.png`, `<stem>.<method>[.<rule>][.heatmap].png`, anything
/// `<stem>.report.*` (the page, its image folder, a screenshot of it), `index.html` and
/// `index.jsonl`.
pub fn is_our_output(name: &str) -> bool {
    let lower = name.to_lowercase();
    if lower == "index.html" || lower == "index.jsonl" {
        return true;
    }
    let parts: Vec<&str> = lower.split('.').collect();
    // the stem is the first part; the extension, if any, the last
    let inner = match parts.len() {
        0 | 1 => return false,
        2 => &parts[1..],
        n => &parts[1..n - 1],
    };
    let last = parts[parts.len() - 1];
    inner.iter().chain([&last]).any(|p| *p == "report")
        || (last == "png"
            && inner.iter().any(|p| {
                matches!(*p, "combicam" | "heatmap" | "fused")
                    || crate::cam::methods::Method::parse(p).is_ok()
            }))
}

fn walk(root: &Path, dir: &Path, recursive: bool, exclude: Option<&Path>, out: &mut Collected) {
    if exclude.is_some_and(|e| dir.canonicalize().is_ok_and(|d| d == e)) {
        return;
    }
    // a sub-folder holding a run's index is an earlier run's output folder
    if dir != root && dir.join("index.jsonl").is_file() {
        out.skipped_outputs += 1;
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if is_our_output(&name) {
            out.skipped_outputs += 1;
            continue;
        }
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
            out.inputs.push(Input { path: p, rel_dir });
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

/// `<out>/index.jsonl`: one JSON line per image, `{"image": PATH, …}` with its outputs, or
/// with `"error"` when it failed. Each line goes out in one write of the whole line; the
/// file is made when the first line is written. The last line of an image wins: opening the
/// index drops a line a crash cut short and the earlier lines of every image, and so does
/// [`Index::finish`], so a folder run again (without `--resume`) leaves one line per image.
pub struct Index {
    file: Option<std::fs::File>,
    path: PathBuf,
    /// lines written since opening that replaced an image's earlier line
    replaced: usize,
    seen: std::collections::HashSet<String>,
}

impl Index {
    pub fn new(out: &Path) -> Index {
        Index {
            file: None,
            path: out.join("index.jsonl"),
            replaced: 0,
            seen: Default::default(),
        }
    }

    /// Rewrite the file with the last line of each image, whole lines only; the images in it.
    fn compact(path: &Path) -> Result<std::collections::HashSet<String>> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(Error::output(path, e)),
        };
        // a torn last line (no newline after it) is dropped
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines: Vec<&[u8]> = text[..whole]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let image = |l: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("image").and_then(|i| i.as_str()).map(String::from))
        };
        let mut last = std::collections::HashMap::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(im) = image(l) {
                last.insert(im, i);
            }
        }
        let keep: Vec<&[u8]> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| image(l).is_none_or(|im| last[&im] == *i))
            .map(|(_, l)| *l)
            .collect();
        if keep.len() != lines.len() || whole != text.len() {
            let mut out = Vec::with_capacity(whole);
            for l in keep {
                out.extend_from_slice(l);
                out.push(b'\n');
            }
            // a new file renamed over the old: a crash leaves one or the other, whole
            let tmp = path.with_extension("jsonl.tmp");
            std::fs::write(&tmp, &out)
                .and_then(|_| std::fs::rename(&tmp, path))
                .map_err(|e| Error::output(path, e))?;
        }
        Ok(last.into_keys().collect())
    }

    pub fn append(&mut self, line: &serde_json::Value) -> Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(|e| Error::output(&self.path, e))?;
        bytes.push(b'\n');
        if self.file.is_none() {
            self.seen = Self::compact(&self.path)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| Error::output(&self.path, e))?;
            self.file = Some(file);
        }
        if let Some(im) = line.get("image").and_then(|i| i.as_str())
            && !self.seen.insert(im.to_string())
        {
            self.replaced += 1;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&bytes)
            .and_then(|_| file.flush())
            .map_err(|e| Error::output(&self.path, e))
    }

    /// The line of a failed image: its path and the error.
    pub fn append_error(&mut self, image: &str, error: &str) -> Result<()> {
        self.append(&serde_json::json!({"image": image, "error": error}))
    }

    /// Drop the lines this run replaced (one line per image is left).
    pub fn finish(mut self) -> Result<()> {
        if self.file.take().is_some() && self.replaced > 0 {
            Self::compact(&self.path)?;
        }
        Ok(())
    }
}

/// How a folder run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub failed: usize,
    /// (item index, the error's one line) of each failed item, in input order
    pub errors: Vec<(usize, String)>,
    /// `stop` was raised (Ctrl-C): the images already on the GPU were finished, no other began
    pub stopped: bool,
}

/// A folder run in three stages on three threads: decoding (and preprocessing) of image i+1,
/// the GPU work of image i on the calling thread, rendering and writing of image i−1. Each
/// queue holds one item, so memory does not grow with the folder. Results, errors and the
/// progress bar come out in input order; an error skips its image, with one line on stderr.
/// A stage whose thread cannot start (a thread quota, an address-space cap) runs on the
/// calling thread instead, in turn with the GPU work, as `gpu::workers` does.
pub fn pipelined<I, D, G, E>(
    items: &[I],
    stop: &std::sync::atomic::AtomicBool,
    name: impl Fn(&I) -> String + Sync,
    decode: impl Fn(&I) -> std::result::Result<D, E> + Sync,
    mut gpu: impl FnMut(&I, D) -> std::result::Result<G, E>,
    write: impl FnMut(&I, G, &indicatif::ProgressBar) -> std::result::Result<(), E> + Send,
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
    // the writer's work on one finished image, on its thread or, where that thread could not
    // start, on this one
    let write = std::sync::Mutex::new(write);
    let write_one = |k: usize, r: std::result::Result<G, E>, pbw: &indicatif::ProgressBar| {
        let item = &items[k];
        let mut write = write.lock().unwrap_or_else(|e| e.into_inner());
        let r = r.and_then(|g| (*write)(item, g, pbw)).err().map(|e| {
            let msg = error_line(&name(item), &format!("{e:#}"));
            pbw.suspend(|| eprintln!("error: {msg}"));
            (k, msg)
        });
        pbw.inc(1);
        r
    };
    let (mut errors, mut done) = (Vec::new(), 0);
    std::thread::scope(|s| {
        // decoding and writing on threads of their own where they can start (not under a
        // thread quota or an address-space cap, say): else on this thread, in turn
        let (to_gpu, decoded) = sync_channel::<(usize, std::result::Result<D, E>)>(1);
        let (to_writer, finished) = sync_channel::<(usize, std::result::Result<G, E>)>(1);
        let decoder = std::thread::Builder::new().spawn_scoped(s, move || {
            for (k, item) in items.iter().enumerate() {
                if stop.load(SeqCst) || to_gpu.send((k, decode(item))).is_err() {
                    break;
                }
            }
        });
        let pbw = pb.clone();
        let write_one = &write_one;
        let writer = std::thread::Builder::new().spawn_scoped(s, move || {
            let (mut errors, mut done) = (Vec::new(), 0);
            for (k, r) in finished {
                done += 1;
                errors.extend(write_one(k, r, &pbw));
            }
            (errors, done)
        });
        let decoded: Box<dyn Iterator<Item = (usize, std::result::Result<D, E>)>> = match decoder {
            Ok(_) => Box::new(decoded.into_iter()),
            Err(_) => Box::new(
                (items.iter().enumerate())
                    .take_while(|_| !stop.load(SeqCst))
                    .map(|(k, i)| (k, decode(i))),
            ),
        };
        for (k, d) in decoded {
            if stop.load(SeqCst) {
                break;
            }
            let item = &items[k];
            pb.set_message(name(item));
            let r = d.and_then(|d| gpu(item, d));
            match &writer {
                Ok(_) => {
                    if to_writer.send((k, r)).is_err() {
                        break;
                    }
                }
                Err(_) => {
                    done += 1;
                    errors.extend(write_one(k, r, &pb));
                }
            }
        }
        drop(to_writer);
        if let Ok(writer) = writer {
            (errors, done) = writer.join().expect("the writer thread panicked");
        }
    });
    pb.finish_and_clear();
    Finished {
        failed: errors.len(),
        errors,
        stopped: done < items.len(),
    }
}

/// One line for an item's error that names the item once: errors that already name it (the
/// image and weights errors do) are not prefixed with it again.
pub fn error_line(name: &str, error: &str) -> String {
    let e = error.replace('\n', " ");
    if e.contains(name) {
        e
    } else {
        format!("{name}: {e}")
    }
}
