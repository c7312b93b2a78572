//! A position-sensitive checksum of a tensor's bits, so the layer can keep a reference to
//! its input (instead of a private copy) and still refuse a backward whose input was changed
//! after the forward. `Σ word(x[i]) · (2i + 1) mod 2^32`: the weight is odd, so it is
//! invertible mod 2^32 and any change to one f32 element changes the sum; moved elements
//! change it through their weights. Order-free, so threads may sum any split of the array.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::element::Element;
use crate::pool;

/// Elements per task: big enough that one task streams, small enough to share the work.
const CHUNK: usize = 1 << 16;

/// The checksum of `values`, whose first element has index `first` in the whole array: with
/// AVX2 eight (f32) or four (f64) values per step, else one by one. (LLVM keeps the plain loop
/// scalar, ~4 values per ns per thread, a third of a statistics sweep's time.)
fn partial<T: Element>(values: &[T], first: usize) -> u32 {
    #[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
    if std::arch::is_x86_feature_detected!("avx2") {
        use std::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: T is f32 (same TypeId), so the slice is a &[f32]; AVX2 is present.
            return unsafe {
                avx2::partial_f32(std::slice::from_raw_parts(values.as_ptr().cast(), values.len()), first)
            };
        }
        if TypeId::of::<T>() == TypeId::of::<f64>() {
            // SAFETY: as above, for f64.
            return unsafe {
                avx2::partial_f64(std::slice::from_raw_parts(values.as_ptr().cast(), values.len()), first)
            };
        }
    }
    partial_scalar(values, first)
}

fn partial_scalar<T: Element>(values: &[T], first: usize) -> u32 {
    let mut weight = (first as u32).wrapping_mul(2).wrapping_add(1);
    let mut sum = 0u32;
    for v in values {
        sum = sum.wrapping_add(v.word().wrapping_mul(weight));
        weight = weight.wrapping_add(2);
    }
    sum
}

#[cfg(all(target_arch = "x86_64", not(miri), not(feature = "portable")))]
mod avx2 {
    use std::arch::x86_64::*;

    use super::partial_scalar;

    /// Low 32 bits of every 32-bit lane, added up.
    #[target_feature(enable = "avx2")]
    unsafe fn total32(v: __m256i) -> u32 {
        let mut lanes = [0u32; 8];
        // SAFETY: lanes is 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
        lanes.iter().fold(0u32, |a, &b| a.wrapping_add(b))
    }

    /// f32: the words are the bits; lane j of step k has weight 2·(first + 8k + j) + 1.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn partial_f32(values: &[f32], first: usize) -> u32 {
        let start = (first as u32).wrapping_mul(2).wrapping_add(1) as i32;
        let mut weights = _mm256_add_epi32(_mm256_set1_epi32(start), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
        let step = _mm256_set1_epi32(16);
        let mut sum = _mm256_setzero_si256();
        let blocks = values.chunks_exact(8);
        let rest = blocks.remainder();
        for block in blocks {
            // SAFETY: a block is 8 f32 = 32 bytes; unaligned load.
            let words = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
            sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(words, weights));
            weights = _mm256_add_epi32(weights, step);
        }
        // SAFETY: AVX2 is enabled in this function.
        let total = unsafe { total32(sum) };
        total.wrapping_add(partial_scalar(rest, first + values.len() - rest.len()))
    }

    /// f64: each 64-bit lane makes its word (low half xor high half rotated left by 13) and
    /// multiplies it by its weight in the lane's low 32 bits (`mul_epu32`).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn partial_f64(values: &[f64], first: usize) -> u32 {
        let start = (first as u32).wrapping_mul(2).wrapping_add(1) as i64;
        let mut weights = _mm256_add_epi64(_mm256_set1_epi64x(start), _mm256_setr_epi64x(0, 2, 4, 6));
        let step = _mm256_set1_epi64x(8);
        let low = _mm256_set1_epi64x(0xFFFF_FFFF);
        let mut sum = _mm256_setzero_si256();
        let blocks = values.chunks_exact(4);
        let rest = blocks.remainder();
        for block in blocks {
            // SAFETY: a block is 4 f64 = 32 bytes; unaligned load.
            let bits = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
            let high = _mm256_srli_epi64::<32>(bits);
            let rotated =
                _mm256_and_si256(_mm256_or_si256(_mm256_slli_epi64::<13>(high), _mm256_srli_epi64::<19>(high)), low);
            let words = _mm256_and_si256(_mm256_xor_si256(bits, rotated), low);
            sum = _mm256_add_epi64(sum, _mm256_mul_epu32(words, weights));
            weights = _mm256_add_epi64(weights, step);
        }
        let mut lanes = [0u64; 4];
        // SAFETY: lanes is 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sum) };
        let total = lanes.iter().fold(0u32, |a, &b| a.wrapping_add(b as u32));
        total.wrapping_add(partial_scalar(rest, first + values.len() - rest.len()))
    }
}

/// The checksum of a whole array (the js fallback computes the same number).
pub fn fingerprint<T: Element>(x: &[T]) -> u32 {
    let tasks = x.len().div_ceil(CHUNK);
    pool::run(x.len(), |exec| {
        exec.map(tasks, |t| {
            let start = t * CHUNK;
            partial(&x[start..x.len().min(start + CHUNK)], start)
        })
    })
    .into_iter()
    .fold(0u32, u32::wrapping_add)
}

/// Values a folded sweep reads before the checksum re-reads them: 32 KiB of f32, still in L1.
const CACHED_ELEMENTS: usize = 8192;

/// A block of rows of `inner` values cut into runs that fit in L1 (at least one row each), so
/// a sweep that folds the checksum in re-reads each run from L1 rather than L2.
pub(crate) fn cached_row_runs(rows: Range<usize>, inner: usize) -> impl Iterator<Item = Range<usize>> {
    let step = (CACHED_ELEMENTS / inner.max(1)).max(1);
    (rows.start..rows.end).step_by(step).map(move |r| r..(r + step).min(rows.end))
}

/// The checksum folded into a sweep that reads the array anyway (the statistics, the
/// backward sums): each task adds the part it just read, still in its cache, to its own
/// thread's slot, so the sweep pays no second trip to memory and no contended atomic.
pub(crate) struct Fold {
    slots: Vec<Slot>,
    /// Where the array the sweep reads starts in the whole one (a ghost batch's group).
    base: usize,
}

/// One thread's running sum, alone on its cache line.
#[repr(align(64))]
struct Slot(AtomicU32);

impl Fold {
    pub(crate) fn new() -> Fold {
        // One slot per pool thread, and one for a caller outside the pool.
        Fold { slots: (0..rayon::current_num_threads() + 1).map(|_| Slot(AtomicU32::new(0))).collect(), base: 0 }
    }

    /// The next sweeps read the part of the whole array that starts at index `base`.
    pub(crate) fn starting_at(&mut self, base: usize) {
        self.base = base;
    }

    /// Adds `values`, which sit at index `first` of the part being swept.
    pub(crate) fn add<T: Element>(&self, values: &[T], first: usize) {
        let slot = rayon::current_thread_index().map_or(0, |i| i + 1).min(self.slots.len() - 1);
        self.slots[slot].0.fetch_add(partial(values, self.base + first), Ordering::Relaxed);
    }

    pub(crate) fn total(&self) -> u32 {
        self.slots.iter().fold(0u32, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_one_changed_element_changes_it_and_chunks_add_up() {
        let x: Vec<f32> = (0..3 * CHUNK + 17).map(|i| (i as f32 * 0.37).sin()).collect();
        let whole = partial(&x, 0);
        assert_eq!(fingerprint(&x), whole);
        for i in [0, 5, CHUNK - 1, CHUNK, 3 * CHUNK + 16] {
            let mut y = x.clone();
            y[i] = f32::from_bits(y[i].to_bits() ^ 1);
            assert_ne!(fingerprint(&y), whole, "element {i}");
        }
        let mut swapped = x.clone();
        swapped.swap(3, 4);
        assert_ne!(fingerprint(&swapped), whole);
    }

    #[test]
    fn partial_sums_match_the_definition_at_any_offset() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 1.7).cos() * 1e6).collect();
        for first in [0usize, 1, 17, 1 << 31, usize::MAX / 3] {
            for len in [0, 1, 15, 16, 17, 999] {
                let mut want = 0u32;
                for (k, v) in x[..len].iter().enumerate() {
                    let weight = ((first + k) as u32).wrapping_mul(2).wrapping_add(1);
                    want = want.wrapping_add(v.to_bits().wrapping_mul(weight));
                }
                assert_eq!(partial(&x[..len], first), want, "first {first} len {len}");
            }
        }
    }

    #[test]
    fn f64_blocks_match_the_definition_at_any_offset() {
        let x: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.3).sin() * 1e100).collect();
        for first in [0usize, 3, 1 << 33, usize::MAX / 5] {
            for len in [0, 1, 3, 4, 5, 999] {
                assert_eq!(partial(&x[..len], first), partial_scalar(&x[..len], first), "first {first} len {len}");
            }
        }
    }

    #[test]
    fn f64_words_mix_both_halves() {
        let x = [1.5f64, -2.25, 1e300];
        let mut y = x;
        y[2] = f64::from_bits(y[2].to_bits() ^ (1 << 40));
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }
}
