//! The HDF5 C library crashes on some hostile files (libhdf5 1.10.8: an unchecked allocation
//! in its metadata cache, a segmentation fault; found by the `hdf5` fuzz target). So
//! `predict --background` first opens the file in a child process, this same binary's hidden
//! `probe-hdf5` command: a crash there is a one-line error here, and the run never reaches
//! the library with that file.

use combicam_gpu::model::search;
use std::path::Path;
use std::process::ExitCode;

/// The hidden command's name.
pub const COMMAND: &str = "probe-hdf5";

/// The child's side: open the collection and read its first and last rows, as the search
/// would read rows; exit status 0 when that worked, 2 when it was refused (the error on stderr).
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let bg = search::Background::open(path)?;
    for i in [0, bg.n.saturating_sub(1)].into_iter().filter(|&i| i < bg.n) {
        bg.features(i)?;
        bg.location(i)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The parent's side: run the child on `path`. A refusal is left to the caller's own open,
/// which says why in its words; a crash is this error. Skipped in a dry run (the fuzz target's
/// binary is not this one).
pub fn check(path: &Path) -> anyhow::Result<()> {
    if super::gate().is_err() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .arg(COMMAND)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.code().is_some() {
        return Ok(());
    }
    #[cfg(unix)]
    let how = {
        use std::os::unix::process::ExitStatusExt;
        match out.status.signal() {
            Some(s) => format!("signal {s}"),
            None => "no exit status".into(),
        }
    };
    #[cfg(not(unix))]
    let how = "no exit status";
    anyhow::bail!(
        "{}: the HDF5 library crashed reading it ({how}): the file is damaged or made to crash readers; get a fresh copy of the background collection",
        path.display()
    )
}
