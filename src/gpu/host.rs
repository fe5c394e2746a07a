//! Host memory: what this process may still allocate. On a CPU adapter (lavapipe, llvmpipe)
//! every GPU buffer is host memory, so the masked-copy batch must fit in it.

/// Bytes this process may still allocate, as far as the system says: the address-space limit
/// (`ulimit -v`, `prlimit --as`) less what the process has mapped, the memory the kernel
/// reports available, and a cgroup's limit less its use. `None` when none of them is known.
pub fn memory_left() -> Option<u64> {
    [address_space_left(), meminfo_available(), cgroup_left()]
        .into_iter()
        .flatten()
        .min()
}

/// What a CPU adapter's driver needs beyond the buffers: lavapipe compiles each kernel with
/// LLVM, and when an allocation fails there it crashes (Mesa 22.3: a segmentation fault in
/// pipeline creation) instead of returning an error. Measured here, Lite0 at 224×336 under
/// `prlimit --as`: with 217 MiB left once the device existed it crashed, with 431 MiB it ran.
pub const DRIVER_HEADROOM: u64 = 384 << 20;

/// A one-line error unless the process may still allocate `need` bytes (when that is known).
pub fn check_left(need: u64, what: &str) -> crate::Result<()> {
    match memory_left() {
        Some(left) if left < need => Err(crate::Error::Gpu(format!(
            "out of memory: the software Vulkan driver needs about {} MiB more {what}, and this \
             process may allocate only {} MiB more (ulimit -v, a cgroup limit or the memory \
             available): raise the limit or free memory",
            need >> 20,
            left >> 20
        ))),
        _ => Ok(()),
    }
}

/// A `/proc`-style `Key:   N kB` line's value in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let n: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(n * 1024)
}

fn address_space_left() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0
            || lim.rlim_cur == libc::RLIM_INFINITY
        {
            return None;
        }
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mapped = kib_field(&status, "VmSize:")?;
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        Some((lim.rlim_cur as u64).saturating_sub(mapped))
    }
    #[cfg(not(unix))]
    None
}

fn meminfo_available() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

fn cgroup_left() -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?;
    let used: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(used))
}
