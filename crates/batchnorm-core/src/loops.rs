//! The innermost loops, each compiled for AVX-512, AVX2+FMA (and NEON) besides the baseline
//! and picked at run time (`multiversion`): one binary runs on any x86-64 and still uses
//! the widest vectors the CPU has. Accumulators are f64 and split into independent lanes
//! so the additions vectorize instead of waiting on one another.

use multiversion::multiversion;

use crate::element::Element;
use crate::io::Chunk;

/// Independent f64 accumulators per reduction (two AVX-512 vectors).
const LANES: usize = 16;

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

/// `Σ f(x)` over a run in LANES independent partial sums (so the additions vectorize).
#[inline(always)]
fn lane_sum<T: Element>(x: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for block in &mut blocks {
        for l in 0..LANES {
            acc[l] += f(block[l].to_f64());
        }
    }
    for (l, v) in blocks.remainder().iter().enumerate() {
        acc[l] += f(v.to_f64());
    }
    acc.iter().sum()
}

/// `Σ(x - k)` and `Σ(x - k)²` over a contiguous run. Two sweeps of a run that is in cache:
/// one accumulator each is what the compiler vectorizes at full width (one body updating
/// both gets paired into 2-wide vectors).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn shifted_sums<T: Element>(x: &[T], k: f64) -> (f64, f64) {
    (lane_sum(x, |v| v - k), lane_sum(x, |v| (v - k) * (v - k)))
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

/// `Σ f(a, b)` over two runs of equal length, in LANES partial sums.
#[inline(always)]
fn lane_sum2<T: Element>(a: &[T], b: &[T], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let n = a.len();
    let full = n - n % LANES;
    for (ab, bb) in a[..full].chunks_exact(LANES).zip(b[..full].chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += f(ab[l].to_f64(), bb[l].to_f64());
        }
    }
    for i in full..n {
        acc[i - full] += f(a[i].to_f64(), b[i].to_f64());
    }
    acc.iter().sum()
}

/// `Σ f(a, b, c)` over three runs of equal length, in LANES partial sums.
#[inline(always)]
fn lane_sum3<T: Element>(a: &[T], b: &[T], c: &[T], f: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let n = a.len();
    let full = n - n % LANES;
    let blocks = a[..full].chunks_exact(LANES).zip(b[..full].chunks_exact(LANES)).zip(c[..full].chunks_exact(LANES));
    for ((ab, bb), cb) in blocks {
        for l in 0..LANES {
            acc[l] += f(ab[l].to_f64(), bb[l].to_f64(), cb[l].to_f64());
        }
    }
    for i in full..n {
        acc[i - full] += f(a[i].to_f64(), b[i].to_f64(), c[i].to_f64());
    }
    acc.iter().sum()
}

/// `Σg` and `Σg·(x - mean)` over a contiguous run, g = dy (through the ReLU mask if given).
/// One sweep per sum, as in `shifted_sums`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn grad_sums_run<T: Element>(dy: &[T], x: &[T], relu_output: Option<&[T]>, mean: f64) -> (f64, f64) {
    let x = &x[..dy.len()];
    match relu_output {
        None => (lane_sum(dy, |g| g), lane_sum2(dy, x, |g, v| g * (v - mean))),
        Some(y) => {
            let y = &y[..dy.len()];
            (lane_sum2(dy, y, through_relu), lane_sum3(dy, x, y, |g, v, o| through_relu(g, o) * (v - mean)))
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
) -> f64 {
    let c = k.at(j);
    let v = if MASK { through_relu(v, mask[j].to_f64()) } else { v };
    let mut r = (v - c.center) * c.scale + c.shift;
    if OTHER {
        r += (other[j].to_f64() - c.center_other) * c.scale_other;
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
) {
    let n = run.len();
    let other = if OTHER { &other.expect("other input")[..n] } else { &[][..] };
    let mask = if MASK { &mask.expect("relu output")[..n] } else { &[][..] };
    match run {
        Chunk::Separate(src, dst) => {
            let src = &src[..n];
            for j in 0..n {
                dst[j] = T::from_f64(value::<T, K, OTHER, MASK, RELU>(src[j].to_f64(), j, other, mask, k));
            }
        }
        Chunk::InPlace(dst) => {
            for j in 0..n {
                dst[j] = T::from_f64(value::<T, K, OTHER, MASK, RELU>(dst[j].to_f64(), j, other, mask, k));
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
) {
    match (other.is_some(), mask.is_some(), relu_result) {
        (false, false, false) => affine_loop::<T, K, false, false, false>(run, other, mask, k),
        (false, false, true) => affine_loop::<T, K, false, false, true>(run, other, mask, k),
        (false, true, _) => affine_loop::<T, K, false, true, false>(run, other, mask, k),
        (true, false, _) => affine_loop::<T, K, true, false, false>(run, other, mask, k),
        (true, true, _) => affine_loop::<T, K, true, true, false>(run, other, mask, k),
    }
}

/// One channel's run of an elementwise pass, with constant coefficients.
/// `mask`: the fused ReLU's output, through which src (dy) flows; `relu_result`: clamp the result.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn affine_run<T: Element>(
    run: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: Coefficients,
    relu_result: bool,
) {
    affine_any(run, other, mask, &k, relu_result);
}

/// One row of an elementwise pass whose coefficients change with the column (channels-last).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn affine_columns<T: Element>(
    row: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: &ColumnCoefficients,
    relu_result: bool,
) {
    let n = row.len();
    let columns = Columns {
        scale: &k.scale[..n],
        center: &k.center[..n],
        scale_other: &k.scale_other[..n],
        center_other: &k.center_other[..n],
        shift: &k.shift[..n],
    };
    affine_any(row, other, mask, &columns, relu_result);
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
}
