//! The channel-major path (`suits`: NCHW, NCL, NCDHW): each (outer, channel)
//! row is contiguous and has one channel, so reductions sum whole rows into registers and
//! the elementwise pass uses one set of coefficients per row. Both walk memory in order,
//! blocks of rows per task. (Owning a channel per task, to normalize it while cached,
//! measured slower here: its rows are strided through the tensor and evict each other.)

use std::ops::Range;

use crate::element::Element;
use crate::elementwise;
use crate::io::Io;
use crate::layout::Layout;
use crate::loops::{affine_rows, Coefficients, Output};
use crate::pool::Exec;

/// Rows at least this long take this path; with shorter ones a row holds many channels and
/// the per-column accumulators of the channels-last path can do better.
const MIN_INNER: usize = 64;
/// Rows of at least this many values still take this path when a row of channels is wider
/// than `MAX_COLUMNS`: the channels-last path keeps arrays per column (coefficients,
/// accumulators) that then outgrow the L1 cache. Measured on a 2-vCPU EPYC, 2 threads:
/// `[8,2048,7,7]` training 0.35 ms here against 0.79 there, `[16,256,32]` 0.10 against 0.14;
/// with rows of 16 the channels-last path mostly wins (`[64,512,16]` 0.34 against 0.72), with
/// 8 throughout (`[64,512,8]` 0.20 against 0.50), and at 1024 columns it wins at any length.
const MIN_SHORT_INNER: usize = 32;
const MAX_COLUMNS: usize = 2048;

/// Whether a layout takes this path (else the channels-last one).
pub(crate) fn suits(layout: &Layout) -> bool {
    layout.inner >= MIN_INNER
        || (layout.inner >= MIN_SHORT_INNER && layout.channels.saturating_mul(layout.inner) > MAX_COLUMNS)
}

/// Rows per task of the memory-order passes: enough work to amortize a task.
fn rows_per_task(layout: &Layout) -> usize {
    (ROW_TASK_ELEMENTS / layout.inner.max(1)).max(1)
}

/// Elements per task of the memory-order passes.
const ROW_TASK_ELEMENTS: usize = 1 << 16;

/// Per channel: the sums `reduce_rows(rows, out)` writes for each row of a block (`out[i]` for
/// row `rows.start + i`), folded in row order. Blocks are contiguous runs of rows, read in
/// memory order, which streams best.
pub(crate) fn reduce(
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
    let chunk_len = rows_per_task(layout) * inner;
    elementwise::for_each_chunk(exec, io, chunk_len, other, mask, output.streaming, |start, chunk, other, mask| {
        affine_rows(chunk, other, mask, inner, start / inner, k, output)
    });
}
