//! What the fuzzers found and the corpus entries they kept (`fuzz/regressions/<target>/`),
//! replayed on stable through the targets' own entry points (`fuzz/entry.rs`), so CI keeps them
//! fixed without a nightly toolchain. Each must end in a value or an error, never a panic; the
//! error must be one line naming the problem (clap's own messages for arguments it refuses
//! keep clap's usage lines: their first line names the problem).
//!
//! The CLI entries run in the repository's root, the fuzzer ran them in a folder of its own
//! (`fuzz/run.sh`): the file names they give resolve to other files or none, which the dry run
//! must handle as well.

use crate::fuzz_entry::{self, TARGETS};
use std::path::Path;

/// One entry through its target: `None` when it behaved, else what went wrong.
fn replay(target: &str, file: &Path) -> Option<String> {
    let bytes = std::fs::read(file).unwrap();
    let run = std::panic::catch_unwind(|| fuzz_entry::run(target, &bytes));
    let shown = file.display();
    match run {
        Err(p) => {
            let m = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Some(format!("{shown}: panicked: {m:?}"))
        }
        Ok(Ok(())) => None,
        Ok(Err(m)) if m.trim().is_empty() => Some(format!("{shown}: an empty error")),
        Ok(Err(m)) if target != "cli" && m.contains('\n') => {
            Some(format!("{shown}: an error of several lines: {m:?}"))
        }
        Ok(Err(_)) => None,
    }
}

#[test]
fn regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut bad = Vec::new();
    for t in TARGETS {
        let dir = root.join(t);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!("{}: {e}: every target keeps its regressions", dir.display())
            })
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no entries", dir.display());
        let t0 = std::time::Instant::now();
        let failed: Vec<String> = files.iter().filter_map(|f| replay(t, f)).collect();
        println!(
            "fuzz {t}: {} entries replayed in {:.2}s, {} misbehaved",
            files.len(),
            t0.elapsed().as_secs_f64(),
            failed.len()
        );
        bad.extend(failed);
    }
    assert!(
        bad.is_empty(),
        "fuzz regressions misbehaved:\n{}",
        bad.join("\n")
    );
}

/// Files on which the HDF5 C library itself crashes (`crash-*`, `segv-*`), grows its memory
/// without bound (`oom-*`) or reads past its own buffers (`overread-*`), in
/// `fuzz/regressions/hdf5-libhdf5/`, are not replayed in this process: `predict --background`
/// runs each. It must never die of a signal, and must refuse each with one line naming the
/// file (its child process crashed, ran out of its bounded memory, or was refused), except an
/// over-read: that reads the library's own heap, a crash in one run and garbage in another,
/// which our row checks refuse when it is not finite and cannot tell from data when it is.
#[test]
fn files_that_break_libhdf5_are_one_line_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("fuzz/regressions/hdf5-libhdf5");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no entries", dir.display());
    let golden = root.join("tests/golden/retrieval");
    let mut refused = 0;
    for f in &files {
        let o = crate::cli::run(
            crate::cli::bin()
                .args(["predict", "--test-weights", "b0", "--cells", "5"])
                .arg(root.join("tests/photos/coffee.png"))
                .arg("--background")
                .arg(f)
                .arg("--cells-assignments")
                .arg(golden.join("cells_assignments.pkl")),
        );
        let name = f.file_name().unwrap().to_string_lossy();
        let code = o.status.code();
        assert!(
            code.is_some(),
            "{}: predict died: {:?}",
            f.display(),
            o.status
        );
        if code == Some(0) && name.starts_with("overread-") {
            continue;
        }
        let e = crate::cli::one_line_error(&o);
        assert_eq!(code, Some(2), "{}", f.display());
        assert!(e.contains(&*f.to_string_lossy()), "{}: {e}", f.display());
        refused += 1;
    }
    println!(
        "{} files that break libhdf5: predict never crashed, {refused} refused with one line",
        files.len()
    );
}
