//! The channel-major path (`inner` >= MIN_INNER: NCHW, NCL, NCDHW): each (outer, channel)
//! row is contiguous and has one channel, so reductions sum whole rows into registers and
//! the elementwise pass uses one set of coefficients per row. Both walk memory in order,
//! blocks of rows per task. (Owning a channel per task, to normalize it while cached,
//! measured slower here: its rows are strided through the tensor and evict each other.)

use crate::element::Element;
use crate::io::Io;
use crate::layout::Layout;
use crate::loops::{affine_run, Coefficients, Output};
use crate::pool::Exec;
use crate::store;

/// Rows at least this long take this path; with shorter ones a row holds many channels and
/// the per-column accumulators of the channels-last path do better.
pub(crate) const MIN_INNER: usize = 64;

/// Rows per task of the memory-order passes: enough work to amortize a task.
fn rows_per_task(layout: &Layout) -> usize {
    (ROW_TASK_ELEMENTS / layout.inner.max(1)).max(1)
}

/// Elements per task of the memory-order passes.
const ROW_TASK_ELEMENTS: usize = 1 << 16;

/// Per channel: the sums `reduce_row` gives over its rows, folded in row order. The rows are
/// read in memory order (contiguous blocks of rows per task), which streams best.
pub(crate) fn reduce<T: Element>(
    exec: Exec,
    x: &[T],
    layout: &Layout,
    reduce_row: impl Fn(usize, &[T], std::ops::Range<usize>) -> (f64, f64) + Sync + Send,
) -> Vec<(f64, f64)> {
    let rows = layout.outer * layout.channels;
    let block = rows_per_task(layout);
    let per_row: Vec<(f64, f64)> = exec
        .map(rows.div_ceil(block), |b| {
            (b * block..((b + 1) * block).min(rows))
                .map(|r| {
                    let span = r * layout.inner..(r + 1) * layout.inner;
                    reduce_row(r % layout.channels, &x[span.clone()], span)
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
    let mut totals = vec![(0.0, 0.0); layout.channels];
    for (r, (a, b)) in per_row.into_iter().enumerate() {
        let t = &mut totals[r % layout.channels];
        t.0 += a;
        t.1 += b;
    }
    totals
}

/// The pass alone, with coefficients known up front, in memory order.
pub(crate) fn apply<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    layout: &Layout,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    output: Output,
    k: &[Coefficients],
) {
    let inner = layout.inner;
    io.for_each_chunk(exec, rows_per_task(layout) * inner, |start, chunk| {
        for (i, row) in chunk.split(inner).into_iter().enumerate() {
            let r = start / inner + i;
            let span = r * inner..(r + 1) * inner;
            let other = other.map(|v| &v[span.clone()]);
            let mask = mask.map(|v| &v[span]);
            affine_run(row, other, mask, k[r % layout.channels], output);
        }
        store::fence(output.streaming);
    });
}
