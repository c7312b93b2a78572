//! Recycled output memory. A large output allocated by V8 costs a page fault per 4 KiB on
//! first write (a fresh 205 MB `y` made a training call 5-7x slower than one into a reused
//! `out`). Outputs of at least `MIN_BYTES` are instead lent as external ArrayBuffers over
//! blocks kept here; when V8 collects one, Node runs its finalizer on the JS thread and the
//! block comes back for the next output of about the same size.
//!
//! The finalizer is the only signal that JS can no longer reach a block: Node runs it when
//! the event loop turns, after the GC that found the buffer dead. So a loop that never
//! yields gets nothing back; `lent_bytes` is capped so that it then falls back to V8's
//! memory instead of growing without bound.

use std::alloc::{alloc, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::Mutex;

use napi::bindgen_prelude::{Env, Unknown};
use napi::{sys, Error, Result, Status};
use napi_derive::napi;

/// Smaller outputs come from V8: its allocator reuses freed memory below glibc's mmap
/// threshold, and a napi call plus a finalizer would cost more than it saves.
pub const MIN_BYTES: usize = 1 << 20;
/// Blocks start on a page and cover whole pages (2 MiB ones above 2 MiB). No huge-page
/// advice: with THP in `madvise` mode, first touching an advised 100 MB block stalled
/// ~200 ms in the kernel's compaction here, against ~60 ms for ordinary pages.
const PAGE: usize = 4096;
const HUGE_PAGE: usize = 2 << 20;
/// Default cap on the bytes lent out and, separately, on the bytes kept free.
pub const DEFAULT_LIMIT_BYTES: usize = 512 << 20;

/// One block of memory owned by the pool while free, by an ArrayBuffer while lent.
#[derive(Debug)]
pub struct Block {
    ptr: NonNull<u8>,
    capacity: usize,
}

// SAFETY: a block is plain memory with one owner at a time (the pool or one ArrayBuffer).
unsafe impl Send for Block {}

impl Block {
    fn layout(capacity: usize) -> Layout {
        let align = if capacity >= HUGE_PAGE { HUGE_PAGE } else { PAGE };
        Layout::from_size_align(capacity, align).expect("capacity is a whole number of pages")
    }

    fn allocate(capacity: usize) -> Option<Block> {
        // SAFETY: capacity > 0 (at least MIN_BYTES), the layout is valid.
        let ptr = NonNull::new(unsafe { alloc(Self::layout(capacity)) })?;
        Some(Block { ptr, capacity })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `allocate` with this very layout, and dropped once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
    }
}

/// The block size for an output of `bytes`.
fn capacity_for(bytes: usize) -> usize {
    let unit = if bytes >= HUGE_PAGE { HUGE_PAGE } else { PAGE };
    bytes.div_ceil(unit) * unit
}

/// Counters a caller can read to see the pool at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub limit_bytes: usize,
    pub free_bytes: usize,
    pub lent_bytes: usize,
    /// Outputs served from a recycled block.
    pub reused: u64,
    /// Outputs served from a newly allocated block.
    pub allocated: u64,
    /// Outputs refused (over the lent cap): the caller allocated them from V8.
    pub refused: u64,
}

/// Free blocks, most recently returned last, and the bytes lent out.
#[derive(Debug)]
pub struct Pool {
    free: Vec<Block>,
    counters: Counters,
}

impl Pool {
    pub const fn new(limit_bytes: usize) -> Pool {
        Pool {
            free: Vec::new(),
            counters: Counters { limit_bytes, free_bytes: 0, lent_bytes: 0, reused: 0, allocated: 0, refused: 0 },
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// A block for `bytes`: the smallest free one that fits without wasting more than an
    /// eighth, else a new one; None when lending it would pass the cap.
    pub fn take(&mut self, bytes: usize) -> Option<Block> {
        let c = &mut self.counters;
        let capacity = capacity_for(bytes);
        if bytes < MIN_BYTES || c.lent_bytes + capacity > c.limit_bytes {
            c.refused += u64::from(bytes >= MIN_BYTES);
            return None;
        }
        let fits = |b: &Block| b.capacity >= capacity && b.capacity - capacity <= capacity / 8;
        let best = self.free.iter().enumerate().filter(|(_, b)| fits(b)).min_by_key(|(_, b)| b.capacity);
        let block = match best.map(|(i, _)| i) {
            Some(i) => {
                let block = self.free.swap_remove(i);
                c.free_bytes -= block.capacity;
                c.reused += 1;
                block
            }
            None => {
                let block = Block::allocate(capacity)?;
                c.allocated += 1;
                block
            }
        };
        c.lent_bytes += block.capacity;
        Some(block)
    }

    /// A lent block is back: kept for reuse, the oldest free blocks released past the cap.
    pub fn give_back(&mut self, block: Block) {
        let c = &mut self.counters;
        c.lent_bytes -= block.capacity;
        c.free_bytes += block.capacity;
        self.free.push(block);
        self.trim();
    }

    /// A new cap; free blocks past it are released now, lent ones when they come back.
    pub fn set_limit(&mut self, limit_bytes: usize) {
        self.counters.limit_bytes = limit_bytes;
        self.trim();
    }

    /// Releases the oldest free blocks until the free bytes are under the cap.
    fn trim(&mut self) {
        let c = &mut self.counters;
        let mut released = 0;
        while c.free_bytes > c.limit_bytes {
            c.free_bytes -= self.free[released].capacity;
            released += 1;
        }
        self.free.drain(..released);
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new(DEFAULT_LIMIT_BYTES));

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // A panic while holding the lock cannot leave the counters half-updated in a way that
    // matters more than losing every later output, so a poisoned lock is used as it is.
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

unsafe extern "C" fn return_block(_env: sys::napi_env, _data: *mut std::ffi::c_void, hint: *mut std::ffi::c_void) {
    // SAFETY: hint is the Box<Block> leaked in `recycled_buffer`, finalized exactly once.
    let block = unsafe { Box::from_raw(hint.cast::<Block>()) };
    pool().give_back(*block);
}

/// An ArrayBuffer of `bytes` over a recycled block, or null when the pool declines (too
/// small, over the cap, or the runtime forbids external buffers): the caller then
/// allocates the output itself. Its contents are whatever the block last held.
#[napi]
pub fn recycled_buffer(env: &Env, bytes: f64) -> Result<Option<Unknown<'_>>> {
    if !(bytes.is_finite() && bytes >= 0.0 && bytes.fract() == 0.0) {
        return Err(Error::new(Status::InvalidArg, format!("bytes must be a non-negative integer, got {bytes}")));
    }
    let bytes = bytes as usize;
    let Some(block) = pool().take(bytes) else { return Ok(None) };
    let data = block.as_ptr();
    let hint = Box::into_raw(Box::new(block));
    let mut value = std::ptr::null_mut();
    // SAFETY: data points to at least `bytes` bytes owned by the block in `hint`, which
    // stays alive until the finalizer takes it back.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env.raw(),
            data.cast(),
            bytes,
            Some(return_block),
            hint.cast(),
            &mut value,
        )
    };
    if status != sys::Status::napi_ok {
        // Not created, so no finalizer will run: the block goes back now.
        // SAFETY: hint came from Box::into_raw above and was not handed to napi.
        pool().give_back(*unsafe { Box::from_raw(hint) });
        if status == sys::Status::napi_no_external_buffers_allowed {
            return Ok(None);
        }
        return Err(Error::new(Status::GenericFailure, "could not create an external ArrayBuffer".to_owned()));
    }
    // SAFETY: value is the ArrayBuffer napi just created in this env.
    Ok(Some(unsafe { Unknown::from_raw_unchecked(env.raw(), value) }))
}

/// Caps the bytes lent out and the bytes kept free (0 turns recycling off).
#[napi]
pub fn set_output_pool_limit(bytes: f64) -> Result<()> {
    if !(bytes.is_finite() && bytes >= 0.0 && bytes.fract() == 0.0) {
        return Err(Error::new(Status::InvalidArg, format!("bytes must be a non-negative integer, got {bytes}")));
    }
    pool().set_limit(bytes as usize);
    Ok(())
}

#[napi(object)]
pub struct OutputPoolStats {
    pub limit_bytes: f64,
    pub free_bytes: f64,
    pub lent_bytes: f64,
    pub reused: f64,
    pub allocated: f64,
    pub refused: f64,
}

#[napi]
pub fn output_pool_stats() -> OutputPoolStats {
    let c = pool().counters();
    OutputPoolStats {
        limit_bytes: c.limit_bytes as f64,
        free_bytes: c.free_bytes as f64,
        lent_bytes: c.lent_bytes as f64,
        reused: c.reused as f64,
        allocated: c.allocated as f64,
        refused: c.refused as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    #[test]
    fn a_returned_block_serves_the_next_output_of_its_size() {
        let mut pool = Pool::new(64 * MB);
        let a = pool.take(5 * MB).unwrap();
        let ptr = a.as_ptr();
        pool.give_back(a);
        let b = pool.take(5 * MB).unwrap();
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!((pool.counters().reused, pool.counters().allocated), (1, 1));
    }

    #[test]
    fn a_block_much_larger_than_asked_is_not_lent() {
        let mut pool = Pool::new(64 * MB);
        let big = pool.take(16 * MB).unwrap();
        pool.give_back(big);
        let small = pool.take(4 * MB).unwrap();
        assert_eq!(small.capacity, 4 * MB);
        assert_eq!(pool.counters().free_bytes, 16 * MB);
    }

    #[test]
    fn lending_stops_at_the_cap_and_free_blocks_stay_under_it() {
        let mut pool = Pool::new(12 * MB);
        let blocks: Vec<Block> = (0..3).map(|_| pool.take(4 * MB).unwrap()).collect();
        assert!(pool.take(4 * MB).is_none());
        assert_eq!(pool.counters().refused, 1);
        pool.set_limit(4 * MB);
        for b in blocks {
            pool.give_back(b);
        }
        let c = pool.counters();
        assert_eq!(c.lent_bytes, 0);
        assert!(c.free_bytes <= 4 * MB, "{c:?}");
    }

    #[test]
    fn small_outputs_are_left_to_the_caller() {
        let mut pool = Pool::new(64 * MB);
        assert!(pool.take(MIN_BYTES - 1).is_none());
        assert_eq!(pool.counters().refused, 0);
    }

    #[test]
    fn blocks_cover_whole_pages_and_huge_pages_above_two_mib() {
        assert_eq!(capacity_for(MIN_BYTES + 1), MIN_BYTES + PAGE);
        assert_eq!(capacity_for(HUGE_PAGE + 1), 2 * HUGE_PAGE);
    }
}
