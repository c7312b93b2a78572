//! How an elementwise pass writes its results. Plain stores first read each destination
//! line into the cache (the write-allocate fill) and then push x out of it; for outputs
//! larger than the caches, x86-64 non-temporal stores write whole lines straight to
//! memory instead: a third less traffic, and x stays cached for the pass that re-reads it.

use std::sync::OnceLock;

use crate::element::{Element, BLOCK};
use crate::pool::env_usize;

/// Outputs of at least this many bytes are written with non-temporal stores (by default;
/// `BATCHNORM_STREAM_MIN_BYTES` changes it). Below it, input and output together fit a
/// server L3 and plain stores win: on a 32 MiB-L3 EPYC, 2-thread training forward streamed
/// was 15% slower at a 16 MB output, even at 19 MB, and 7-15% faster from 25.7 MB up.
pub const STREAM_MIN_BYTES: usize = 20 << 20;

fn stream_min_bytes() -> usize {
    static MIN: OnceLock<usize> = OnceLock::new();
    *MIN.get_or_init(|| env_usize("BATCHNORM_STREAM_MIN_BYTES").unwrap_or(STREAM_MIN_BYTES))
}

/// Whether a pass writing `elements` values of T streams them.
pub(crate) fn streams<T>(elements: usize) -> bool {
    cfg!(all(target_arch = "x86_64", not(feature = "portable")))
        && elements.saturating_mul(std::mem::size_of::<T>()) >= stream_min_bytes()
}

/// The stores a pass uses: plain, or the non-temporal ones of a vector width. The width is
/// the compiled target's (an SSE store inside AVX code costs a state transition on Intel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stores {
    Cached,
    StreamSse,
    StreamAvx,
    StreamAvx512,
}

/// The pass's result for element j, given the destination's old value there (which is the
/// source when the pass runs in place).
pub(crate) trait ValueAt<T>: Sized {
    fn at(&self, j: usize, old: T) -> T;
    /// The results of elements `j..j + BLOCK`, for the types that round in blocks
    /// (`Element::F32_PASS`).
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn at_block(&self, j: usize, old: [T; BLOCK]) -> [T; BLOCK]
    where
        T: Copy,
    {
        let mut out = old;
        for l in 0..BLOCK {
            out[l] = self.at(j + l, old[l]);
        }
        out
    }
    /// The same pass over elements `start..start + len` only, indexed from 0: each of its
    /// inputs cut once, so a fixed-length loop over it needs no bounds checks.
    fn window(&self, start: usize, len: usize) -> Self;
}

/// `dst[j] = values.at(j, dst[j])` for every j. A task that streams calls `fence` after.
#[inline(always)]
pub(crate) fn write<T: Element>(dst: &mut [T], stores: Stores, values: &impl ValueAt<T>) {
    // Steps of whole 64-byte lines only, so aligned stores stay aligned: 16 values of f32 or
    // f64, 32 of the 16-bit formats.
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if stores != Stores::Cached {
        if size_of::<T>() == 2 {
            write_streaming::<T, 32>(dst, stores, values);
            return;
        }
        if size_of::<[T; 16]>().is_multiple_of(64) {
            write_streaming::<T, 16>(dst, stores, values);
            return;
        }
    }
    #[cfg(any(not(target_arch = "x86_64"), feature = "portable"))]
    let _ = stores;
    write_cached(dst, values);
}

// Indexing by j: the form the compiler vectorizes (see loops.rs).
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn write_cached<T: Element>(dst: &mut [T], values: &impl ValueAt<T>) {
    if T::F32_PASS {
        let (blocks, rest) = dst.as_chunks_mut::<BLOCK>();
        for (b, block) in blocks.iter_mut().enumerate() {
            // A window of the block, so indexing inside needs no bounds checks.
            *block = values.window(b * BLOCK, BLOCK).at_block(0, *block);
        }
        let first = blocks.len() * BLOCK;
        for (j, v) in rest.iter_mut().enumerate() {
            *v = values.at(first + j, *v);
        }
        return;
    }
    for j in 0..dst.len() {
        dst[j] = values.at(j, dst[j]);
    }
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[allow(clippy::needless_range_loop)]
#[inline(always)]
/// Values computed per STEP into registers, then stored as whole lines (64 bytes or more).
fn write_streaming<T: Element, const STEP: usize>(dst: &mut [T], stores: Stores, values: &impl ValueAt<T>) {
    // Plain stores up to the first 64-byte boundary (all of dst if T cannot reach one).
    let len = dst.len();
    let head = dst.as_ptr().align_offset(64).min(len);
    write_cached(&mut dst[..head], &values.window(0, head));
    let lines = (len - head) / STEP;
    for s in 0..lines {
        let start = head + s * STEP;
        let step = &mut dst[start..start + STEP];
        let window = values.window(start, STEP);
        let mut line = [T::default(); STEP];
        if T::F32_PASS {
            let blocks = line.as_chunks_mut::<BLOCK>().0.iter_mut().zip(step.as_chunks::<BLOCK>().0);
            for (l, (out, old)) in blocks.enumerate() {
                // A window of the block, so indexing inside needs no bounds checks.
                *out = window.window(l * BLOCK, BLOCK).at_block(0, *old);
            }
        } else {
            for l in 0..STEP {
                line[l] = window.at(l, step[l]);
            }
        }
        // SAFETY: `step` is STEP elements of dst, size_of::<[T; STEP]>() bytes; it starts
        // 64-byte aligned plus a multiple of that size, itself a multiple of 64 (checked in
        // `write`), so every store below is as aligned as its instruction requires.
        unsafe { stream_line(step.as_mut_ptr().cast(), line.as_ptr().cast(), size_of::<[T; STEP]>(), stores) };
    }
    let tail = head + lines * STEP;
    write_cached(&mut dst[tail..], &values.window(tail, len - tail));
}

/// Orders the non-temporal stores this thread made before whatever it does next. They are
/// weakly ordered: a task that streamed must call this before it ends and another thread
/// may read what it wrote. Once per task, not per row: the fence waits for the stores.
pub(crate) fn fence(streaming: bool) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
    if streaming {
        // SAFETY: SSE is part of the x86-64 baseline.
        unsafe { std::arch::x86_64::_mm_sfence() };
    }
    let _ = streaming;
}

/// Copies `bytes` (a multiple of 64) from `from` to `to` with non-temporal stores.
///
/// # Safety
/// Both ranges valid; `to` 64-byte aligned; the CPU has the instructions `stores` names.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[inline(always)]
unsafe fn stream_line(to: *mut u8, from: *const u8, bytes: usize, stores: Stores) {
    // Miri runs no inline assembly, which the streaming intrinsics are: there a plain copy of
    // the same line stands in, so the line-cutting and alignment logic around it stays checked.
    #[cfg(miri)]
    {
        let _ = stores;
        assert!(to.align_offset(64) == 0 && bytes.is_multiple_of(64), "a streamed line must be whole and aligned");
        // SAFETY: the caller's contract (both ranges valid for `bytes`, and they are distinct
        // buffers: a register-sized line copy and dst).
        unsafe { std::ptr::copy_nonoverlapping(from, to, bytes) };
    }
    #[cfg(not(miri))]
    stream_line_intrinsics(to, from, bytes, stores)
}

/// `stream_line` with the non-temporal store instructions.
///
/// # Safety
/// As `stream_line`.
#[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
#[inline(always)]
unsafe fn stream_line_intrinsics(to: *mut u8, from: *const u8, bytes: usize, stores: Stores) {
    use std::arch::x86_64::*;
    match stores {
        Stores::StreamAvx512 => {
            for q in (0..bytes).step_by(64) {
                _mm512_stream_si512(to.add(q).cast(), _mm512_loadu_si512(from.add(q).cast()));
            }
        }
        Stores::StreamAvx => {
            for q in (0..bytes).step_by(32) {
                _mm256_stream_si256(to.add(q).cast(), _mm256_loadu_si256(from.add(q).cast()));
            }
        }
        Stores::StreamSse | Stores::Cached => {
            for q in (0..bytes).step_by(16) {
                _mm_stream_si128(to.add(q).cast(), _mm_loadu_si128(from.add(q).cast()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `old * 2 + j` with j counted from the start of the whole destination.
    struct Affine {
        first: usize,
    }

    impl<T: Element> ValueAt<T> for Affine {
        fn at(&self, j: usize, old: T) -> T {
            T::from_f64(old.to_f64() * 2.0 + (self.first + j) as f64)
        }
        fn window(&self, start: usize, _len: usize) -> Self {
            Affine { first: self.first + start }
        }
    }

    fn check<T: Element>(stores: Stores) {
        let backing: Vec<T> = (0..200).map(|v| T::from_f64(v as f64)).collect();
        for offset in 0..17 {
            for len in [0, 1, 15, 16, 17, 33, 64, 100, 150] {
                let mut plain = backing.clone();
                let mut streamed = backing.clone();
                write(&mut plain[offset..offset + len], Stores::Cached, &Affine { first: 0 });
                write(&mut streamed[offset..offset + len], stores, &Affine { first: 0 });
                fence(true);
                assert_eq!(plain, streamed, "{stores:?}, offset {offset}, len {len}");
            }
        }
    }

    #[test]
    fn streaming_matches_plain_stores_at_every_alignment_and_length() {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut kinds = vec![Stores::StreamSse];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx") {
                kinds.push(Stores::StreamAvx);
            }
            if is_x86_feature_detected!("avx512f") {
                kinds.push(Stores::StreamAvx512);
            }
        }
        for stores in kinds {
            check::<f32>(stores);
            check::<f64>(stores);
            check::<crate::half::Bf16>(stores);
        }
    }
}
