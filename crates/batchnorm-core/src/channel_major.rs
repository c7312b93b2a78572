//! The channel-major path (`inner` >= MIN_INNER: NCHW, NCL, NCDHW): each (outer, channel)
//! row is contiguous. A task owns whole channels: it reduces a channel's rows, derives the
//! channel's coefficients and rewrites the rows while they are still in cache, so x comes
//! from memory once. With few channels, a channel's rows are split between tasks too; the
//! per-row results are folded in row order either way, so the bits never depend on it.

use crate::element::Element;
use crate::io::Io;
use crate::layout::Layout;
use crate::loops::{affine_run, Coefficients};
use crate::pool::Exec;
use crate::rows::ChannelRows;

/// Rows at least this long take this path; shorter ones are better read row by row.
pub(crate) const MIN_INNER: usize = 64;

/// The read-only inputs a per-channel task reduces, besides the pass's own source.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a, T> {
    /// The second input of the pass (x, when the source is dy).
    pub other: Option<&'a [T]>,
    /// The fused ReLU's output, through which the source (dy) flows.
    pub mask: Option<&'a [T]>,
    /// Clamp the pass's result at 0 (fused ReLU forward).
    pub relu_result: bool,
}

/// Splits a channel's rows between tasks only when channels alone cannot feed every thread.
fn rows_exec(exec: Exec, channels: usize) -> Exec {
    if channels >= 4 * exec.threads() {
        exec.sequential()
    } else {
        exec
    }
}

/// Folds `row_value(o)` over a channel's rows in row order (the same bits however run).
fn fold_rows(
    exec: Exec,
    outer: usize,
    row_value: impl Fn(usize) -> (f64, f64) + Sync + Send,
) -> (f64, f64) {
    exec.map(outer, row_value)
        .into_iter()
        .fold((0.0, 0.0), |(a, b), (c, d)| (a + c, b + d))
}

/// Per channel: `reduce` its rows, `finish` turns the channel's sums into a result and the
/// coefficients of the pass, which then rewrites the channel's rows.
pub(crate) fn reduce_then_apply<T: Element, R: Send>(
    exec: Exec,
    io: Io<'_, T>,
    layout: &Layout,
    inputs: Inputs<'_, T>,
    reduce: impl Fn(usize, &[T], Inputs<'_, T>, std::ops::Range<usize>) -> (f64, f64) + Sync + Send,
    finish: impl Fn(usize, (f64, f64)) -> (R, Coefficients) + Sync + Send,
) -> Vec<R> {
    let rows = ChannelRows::new(io, layout);
    let inner_exec = rows_exec(exec, layout.channels);
    exec.map(layout.channels, |c| {
        // SAFETY (all row accesses below): this task is the only one touching channel c.
        let sums = fold_rows(inner_exec, layout.outer, |o| {
            reduce(c, unsafe { rows.src_row(o, c) }, inputs, rows.range(o, c))
        });
        let (result, k) = finish(c, sums);
        inner_exec.map(layout.outer, |o| {
            let r = rows.range(o, c);
            let other = inputs.other.map(|v| &v[r.clone()]);
            let mask = inputs.mask.map(|v| &v[r]);
            affine_run(
                unsafe { rows.row_io(o, c) },
                other,
                mask,
                k,
                inputs.relu_result,
            );
        });
        result
    })
}

/// Per channel: the sums `reduce` gives over its rows (a read-only pass).
pub(crate) fn reduce<T: Element>(
    exec: Exec,
    x: &[T],
    layout: &Layout,
    reduce_row: impl Fn(usize, &[T], std::ops::Range<usize>) -> (f64, f64) + Sync + Send,
) -> Vec<(f64, f64)> {
    let inner_exec = rows_exec(exec, layout.channels);
    exec.map(layout.channels, |c| {
        fold_rows(inner_exec, layout.outer, |o| {
            let start = (o * layout.channels + c) * layout.inner;
            let r = start..start + layout.inner;
            reduce_row(c, &x[r.clone()], r)
        })
    })
}

/// The pass alone, with coefficients known up front (inference, given statistics).
pub(crate) fn apply<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    layout: &Layout,
    inputs: Inputs<'_, T>,
    k: &[Coefficients],
) {
    reduce_then_apply(
        exec,
        io,
        layout,
        inputs,
        |_, _, _, _| (0.0, 0.0),
        |c, _| ((), k[c]),
    );
}
