// The per-channel buffers SyncBatchNorm all-reduces (elementwise sum over workers), and
// how the sums are read back. Forward, for C channels (length 1 + 2C):
//   [0]           n                              values per channel in this shard
//   [1 + c]       n * (mean[c] - shift[c])
//   [1 + C + c]   m2[c] + n * (mean[c] - shift[c])^2
// Backward (length 1 + 2C), xhat from the global statistics of the forward:
//   [0]           n                              values per channel in this shard
//   [1 + c]       sum(dy[c])
//   [1 + C + c]   sum(dy[c] * xhat[c])
import { shiftedM2, shiftedMean, shiftedSums } from '../moments';
import type { ChannelStats, GradSums } from '../types';
import { describe } from '../validate';

/** A shard's statistics as moments about `shift`, a value every worker holds identically:
 *  then plain sums of the buffers are the global moments about the same shift. */
export function statsBuffer(stats: ChannelStats, shift: Float64Array): Float64Array {
  const channels = shift.length;
  const buffer = new Float64Array(1 + 2 * channels);
  buffer[0] = stats.count;
  for (let c = 0; c < channels; c++) {
    const { s1, s2 } = shiftedSums(stats.count, stats.mean[c], stats.m2[c], shift[c]);
    buffer[1 + c] = s1;
    buffer[1 + channels + c] = s2;
  }
  return buffer;
}

/** The global statistics from the summed forward buffers. Only the spread of the shard means
 *  about the shift cancels here, so the shift should sit near the data (see the README, "Precision with only a sum"). */
export function statsFromBuffer(reduced: unknown, shift: Float64Array): ChannelStats {
  const channels = shift.length;
  const sums = checkReduced(reduced, 1 + 2 * channels);
  const count = sums[0];
  const mean = new Float64Array(channels);
  const m2 = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    mean[c] = shiftedMean(count, shift[c], sums[1 + c]);
    m2[c] = shiftedM2(count, sums[1 + c], sums[1 + channels + c]);
  }
  return { count, mean, m2 };
}

export function sumsBuffer(sums: GradSums): Float64Array {
  const channels = sums.sumDy.length;
  const buffer = new Float64Array(1 + 2 * channels);
  buffer[0] = sums.count;
  buffer.set(sums.sumDy, 1);
  buffer.set(sums.sumDyXhat, 1 + channels);
  return buffer;
}

/** The global backward sums from the summed backward buffers. */
export function sumsFromBuffer(reduced: unknown, channels: number): GradSums {
  const sums = checkReduced(reduced, 1 + 2 * channels);
  return { count: sums[0], sumDy: sums.slice(1, 1 + channels), sumDyXhat: sums.slice(1 + channels) };
}

/** What the user's allReduce returned: a wrong answer here would silently mis-normalize. */
function checkReduced(v: unknown, length: number): Float64Array {
  if (!(v instanceof Float64Array)) {
    throw new TypeError(`allReduce must resolve to a Float64Array, got ${describe(v)}`);
  }
  if (v.length !== length) {
    throw new RangeError(`allReduce must resolve to the buffer's length ${length}, got ${v.length}`);
  }
  return v;
}
