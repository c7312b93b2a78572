// Per-channel batch statistics, mirroring crates/batchnorm-core/src/stats.rs: each channel's
// values are summed after subtracting a shift K (the channel's first value), s1 = Σ(x - K)
// and s2 = Σ(x - K)² in float64, so a mean large against the spread loses nothing and x is
// read once. Mergeable moments (count, mean, M2) combine shards exactly (Chan et al.).
import type { Layout } from '../layout';
import { type ChannelMoments, emptyMoments, shiftedM2, shiftedMean } from '../moments';
import type { FloatArray } from '../types';
import { byDtype } from './specialize';
import { beginScratch, scratch } from './workspace';

/** From this `inner` up, each (outer, channel) run is long enough to loop over on its own;
 *  below it a row of memory holds many channels and is summed per column. */
export const MIN_RUN = 16;

/** Channel c's shift: its first value (outer 0, inner 0), or 0 when that is not finite (an
 *  infinite value then still gives an infinite mean and a NaN variance, as in PyTorch). */
function channelShift(x: FloatArray, layout: Layout, c: number): number {
  const k = x[c * layout.inner];
  return k - k === 0 ? k : 0;
}

/** Adds Σ(x - shift[c]) and Σ(x - shift[c])² of every (outer, channel) run to s1[c] and
 *  s2[c], in memory order: one sequential stream runs faster here than a channel's strided
 *  runs. Eight values per step are added pairwise first, so the float adds that carry from
 *  step to step are one per eight values (V8 does not reorder float adds). */
function addShiftedRuns(
  x: FloatArray,
  outer: number,
  channels: number,
  inner: number,
  shift: Float64Array,
  s1: Float64Array,
  s2: Float64Array,
): void {
  for (let o = 0, begin = 0; o < outer; o++) {
    for (let ch = 0; ch < channels; ch++, begin += inner) {
      const k = shift[ch];
      const end = begin + inner;
      let t1 = 0;
      let t2 = 0;
      let i = begin;
      for (const end8 = end - 7; i < end8; i += 8) {
        const a = x[i] - k;
        const b = x[i + 1] - k;
        const c = x[i + 2] - k;
        const d = x[i + 3] - k;
        const e = x[i + 4] - k;
        const f = x[i + 5] - k;
        const g = x[i + 6] - k;
        const h = x[i + 7] - k;
        t1 += a + b + (c + d) + (e + f + (g + h));
        t2 += a * a + b * b + (c * c + d * d) + (e * e + f * f + (g * g + h * h));
      }
      for (; i < end; i++) {
        const a = x[i] - k;
        t1 += a;
        t2 += a * a;
      }
      s1[ch] += t1;
      s2[ch] += t2;
    }
  }
}

/** Adds Σ(x - K) and Σ(x - K)² of each column j of `rows` rows of `width` values to
 *  acc[3j + 1] and acc[3j + 2], K = acc[3j] (one array: one type check per step, not three).
 *  Eight rows per step: each column's accumulators are loaded and stored once per eight values. */
function addShiftedColumns(x: FloatArray, rows: number, width: number, acc: Float64Array): void {
  let r = 0;
  for (; r + 8 <= rows; r += 8) {
    const r0 = r * width;
    const r1 = r0 + width;
    const r2 = r1 + width;
    const r3 = r2 + width;
    const r4 = r3 + width;
    const r5 = r4 + width;
    const r6 = r5 + width;
    const r7 = r6 + width;
    for (let j = 0, q = 0; j < width; j++, q += 3) {
      const k = acc[q];
      const a = x[r0 + j] - k;
      const b = x[r1 + j] - k;
      const c = x[r2 + j] - k;
      const d = x[r3 + j] - k;
      const e = x[r4 + j] - k;
      const f = x[r5 + j] - k;
      const g = x[r6 + j] - k;
      const h = x[r7 + j] - k;
      acc[q + 1] += a + b + (c + d) + (e + f + (g + h));
      acc[q + 2] += a * a + b * b + (c * c + d * d) + (e * e + f * f + (g * g + h * h));
    }
  }
  for (; r < rows; r++) {
    const r0 = r * width;
    for (let j = 0, q = 0; j < width; j++, q += 3) {
      const a = x[r0 + j] - acc[q];
      acc[q + 1] += a;
      acc[q + 2] += a * a;
    }
  }
}

const addShiftedRunsFor = byDtype(addShiftedRuns);
const addShiftedColumnsFor = byDtype(addShiftedColumns);

/** Per-column accumulators of a channels-last row: [value, 0, 0] for each of the `inner`
 *  columns of each channel, `value` the channel's. */
export function columnAccumulators(
  perChannel: Float64Array,
  channels: number,
  inner: number,
  into: Float64Array,
): Float64Array {
  for (let c = 0, q = 0; c < channels; c++) {
    for (let j = 0; j < inner; j++, q += 3) {
      into[q] = perChannel[c];
      into[q + 1] = 0;
      into[q + 2] = 0;
    }
  }
  return into;
}

/** Folds per-column accumulators back per channel: s1[c] and s2[c] get the sums of
 *  acc[3j + 1] and acc[3j + 2] over the channel's columns. */
export function foldColumns(
  acc: Float64Array,
  channels: number,
  inner: number,
  s1: Float64Array,
  s2: Float64Array,
): void {
  for (let c = 0, q = 0; c < channels; c++) {
    let t1 = 0;
    let t2 = 0;
    for (let j = 0; j < inner; j++, q += 3) {
      t1 += acc[q + 1];
      t2 += acc[q + 2];
    }
    s1[c] = t1;
    s2[c] = t2;
  }
}

/** Shifted sums of every channel into s1[c] and s2[c], and each channel's shift into
 *  shifts[c]. x must not be empty. */
export function channelSums(
  x: FloatArray,
  layout: Layout,
  shifts: Float64Array,
  s1: Float64Array,
  s2: Float64Array,
): void {
  const { outer, channels, inner } = layout;
  for (let c = 0; c < channels; c++) {
    shifts[c] = channelShift(x, layout, c);
    s1[c] = 0;
    s2[c] = 0;
  }
  if (inner >= MIN_RUN) {
    addShiftedRunsFor(x)(x, outer, channels, inner, shifts, s1, s2);
    return;
  }
  const width = channels * inner;
  const acc = columnAccumulators(shifts, channels, inner, scratch(3 * width));
  addShiftedColumnsFor(x)(x, outer, width, acc);
  foldColumns(acc, channels, inner, s1, s2);
}

/** Values are scaled by 2^-SCALE_BITS (exactly) when their shifted sums overflowed. */
const SCALE_BITS = 600;

/** Channel c's mean and M2 when its shifted sums overflowed although every value is finite
 *  (float64 data near ±1.8e308, where x - K or its square leaves the range): again from the
 *  values times 2^-600, exact, in two passes. The mean scales back finite; M2 scales back to
 *  Infinity when it truly exceeds the range (then invStd is 0, as PyTorch's). null when a
 *  value of the channel is not finite: NaN and Infinity propagate as before. Mirrors
 *  `rescaled_moments` in stats.rs, in the same order, so the backends agree. */
export function rescaledMoments(x: FloatArray, layout: Layout, c: number): { mean: number; m2: number } | null {
  const { outer, channels, inner } = layout;
  const down = 2 ** -SCALE_BITS;
  let sum = 0;
  for (let o = 0; o < outer; o++) {
    const begin = (o * channels + c) * inner;
    for (let i = begin; i < begin + inner; i++) {
      const v = x[i];
      if (v - v !== 0) return null;
      sum += v * down;
    }
  }
  const count = outer * inner;
  const scaledMean = sum / count;
  let m2 = 0;
  for (let o = 0; o < outer; o++) {
    const begin = (o * channels + c) * inner;
    for (let i = begin; i < begin + inner; i++) {
      const d = x[i] * down - scaledMean;
      m2 += d * d;
    }
  }
  const up = 2 ** SCALE_BITS;
  return { mean: scaledMean * up, m2: m2 * up * up };
}

/** Channel c's mean and M2 from its shifted sums, rescaled when they overflowed. */
export function channelMomentsFromSums(
  x: FloatArray,
  layout: Layout,
  c: number,
  shift: number,
  s1: number,
  s2: number,
): { mean: number; m2: number } {
  const count = layout.outer * layout.inner;
  const mean = shiftedMean(count, shift, s1);
  const m2 = shiftedM2(count, s1, s2);
  if (mean - mean === 0 && m2 - m2 === 0) return { mean, m2 };
  return rescaledMoments(x, layout, c) ?? { mean, m2 };
}

/** The moments of every channel (a kernel entry point: it starts a scratch call). */
export function channelMoments(x: FloatArray, layout: Layout): ChannelMoments {
  const { outer, channels, inner } = layout;
  const acc = emptyMoments(channels);
  // An empty tensor may still have a huge outer size (C = 0): do not loop over it.
  if (x.length === 0) return acc;
  const count = outer * inner;
  acc.count.fill(count);
  beginScratch();
  // mean and m2 hold s1 and s2 until the end.
  const shifts = scratch(channels);
  channelSums(x, layout, shifts, acc.mean, acc.m2);
  for (let c = 0; c < channels; c++) {
    const m = channelMomentsFromSums(x, layout, c, shifts[c], acc.mean[c], acc.m2[c]);
    acc.mean[c] = m.mean;
    acc.m2[c] = m.m2;
  }
  return acc;
}
