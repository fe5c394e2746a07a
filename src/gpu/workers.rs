//! Work spread over the machine's cores, with the calling thread among the workers: where no
//! thread can be started (a memory limit such as `prlimit --as`, a thread quota), the caller
//! does all of it, rather than `std::thread::scope`'s spawn panicking.

/// Run `work` on up to `threads` threads at once (the caller's included) and return when every
/// one has returned. `work` should pull its items from a shared queue (an atomic counter), so
/// that however many threads start, every item is done.
pub fn run(threads: usize, work: impl Fn() + Sync) {
    let work = &work;
    std::thread::scope(|s| {
        for _ in 1..threads {
            if std::thread::Builder::new().spawn_scoped(s, work).is_err() {
                break;
            }
        }
        work();
    });
}

/// The cores to use, at most `most`.
pub fn cores(most: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(most)
        .max(1)
}

/// A shared queue of `n` items, 0 .. n, taken one at a time by whichever thread asks next.
pub struct Queue {
    next: std::sync::atomic::AtomicUsize,
    n: usize,
}

impl Queue {
    pub fn new(n: usize) -> Queue {
        Queue {
            next: std::sync::atomic::AtomicUsize::new(0),
            n,
        }
    }

    /// The next item nobody has taken, or `None` when all were taken.
    pub fn take(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (i < self.n).then_some(i)
    }
}
