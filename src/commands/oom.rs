//! The binary's allocator: the system's, except that running out of memory is the one-line
//! error every other failure is (exit status 2), not Rust's abort ("memory allocation of N bytes
//! failed", SIGABRT). Nothing can be allocated at that point, so the line is written directly;
//! files are written to a temporary name and renamed when complete, so none is half-written.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

pub struct ExitOnOom;

/// A folder to remove, if empty, on running out of memory: the output folder a run made (a
/// NUL-terminated path, made ahead, since nothing can be allocated then; leaked on purpose).
static REMOVE_IF_EMPTY: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Have `dir`, a folder this run made, removed on running out of memory if nothing was
/// written into it (the outputs written so far stay: each is complete, written under a
/// temporary name and renamed).
pub fn remove_if_empty_on_oom(dir: &std::path::Path) {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = dir.to_string_lossy().into_owned().into_bytes();
    if let Ok(c) = std::ffi::CString::new(bytes) {
        REMOVE_IF_EMPTY.store(c.into_raw(), Ordering::SeqCst);
    }
}

/// Set by the first thread that reports running out of memory: the others wait for its exit
/// (a GPU driver's threads and ours can fail at once; one line is said, not one a thread).
static REPORTING: AtomicBool = AtomicBool::new(false);

const TAIL: &[u8] = b"): close other programs, or give a smaller --batch or photo\n";

/// Say it and end the process now (no unwinding, no destructors: nothing may allocate).
#[cold]
fn out_of_memory(bytes: usize) -> ! {
    const HEAD: &[u8] = b"error: out of memory (an allocation of ";
    const BYTES: &[u8] = b" bytes failed";
    let mut digits = [0u8; 20];
    let (mut i, mut n) = (digits.len(), bytes);
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    say_and_exit(&[HEAD, &digits[i..], BYTES, TAIL])
}

/// A thread that could not start for want of memory (std panics in the new thread with
/// "failed to allocate an alternative stack: Cannot allocate memory"), or any panic while
/// another thread reports running out: the same one line and exit, or a wait for it.
pub fn panic_hook(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let oom = info
        .payload_as_str()
        .is_some_and(|m| m.contains("Cannot allocate memory"));
    if oom || REPORTING.load(Ordering::SeqCst) {
        say_and_exit(&[b"error: out of memory (a thread could not start", TAIL]);
    }
    false
}

/// Write `parts` to stderr as one line, remove the run's empty output folder and `_exit(2)`;
/// a thread that comes second waits for the first one's exit.
fn say_and_exit(parts: &[&[u8]]) -> ! {
    if REPORTING.swap(true, Ordering::SeqCst) {
        loop {
            // SAFETY: pause(2) has no preconditions; the reporting thread's _exit ends this one
            unsafe { libc::pause() };
        }
    }
    // SAFETY: write(2) of buffers that outlive the calls, rmdir(2) of a NUL-terminated path
    // that is never freed (`remove_if_empty_on_oom`), and _exit(2), have no preconditions.
    unsafe {
        for part in parts {
            libc::write(2, part.as_ptr().cast(), part.len());
        }
        let dir = REMOVE_IF_EMPTY.load(Ordering::SeqCst);
        if !dir.is_null() {
            libc::rmdir(dir);
        }
        libc::_exit(2)
    }
}

// SAFETY: every call is passed to `System` unchanged; only a null result is handled, by
// ending the process.
unsafe impl GlobalAlloc for ExitOnOom {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by them.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            out_of_memory(new_size);
        }
        p
    }
}
