//! Cutting a `[outer, C * inner]` matrix into tiles of rows x columns for reductions whose
//! accumulators are per column (channels-last layouts). The cut depends on the layout
//! only, never on the thread count, so results are bit-for-bit the same on any pool.

use std::ops::Range;

use crate::layout::Layout;
use crate::pool::{Exec, PARALLEL_MIN_ELEMENTS};

/// Widest column range one tile covers (keeps its accumulators in L1).
const TILE_COLUMNS: usize = 4096;
/// Tiles to aim for on a large tensor, so every thread gets several to balance load.
const TARGET_TILES: usize = 64;
/// Elements a tile should at least hold (its accumulators are set up and folded per tile).
const MIN_TILE_ELEMENTS: usize = 1 << 15;

/// One rectangle of the matrix: a range of rows (outer indices) and of flat columns.
#[derive(Debug, Clone)]
pub(crate) struct Tile {
    pub rows: Range<usize>,
    pub columns: Range<usize>,
}

fn tiles(layout: &Layout) -> Vec<Tile> {
    let width = layout.channels * layout.inner;
    let tile_columns = width.clamp(1, TILE_COLUMNS);
    let column_tiles = width.div_ceil(tile_columns).max(1);
    let row_blocks = if layout.len() < PARALLEL_MIN_ELEMENTS {
        1
    } else {
        // Enough tiles to balance the threads, none so small that setting it up dominates.
        let by_count = TARGET_TILES.div_ceil(column_tiles);
        let by_size = layout.len() / column_tiles / MIN_TILE_ELEMENTS;
        by_count.min(by_size).clamp(1, layout.outer.max(1))
    };
    let rows_per_block = layout.outer.div_ceil(row_blocks).max(1);
    let mut tiles = Vec::with_capacity(row_blocks * column_tiles);
    for r in (0..layout.outer).step_by(rows_per_block) {
        for c in (0..width).step_by(tile_columns) {
            tiles.push(Tile {
                rows: r..(r + rows_per_block).min(layout.outer),
                columns: c..(c + tile_columns).min(width),
            });
        }
    }
    tiles
}

/// Two sums per channel: `add_row(tile, row, a, b)` adds one row of a tile into per-column
/// accumulators `a`, `b` (indexed from the tile's first column); columns are then folded
/// into their channels and tiles added in order.
pub(crate) fn sum_by_channel(
    exec: Exec,
    layout: &Layout,
    add_row: impl Fn(&Tile, usize, &mut [f64], &mut [f64]) + Sync + Send,
) -> Vec<(f64, f64)> {
    let tiles = tiles(layout);
    let partials = exec.map(tiles.len(), |t| {
        let tile = &tiles[t];
        let mut a = vec![0.0f64; tile.columns.len()];
        let mut b = vec![0.0f64; tile.columns.len()];
        for r in tile.rows.clone() {
            add_row(tile, r, &mut a, &mut b);
        }
        (a, b)
    });
    let mut totals = vec![(0.0f64, 0.0f64); layout.channels];
    // Column by column as before, but one division per channel's run, not per column.
    for (tile, (a, b)) in tiles.iter().zip(&partials) {
        let mut j = 0;
        while j < a.len() {
            let c = (tile.columns.start + j) / layout.inner;
            let end = ((c + 1) * layout.inner - tile.columns.start).min(a.len());
            let total = &mut totals[c];
            for (x, y) in a[j..end].iter().zip(&b[j..end]) {
                total.0 += x;
                total.1 += y;
            }
            j = end;
        }
    }
    totals
}
