//! The innermost loops, each compiled for AVX-512, AVX2+FMA (and NEON) besides the baseline
//! and picked at run time (`multiversion`): one binary runs on any x86-64 and still uses
//! the widest vectors the CPU has. Accumulators are f64 and split into independent lanes
//! so the additions vectorize.

use multiversion::multiversion;
use multiversion::target::target_cfg_f;

use crate::element::Element;
use crate::io::Chunk;
use crate::store::{self, Stores, ValueAt};

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

/// f64 partial sums per accumulator of the one-sweep reductions: two AVX-512 vectors (four
/// AVX2 ones), so each addition need not wait for the previous one's result.
const PAIR_LANES: usize = 16;

/// Whether the selected target has fused multiply-add (aarch64 always does).
macro_rules! has_fma {
    () => {
        cfg!(target_arch = "aarch64") || target_cfg_f!(target_feature = "fma")
    };
}

/// The selected target's widest non-temporal stores when `streaming`, else plain stores.
macro_rules! stores {
    ($streaming:expr) => {
        if !$streaming {
            Stores::Cached
        } else if target_cfg_f!(target_feature = "avx512f") {
            Stores::StreamAvx512
        } else if target_cfg_f!(target_feature = "avx2") {
            Stores::StreamAvx
        } else {
            Stores::StreamSse
        }
    };
}

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

/// `Σ(x - k)` and `Σ(x - k)²` over a contiguous run.
#[inline(always)]
fn shifted_sums<T: Element>(x: &[T], k: f64, fma: bool) -> (f64, f64) {
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

/// The channels of consecutive rows from row `first` on (row r holds channel r % C), counted
/// without a division per row.
struct RowChannels {
    next: usize,
    channels: usize,
}

impl Iterator for RowChannels {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        let c = self.next;
        self.next = if c + 1 == self.channels { 0 } else { c + 1 };
        Some(c)
    }
}

#[inline(always)]
fn row_channels(first: usize, channels: usize) -> RowChannels {
    RowChannels { next: first % channels.max(1), channels }
}

/// `shifted_sums` of every row of `rows` (row r shifted by its channel's `shifts` entry) into
/// `out[r]`. One call per block of rows: rows of a 7x7 map would otherwise each pay a call.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn shifted_sums_rows<T: Element>(
    rows: &[T],
    inner: usize,
    first: usize,
    shifts: &[f64],
    out: &mut [(f64, f64)],
) {
    let channels = row_channels(first, shifts.len());
    for ((row, c), o) in rows.chunks_exact(inner).zip(channels).zip(out.iter_mut()) {
        *o = shifted_sums(row, shifts[c], has_fma!());
    }
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
#[inline(always)]
fn grad_sums<T: Element>(dy: &[T], x: &[T], relu_output: Option<&[T]>, mean: f64, fma: bool) -> (f64, f64) {
    let n = dy.len();
    let x = &x[..n];
    let full = n - n % PAIR_LANES;
    let pairs = dy[..full].chunks_exact(PAIR_LANES).zip(x[..full].chunks_exact(PAIR_LANES));
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
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
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
        *o = grad_sums(&dy[span.clone()], &x[span], y, mean[c], has_fma!());
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

/// One run of the pass: its source (unless in place), inputs and coefficients. The const
/// flags pick the form at compile time, so each loop is a straight line the compiler can
/// vectorize.
struct Affine<'a, T, K, const IN_PLACE: bool, const OTHER: bool, const MASK: bool, const RELU: bool> {
    src: &'a [T],
    other: &'a [T],
    mask: &'a [T],
    k: K,
    fma: bool,
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

    #[inline(always)]
    fn window(&self, start: usize, len: usize) -> Self {
        let cut = |v: &'a [T], used: bool| if used { &v[start..start + len] } else { &[][..] };
        Affine {
            src: cut(self.src, !IN_PLACE),
            other: cut(self.other, OTHER),
            mask: cut(self.mask, MASK),
            k: self.k.window(start, len),
            fma: self.fma,
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
) {
    // Every slice cut to the run's length, so indexing by j needs no bounds checks.
    let n = run.len();
    let other = if OTHER { &other.expect("other input")[..n] } else { &[][..] };
    let mask = if MASK { &mask.expect("relu output")[..n] } else { &[][..] };
    match run {
        Chunk::Separate(src, dst) => {
            let pass = Affine::<T, K, false, OTHER, MASK, RELU> { src: &src[..n], other, mask, k, fma };
            store::write(dst, stores, &pass);
        }
        Chunk::InPlace(dst) => {
            let pass = Affine::<T, K, true, OTHER, MASK, RELU> { src: &[], other, mask, k, fma };
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
    fma: bool,
) {
    let s = stores;
    match (other.is_some(), mask.is_some(), relu) {
        (false, false, false) => affine_loop::<T, K, false, false, false>(run, other, mask, k, s, fma),
        (false, false, true) => affine_loop::<T, K, false, false, true>(run, other, mask, k, s, fma),
        (false, true, _) => affine_loop::<T, K, false, true, false>(run, other, mask, k, s, fma),
        (true, false, false) => affine_loop::<T, K, true, false, false>(run, other, mask, k, s, fma),
        // act(BN(x) + residual): the fused tail of a ResNet block.
        (true, false, true) => affine_loop::<T, K, true, false, true>(run, other, mask, k, s, fma),
        (true, true, _) => affine_loop::<T, K, true, true, false>(run, other, mask, k, s, fma),
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
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
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
        affine_any(run, other, mask, k[c], stores, output.relu, has_fma!());
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

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
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
        affine_any(run, other, mask, columns.window(0, span.len()), stores, output.relu, has_fma!());
    }
}

/// Coefficients spread out per column of a row (channel of column j = j / inner): the five
/// fields of `Coefficients`, each an array of `width` values, one after another a cache line
/// apart (so at widths of a multiple of 4 KiB they do not fall in the same L1 sets). The
/// buffer is kept per thread between calls: a fresh one of over 128 KiB is a fresh mapping
/// from the allocator, and its page faults doubled a `[64,4096]` inference.
#[derive(Debug, Default)]
pub(crate) struct ColumnCoefficients {
    values: Vec<f64>,
    width: usize,
}

/// f64 values between two fields' arrays: one cache line.
const FIELD_GAP: usize = 8;
/// Kept buffers up to this many values (8 MiB); a larger one is freed after its call.
const KEPT_VALUES: usize = 1 << 20;

thread_local! {
    static KEPT: std::cell::Cell<Vec<f64>> = const { std::cell::Cell::new(Vec::new()) };
}

impl ColumnCoefficients {
    pub(crate) fn spread(per_channel: &[Coefficients], inner: usize) -> Self {
        Self::spread_range(per_channel, inner, 0, per_channel.len() * inner)
    }

    /// The coefficients of the `len` columns from `first` on only (column j of the result is
    /// column `first + j` of the row), for a task that covers part of a very wide row.
    pub(crate) fn spread_range(per_channel: &[Coefficients], inner: usize, first: usize, len: usize) -> Self {
        let width = len;
        let stride = width + FIELD_GAP;
        let mut values = KEPT.with(|kept| kept.take());
        values.clear();
        values.resize(5 * stride, 0.0);
        if len > 0 {
            let inner = inner.max(1);
            let channels = first / inner..=(first + len - 1) / inner;
            for (c, k) in channels.clone().zip(&per_channel[channels]) {
                // The channel's columns, cut to the range, counted from `first`.
                let run = (c * inner).max(first) - first..((c + 1) * inner).min(first + len) - first;
                for (i, v) in [k.scale, k.center, k.scale_other, k.center_other, k.shift].into_iter().enumerate() {
                    values[i * stride + run.start..i * stride + run.end].fill(v);
                }
            }
        }
        ColumnCoefficients { values, width }
    }

    /// Field i (in `Coefficients` order) for every column.
    fn field(&self, i: usize) -> &[f64] {
        let start = i * (self.width + FIELD_GAP);
        &self.values[start..start + self.width]
    }
}

impl Drop for ColumnCoefficients {
    fn drop(&mut self) {
        if self.values.capacity() <= KEPT_VALUES {
            let values = std::mem::take(&mut self.values);
            // try_with: during thread teardown the slot may be gone; the buffer is freed then.
            let _ = KEPT.try_with(|kept| kept.set(values));
        }
    }
}

/// A per-channel value spread out over every column of a row (`inner` columns per channel),
/// in one allocation of the final size: this runs on every channels-last call. With one column
/// per channel it is the per-channel values themselves (no copy: with millions of channels the
/// copy was a fresh allocation per call).
pub(crate) fn spread_columns(per_channel: &[f64], inner: usize) -> std::borrow::Cow<'_, [f64]> {
    if inner == 1 {
        return std::borrow::Cow::Borrowed(per_channel);
    }
    let mut columns = Vec::with_capacity(per_channel.len() * inner);
    for &v in per_channel {
        columns.extend(std::iter::repeat_n(v, inner));
    }
    std::borrow::Cow::Owned(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_sums_cover_the_remainder() {
        let x: Vec<f64> = (0..37).map(|v| v as f64).collect();
        let (s1, s2) = shifted_sums(&x, 10.0, false);
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
        assert_eq!(grad_sums(&dy, &x, None, 2.0, false), plain(&|_| true));
        assert_eq!(grad_sums(&dy, &x, Some(&y), 2.0, false), plain(&|i| y[i] > 0.0));
    }
}
