//! Medians of repeated calls, and the memcpy baseline they are compared with.

use rayon::prelude::*;
use rayon::ThreadPool;
use std::time::Instant;

/// Median wall time in milliseconds of `iters` calls of `f`, after `warmup` untimed ones.
pub fn median_ms<E>(warmup: usize, iters: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut samples))
}

pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Copies `src` into `dst` on `pool`, one contiguous slice per thread: the bandwidth a
/// streaming kernel on that many threads could hope for.
pub fn parallel_copy<T: Copy + Send + Sync>(pool: &ThreadPool, src: &[T], dst: &mut [T]) {
    let chunk = src.len().div_ceil(pool.current_num_threads()).max(1);
    pool.install(|| {
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s));
    });
}

/// GB/s (10^9 bytes per second) for `bytes` moved in `ms` milliseconds.
pub fn gb_per_s(bytes: usize, ms: f64) -> f64 {
    bytes as f64 / (ms * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn parallel_copy_copies_everything() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let src: Vec<u32> = (0..1001).collect();
        let mut dst = vec![0; 1001];
        parallel_copy(&pool, &src, &mut dst);
        assert_eq!(src, dst);
    }

    #[test]
    fn gigabytes_per_second() {
        assert_eq!(gb_per_s(2_000_000, 1.0), 2.0);
    }
}
