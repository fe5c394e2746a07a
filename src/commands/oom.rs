//! The binary's allocator: the system's, except that running out of memory is the one-line
//! error every other failure is (exit status 2), not Rust's abort ("memory allocation of N bytes
//! failed", SIGABRT). Nothing can be allocated at that point, so the line is written directly;
//! files are written to a temporary name and renamed when complete, so none is half-written.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, Ordering};

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

/// Say it and end the process now (no unwinding, no destructors: nothing may allocate).
#[cold]
fn out_of_memory(bytes: usize) -> ! {
    const HEAD: &[u8] = b"error: out of memory (an allocation of ";
    const TAIL: &[u8] =
        b" bytes failed): close other programs, or give a smaller --batch or photo\n";
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
    // SAFETY: write(2) of buffers that outlive the calls, rmdir(2) of a NUL-terminated path
    // that is never freed (`remove_if_empty_on_oom`), and _exit(2), have no preconditions.
    unsafe {
        for part in [HEAD, &digits[i..], TAIL] {
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
