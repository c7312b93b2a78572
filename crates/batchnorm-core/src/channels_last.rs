//! The row-of-channels path (short rows, `channel_major::suits` false: NHWC, `[N, C]`, NLC): a row holds every
//! channel, so reductions keep one accumulator per column over tiles of rows, and the
//! elementwise pass uses coefficients spread out per column. x is read in memory order.

use std::ops::Range;

use crate::element::Element;
use crate::elementwise;
use crate::io::Io;
use crate::layout::Layout;
use crate::loops::{affine_columns, Coefficients, ColumnCoefficients, Output};
use crate::pool::Exec;
use crate::tiles::{sum_by_channel, Tile};

/// Elements per parallel chunk of the elementwise pass.
const CHUNK_ELEMENTS: usize = 1 << 15;

/// Per channel, the sums `add_row(flat_span, columns, a, b)` accumulates per column over
/// every row (`columns` is the span's range within a row).
pub(crate) fn reduce(
    exec: Exec,
    layout: &Layout,
    add_row: impl Fn(Range<usize>, Range<usize>, &mut [f64], &mut [f64]) + Sync + Send,
) -> Vec<(f64, f64)> {
    let width = layout.channels * layout.inner;
    sum_by_channel(exec, layout, |tile: &Tile, r, a, b| {
        let columns = tile.columns.clone();
        add_row(r * width + columns.start..r * width + columns.end, columns, a, b)
    })
}

/// The elementwise pass with per-channel coefficients `k`.
pub(crate) fn apply<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    layout: &Layout,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    output: Output,
    k: &[Coefficients],
) {
    let width = layout.channels * layout.inner;
    if width == 0 || layout.outer == 0 {
        return;
    }
    let columns = ColumnCoefficients::spread(k, layout.inner);
    let rows_per_chunk = (CHUNK_ELEMENTS / width).max(1);
    elementwise::for_each_chunk(
        exec,
        io,
        rows_per_chunk * width,
        other,
        mask,
        output.streaming,
        |_, chunk, other, mask| affine_columns(chunk, other, mask, &columns, output),
    );
}
