//! Commands of the binary that have their own module, and the dry run: every command's
//! parsing and checks without its GPU work, downloads or writes (the CLI fuzz target's entry).

pub mod bench;
pub mod evaluate;
pub mod explain;
pub mod oom;
pub mod predict;
pub mod probe;

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by [`dry_run`]: the commands stop at their [`gate`].
static DRY_RUN: AtomicBool = AtomicBool::new(false);

/// What a dry run stops with, once every argument has been checked.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dry run: stopped before GPU work, downloads and writes")
    }
}

impl std::error::Error for Stopped {}

/// Where a command would next open the GPU, download or write: in a dry run it stops here.
pub fn gate() -> anyhow::Result<()> {
    if DRY_RUN.load(Ordering::Relaxed) {
        return Err(Stopped.into());
    }
    Ok(())
}

/// Parse `args` (the program name first) and run the command as far as its gate: every check
/// of the arguments, the weights they name and the files they read, nothing opened on the GPU,
/// downloaded or written. `Ok` when the command would go on to work; otherwise the error the
/// command line would print (clap's, for arguments it refuses). For the CLI fuzz target and
/// its replay test, which include this binary's source; the binary itself never sets it.
#[allow(dead_code)]
pub fn dry_run<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    DRY_RUN.store(true, Ordering::Relaxed);
    let cli = super::Cli::try_parse_from(args)?;
    match super::dispatch(cli) {
        Err(e) if e.is::<Stopped>() => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}
