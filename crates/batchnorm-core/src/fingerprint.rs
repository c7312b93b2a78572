//! A position-sensitive checksum of a tensor's bits, so the layer can keep a reference to
//! its input (instead of a private copy) and still refuse a backward whose input was changed
//! after the forward. `Σ word(x[i]) · (2i + 1) mod 2^32`: the weight is odd, so it is
//! invertible mod 2^32 and any change to one f32 element changes the sum; moved elements
//! change it through their weights. Order-free, so threads may sum any split of the array.

use crate::element::Element;
use crate::pool;

/// Elements per task: big enough that one task streams, small enough to share the work.
const CHUNK: usize = 1 << 16;

/// One 32-bit word per element: the f32 bits, or both halves of the f64 bits mixed.
pub trait Words: Element {
    fn word(self) -> u32;
}

impl Words for f32 {
    #[inline(always)]
    fn word(self) -> u32 {
        self.to_bits()
    }
}

impl Words for f64 {
    #[inline(always)]
    fn word(self) -> u32 {
        let bits = self.to_bits();
        (bits as u32) ^ ((bits >> 32) as u32).rotate_left(13)
    }
}

/// The checksum of `values`, whose first element has index `first` in the whole array.
fn partial<T: Words>(values: &[T], first: usize) -> u32 {
    let mut weight = (first as u32).wrapping_mul(2).wrapping_add(1);
    let mut sum = 0u32;
    for v in values {
        sum = sum.wrapping_add(v.word().wrapping_mul(weight));
        weight = weight.wrapping_add(2);
    }
    sum
}

/// The checksum of a whole array (the js fallback computes the same number).
pub fn fingerprint<T: Words>(x: &[T]) -> u32 {
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
    fn f64_words_mix_both_halves() {
        let x = [1.5f64, -2.25, 1e300];
        let mut y = x;
        y[2] = f64::from_bits(y[2].to_bits() ^ (1 << 40));
        assert_ne!(fingerprint(&x), fingerprint(&y));
    }
}
