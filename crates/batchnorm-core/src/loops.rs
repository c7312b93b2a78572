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

/// `Σ(x - k)` and `Σ(x - k)²` over a contiguous run.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn shifted_sums<T: Element>(x: &[T], k: f64) -> (f64, f64) {
    let mut s1 = [0.0f64; LANES];
    let mut s2 = [0.0f64; LANES];
    let mut blocks = x.chunks_exact(LANES);
    for block in &mut blocks {
        for l in 0..LANES {
            let d = block[l].to_f64() - k;
            s1[l] += d;
            s2[l] += d * d;
        }
    }
    for (l, v) in blocks.remainder().iter().enumerate() {
        let d = v.to_f64() - k;
        s1[l] += d;
        s2[l] += d * d;
    }
    (s1.iter().sum(), s2.iter().sum())
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
    let mut s = [0.0f64; LANES];
    let mut sx = [0.0f64; LANES];
    let n = dy.len();
    let x = &x[..n];
    let full = n - n % LANES;
    match relu_output {
        None => {
            for (g, v) in dy[..full].chunks_exact(LANES).zip(x[..full].chunks_exact(LANES)) {
                for l in 0..LANES {
                    let g = g[l].to_f64();
                    s[l] += g;
                    sx[l] += g * (v[l].to_f64() - mean);
                }
            }
        }
        Some(y) => {
            let y = &y[..n];
            for ((g, v), o) in
                dy[..full].chunks_exact(LANES).zip(x[..full].chunks_exact(LANES)).zip(y[..full].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    let g = through_relu(g[l].to_f64(), o[l].to_f64());
                    s[l] += g;
                    sx[l] += g * (v[l].to_f64() - mean);
                }
            }
        }
    }
    for i in full..n {
        let g = relu_output.map_or(dy[i].to_f64(), |y| through_relu(dy[i].to_f64(), y[i].to_f64()));
        s[i - full] += g;
        sx[i - full] += g * (x[i].to_f64() - mean);
    }
    (s.iter().sum(), sx.iter().sum())
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

/// One channel's run of an elementwise pass, with constant coefficients.
/// `mask`: the fused ReLU's output, through which src (dy) flows; `relu`: clamp the result.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn affine_run<T: Element>(
    run: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: Coefficients,
    relu_result: bool,
) {
    let Coefficients { scale, center, scale_other, center_other, shift } = k;
    match (other, mask, relu_result) {
        (None, None, false) => run.map(|_, v| (v - center) * scale + shift),
        (None, None, true) => run.map(|_, v| relu((v - center) * scale + shift)),
        (None, Some(m), _) => run.map_with(m, |_, v, o| through_relu(v, o) * scale + shift),
        (Some(o), None, _) => {
            run.map_with(o, |_, v, w| (v - center) * scale + (w - center_other) * scale_other + shift)
        }
        (Some(o), Some(m), _) => {
            run.map_with2(o, m, |_, v, w, y| through_relu(v, y) * scale + (w - center_other) * scale_other + shift)
        }
    }
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
    let (scale, center, shift) = (&k.scale[..n], &k.center[..n], &k.shift[..n]);
    let (scale_other, center_other) = (&k.scale_other[..n], &k.center_other[..n]);
    match (other, mask, relu_result) {
        (None, None, false) => row.map(|j, v| (v - center[j]) * scale[j] + shift[j]),
        (None, None, true) => row.map(|j, v| relu((v - center[j]) * scale[j] + shift[j])),
        (None, Some(m), _) => row.map_with(m, |j, v, o| through_relu(v, o) * scale[j] + shift[j]),
        (Some(o), None, _) => {
            row.map_with(o, |j, v, w| (v - center[j]) * scale[j] + (w - center_other[j]) * scale_other[j] + shift[j])
        }
        (Some(o), Some(m), _) => row.map_with2(o, m, |j, v, w, y| {
            through_relu(v, y) * scale[j] + (w - center_other[j]) * scale_other[j] + shift[j]
        }),
    }
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
