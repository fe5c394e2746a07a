//! `fetch` against a hub served on 127.0.0.1 by the test (nothing leaves the machine): the
//! cache layout, a download cut off and resumed, a repository that is no EfficientNet, and
//! `--weights hf:REPO` from the command line.

use combicam_gpu::app::hub::Hub;
use combicam_gpu::model::weights::{self, Layout};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const MODEL_ETAG: &str = "5e2b7c0d9f4a1b3c5e2b7c0d9f4a1b3c5e2b7c0d9f4a1b3c5e2b7c0d9f4a1b3c";

/// A hub with two repositories: timm/efficientnet_b0.test (the formula network) and
/// timm/resnet.test (another architecture). The first `cut_first` downloads of the model
/// stop halfway. Serves until the test ends; counts requests by path.
struct FakeHub {
    endpoint: String,
    model: Vec<u8>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

fn config(arch: &str) -> String {
    format!(
        r#"{{"architecture": "{arch}", "num_classes": 1000, "pretrained_cfg": {{"input_size": [3, 224, 224], "test_input_size": [3, 256, 256], "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}}}"#
    )
}

fn serve(model: Vec<u8>, cut_first: usize) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let (m, h) = (model.clone(), hits.clone());
    let cuts = Arc::new(AtomicUsize::new(cut_first));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let _ = respond(conn, &m, &h, &cuts);
        }
    });
    FakeHub {
        endpoint,
        model,
        hits,
    }
}

fn respond(
    mut conn: TcpStream,
    model: &[u8],
    hits: &Mutex<HashMap<String, usize>>,
    cuts: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut range_from = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(r) = h.to_lowercase().strip_prefix("range: bytes=") {
            range_from = r.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    *hits
        .lock()
        .unwrap()
        .entry(format!("{method} {path}"))
        .or_default() += 1;
    let b0 = "/timm/efficientnet_b0.test/resolve/main";
    let other = "/timm/resnet.test/resolve/main";
    let (status, headers, body): (&str, Vec<String>, Vec<u8>) = match path {
        p if p == format!("{b0}/config.json") || p == format!("{other}/config.json") => {
            let arch = if p.starts_with(b0) {
                "efficientnet_b0"
            } else {
                "resnet50"
            };
            let c = config(arch).into_bytes();
            (
                "200 OK",
                vec![
                    format!("ETag: \"cfg{}\"", c.len()),
                    format!("X-Repo-Commit: {COMMIT}"),
                ],
                c,
            )
        }
        p if p == format!("{b0}/model.safetensors")
            || p == format!("{other}/model.safetensors") =>
        {
            (
                "302 Found",
                vec![
                    "Location: /cdn/model".into(),
                    format!("X-Linked-Etag: \"{MODEL_ETAG}\""),
                    format!("X-Linked-Size: {}", model.len()),
                    format!("X-Repo-Commit: {COMMIT}"),
                ],
                vec![],
            )
        }
        "/cdn/model" if range_from >= model.len() => (
            "416 Range Not Satisfiable",
            vec![format!("Content-Range: bytes */{}", model.len())],
            vec![],
        ),
        "/cdn/model" if range_from > 0 => (
            "206 Partial Content",
            vec![format!(
                "Content-Range: bytes {range_from}-{}/{}",
                model.len() - 1,
                model.len()
            )],
            model[range_from..].to_vec(),
        ),
        "/cdn/model" => ("200 OK", vec![], model.to_vec()),
        _ => ("404 Not Found", vec![], b"no such file".to_vec()),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head += &h;
        head += "\r\n";
    }
    head += "\r\n";
    conn.write_all(head.as_bytes())?;
    if method == "GET" {
        let cut = path == "/cdn/model"
            && cuts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                .is_ok();
        if cut {
            // the connection drops halfway through the body
            conn.write_all(&body[..body.len() / 2])?;
            conn.flush()?;
            return Ok(());
        }
        conn.write_all(&body)?;
    }
    conn.flush()?;
    let _ = conn.read(&mut [0u8; 1]);
    Ok(())
}

fn tmp(tag: &str) -> PathBuf {
    crate::common::fresh_dir(&format!("hub-{tag}"))
}

fn timm_b0_bytes(dir: &std::path::Path) -> Vec<u8> {
    let p = dir.join("src.safetensors");
    crate::weights::write_formula(&p, Layout::Timm, 1000, safetensors::Dtype::F16, |_| {});
    std::fs::read(&p).unwrap()
}

#[test]
fn fetch_resumes_a_cut_download_and_fills_the_cache() {
    let d = tmp("fetch");
    let hub = serve(timm_b0_bytes(&d), 1);
    let h = Hub {
        endpoint: hub.endpoint.clone(),
        cache: d.join("cache"),
    };
    let repo = "timm/efficientnet_b0.test";
    let blobs = d.join("cache/models--timm--efficientnet_b0.test/blobs");
    // first try: the model download is cut off halfway
    let e = h.fetch(repo, |_, _, _| {}).err().unwrap().to_string();
    assert!(e.contains("run the same command again to resume"), "{e}");
    let part = blobs.join(format!("{MODEL_ETAG}.incomplete"));
    assert!(part.is_file(), "the partial download is kept to resume");
    assert!(
        !blobs.join(MODEL_ETAG).exists(),
        "never under its final name"
    );
    assert!(h.cached(repo).is_none());
    let half = std::fs::metadata(&part).unwrap().len();
    assert_eq!(half, hub.model.len() as u64 / 2);
    // second try: resumed from where it stopped
    let mut seen = Vec::new();
    let snap = h
        .fetch(repo, |f, done, total| {
            seen.push((f.to_string(), done, total))
        })
        .unwrap();
    assert_eq!(
        seen.iter().find(|s| s.0 == "model.safetensors").unwrap().1,
        half,
        "progress starts at the bytes already there"
    );
    assert_eq!(std::fs::read(blobs.join(MODEL_ETAG)).unwrap(), hub.model);
    assert!(!part.exists());
    assert_eq!(h.cached(repo), Some(snap.clone()));
    assert!(snap.ends_with(format!("snapshots/{COMMIT}")));
    assert!(
        std::fs::symlink_metadata(snap.join("model.safetensors"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "snapshots link to blobs, as the hub's tools lay them out"
    );
    let ranged = hub.hits.lock().unwrap()["GET /cdn/model"];
    assert_eq!(ranged, 2, "one cut download, one resumed");
    // a third fetch downloads nothing
    h.fetch(repo, |_, _, _| {}).unwrap();
    assert_eq!(hub.hits.lock().unwrap()["GET /cdn/model"], 2);
    // a partial file longer than the model (the server answers 416): dropped, fetched anew
    let blob = blobs.join(MODEL_ETAG);
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&part, vec![7u8; hub.model.len() + 10]).unwrap();
    h.fetch(repo, |_, _, _| {}).unwrap();
    assert_eq!(std::fs::read(&blob).unwrap(), hub.model);
    assert!(!part.exists());
    // the cached files load: config.json names the architecture and the preprocessing
    let w = weights::load_paths(&[snap.join("model.safetensors")], &Default::default()).unwrap();
    assert_eq!(w.cfg.name(), "efficientnet_b0");
    assert!(
        w.notes.is_empty(),
        "config.json said which timm family: {:?}",
        w.notes
    );
    assert_eq!(w.preprocessing.short_side, 256);
    println!("fetched, resumed and loaded: {}", w.cfg.name());
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn fetch_refuses_what_it_cannot_use() {
    let d = tmp("refuse");
    let hub = serve(b"not used".to_vec(), 0);
    let h = Hub {
        endpoint: hub.endpoint.clone(),
        cache: d.join("cache"),
    };
    for (repo, needle) in [
        ("timm/resnet.test", "holds a resnet50, not an EfficientNet"),
        ("timm/missing.test", "was not found"),
        ("../etc", "is not a hub repository name"),
        ("timm", "is not a hub repository name"),
    ] {
        let e = h.fetch(repo, |_, _, _| {}).err().unwrap().to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{repo}: {e}");
        println!("{repo:<20} OK: {e}");
    }
    assert!(
        !hub.hits.lock().unwrap().contains_key("GET /cdn/model"),
        "no weights downloaded for a repository that is no EfficientNet"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn cli_fetch_then_weights_hf() {
    let d = tmp("cli");
    let hub = serve(timm_b0_bytes(&d), 0);
    let cache = d.join("cache");
    let bin = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_combicam-gpu"));
        c.env("HF_ENDPOINT", &hub.endpoint)
            .env("HF_HUB_CACHE", &cache)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("COMBICAM_WEIGHTS");
        c
    };
    let img = d.join("p.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
        .save(&img)
        .unwrap();
    // not fetched yet: says how
    let o = bin()
        .args([
            "predict",
            img.to_str().unwrap(),
            "--weights",
            "hf:timm/efficientnet_b0.test",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("combicam-gpu fetch timm/efficientnet_b0.test"),
        "{err}"
    );
    let o = bin()
        .args(["fetch", "timm/efficientnet_b0.test"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("--weights hf:timm/efficientnet_b0.test"),
        "{err}"
    );
    let o = bin()
        .args([
            "predict",
            img.to_str().unwrap(),
            "--weights",
            "hf:timm/efficientnet_b0.test",
        ])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("efficientnet_b0") && out.contains("class"),
        "{out}{err}"
    );
    println!("{out}");
    let _ = std::fs::remove_dir_all(d);
}
