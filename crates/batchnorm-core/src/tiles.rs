//! Per-channel reductions over a `[outer, C * inner]` matrix, cut into tiles of rows x
//! columns. Each tile is swept in sub-blocks small enough to stay in L2, so a two-pass
//! reduction reads memory once; tiles run in parallel and their partials are merged.

use std::ops::Range;

use crate::layout::Layout;
use crate::pool::{Exec, PARALLEL_MIN_ELEMENTS};

/// Widest column range one tile covers (keeps per-column accumulators in L1).
const TILE_COLUMNS: usize = 2048;
/// Elements per sub-block: 64 KiB of f32, small enough to re-read from cache.
const SUB_BLOCK_ELEMENTS: usize = 1 << 14;
/// Tiles to aim for on a large tensor, so every thread gets several to balance load.
const TARGET_TILES: usize = 64;

/// One rectangle of the matrix: a range of rows (outer indices) and of flat columns.
#[derive(Debug, Clone)]
pub(crate) struct Tile {
    pub rows: Range<usize>,
    pub columns: Range<usize>,
}

/// The run of one channel's columns inside a tile: `columns` is relative to the tile.
#[derive(Debug, Clone)]
pub(crate) struct ChannelRun {
    pub channel: usize,
    pub columns: Range<usize>,
}

impl Tile {
    /// Row counts of consecutive sub-blocks, each small enough to stay cached.
    pub(crate) fn sub_blocks(&self) -> impl Iterator<Item = Range<usize>> {
        let width = self.columns.len().max(1);
        let step = (SUB_BLOCK_ELEMENTS / width).max(1);
        let rows = self.rows.clone();
        rows.clone()
            .step_by(step)
            .map(move |r| r..(r + step).min(rows.end))
    }

    /// The channels this tile touches, each with its column range inside the tile.
    pub(crate) fn channel_runs(&self, inner: usize) -> Vec<ChannelRun> {
        let mut runs = Vec::new();
        let mut col = self.columns.start;
        while col < self.columns.end {
            let channel = col / inner;
            let end = ((channel + 1) * inner).min(self.columns.end);
            runs.push(ChannelRun {
                channel,
                columns: (col - self.columns.start)..(end - self.columns.start),
            });
            col = end;
        }
        runs
    }
}

/// How a layout is cut into tiles. Depends on the layout only, never on the thread
/// count, so results are bit-for-bit the same whatever the pool size.
fn tiles(layout: &Layout) -> Vec<Tile> {
    let width = layout.channels * layout.inner;
    let tile_columns = width.clamp(1, TILE_COLUMNS);
    let column_tiles = width.div_ceil(tile_columns);
    let row_blocks = if layout.len() < PARALLEL_MIN_ELEMENTS {
        1
    } else {
        TARGET_TILES
            .div_ceil(column_tiles.max(1))
            .clamp(1, layout.outer.max(1))
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

/// Reduces every channel: `reduce_tile` returns partials for the channels of its tile
/// (in `channel_runs` order), and `merge` folds them into one value per channel.
pub(crate) fn reduce_channels<A: Clone + Default + Send>(
    exec: Exec,
    layout: &Layout,
    reduce_tile: impl Fn(&Tile, &[ChannelRun]) -> Vec<A> + Sync + Send,
    merge: impl Fn(&mut A, &A),
) -> Vec<A> {
    let tiles = tiles(layout);
    let partials = exec.map(tiles.len(), |t| {
        let runs = tiles[t].channel_runs(layout.inner);
        let values = reduce_tile(&tiles[t], &runs);
        (runs, values)
    });
    let mut totals = vec![A::default(); layout.channels];
    for (runs, values) in &partials {
        for (run, value) in runs.iter().zip(values) {
            merge(&mut totals[run.channel], value);
        }
    }
    totals
}
