//! The HDF5 C library crashes on some hostile files (libhdf5 1.10.8: an unchecked allocation
//! in its metadata cache, a segmentation fault; found by the `hdf5` fuzz target). So
//! `predict --background` first opens the file in a child process, this same binary's hidden
//! `probe-hdf5` command, with its memory bounded: a crash or a refusal there is a one-line
//! error here, and the run never reaches the library with that file.

use combicam_gpu::model::search;
use std::path::Path;
use std::process::ExitCode;

/// The hidden command's name.
pub const COMMAND: &str = "probe-hdf5";

/// The child's side: open the collection and read its first and last rows, as the search
/// would read rows; exit status 0 when that worked, 2 when it was refused (the error on stderr).
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    search::Background::open(path)?.read_ends()?;
    Ok(ExitCode::SUCCESS)
}

/// Most address space the child may take: libhdf5 grows buffers without bound on some
/// hostile files (3 to 4 GB of memory before it gave up, found by fuzzing); the search itself
/// reads one chunk of at most 64 MiB at a time.
const CHILD_ADDRESS_SPACE: u64 = 1 << 30;

/// The parent's side: run the child on `path`, within `CHILD_ADDRESS_SPACE`. Its refusal is
/// this error (its own one line), and so is its crash; the file is opened here only when the
/// child read it. Skipped in a dry run (the fuzz target's binary is not this one).
pub fn check(path: &Path) -> anyhow::Result<()> {
    if super::gate().is_err() {
        return Ok(());
    }
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg(COMMAND)
        .arg(path)
        .stdin(std::process::Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: getrlimit and setrlimit are async-signal-safe and touch only the struct.
        unsafe {
            cmd.pre_exec(|| {
                let mut l = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_AS, &mut l) == 0 {
                    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
                    let cap = CHILD_ADDRESS_SPACE.min(l.rlim_max as u64);
                    l.rlim_cur = cap as libc::rlim_t;
                    libc::setrlimit(libc::RLIMIT_AS, &l);
                }
                Ok(())
            });
        }
    }
    let out = cmd.output()?;
    match out.status.code() {
        Some(0) => return Ok(()),
        Some(_) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().rev().find(|l| l.starts_with("error: "));
            if let Some(l) = line {
                anyhow::bail!("{}", &l["error: ".len()..]);
            }
        }
        None => {}
    }
    #[cfg(unix)]
    let how = {
        use std::os::unix::process::ExitStatusExt;
        match out.status.signal() {
            Some(s) => format!("signal {s}"),
            None => format!("{}", out.status),
        }
    };
    #[cfg(not(unix))]
    let how = out.status.to_string();
    anyhow::bail!(
        "{}: the HDF5 library crashed reading it ({how}): the file is damaged or made to crash readers; get a fresh copy of the background collection",
        path.display()
    )
}
