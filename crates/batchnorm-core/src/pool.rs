//! The crate-owned rayon pool: its size, and the cut-off below which work stays on the
//! caller's thread (waking pool threads costs microseconds; tiny tensors cannot pay that).

use rayon::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, OnceLock, RwLock};

use crate::error::{Error, Result};

/// Below this many elements a call runs single-threaded on the caller's thread (by default;
/// `BATCHNORM_PARALLEL_MIN_ELEMENTS` changes it). Handing work to the pool and waiting for it
/// costs tens of microseconds on a VM (about 35 us on the 2-vCPU one this was tuned on),
/// which one thread spends on ~250K elements in cache.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 18;

/// The cut-off in use: `BATCHNORM_PARALLEL_MIN_ELEMENTS` when it parses, else the default.
/// It only picks the thread that runs the work; how the work is cut (and so every result)
/// depends on the layout alone.
fn parallel_min_elements() -> usize {
    static CUT_OFF: OnceLock<usize> = OnceLock::new();
    *CUT_OFF.get_or_init(|| env_usize("BATCHNORM_PARALLEL_MIN_ELEMENTS").unwrap_or(PARALLEL_MIN_ELEMENTS))
}

/// An environment variable as a whole number; unset or malformed: None (the default applies).
pub(crate) fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok())
}

/// The most threads the pool may start, from `set_num_threads` or `BATCHNORM_NUM_THREADS` (the
/// JS side holds every `BATCHNORM_*` variable to the same limits and rejects others at import).
pub const MAX_THREADS: usize = 1024;

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

/// How a kernel runs its chunks: on the pool (inside `install`) or one after another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exec {
    parallel: bool,
}

fn default_num_threads() -> usize {
    env_usize("BATCHNORM_NUM_THREADS")
        .filter(|n| (1..=MAX_THREADS).contains(n))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build_pool(threads: usize) -> Result<Arc<ThreadPool>> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("batchnorm-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::range(format!("could not start {threads} threads: {e}")))
}

fn current_pool() -> Arc<ThreadPool> {
    if let Some(pool) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Arc::clone(pool);
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    let pool = slot.get_or_insert_with(|| {
        build_pool(default_num_threads()).or_else(|_| build_pool(1)).expect("a one-thread pool can always start")
    });
    Arc::clone(pool)
}

/// Resizes the pool. Work already running keeps the old pool until it finishes.
pub fn set_num_threads(threads: usize) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(Error::range(format!("threads must be in [1, {MAX_THREADS}], got {threads}")));
    }
    let pool = build_pool(threads)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
    Ok(())
}

/// Threads the next call may use.
pub fn num_threads() -> usize {
    current_pool().current_num_threads()
}

/// Runs `work` on the pool when the tensor is big enough to gain from it.
pub(crate) fn run<R: Send>(elements: usize, work: impl FnOnce(Exec) -> R + Send) -> R {
    if elements < parallel_min_elements() {
        return work(Exec::SEQUENTIAL);
    }
    let pool = current_pool();
    if pool.current_num_threads() == 1 {
        return work(Exec::SEQUENTIAL);
    }
    pool.install(|| work(Exec { parallel: true }))
}

impl Exec {
    pub(crate) const SEQUENTIAL: Exec = Exec { parallel: false };

    /// `f(0..tasks)` in order, in parallel when allowed.
    pub(crate) fn map<R: Send>(self, tasks: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
        if self.parallel {
            (0..tasks).into_par_iter().map(f).collect()
        } else {
            (0..tasks).map(f).collect()
        }
    }

    /// Calls `f(start, chunk)` for consecutive chunks of `chunk_len` elements of `data`.
    pub(crate) fn for_each_chunk_mut<T: Send>(
        self,
        data: &mut [T],
        chunk_len: usize,
        f: impl Fn(usize, &mut [T]) + Sync + Send,
    ) {
        let chunk_len = chunk_len.max(1);
        if self.parallel {
            data.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
        } else {
            data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i * chunk_len, c));
        }
    }
}
