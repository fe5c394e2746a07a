//! `explain --report` opened in a real browser: headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it), driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3
//! in, fd 4 out, messages ending in NUL). Each page must load every image, log no error, send
//! no request off the machine, fit a phone's width and not screenshot blank.
//!
//! Without Chromium the test fails and says how to install it: it never skips.

use crate::cli::{bin, tmp};
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long one protocol step may take (software rendering on 2 cores, first start cold).
const STEP: Duration = Duration::from_secs(60);

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return p.into();
    }
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            if dir.join(c).is_file() {
                return dir.join(c);
            }
        }
    }
    panic!(
        "the browser test needs Chromium: `apt-get install chromium` (Debian), or set CHROMIUM=/path/to/chrome"
    );
}

/// A pipe whose two ends close on exec (the child gets its end by dup2 only).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// One headless Chromium with a fresh profile, and its DevTools pipe.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: Receiver<Value>,
    next: u64,
    /// events received while waiting for replies: (session, method, params)
    events: Vec<(String, String, Value)>,
    profile: PathBuf,
}

impl Browser {
    fn start(tag: &str) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("combicam-chromium-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let (their_in, our_out) = pipe();
        let (our_in, their_out) = pipe();
        let (a, b): (RawFd, RawFd) = (
            std::os::fd::AsRawFd::as_raw_fd(&their_in),
            std::os::fd::AsRawFd::as_raw_fd(&their_out),
        );
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec. The ends are first moved
        // above 9 so that dup2 onto 3 and 4 cannot overwrite one with the other.
        unsafe {
            cmd.pre_exec(move || {
                let hi_a = libc::fcntl(a, libc::F_DUPFD_CLOEXEC, 10);
                let hi_b = libc::fcntl(b, libc::F_DUPFD_CLOEXEC, 10);
                if hi_a < 0 || hi_b < 0 || libc::dup2(hi_a, 3) < 0 || libc::dup2(hi_b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((their_in, their_out));
        let (tx, rx) = channel();
        let mut reader = BufReader::new(std::fs::File::from(our_in));
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        match serde_json::from_slice::<Value>(&buf) {
                            Ok(v) => {
                                if tx.send(v).is_err() {
                                    return;
                                }
                            }
                            Err(e) => panic!("DevTools sent something that is not JSON: {e}"),
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to: std::fs::File::from(our_out),
            from: rx,
            next: 0,
            events: Vec::new(),
            profile,
        }
    }

    fn recv(&mut self, deadline: Instant) -> Value {
        match self
            .from
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("Chromium did not answer within {STEP:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("Chromium closed its DevTools pipe"),
        }
    }

    fn keep_event(&mut self, v: Value) {
        let session = v["sessionId"].as_str().unwrap_or("").to_string();
        let method = v["method"].as_str().unwrap_or("").to_string();
        self.events.push((session, method, v["params"].clone()));
    }

    /// Send one command and wait for its reply; events that arrive meanwhile are kept.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        let deadline = Instant::now() + STEP;
        loop {
            let v = self.recv(deadline);
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.keep_event(v);
        }
    }

    /// Wait for an event of `session`, returning its params.
    fn wait_event(&mut self, session: &str, method: &str) -> Value {
        if let Some(e) = self
            .events
            .iter()
            .find(|(s, m, _)| s == session && m == method)
        {
            return e.2.clone();
        }
        let deadline = Instant::now() + STEP;
        loop {
            let v = self.recv(deadline);
            let hit = v["sessionId"].as_str() == Some(session) && v["method"] == method;
            let params = v["params"].clone();
            self.keep_event(v);
            if hit {
                return params;
            }
        }
    }

    /// A new tab attached in flat mode, with the domains the checks listen to.
    fn tab(&mut self) -> String {
        let t = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target = t["targetId"].as_str().unwrap().to_string();
        let s = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        let session = s["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(Some(&session), &format!("{domain}.enable"), json!({}));
        }
        session
    }

    fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What the browser saw on one page.
struct PageCheck {
    /// (src, naturalWidth) of every `<img>`
    images: Vec<(String, u64)>,
    svgs: u64,
    screenshot: image::RgbImage,
}

/// Open `page` in a fresh tab at desktop width and check it; then at phone width.
fn open(b: &mut Browser, page: &Path, shot: &Path) -> PageCheck {
    let s = b.tab();
    b.call(
        Some(&s),
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let nav = b.call(Some(&s), "Page.navigate", json!({"url": url}));
    assert!(nav.get("errorText").is_none(), "{url}: {nav}");
    b.wait_event(&s, "Page.loadEventFired");
    // lazy images below the fold load once scrolled to: make every one eager, then wait
    b.eval(
        &s,
        "document.querySelectorAll('img').forEach(i => i.loading = 'eager')",
    );
    let ready = b.call(
        Some(&s),
        "Runtime.evaluate",
        json!({
            "expression": "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null))).then(() => true)",
            "awaitPromise": true, "returnByValue": true
        }),
    );
    assert_eq!(ready["result"]["value"], json!(true), "{ready}");
    let images: Vec<(String, u64)> = b
        .eval(
            &s,
            "JSON.stringify(Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth]))",
        )
        .as_str()
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap();
    let svgs = b
        .eval(&s, "document.querySelectorAll('svg').length")
        .as_u64()
        .unwrap();
    let shot_b64 = b.call(Some(&s), "Page.captureScreenshot", json!({"format": "png"}))["data"]
        .as_str()
        .unwrap()
        .to_string();
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot_b64)
        .unwrap();
    std::fs::write(shot, &png).unwrap();
    let screenshot = image::load_from_memory(&png).unwrap().to_rgb8();
    // printing (the print style sheet): a PDF with the page's images in it
    let pdf = b.call(
        Some(&s),
        "Page.printToPDF",
        json!({"printBackground": true}),
    )["data"]
        .as_str()
        .map(|d| base64::engine::general_purpose::STANDARD.decode(d).unwrap())
        .unwrap();
    assert!(pdf.starts_with(b"%PDF"), "{}: not a PDF", page.display());
    println!(
        "{}: prints as a {} KB PDF",
        page.display(),
        pdf.len() / 1024
    );
    assert!(
        pdf.len() > 20_000,
        "{}: the PDF has no images",
        page.display()
    );
    // phone width: nothing may stick out sideways
    b.call(
        Some(&s),
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    let widths = b.eval(
        &s,
        "[document.documentElement.scrollWidth, window.innerWidth]",
    );
    let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert!(
        scroll <= inner,
        "{}: {scroll} px wide at a phone's {inner} px",
        page.display()
    );
    // everything the page asked for, and everything it complained about
    let mut problems = Vec::new();
    for (sess, method, p) in &b.events {
        if sess != &s {
            continue;
        }
        match method.as_str() {
            "Network.requestWillBeSent" => {
                let u = p["request"]["url"].as_str().unwrap_or("");
                if !(u.starts_with("file://") || u.starts_with("data:") || u == "about:blank") {
                    problems.push(format!("request off the machine: {u}"));
                }
            }
            "Network.loadingFailed" => problems.push(format!("failed to load: {p}")),
            "Runtime.exceptionThrown" => problems.push(format!("script error: {p}")),
            "Runtime.consoleAPICalled" if p["type"] == "error" => {
                problems.push(format!("console error: {p}"))
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                problems.push(format!("logged error: {}", p["entry"]))
            }
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        page.display(),
        problems.join("\n")
    );
    for (src, w) in &images {
        assert!(*w > 0, "{}: image {src} did not load", page.display());
    }
    PageCheck {
        images,
        svgs,
        screenshot,
    }
}

/// A screenshot is blank when (nearly) every pixel is the same colour.
fn not_blank(img: &image::RgbImage, what: &str) {
    let first = *img.get_pixel(0, 0);
    let differ = img.pixels().filter(|p| **p != first).count();
    let share = differ as f64 / (img.width() * img.height()) as f64;
    println!(
        "{what}: {}×{}, {:.1}% of pixels differ from the corner",
        img.width(),
        img.height(),
        share * 100.0
    );
    assert!(share > 0.01, "{what}: the screenshot is blank");
    // colour, not only text: the overlays are in the first screen
    let coloured = img
        .pixels()
        .filter(|p| {
            let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
            (r - g).abs().max((g - b).abs()).max((r - b).abs()) > 60
        })
        .count();
    assert!(
        coloured > 1000,
        "{what}: no coloured pixels in the screenshot"
    );
}

#[test]
fn reports_open_in_headless_chromium() {
    let d = tmp("browser");
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos");
    let out = d.join("out");
    // the visloc B4 layout (32 blocks) with the test formula: the done-when of issue 12
    let o = bin()
        .args(["explain", "--report", "--overlay-size", "480", "--out"])
        .arg(&out)
        .args(["--test-weights", "b4", "--cells", "500"])
        .arg(photos.join("chelsea.png"))
        .arg(photos.join("coffee.png"))
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let mut b = Browser::start("reports");
    let version = b.call(None, "Browser.getVersion", json!({}));
    println!("browser: {}", version["product"]);
    for stem in ["chelsea", "coffee"] {
        let page = out.join(format!("{stem}.report.html"));
        let c = open(&mut b, &page, &shots.join(format!("{stem}.report.png")));
        let blocks = c
            .images
            .iter()
            .filter(|(s, _)| s.starts_with(&format!("{stem}.report/gradcam.")))
            .count();
        println!(
            "{stem}: {} images ({blocks} block overlays), {} svg",
            c.images.len(),
            c.svgs
        );
        assert_eq!(blocks, 32, "every B4 block's overlay");
        assert!(c.images.len() >= 33);
        assert!(c.svgs >= 1, "the per-block plot");
        not_blank(&c.screenshot, stem);
    }
    let c = open(&mut b, &out.join("index.html"), &shots.join("index.png"));
    assert_eq!(c.images.len(), 2, "a thumbnail per report");
    not_blank(&c.screenshot, "index");
    // the built-in Lite0 with `evaluate` results on its page: the metrics table and curves
    let metrics = d.join("metrics.json");
    let coffee = photos.join("coffee.png");
    let o = bin()
        .args([
            "evaluate",
            "--steps",
            "4",
            "--explainers",
            "combicam,random",
            "--json",
        ])
        .arg(&metrics)
        .arg(&coffee)
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&o.stdout));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lite = d.join("lite");
    let o = bin()
        .args(["explain", "--report", "--metrics"])
        .arg(&metrics)
        .arg("--out")
        .arg(&lite)
        .arg(&coffee)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = lite.join("coffee.report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("Faithfulness (evaluate)") && html.contains("<td>combicam</td>"));
    let c = open(&mut b, &page, &shots.join("coffee.lite0.report.png"));
    assert_eq!(c.svgs, 2, "the per-block plot and the curves");
    assert!(c.images.len() >= 3 + 16, "fused row and Lite0's 16 blocks");
    not_blank(&c.screenshot, "coffee with metrics");
    println!("screenshots in {}", shots.display());
    drop(b);
    let _ = std::fs::remove_dir_all(d);
}
