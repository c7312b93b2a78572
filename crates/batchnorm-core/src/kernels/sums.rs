//! The one-sweep reductions of the two paths: per row (channel-major) or per column
//! (channels-last), the shifted sums of the statistics and the sums of the backward pass.

use multiversion::multiversion;
use multiversion::target::target_cfg_f;

use super::{has_fma, row_channels, simd, through_relu};
use crate::element::{Element, Simd};

/// f64 partial sums per accumulator of the one-sweep reductions: two AVX-512 vectors (four
/// AVX2 ones), so each addition need not wait for the previous one's result.
const PAIR_LANES: usize = 16;

/// `Σu` and `Σu·v` in one sweep, `(u, v)` given per element by `uv(block, lane)` over blocks of
/// PAIR_LANES elements and by `tail` for the rest. One flat array of partial sums per sum, and
/// the product added by one fused instruction where the target has it: the form the compiler
/// vectorizes at full width. (On 100K f32 in cache: 8 lanes took 13.9 us, 16 lanes 11.1 us;
/// two 8-lane arrays per sum, or a separate multiply and add, were 2-4x slower, and one sweep
/// per sum 1.9x slower.)
#[inline(always)]
fn sum_and_dot<B>(
    blocks: impl Iterator<Item = B>,
    tail: impl Iterator<Item = (f64, f64)>,
    fma: bool,
    uv: impl Fn(&B, usize) -> (f64, f64),
) -> (f64, f64) {
    let mut sum = [0.0f64; PAIR_LANES];
    let mut dot = [0.0f64; PAIR_LANES];
    for block in blocks {
        for l in 0..PAIR_LANES {
            let (u, v) = uv(&block, l);
            sum[l] += u;
            dot[l] = if fma { u.mul_add(v, dot[l]) } else { dot[l] + u * v };
        }
    }
    // The rest in scalars of their own: indexing the lanes by a run-time position would keep
    // them in memory instead of registers, which short rows (a 7x7 map) pay for in full.
    let (mut rest_sum, mut rest_dot) = (0.0, 0.0);
    for (u, v) in tail {
        rest_sum += u;
        rest_dot += u * v;
    }
    (lanes_total(sum) + rest_sum, lanes_total(dot) + rest_dot)
}

/// The total of the lanes, added pairwise (halves, quarters, ...): vector adds rather than a
/// chain of scalar ones, which cost a short row (a 7x7 map) as much as its values.
#[inline(always)]
fn lanes_total(mut lanes: [f64; PAIR_LANES]) -> f64 {
    let mut width = PAIR_LANES / 2;
    while width > 0 {
        for l in 0..width {
            lanes[l] += lanes[l + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// Blocks of PAIR_LANES values a 16-bit run sums in f32 lanes before adding them into f64:
/// each f32 lane adds at most 16 terms (an error of a few f32 units of the block's sum, far below
/// a 16-bit unit), and the conversions to f64 that made these sweeps compute-bound go.
const F32_BLOCKS: usize = 16;

/// `sum_and_dot` for the 16-bit formats, whose u and v are f32: `uv(block, lane)` over `blocks`
/// blocks. Σu in f64 lanes: the mean (and Σdy) centers every output, and its error would show
/// in results near 0. Σu·v in f32 lanes F32_BLOCKS blocks at a time, each group's lanes then
/// added into the f64 totals. Blocks by index (not an iterator taken piecewise), so the lanes
/// stay in registers.
#[inline(always)]
fn sum_and_dot_f32(
    blocks: usize,
    tail: impl Iterator<Item = (f32, f32)>,
    fma: bool,
    uv: impl Fn(usize, usize) -> (f32, f32),
) -> (f64, f64) {
    let mut sum = [0.0f64; PAIR_LANES];
    let mut dot = [0.0f64; PAIR_LANES];
    let mut first = 0;
    while first < blocks {
        let last = blocks.min(first + F32_BLOCKS);
        let mut part_dot = [0.0f32; PAIR_LANES];
        for b in first..last {
            for l in 0..PAIR_LANES {
                let (u, v) = uv(b, l);
                sum[l] += f64::from(u);
                part_dot[l] = if fma { u.mul_add(v, part_dot[l]) } else { part_dot[l] + u * v };
            }
        }
        for l in 0..PAIR_LANES {
            dot[l] += f64::from(part_dot[l]);
        }
        first = last;
    }
    let (mut rest_sum, mut rest_dot) = (0.0, 0.0);
    for (u, v) in tail {
        rest_sum += f64::from(u);
        rest_dot += f64::from(u) * f64::from(v);
    }
    (lanes_total(sum) + rest_sum, lanes_total(dot) + rest_dot)
}

/// `Σ(x - k)` and `Σ(x - k)²` over a contiguous run (`simd`: see `Element::widen`).
#[inline(always)]
fn shifted_sums<T: Element>(x: &[T], k: f64, fma: bool, simd: Simd) -> (f64, f64) {
    if T::F32_PASS {
        // k is one of x's values, so exact in f32.
        let k = k as f32;
        let (blocks, rest) = x.as_chunks::<PAIR_LANES>();
        let tail = rest.iter().map(|v| {
            let d = v.widen(simd) - k;
            (d, d)
        });
        return sum_and_dot_f32(blocks.len(), tail, fma, |b, l| {
            let d = blocks[b][l].widen(simd) - k;
            (d, d)
        });
    }
    let blocks = x.chunks_exact(PAIR_LANES);
    let tail = blocks.remainder().iter().map(|v| {
        let d = v.to_f64() - k;
        (d, d)
    });
    sum_and_dot(blocks, tail, fma, |b, l| {
        let d = b[l].to_f64() - k;
        (d, d)
    })
}

/// `shifted_sums` of every row of `rows` (row r shifted by its channel's `shifts` entry) into
/// `out[r]`. One call per block of rows: rows of a 7x7 map would otherwise each pay a call.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c", "aarch64+neon"))]
pub(crate) fn shifted_sums_rows<T: Element>(
    rows: &[T],
    inner: usize,
    first: usize,
    shifts: &[f64],
    out: &mut [(f64, f64)],
) {
    let channels = row_channels(first, shifts.len());
    for ((row, c), o) in rows.chunks_exact(inner).zip(channels).zip(out.iter_mut()) {
        *o = shifted_sums(row, shifts[c], has_fma!(), simd!());
    }
}

/// A value in f64 (a 16-bit one widened by `Element::widen`).
#[inline(always)]
fn wide<T: Element>(v: T, simd: Simd) -> f64 {
    if T::F32_PASS {
        f64::from(v.widen(simd))
    } else {
        v.to_f64()
    }
}

/// Adds `x - k[j]` and its square to column `j`'s accumulators, for one row.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c", "aarch64+neon"))]
pub(crate) fn add_shifted_columns<T: Element>(row: &[T], k: &[f64], s1: &mut [f64], s2: &mut [f64]) {
    let n = row.len();
    let (k, s1, s2) = (&k[..n], &mut s1[..n], &mut s2[..n]);
    let simd = simd!();
    for j in 0..n {
        let d = wide(row[j], simd) - k[j];
        s1[j] += d;
        s2[j] += d * d;
    }
}

/// `Σg` and `Σg·(x - mean)` over a contiguous run, g = dy (through the ReLU mask if given).
#[inline(always)]
fn grad_sums<T: Element>(dy: &[T], x: &[T], relu_output: Option<&[T]>, mean: f64, fma: bool, simd: Simd) -> (f64, f64) {
    let n = dy.len();
    let x = &x[..n];
    let full = n - n % PAIR_LANES;
    let pairs = dy[..full].chunks_exact(PAIR_LANES).zip(x[..full].chunks_exact(PAIR_LANES));
    if T::F32_PASS {
        // The 16-bit formats' mean is an f32 parameter: exact in f32.
        let mean = mean as f32;
        let through = |g: f32, o: f32| if o > 0.0 { g } else { 0.0 };
        let blocks = full / PAIR_LANES;
        let (g, v) =
            (&dy[..full].as_chunks::<PAIR_LANES>().0[..blocks], &x[..full].as_chunks::<PAIR_LANES>().0[..blocks]);
        return match relu_output {
            None => {
                let tail = (full..n).map(|i| (dy[i].widen(simd), x[i].widen(simd) - mean));
                sum_and_dot_f32(blocks, tail, fma, |b, l| (g[b][l].widen(simd), v[b][l].widen(simd) - mean))
            }
            Some(y) => {
                let y = &y[..n];
                let o = &y[..full].as_chunks::<PAIR_LANES>().0[..blocks];
                let tail = (full..n).map(|i| (through(dy[i].widen(simd), y[i].widen(simd)), x[i].widen(simd) - mean));
                sum_and_dot_f32(blocks, tail, fma, |b, l| {
                    (through(g[b][l].widen(simd), o[b][l].widen(simd)), v[b][l].widen(simd) - mean)
                })
            }
        };
    }
    match relu_output {
        None => {
            let tail = (full..n).map(|i| (dy[i].to_f64(), x[i].to_f64() - mean));
            sum_and_dot(pairs, tail, fma, |(g, v), l| (g[l].to_f64(), v[l].to_f64() - mean))
        }
        Some(y) => {
            let y = &y[..n];
            let triples = pairs.zip(y[..full].chunks_exact(PAIR_LANES));
            let tail = (full..n).map(|i| (through_relu(dy[i].to_f64(), y[i].to_f64()), x[i].to_f64() - mean));
            sum_and_dot(triples, tail, fma, |((g, v), o), l| {
                (through_relu(g[l].to_f64(), o[l].to_f64()), v[l].to_f64() - mean)
            })
        }
    }
}

/// `grad_sums` of every row of a block (dy, x and the ReLU output cut alike; row r centred on
/// its channel's `mean` entry) into `out[r]`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c", "aarch64+neon"))]
pub(crate) fn grad_sums_rows<T: Element>(
    dy: &[T],
    x: &[T],
    relu_output: Option<&[T]>,
    inner: usize,
    first: usize,
    mean: &[f64],
    out: &mut [(f64, f64)],
) {
    let channels = row_channels(first, mean.len());
    for (r, (c, o)) in channels.zip(out.iter_mut()).enumerate() {
        let span = r * inner..(r + 1) * inner;
        let y = relu_output.map(|y| &y[span.clone()]);
        *o = grad_sums(&dy[span.clone()], &x[span], y, mean[c], has_fma!(), simd!());
    }
}

/// Adds g and `g·(x - mean[j])` to column `j`'s accumulators, for one row.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c", "aarch64+neon"))]
pub(crate) fn add_grad_columns<T: Element>(
    dy: &[T],
    x: &[T],
    relu_output: Option<&[T]>,
    mean: &[f64],
    s: &mut [f64],
    sx: &mut [f64],
) {
    let n = dy.len();
    let (x, mean, s, sx) = (&x[..n], &mean[..n], &mut s[..n], &mut sx[..n]);
    let simd = simd!();
    let wide = |v: T| wide(v, simd);
    match relu_output {
        None => {
            for j in 0..n {
                let g = wide(dy[j]);
                s[j] += g;
                sx[j] += g * (wide(x[j]) - mean[j]);
            }
        }
        Some(y) => {
            let y = &y[..n];
            for j in 0..n {
                let g = through_relu(wide(dy[j]), wide(y[j]));
                s[j] += g;
                sx[j] += g * (wide(x[j]) - mean[j]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_sums_cover_the_remainder() {
        let x: Vec<f64> = (0..37).map(|v| v as f64).collect();
        let (s1, s2) = shifted_sums(&x, 10.0, false, Simd::Portable);
        assert_eq!(s1, (0..37).map(|v| v as f64 - 10.0).sum::<f64>());
        // d * d, not powi: Miri perturbs powi's result at random.
        assert_eq!(s2, (0..37).map(|v| (v as f64 - 10.0) * (v as f64 - 10.0)).sum::<f64>());
    }

    #[test]
    fn grad_sums_cover_the_remainder_and_the_mask() {
        // Small integers: every sum is exact in any order, so the results must match exactly.
        let dy: Vec<f32> = (0..37).map(|v| (v % 7) as f32 - 3.0).collect();
        let x: Vec<f32> = (0..37).map(|v| (v % 5) as f32).collect();
        let y: Vec<f32> = (0..37).map(|v| (v % 3) as f32 - 1.0).collect();
        let plain = |keep: &dyn Fn(usize) -> bool| {
            let g = |i: usize| if keep(i) { dy[i] as f64 } else { 0.0 };
            ((0..37).map(g).sum::<f64>(), (0..37).map(|i| g(i) * (x[i] as f64 - 2.0)).sum::<f64>())
        };
        assert_eq!(grad_sums(&dy, &x, None, 2.0, false, Simd::Portable), plain(&|_| true));
        assert_eq!(grad_sums(&dy, &x, Some(&y), 2.0, false, Simd::Portable), plain(&|i| y[i] > 0.0));
    }
}
