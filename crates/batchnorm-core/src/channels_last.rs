//! The row-of-channels path (`Path::ChannelsLast`, short rows: NHWC, `[N, C]`, NLC): a row
//! holds every channel, so reductions keep one accumulator per column over tiles of rows, and
//! the elementwise pass uses coefficients spread out per column. x is read in memory order.

use std::ops::Range;

use crate::coefficients::{spread_columns, Coefficients, ColumnCoefficients};
use crate::element::Element;
use crate::fingerprint::Fold;
use crate::io::{Chunk, Io};
use crate::kernels::affine::{affine_columns, Output};
use crate::kernels::sums::{add_grad_columns, add_shifted_columns};
use crate::layout::Layout;
use crate::pass::{for_each_chunk, Inputs};
use crate::pool::Exec;
#[cfg(test)]
use crate::store;
use crate::tiles::{sum_by_channel, Tile};

/// Elements per parallel chunk of the elementwise pass.
const CHUNK_ELEMENTS: usize = 1 << 15;
/// Rows at least this wide take `apply_wide`: spread over the whole row, their coefficients
/// (40 bytes a column) no longer stay cached, and with millions of channels (`[2, 8388608]`)
/// the spread was a fresh allocation of ~340 MB per call, page faults included.
const WIDE_COLUMNS: usize = 1 << 15;
/// Elements per task of `apply_wide`; each spreads only its own columns (~330 KB, kept per thread).
const WIDE_SEGMENT: usize = 1 << 13;

/// Per channel, the sums `add_row(flat_span, columns, a, b)` accumulates per column over
/// every row (`columns` is the span's range within a row).
fn reduce(
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

/// Per channel, `Σ(x - K)` and `Σ(x - K)²` (K = `shifts[c]`, spread over its columns).
pub(crate) fn shifted_sums<T: Element>(
    exec: Exec,
    x: &[T],
    layout: &Layout,
    shifts: &[f64],
    fold: Option<&Fold>,
) -> Vec<(f64, f64)> {
    let column_shifts = spread_columns(shifts, layout.inner);
    reduce(exec, layout, |span, columns, s1, s2| {
        add_shifted_columns(&x[span.clone()], &column_shifts[columns], s1, s2);
        if let Some(f) = fold {
            f.add(&x[span.clone()], span.start);
        }
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
    let column_mean = spread_columns(mean, layout.inner);
    reduce(exec, layout, |span, columns, s, sx| {
        let y = relu_output.map(|y| &y[span.clone()]);
        add_grad_columns(&dy[span.clone()], &x[span.clone()], y, &column_mean[columns], s, sx);
        if let Some(f) = fold {
            f.add(&x[span.clone()], span.start);
        }
    })
}

/// The elementwise pass with per-channel coefficients `k`.
pub(crate) fn apply<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    layout: &Layout,
    inputs: Inputs<'_, T>,
    output: Output,
    k: &[Coefficients],
) {
    let width = layout.channels * layout.inner;
    if width == 0 || layout.outer == 0 {
        return;
    }
    if width >= WIDE_COLUMNS {
        return apply_wide(exec, io, layout, inputs, output, k);
    }
    let columns = ColumnCoefficients::spread(k, layout.inner);
    let rows_per_chunk = (CHUNK_ELEMENTS / width).max(1);
    for_each_chunk(exec, io, rows_per_chunk * width, inputs, output.streaming, |_, chunk, other, mask| {
        affine_columns(chunk, other, mask, &columns, output)
    });
}

/// The elementwise pass over very wide rows: tasks of `WIDE_SEGMENT` elements in memory order,
/// each cut at row ends, each part with the coefficients of its own columns only.
fn apply_wide<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    layout: &Layout,
    inputs: Inputs<'_, T>,
    output: Output,
    k: &[Coefficients],
) {
    let width = layout.channels * layout.inner;
    for_each_chunk(exec, io, WIDE_SEGMENT, inputs, output.streaming, |start, chunk, other, mask| {
        let (src, mut dst) = chunk.into_parts();
        let mut at = 0;
        while !dst.is_empty() {
            let column = (start + at) % width;
            let len = (width - column).min(dst.len());
            let (part, rest) = std::mem::take(&mut dst).split_at_mut(len);
            let span = at..at + len;
            let run = Chunk::from_parts(src.map(|s| &s[span.clone()]), part);
            let columns = ColumnCoefficients::spread_range(k, layout.inner, column, len);
            let (other, mask) = (other.map(|o| &o[span.clone()]), mask.map(|m| &m[span]));
            affine_columns(run, other, mask, &columns, output);
            dst = rest;
            at += len;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The narrow form (one spread over the whole row), whatever the width: the reference.
    fn narrow(layout: &Layout, x: &[f32], other: Option<&[f32]>, k: &[Coefficients], output: Output) -> Vec<f32> {
        let mut y = vec![0.0f32; x.len()];
        let width = layout.channels * layout.inner;
        let columns = ColumnCoefficients::spread(k, layout.inner);
        let io = Io::Separate { src: x, dst: &mut y };
        let inputs = Inputs { other, mask: None, relu_result: output.relu };
        for_each_chunk(Exec::SEQUENTIAL, io, width, inputs, false, |_, chunk, other, mask| {
            affine_columns(chunk, other, mask, &columns, output)
        });
        y
    }

    #[test]
    fn wide_rows_match_one_spread_over_the_row() {
        // Widths past WIDE_COLUMNS, not multiples of WIDE_SEGMENT (tasks straddle row ends),
        // one column per channel and several (a channel's columns cut between tasks).
        for layout in [Layout { outer: 3, channels: 40_001, inner: 1 }, Layout { outer: 2, channels: 5_000, inner: 7 }]
        {
            let n = layout.len();
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let z: Vec<f32> = (0..n).map(|i| ((i * 13) % 29) as f32 / 14.0 - 1.0).collect();
            let k: Vec<Coefficients> = (0..layout.channels)
                .map(|c| Coefficients {
                    scale: 0.5 + (c % 7) as f64,
                    center: (c % 5) as f64 * 0.1,
                    scale_other: 1.0,
                    center_other: 0.0,
                    shift: (c % 3) as f64,
                })
                .collect();
            for (other, relu, streaming) in [(None, false, false), (Some(&z[..]), true, true)] {
                let output = Output { relu, streaming };
                let want = narrow(&layout, &x, other, &k, Output { relu, streaming: false });
                let mut got = vec![0.0f32; n];
                crate::pool::run(n, |exec| {
                    let inputs = Inputs { other, mask: None, relu_result: relu };
                    apply(exec, Io::Separate { src: &x, dst: &mut got }, &layout, inputs, output, &k)
                });
                store::fence(true);
                assert!(got == want, "{layout:?} residual {} relu {relu}", other.is_some());
            }
        }
    }
}
