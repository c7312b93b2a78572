//! A position-sensitive checksum of a tensor's bits, so the layer can keep a reference to
//! its input (instead of a private copy) and still refuse a backward whose input was changed
//! after the forward. `Σ word(x[i]) · (2i + 1) mod 2^32`: the weight is odd, so it is
//! invertible mod 2^32 and any change to one f32 element changes the sum; moved elements
//! change it through their weights. Order-free, so threads may sum any split of the array.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::element::Element;
use crate::pool;

/// Elements per task: big enough that one task streams, small enough to share the work.
const CHUNK: usize = 1 << 16;

/// The checksum of `values`, whose first element has index `first` in the whole array.
/// (LLVM keeps this loop scalar, as it does lane-array forms of it; ~4 values per ns per
/// thread here, which is what the folded checksum costs a sweep. Explicit SIMD is the next step.)
fn partial<T: Element>(values: &[T], first: usize) -> u32 {
    let mut weight = (first as u32).wrapping_mul(2).wrapping_add(1);
    let mut sum = 0u32;
    for v in values {
        sum = sum.wrapping_add(v.word().wrapping_mul(weight));
        weight = weight.wrapping_add(2);
    }
    sum
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

/// The checksum folded into a sweep that reads the array anyway (the statistics, the
/// backward sums): each task adds the part it just read, still in its cache, to its own
/// thread's slot, so the sweep pays no second trip to memory and no contended atomic.
pub(crate) struct Fold {
    slots: Vec<Slot>,
}

/// One thread's running sum, alone on its cache line.
#[repr(align(64))]
struct Slot(AtomicU32);

impl Fold {
    pub(crate) fn new() -> Fold {
        // One slot per pool thread, and one for a caller outside the pool.
        Fold { slots: (0..rayon::current_num_threads() + 1).map(|_| Slot(AtomicU32::new(0))).collect() }
    }

    /// Adds `values`, which sit at index `first` of the whole array.
    pub(crate) fn add<T: Element>(&self, values: &[T], first: usize) {
        let slot = rayon::current_thread_index().map_or(0, |i| i + 1).min(self.slots.len() - 1);
        self.slots[slot].0.fetch_add(partial(values, first), Ordering::Relaxed);
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
    fn f64_words_mix_both_halves() {
        let x = [1.5f64, -2.25, 1e300];
        let mut y = x;
        y[2] = f64::from_bits(y[2].to_bits() ^ (1 << 40));
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }
}
