//! `fetch`: timm EfficientNet weights (`model.safetensors`, `config.json`) from the Hugging
//! Face hub into the hub's own cache layout, so other tools share the files; `hf:REPO` names
//! them for `--weights`.
//!
//! Cache layout (as `huggingface_hub` writes it): `<cache>/models--ORG--NAME/blobs/<etag>`,
//! `snapshots/<commit>/<file>` → the blob, `refs/main` = the commit. A download goes to
//! `blobs/<etag>.incomplete` and is renamed when complete: an interrupted one never sits
//! under its final name, and the next `fetch` resumes it with an HTTP range request.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The files a timm model needs.
pub const FILES: [&str; 2] = ["config.json", "model.safetensors"];

/// Where files come from and go to.
#[derive(Clone, Debug)]
pub struct Hub {
    /// `https://huggingface.co`, or `$HF_ENDPOINT`
    pub endpoint: String,
    /// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`
    pub cache: PathBuf,
}

impl Hub {
    /// The endpoint and cache the Hugging Face tools use, from the same variables.
    pub fn from_env() -> Result<Hub> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
            .ok_or_else(|| {
                Error::Input(
                    "no Hugging Face cache folder: set HF_HUB_CACHE (or HF_HOME, or HOME)".into(),
                )
            })?;
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        Ok(Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache,
        })
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The snapshot folder of `repo` holding every file of [`FILES`], if fetched.
    pub fn cached(&self, repo: &str) -> Option<PathBuf> {
        let dir = self.repo_dir(repo);
        let commit = std::fs::read_to_string(dir.join("refs/main")).ok()?;
        let snap = dir.join("snapshots").join(commit.trim());
        FILES.iter().all(|f| snap.join(f).is_file()).then_some(snap)
    }

    /// Download `repo`'s files (what is already complete is kept, a partial blob resumed).
    /// `progress(file, done, total)` is called as bytes arrive. Returns the snapshot folder.
    pub fn fetch(
        &self,
        repo: &str,
        mut progress: impl FnMut(&str, u64, Option<u64>),
    ) -> Result<PathBuf> {
        check_repo(repo)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .user_agent(concat!("combicam-gpu/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let dir = self.repo_dir(repo);
        let mut commit = String::new();
        for file in FILES {
            let url = format!("{}/{repo}/resolve/main/{file}", self.endpoint);
            let meta = self.head(&agent, &url, repo)?;
            commit = meta.commit.clone();
            let blob = dir.join("blobs").join(&meta.etag);
            if !blob.is_file() {
                download(&agent, &meta, &blob, |d, t| progress(file, d, t))?;
            }
            let link = dir.join("snapshots").join(&commit).join(file);
            place(&blob, &link)?;
            if file == "config.json" {
                check_config(repo, &link)?;
            }
        }
        write_atomic(&dir.join("refs/main"), commit.as_bytes())?;
        Ok(dir.join("snapshots").join(commit))
    }

    /// The file's commit, blob id, size and where its bytes are (after the hub's redirect).
    fn head(&self, agent: &ureq::Agent, url: &str, repo: &str) -> Result<Meta> {
        let net = |e: ureq::Error| {
            Error::Input(format!(
                "cannot reach {url} ({e}); check the network, or set HF_ENDPOINT to a mirror"
            ))
        };
        let r = agent.head(url).call().map_err(net)?;
        let status = r.status().as_u16();
        let h = |k: &str| {
            r.headers().get(k).and_then(|v| v.to_str().ok()).map(|v| {
                v.trim_matches('"')
                    .trim_start_matches("W/")
                    .trim_matches('"')
                    .to_string()
            })
        };
        match status {
            200..=399 => {}
            401 | 403 | 404 => {
                return Err(Error::Input(format!(
                    "{repo} was not found on {} (HTTP {status}); check the name, e.g. timm/efficientnet_b4.ra2_in1k",
                    self.endpoint
                )));
            }
            s => {
                return Err(Error::Input(format!(
                    "{url} answered HTTP {s}; try again later"
                )));
            }
        }
        let etag = h("x-linked-etag").or_else(|| h("etag")).ok_or_else(|| {
            Error::Input(format!(
                "{url} gave no ETag; the endpoint is not a Hugging Face hub"
            ))
        })?;
        if etag.is_empty() || etag.contains(['/', '\\', '.']) {
            return Err(Error::Input(format!(
                "{url} gave an unusable ETag {etag:?}"
            )));
        }
        let commit = h("x-repo-commit").ok_or_else(|| {
            Error::Input(format!(
                "{url} gave no X-Repo-Commit; the endpoint is not a Hugging Face hub"
            ))
        })?;
        if commit.is_empty() || !commit.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::Input(format!(
                "{url} gave an unusable commit {commit:?}"
            )));
        }
        let size = h("x-linked-size")
            .or_else(|| h("content-length"))
            .and_then(|s| s.parse().ok());
        let location = match (status, h("location")) {
            (300..=399, Some(l)) if l.starts_with("http") => l,
            (300..=399, Some(l)) => format!("{}{l}", self.endpoint),
            _ => url.to_string(),
        };
        Ok(Meta {
            etag,
            commit,
            size,
            location,
        })
    }
}

struct Meta {
    etag: String,
    commit: String,
    size: Option<u64>,
    location: String,
}

/// `ORG/NAME`, no path tricks.
fn check_repo(repo: &str) -> Result<()> {
    let ok = repo.split('/').count() == 2
        && repo.split('/').all(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "{repo:?} is not a hub repository name; use ORG/NAME, e.g. timm/efficientnet_b4.ra2_in1k"
        )))
    }
}

/// The repository must be an EfficientNet this tool runs, before its weights are fetched.
fn check_config(repo: &str, config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config).unwrap_or_default();
    let arch = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["architecture"].as_str().map(str::to_string));
    match arch {
        Some(a) if crate::model::weights::parse_arch(&a).is_some() => Ok(()),
        Some(a) => Err(Error::Input(format!(
            "{repo} holds a {a}, not an EfficientNet this tool runs (efficientnet_b*, tf_efficientnet_b*, tf_efficientnet_lite*)"
        ))),
        None => Err(Error::Input(format!(
            "{repo} has no timm config.json with an architecture; pass a timm EfficientNet repository"
        ))),
    }
}

/// Bytes of `meta` into `blob`, through `blob.incomplete` (resumed when the server honours
/// the range), renamed when complete.
fn download(
    agent: &ureq::Agent,
    meta: &Meta,
    blob: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<()> {
    let part = blob.with_extension("incomplete");
    let out_err = |e: std::io::Error| Error::output(&part, e);
    std::fs::create_dir_all(blob.parent().unwrap()).map_err(out_err)?;
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(&meta.location);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let net = |e: ureq::Error| {
        Error::Input(format!(
            "download of {} failed ({e}); run the same command again to resume",
            meta.location
        ))
    };
    let r = req.call().map_err(net)?;
    let status = r.status().as_u16();
    let (mut file, mut done) = match status {
        206 if have > 0 => (
            std::fs::OpenOptions::new()
                .append(true)
                .open(&part)
                .map_err(out_err)?,
            have,
        ),
        200 => (std::fs::File::create(&part).map_err(out_err)?, 0),
        // the range is past the end: the partial file is not what the server has; start over
        416 if have > 0 => {
            std::fs::remove_file(&part).map_err(out_err)?;
            return download(agent, meta, blob, progress);
        }
        s => {
            return Err(Error::Input(format!(
                "{} answered HTTP {s}; try again later",
                meta.location
            )));
        }
    };
    let mut body = r.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    progress(done, meta.size);
    loop {
        let n = body.read(&mut buf).map_err(|e| {
            Error::Input(format!(
                "download of {} was cut off after {done} bytes ({e}); run the same command again to resume",
                meta.location
            ))
        })?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(out_err)?;
        done += n as u64;
        progress(done, meta.size);
    }
    file.sync_all().map_err(out_err)?;
    if let Some(size) = meta.size
        && done != size
    {
        return Err(Error::Input(format!(
            "download of {} ended at {done} of {size} bytes; run the same command again to resume",
            meta.location
        )));
    }
    std::fs::rename(&part, blob).map_err(|e| Error::output(blob, e))
}

/// `link` → `blob` (a relative symlink, as the hub's tools make; a copy where links fail).
fn place(blob: &Path, link: &Path) -> Result<()> {
    std::fs::create_dir_all(link.parent().unwrap()).map_err(|e| Error::output(link, e))?;
    let _ = std::fs::remove_file(link);
    #[cfg(unix)]
    {
        let rel = Path::new("../..")
            .join("blobs")
            .join(blob.file_name().unwrap());
        if std::os::unix::fs::symlink(&rel, link).is_ok() {
            return Ok(());
        }
    }
    std::fs::copy(blob, link)
        .map(|_| ())
        .map_err(|e| Error::output(link, e))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| Error::output(path, e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::output(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::output(path, e))
}

/// A `--weights` value: `hf:ORG/NAME` is the fetched snapshot's `model.safetensors` (its
/// `config.json` beside it names the architecture and the preprocessing); anything else is
/// a path.
pub fn resolve_weights_arg(arg: &Path) -> Result<PathBuf> {
    let Some(repo) = arg.to_str().and_then(|s| s.strip_prefix("hf:")) else {
        return Ok(arg.to_path_buf());
    };
    check_repo(repo)?;
    let hub = Hub::from_env()?;
    match hub.cached(repo) {
        Some(snap) => Ok(snap.join("model.safetensors")),
        None => Err(Error::Input(format!(
            "hf:{repo} is not in the Hugging Face cache ({}); fetch it first: combicam-gpu fetch {repo}",
            hub.cache.display()
        ))),
    }
}
