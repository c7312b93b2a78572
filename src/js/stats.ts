// Per-channel batch statistics, mirroring crates/batchnorm-core/src/stats.rs: two passes
// over small cached blocks (mean, then squared deviations), merged with Chan et al.'s
// formula, so offset data keeps its precision and x is read from memory once.
import type { Layout } from '../layout';
import type { FloatArray } from '../types';

/** Count, mean and sum of squared deviations (M2) of each channel. */
export interface ChannelMoments {
  count: Float64Array;
  mean: Float64Array;
  m2: Float64Array;
}

/** Below this `inner`, a row holds many channels: accumulate per column instead of per row. */
export const MIN_RUN = 16;
/** Elements per block of the channels-last path: stays in cache between the two passes. */
const BLOCK_ELEMENTS = 1 << 14;

export function emptyMoments(channels: number): ChannelMoments {
  return { count: new Float64Array(channels), mean: new Float64Array(channels), m2: new Float64Array(channels) };
}

/** Merges the moments (n, mean, m2) of another set into channel c (Chan, Golub & LeVeque). */
export function mergeInto(acc: ChannelMoments, c: number, n: number, mean: number, m2: number): void {
  const na = acc.count[c];
  if (n === 0) return;
  if (na === 0) {
    acc.count[c] = n;
    acc.mean[c] = mean;
    acc.m2[c] = m2;
    return;
  }
  const total = na + n;
  const delta = mean - acc.mean[c];
  acc.count[c] = total;
  acc.mean[c] += delta * (n / total);
  acc.m2[c] += m2 + delta * delta * ((na * n) / total);
}

export function channelMoments(x: FloatArray, layout: Layout): ChannelMoments {
  // An empty tensor may still have a huge outer size (C = 0): do not loop over it.
  if (x.length === 0) return emptyMoments(layout.channels);
  return layout.inner >= MIN_RUN ? momentsByRow(x, layout) : momentsByColumn(x, layout);
}

/** NCHW-like: each (outer, channel) row is contiguous; two passes over it while it is cached. */
function momentsByRow(x: FloatArray, { outer, channels, inner }: Layout): ChannelMoments {
  const acc = emptyMoments(channels);
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const start = (o * channels + c) * inner;
      const end = start + inner;
      let sum = 0;
      for (let i = start; i < end; i++) sum += x[i];
      const mean = sum / inner;
      // Deviations from that mean; their sum corrects its rounding (corrected two-pass).
      let deviation = 0;
      let m2 = 0;
      for (let i = start; i < end; i++) {
        const d = x[i] - mean;
        deviation += d;
        m2 += d * d;
      }
      mergeInto(acc, c, inner, mean + deviation / inner, m2 - (deviation * deviation) / inner);
    }
  }
  return acc;
}

/** Channels-last-like: a row holds every channel; accumulate per column over blocks of rows. */
function momentsByColumn(x: FloatArray, { outer, channels, inner }: Layout): ChannelMoments {
  const width = channels * inner;
  const acc = emptyMoments(channels);
  const columnSum = new Float64Array(width);
  const columnMean = new Float64Array(width);
  const columnSquares = new Float64Array(width);
  const blockRows = Math.max(1, Math.floor(BLOCK_ELEMENTS / Math.max(width, 1)));
  for (let r0 = 0; r0 < outer; r0 += blockRows) {
    const r1 = Math.min(outer, r0 + blockRows);
    columnSum.fill(0);
    for (let r = r0; r < r1; r++) {
      const base = r * width;
      for (let j = 0; j < width; j++) columnSum[j] += x[base + j];
    }
    const n = (r1 - r0) * inner;
    for (let c = 0; c < channels; c++) {
      let sum = 0;
      for (let j = c * inner; j < (c + 1) * inner; j++) sum += columnSum[j];
      columnMean.fill(sum / n, c * inner, (c + 1) * inner);
    }
    // Deviations from that mean; their sum corrects its rounding (corrected two-pass).
    columnSum.fill(0);
    columnSquares.fill(0);
    for (let r = r0; r < r1; r++) {
      const base = r * width;
      for (let j = 0; j < width; j++) {
        const d = x[base + j] - columnMean[j];
        columnSum[j] += d;
        columnSquares[j] += d * d;
      }
    }
    for (let c = 0; c < channels; c++) {
      let deviation = 0;
      let squares = 0;
      for (let j = c * inner; j < (c + 1) * inner; j++) {
        deviation += columnSum[j];
        squares += columnSquares[j];
      }
      mergeInto(acc, c, n, columnMean[c * inner] + deviation / n, squares - (deviation * deviation) / n);
    }
  }
  return acc;
}

/** running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance. */
export function updateRunningStats(
  runningMean: FloatArray,
  runningVar: FloatArray,
  moments: ChannelMoments,
  momentum: number,
): void {
  for (let c = 0; c < runningMean.length; c++) {
    const unbiased = moments.m2[c] / (moments.count[c] - 1);
    runningMean[c] = (1 - momentum) * runningMean[c] + momentum * moments.mean[c];
    runningVar[c] = (1 - momentum) * runningVar[c] + momentum * unbiased;
  }
}
