//! The elementwise pass's loops: `dst = act((src - center) * scale + (other - center_other) *
//! scale_other + shift)`, per row of one channel or per column of a row of channels, each form
//! a straight line picked at compile time.

use multiversion::multiversion;
use multiversion::target::target_cfg_f;

use super::{has_fma, relu, row_channels, simd, stores, through_relu};
use crate::coefficients::{Coefficients, ColumnCoefficients};
use crate::element::{Element, Simd, BLOCK};
use crate::io::Chunk;
use crate::store::{self, Stores, ValueAt};

/// Coefficients for element j of a run: constant (one channel) or per column.
pub(crate) trait CoefficientsAt: Sync + Sized {
    fn at(&self, j: usize) -> Coefficients;
    /// The coefficients of elements `start..start + len`, indexed from 0.
    fn window(&self, start: usize, len: usize) -> Self;
}

impl CoefficientsAt for Coefficients {
    #[inline(always)]
    fn at(&self, _j: usize) -> Coefficients {
        *self
    }
    #[inline(always)]
    fn window(&self, _start: usize, _len: usize) -> Self {
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

impl<'a> CoefficientsAt for Columns<'a> {
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
    #[inline(always)]
    fn window(&self, start: usize, len: usize) -> Self {
        let cut = |v: &'a [f64]| &v[start..start + len];
        Columns {
            scale: cut(self.scale),
            center: cut(self.center),
            scale_other: cut(self.scale_other),
            center_other: cut(self.center_other),
            shift: cut(self.shift),
        }
    }
}

/// What a pass does with each result: clamp it at 0 (fused ReLU forward), and whether it
/// streams it past the caches (`store::streams`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Output {
    pub relu: bool,
    pub streaming: bool,
}

impl<
        'a,
        T: Element,
        K: CoefficientsAt,
        const IN_PLACE: bool,
        const OTHER: bool,
        const MASK: bool,
        const RELU: bool,
    > Affine<'a, T, K, IN_PLACE, OTHER, MASK, RELU>
{
    /// `at` in f32, for the 16-bit formats: the same steps, half the vector width's cost; the
    /// result before its rounding to T.
    #[inline(always)]
    fn value_f32(&self, j: usize, old: T) -> f32 {
        let (c, fma, simd) = (self.k.at(j), self.fma, self.simd);
        let (scale, shift) = (c.scale as f32, c.shift as f32);
        let v = if IN_PLACE { old } else { self.src[j] }.widen(simd);
        let v = if MASK && self.mask[j].widen(simd).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            0.0
        } else {
            v
        };
        let d = centered(v, c.center);
        let mut r = if fma { d.mul_add(scale, shift) } else { d * scale + shift };
        if OTHER {
            let o = centered(self.other[j].widen(simd), c.center_other);
            r = if fma { o.mul_add(c.scale_other as f32, r) } else { r + o * c.scale_other as f32 };
        }
        if RELU && r < 0.0 {
            0.0
        } else {
            r
        }
    }
}

/// `v - center` in f32 with the f64 center's own f32 rounding taken back out (the center in
/// two f32 parts): rounding a mean of 100 to f32 moves it by up to 4e-6, which is many 16-bit
/// units of a result near 0, while `v - hi` is exact for v near the center.
#[inline(always)]
fn centered(v: f32, center: f64) -> f32 {
    let hi = center as f32;
    let lo = (center - f64::from(hi)) as f32;
    (v - hi) - lo
}

/// One run of the pass: its source (unless in place), inputs and coefficients. The const
/// flags pick the form at compile time, so each loop is a straight line the compiler can
/// vectorize.
struct Affine<'a, T, K, const IN_PLACE: bool, const OTHER: bool, const MASK: bool, const RELU: bool> {
    src: &'a [T],
    other: &'a [T],
    mask: &'a [T],
    k: K,
    fma: bool,
    /// The loop's vector conversions (see `Element::widen`).
    simd: Simd,
}

impl<
        'a,
        T: Element,
        K: CoefficientsAt,
        const IN_PLACE: bool,
        const OTHER: bool,
        const MASK: bool,
        const RELU: bool,
    > ValueAt<T> for Affine<'a, T, K, IN_PLACE, OTHER, MASK, RELU>
{
    #[inline(always)]
    fn at(&self, j: usize, old: T) -> T {
        if T::F32_PASS {
            return T::from_f32(self.value_f32(j, old));
        }
        let (c, fma) = (self.k.at(j), self.fma);
        let v = if IN_PLACE { old } else { self.src[j] }.to_f64();
        let v = if MASK { through_relu(v, self.mask[j].to_f64()) } else { v };
        let mut r = if fma { (v - c.center).mul_add(c.scale, c.shift) } else { (v - c.center) * c.scale + c.shift };
        if OTHER {
            let o = self.other[j].to_f64() - c.center_other;
            r = if fma { o.mul_add(c.scale_other, r) } else { r + o * c.scale_other };
        }
        T::from_f64(if RELU { relu(r) } else { r })
    }

    // Loops, not array::from_fn: its closure may stay out of line, compiled without the
    // caller's target features (measured: float16 backward 15x slower).
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn at_block(&self, j: usize, old: [T; BLOCK]) -> [T; BLOCK] {
        let mut values = [0.0f32; BLOCK];
        for l in 0..BLOCK {
            values[l] = self.value_f32(j + l, old[l]);
        }
        T::narrow_block(values, self.simd)
    }

    #[inline(always)]
    fn window(&self, start: usize, len: usize) -> Self {
        let cut = |v: &'a [T], used: bool| if used { &v[start..start + len] } else { &[][..] };
        Affine {
            src: cut(self.src, !IN_PLACE),
            other: cut(self.other, OTHER),
            mask: cut(self.mask, MASK),
            k: self.k.window(start, len),
            fma: self.fma,
            simd: self.simd,
        }
    }
}

#[inline(always)]
fn affine_loop<T: Element, K: CoefficientsAt, const OTHER: bool, const MASK: bool, const RELU: bool>(
    run: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: K,
    stores: Stores,
    fma: bool,
    simd: Simd,
) {
    // Every slice cut to the run's length, so indexing by j needs no bounds checks.
    let n = run.len();
    let other = if OTHER { &other.expect("other input")[..n] } else { &[][..] };
    let mask = if MASK { &mask.expect("relu output")[..n] } else { &[][..] };
    match run {
        Chunk::Separate(src, dst) => {
            let pass = Affine::<T, K, false, OTHER, MASK, RELU> { src: &src[..n], other, mask, k, fma, simd };
            store::write(dst, stores, &pass);
        }
        Chunk::InPlace(dst) => {
            let pass = Affine::<T, K, true, OTHER, MASK, RELU> { src: &[], other, mask, k, fma, simd };
            store::write(dst, stores, &pass);
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
    k: K,
    stores: Stores,
    relu: bool,
    (fma, simd): (bool, Simd),
) {
    let s = stores;
    match (other.is_some(), mask.is_some(), relu) {
        (false, false, false) => affine_loop::<T, K, false, false, false>(run, other, mask, k, s, fma, simd),
        (false, false, true) => affine_loop::<T, K, false, false, true>(run, other, mask, k, s, fma, simd),
        (false, true, _) => affine_loop::<T, K, false, true, false>(run, other, mask, k, s, fma, simd),
        (true, false, false) => affine_loop::<T, K, true, false, false>(run, other, mask, k, s, fma, simd),
        // act(BN(x) + residual): the fused tail of a ResNet block.
        (true, false, true) => affine_loop::<T, K, true, false, true>(run, other, mask, k, s, fma, simd),
        (true, true, _) => affine_loop::<T, K, true, true, false>(run, other, mask, k, s, fma, simd),
    }
}

/// An elementwise pass over a block of rows of `inner` values, row r with the coefficients
/// of its channel, `k[(first + r) % k.len()]`. `mask`: the fused ReLU's output, through which
/// src (dy) flows. One call per block, as for the sums.
pub(crate) fn affine_rows<T: Element>(
    rows: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    inner: usize,
    first: usize,
    k: &[Coefficients],
    output: Output,
) {
    let (src, dst) = rows.into_parts();
    affine_rows_on(src, dst, other, mask, inner, first, k, output);
}

// The kernels take dst as a parameter of their own (not inside a Chunk): only then does the
// compiler know it aliases nothing else, and vectorize without run-time overlap checks (which
// sent channels-last rows to a scalar loop).
#[allow(clippy::too_many_arguments)]
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c", "aarch64+neon"))]
fn affine_rows_on<T: Element>(
    src: Option<&[T]>,
    dst: &mut [T],
    other: Option<&[T]>,
    mask: Option<&[T]>,
    inner: usize,
    first: usize,
    k: &[Coefficients],
    output: Output,
) {
    let stores = stores!(output.streaming);
    let channels = row_channels(first, k.len());
    for (r, (row, c)) in dst.chunks_mut(inner).zip(channels).enumerate() {
        let span = r * inner..r * inner + row.len();
        let run = Chunk::from_parts(src.map(|s| &s[span.clone()]), row);
        let (other, mask) = (other.map(|o| &o[span.clone()]), mask.map(|m| &m[span]));
        affine_any(run, other, mask, k[c], stores, output.relu, (has_fma!(), simd!()));
    }
}

/// An elementwise pass over a block of whole rows whose coefficients change with the column
/// (channels-last). One call per block: NHWC rows are short and many.
pub(crate) fn affine_columns<T: Element>(
    rows: Chunk<'_, T>,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: &ColumnCoefficients,
    output: Output,
) {
    let (src, dst) = rows.into_parts();
    affine_columns_on(src, dst, other, mask, k, output);
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma+f16c", "x86_64+avx2+fma+f16c", "aarch64+neon"))]
fn affine_columns_on<T: Element>(
    src: Option<&[T]>,
    dst: &mut [T],
    other: Option<&[T]>,
    mask: Option<&[T]>,
    k: &ColumnCoefficients,
    output: Output,
) {
    let columns = Columns {
        scale: k.field(0),
        center: k.field(1),
        scale_other: k.field(2),
        center_other: k.field(3),
        shift: k.field(4),
    };
    let (width, stores) = (k.width, stores!(output.streaming));
    for (r, row) in dst.chunks_mut(width).enumerate() {
        let span = r * width..r * width + row.len();
        let run = Chunk::from_parts(src.map(|s| &s[span.clone()]), row);
        let (other, mask) = (other.map(|o| &o[span.clone()]), mask.map(|m| &m[span.clone()]));
        // Cut to the row, so indexing by column needs no bounds checks.
        affine_any(run, other, mask, columns.window(0, span.len()), stores, output.relu, (has_fma!(), simd!()));
    }
}
