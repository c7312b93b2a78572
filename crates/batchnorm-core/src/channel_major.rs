//! The channel-major path (`Path::ChannelMajor`: NCHW, NCL, NCDHW): each (outer, channel)
//! row is contiguous and has one channel, so reductions sum whole rows into registers and
//! the elementwise pass uses one set of coefficients per row. Both walk memory in order,
//! blocks of rows per task. (Owning a channel per task, to normalize it while cached,
//! measured slower here: its rows are strided through the tensor and evict each other.)

use std::ops::Range;

use crate::coefficients::Coefficients;
use crate::element::Element;
use crate::fingerprint::{cached_row_runs, Fold};
use crate::io::Io;
use crate::kernels::affine::{affine_rows, Output};
use crate::kernels::sums::{grad_sums_rows, shifted_sums_rows};
use crate::layout::Layout;
use crate::pass::{for_each_chunk, Inputs};
use crate::pool::Exec;

/// Elements per task of the memory-order passes: enough work to amortize a task.
const ROW_TASK_ELEMENTS: usize = 1 << 16;

/// Rows per task of the memory-order passes.
fn rows_per_task(layout: &Layout) -> usize {
    (ROW_TASK_ELEMENTS / layout.inner.max(1)).max(1)
}

/// Per channel: the sums `reduce_rows(rows, out)` writes for each row of a block (`out[i]` for
/// row `rows.start + i`), folded in row order. Blocks are contiguous runs of rows, read in
/// memory order, which streams best.
fn reduce(
    exec: Exec,
    layout: &Layout,
    reduce_rows: impl Fn(Range<usize>, &mut [(f64, f64)]) + Sync + Send,
) -> Vec<(f64, f64)> {
    let rows = layout.outer * layout.channels;
    let block = rows_per_task(layout);
    let per_block = exec.map(rows.div_ceil(block), |b| {
        let span = b * block..((b + 1) * block).min(rows);
        let mut out = vec![(0.0, 0.0); span.len()];
        reduce_rows(span, &mut out);
        out
    });
    let mut totals = vec![(0.0, 0.0); layout.channels];
    for (r, (a, b)) in per_block.into_iter().flatten().enumerate() {
        let t = &mut totals[r % layout.channels];
        t.0 += a;
        t.1 += b;
    }
    totals
}

/// `sums_of(run, out)` over a block of rows; with `fold`, in runs short enough to stay in L1,
/// each run then folded into the fingerprint while cached.
fn with_fingerprint<T: Element>(
    x: &[T],
    inner: usize,
    rows: Range<usize>,
    out: &mut [(f64, f64)],
    fold: Option<&Fold>,
    sums_of: impl Fn(Range<usize>, &mut [(f64, f64)]),
) {
    let Some(f) = fold else { return sums_of(rows, out) };
    for run in cached_row_runs(rows.clone(), inner) {
        sums_of(run.clone(), &mut out[run.start - rows.start..run.end - rows.start]);
        f.add(&x[run.start * inner..run.end * inner], run.start * inner);
    }
}

/// Per channel, `Σ(x - K)` and `Σ(x - K)²` (K = `shifts[c]`).
pub(crate) fn shifted_sums<T: Element>(
    exec: Exec,
    x: &[T],
    layout: &Layout,
    shifts: &[f64],
    fold: Option<&Fold>,
) -> Vec<(f64, f64)> {
    let inner = layout.inner;
    reduce(exec, layout, |rows, out| {
        with_fingerprint(x, inner, rows, out, fold, |run, out| {
            shifted_sums_rows(&x[run.start * inner..run.end * inner], inner, run.start, shifts, out)
        })
    })
}

/// Per channel, `Σg` and `Σg·(x - mean[c])`, g = dy through the ReLU mask if given.
pub(crate) fn grad_sums<T: Element>(
    exec: Exec,
    dy: &[T],
    x: &[T],
    relu_output: Option<&[T]>,
    layout: &Layout,
    mean: &[f64],
    fold: Option<&Fold>,
) -> Vec<(f64, f64)> {
    let inner = layout.inner;
    reduce(exec, layout, |rows, out| {
        with_fingerprint(x, inner, rows, out, fold, |run, out| {
            let span = run.start * inner..run.end * inner;
            let y = relu_output.map(|y| &y[span.clone()]);
            grad_sums_rows(&dy[span.clone()], &x[span], y, inner, run.start, mean, out);
        })
    })
}

/// The elementwise pass with per-channel coefficients `k`, in memory order.
pub(crate) fn apply<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    layout: &Layout,
    inputs: Inputs<'_, T>,
    output: Output,
    k: &[Coefficients],
) {
    let inner = layout.inner;
    let chunk_len = rows_per_task(layout) * inner;
    for_each_chunk(exec, io, chunk_len, inputs, output.streaming, |start, chunk, other, mask| {
        affine_rows(chunk, other, mask, inner, start / inner, k, output)
    });
}
