//! The Python package: build its wheel with maturin, install it into a folder of its own
//! under target/, and run its pytest suite (python/tests/) against this build's binary.
//!
//! Needs Python 3.9 or later with maturin, pytest, numpy and Pillow (`.ci/run` installs them:
//! `pip install maturin pytest numpy pillow`). Without them the test fails and says so: it
//! never skips. `$COMBICAM_PYTHON` names the interpreter (default: python3).

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> String {
    std::env::var("COMBICAM_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run `cmd`, print its output, and panic with `what` and the output when it fails.
fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
}

/// The interpreter has what building and testing the package need, or the test fails with
/// the line that installs it.
fn check_tools(py: &str) {
    let ok = Command::new(py)
        .args([
            "-c",
            "import sys, maturin, pytest, numpy, PIL; assert sys.version_info >= (3, 9)",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the Python package's tests need Python 3.9+ ({py}, or $COMBICAM_PYTHON) with maturin, pytest, numpy and Pillow: `{py} -m pip install maturin pytest numpy pillow`"
    );
}

/// The wheel maturin built into `dir` (the one there).
fn wheel_in(dir: &Path) -> PathBuf {
    let wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("maturin's output folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    assert_eq!(
        wheels.len(),
        1,
        "one wheel in {}: {wheels:?}",
        dir.display()
    );
    wheels[0].clone()
}

#[test]
fn python_package_builds_and_its_pytest_suite_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = python();
    check_tools(&py);
    let target = root.join("target");
    let wheels = target.join("python-wheels");
    let site = target.join("python-site");
    let _ = std::fs::remove_dir_all(&wheels);
    let _ = std::fs::remove_dir_all(&site);
    let mut maturin = Command::new(&py);
    maturin
        .args(["-m", "maturin", "build", "--release", "--out"])
        .arg(&wheels)
        .current_dir(root);
    // not the variables cargo set for this test: the cargo that maturin runs would pass them
    // on to build scripts, and those that watch one (ring watches CARGO_MANIFEST_DIR and OUT_DIR) would
    // make the user's next `cargo build` rebuild them and everything above them
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        let crate_var = ["CARGO_PKG_", "CARGO_BIN_EXE_"]
            .iter()
            .any(|p| n.starts_with(p))
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&n.as_ref());
        if crate_var {
            maturin.env_remove(&name);
        }
    }
    run(&mut maturin, "building the wheel (maturin build --release)");
    let wheel = wheel_in(&wheels);
    let size = std::fs::metadata(&wheel).map(|m| m.len()).unwrap_or(0);
    eprintln!("wheel: {} ({:.1} MB)", wheel.display(), size as f64 / 1e6);
    run(
        Command::new(&py)
            .args(["-m", "pip", "install", "--no-deps", "--quiet", "--target"])
            .arg(&site)
            .arg(&wheel),
        "installing the wheel",
    );
    run(
        Command::new(&py)
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "python/tests",
            ])
            .env("PYTHONPATH", &site)
            .env("COMBICAM_BIN", env!("CARGO_BIN_EXE_combicam-gpu"))
            .current_dir(root),
        "the Python package's pytest suite (python/tests)",
    );
}
