//! The innermost loops, each compiled for AVX-512, AVX2+FMA (and NEON) besides the baseline
//! and picked at run time (`multiversion`): one binary runs on any x86-64 and still uses
//! the widest vectors the CPU has. Accumulators are f64 and split into independent lanes
//! so the additions vectorize.

use multiversion::multiversion;
use multiversion::target::target_cfg_f;

use crate::element::Element;
use crate::io::Chunk;

/// Per-channel coefficients of `dst = act((src - center) * scale + (other - center_other) * scale_other + shift)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Coefficients {
    pub scale: f64,
    pub center: f64,
    pub scale_other: f64,
    pub center_other: f64,
    pub shift: f64,
}

/// `(v < 0) ? 0 : v`, written so that NaN passes through like PyTorch's relu.
#[inline(always)]
pub(crate) fn relu(v: f64) -> f64 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// dy where the fused ReLU's output was > 0, else 0.
#[inline(always)]
pub(crate) fn through_relu(dy: f64, output: f64) -> f64 {
    if output > 0.0 {
        dy
    } else {
        0.0
    }
}

/// f64 partial sums per accumulator of the one-sweep reductions: one vector on AVX-512.
const PAIR_LANES: usize = 8;

/// Whether the selected target has fused multiply-add (aarch64 always does).
macro_rules! has_fma {
    () => {
        cfg!(target_arch = "aarch64") || target_cfg_f!(target_feature = "fma")
    };
}

/// `Σu` and `Σu·v` in one sweep, `(u, v)` given per element by `uv(block, lane)` over blocks of
/// PAIR_LANES elements and by `tail` for the rest. One vector of partial sums per sum, and the
/// product added by one fused instruction where the target has it: the form the compiler
/// vectorizes at full width. (With two vectors per sum, or a separate multiply and add, AVX-512
/// code measured 3-4x slower on data in cache, and one sweep per sum 1.9x slower.)
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
    for (l, (u, v)) in tail.enumerate() {
        sum[l] += u;
        dot[l] += u * v;
    }
    (sum.iter().sum(), dot.iter().sum())
}

/// `Σ(x - k)` and `Σ(x - k)²` over a contiguous run.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn shifted_sums<T: Element>(x: &[T], k: f64) -> (f64, f64) {
    let blocks = x.chunks_exact(PAIR_LANES);
    let tail = blocks.remainder().iter().map(|v| {
        let d = v.to_f64() - k;
        (d, d)
    });
    sum_and_dot(blocks, tail, has_fma!(), |b, l| {
        let d = b[l].to_f64() - k;
        (d, d)
    })
}

/// Adds `x - k[j]` and its square to column `j`'s accumulators, for one row.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn add_shifted_columns<T: Element>(row: &[T], k: &[f64], s1: &mut [f64], s2: &mut [f64]) {
    let n = row.len();
    let (k, s1, s2) = (&k[..n], &mut s1[..n], &mut s2[..n]);
    for j in 0..n {
        let d = row[j].to_f64() - k[j];
        s1[j] += d;
        s2[j] += d * d;
    }
}

/// `Σg` and `Σg·(x - mean)` over a contiguous run, g = dy (through the ReLU mask if given).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn grad_sums_run<T: Element>(dy: &[T], x: &[T], relu_output: Option<&[T]>, mean: f64) -> (f64, f64) {
    let n = dy.len();
    let x = &x[..n];
    let full = n - n % PAIR_LANES;
    let pairs = dy[..full].chunks_exact(PAIR_LANES).zip(x[..full].chunks_exact(PAIR_LANES));
    match relu_output {
        None => {
            let tail = (full..n).map(|i| (dy[i].to_f64(), x[i].to_f64() - mean));
            sum_and_dot(pairs, tail, has_fma!(), |(g, v), l| (g[l].to_f64(), v[l].to_f64() - mean))
        }
        Some(y) => {
            let y = &y[..n];
            let triples = pairs.zip(y[..full].chunks_exact(PAIR_LANES));
            let tail = (full..n).map(|i| (through_relu(dy[i].to_f64(), y[i].to_f64()), x[i].to_f64() - mean));
            sum_and_dot(triples, tail, has_fma!(), |((g, v), o), l| {
                (through_relu(g[l].to_f64(), o[l].to_f64()), v[l].to_f64() - mean)
            })
        }
    }
}

/// Adds g and `g·(x - mean[j])` to column `j`'s accumulators, for one row.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
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
    match relu_output {
        None => {
            for j in 0..n {
                let g = dy[j].to_f64();
                s[j] += g;
                sx[j] += g * (x[j].to_f64() - mean[j]);
            }
        }
        Some(y) => {
            let y = &y[..n];
            for j in 0..n {
                let g = through_relu(dy[j].to_f64(), y[j].to_f64());
                s[j] += g;
                sx[j] += g * (x[j].to_f64() - mean[j]);
            }
        }
    }
}

/// Coefficients for element j of a run: constant (one channel) or per column.
pub(crate) trait CoefficientsAt: Sync {
    fn at(&self, j: usize) -> Coefficients;
}

impl CoefficientsAt for Coefficients {
    #[inline(always)]
    fn at(&self, _j: usize) -> Coefficients {
        *self
    }
}

/// Per-column coefficients cut to one row's length (so indexing needs no bounds checks).
struct Columns<'a> {
    scale: &'a [f64],
    center: &'a [f64],
    scale_other: &'a [f64],
    center_other: &'a [f64],
    shift: &'a [f64],
}

impl CoefficientsAt for Columns<'_> {
    #[inline(always)]
    fn at(&self, j: usize) -> Coefficients {
        Coefficients {
            scale: self.scale[j],
            center: self.center[j],
            scale_other: self.scale_other[j],
            center_other: self.center_other[j],
            shift: self.shift[j],
        }
    }
}

/// One element of the pass. The const flags pick the form at compile time, so each loop
/// below is a straight line the compiler can vectorize.
#[inline(always)]
fn value<T: Element, K: CoefficientsAt, const OTHER: bool, const MASK: bool, const RELU: bool>(
    v: f64,
    j: usize,
    other: &[T],
    mask: &[T],
    k: &K,
    fma: bool,
) -> f64 {
    let c = k.at(j);
    let v = if MASK { through_relu(v, mask[j].to_f64()) } else { v };
    let mut r = if fma { (v - c.center).mul_add(c.scale, c.shift) } else { (v - c.center) * c.scale + c.shift };
    if OTHER {
        let o = other[j].to_f64() - c.center_other;
        r = if fma { o.mul_add(c.scale_other, r) } else { r + o * c.scale_other };
    }
    if RELU {
        relu(r)
    } else {
        r
    }
}

// Indexing by j (not zipped iterators): the same j reads up to four slices and the
// coefficients, and this form is the one the compiler vectorizes reliably.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn affine_loop<T: Element, K: CoefficientsAt, const OTHER: bool, const MASK: bool, const RELU: bool>(
    run: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: &K,
    fma: bool,
) {
    let n = run.len();
    let other = if OTHER { &other.expect("other input")[..n] } else { &[][..] };
    let mask = if MASK { &mask.expect("relu output")[..n] } else { &[][..] };
    match run {
        Chunk::Separate(src, dst) => {
            let src = &src[..n];
            for j in 0..n {
                dst[j] = T::from_f64(value::<T, K, OTHER, MASK, RELU>(src[j].to_f64(), j, other, mask, k, fma));
            }
        }
        Chunk::InPlace(dst) => {
            for j in 0..n {
                dst[j] = T::from_f64(value::<T, K, OTHER, MASK, RELU>(dst[j].to_f64(), j, other, mask, k, fma));
            }
        }
    }
}

/// The forms the ops use: forward (optionally ReLU-clamped), dx frozen or through the batch
/// statistics, each optionally through the ReLU mask.
#[inline(always)]
fn affine_any<T: Element, K: CoefficientsAt>(
    run: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: &K,
    relu_result: bool,
    fma: bool,
) {
    match (other.is_some(), mask.is_some(), relu_result) {
        (false, false, false) => affine_loop::<T, K, false, false, false>(run, other, mask, k, fma),
        (false, false, true) => affine_loop::<T, K, false, false, true>(run, other, mask, k, fma),
        (false, true, _) => affine_loop::<T, K, false, true, false>(run, other, mask, k, fma),
        (true, false, _) => affine_loop::<T, K, true, false, false>(run, other, mask, k, fma),
        (true, true, _) => affine_loop::<T, K, true, true, false>(run, other, mask, k, fma),
    }
}

/// One channel's run of an elementwise pass, with constant coefficients.
/// `mask`: the fused ReLU's output, through which src (dy) flows; `relu_result`: clamp the result.
pub(crate) fn affine_run<T: Element>(
    run: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: Coefficients,
    relu_result: bool,
) {
    let (src, dst) = run.into_parts();
    affine_run_on(src, dst, other, mask, k, relu_result);
}

// The kernels take dst as a parameter of their own (not inside a Chunk): only then does the
// compiler know it aliases nothing else, and vectorize without run-time overlap checks (which
// sent channels-last rows to a scalar loop).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn affine_run_on<T: Element>(
    src: Option<&[T]>,
    dst: &mut [T],
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: Coefficients,
    relu_result: bool,
) {
    affine_any(Chunk::from_parts(src, dst), other, mask, &k, relu_result, has_fma!());
}

/// One row of an elementwise pass whose coefficients change with the column (channels-last).
pub(crate) fn affine_columns<T: Element>(
    row: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: &ColumnCoefficients,
    relu_result: bool,
) {
    let (src, dst) = row.into_parts();
    affine_columns_on(src, dst, other, mask, k, relu_result);
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn affine_columns_on<T: Element>(
    src: Option<&[T]>,
    dst: &mut [T],
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: &ColumnCoefficients,
    relu_result: bool,
) {
    let n = dst.len();
    let columns = Columns {
        scale: &k.scale[..n],
        center: &k.center[..n],
        scale_other: &k.scale_other[..n],
        center_other: &k.center_other[..n],
        shift: &k.shift[..n],
    };
    affine_any(Chunk::from_parts(src, dst), other, mask, &columns, relu_result, has_fma!());
}

/// Coefficients spread out per column of a row (channel of column j = j / inner).
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnCoefficients {
    pub scale: Vec<f64>,
    pub center: Vec<f64>,
    pub scale_other: Vec<f64>,
    pub center_other: Vec<f64>,
    pub shift: Vec<f64>,
}

impl ColumnCoefficients {
    pub(crate) fn spread(per_channel: &[Coefficients], inner: usize) -> Self {
        let mut k = Self::default();
        for c in per_channel {
            for _ in 0..inner {
                k.scale.push(c.scale);
                k.center.push(c.center);
                k.scale_other.push(c.scale_other);
                k.center_other.push(c.center_other);
                k.shift.push(c.shift);
            }
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_sums_cover_the_remainder() {
        let x: Vec<f64> = (0..37).map(|v| v as f64).collect();
        let (s1, s2) = shifted_sums(&x, 10.0);
        assert_eq!(s1, (0..37).map(|v| v as f64 - 10.0).sum::<f64>());
        assert_eq!(s2, (0..37).map(|v| (v as f64 - 10.0).powi(2)).sum::<f64>());
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
        assert_eq!(grad_sums_run(&dy, &x, None, 2.0), plain(&|_| true));
        assert_eq!(grad_sums_run(&dy, &x, Some(&y), 2.0), plain(&|i| y[i] > 0.0));
    }
}
