// Exact merge of per-shard channel statistics (Chan, Golub & LeVeque's parallel formula):
// shards of any size, empty ones included, combine into the statistics of their
// concatenation without going back to the data and without the cancellation of sum(x^2).
import { emptyMoments, mergeInto } from '../moments';
import type { ChannelStats } from '../types';
import { describe } from '../validate';

/** The statistics of the concatenation of the shards that `parts` describe. */
export function mergeStats(parts: readonly ChannelStats[]): ChannelStats {
  const channels = checkParts(parts);
  const acc = emptyMoments(channels);
  for (const part of parts) {
    for (let c = 0; c < channels; c++) mergeInto(acc, c, part.count, part.mean[c], part.m2[c]);
  }
  let count = 0;
  for (const part of parts) count += part.count;
  return { count, mean: acc.mean, m2: acc.m2 };
}

/** Every part is { count, mean, m2 } over the same channels; returns that channel count. */
function checkParts(parts: unknown): number {
  if (!Array.isArray(parts)) throw new TypeError(`parts must be an array of ChannelStats, got ${describe(parts)}`);
  if (parts.length === 0) throw new RangeError('parts must hold at least one ChannelStats, got an empty array');
  let channels = -1;
  parts.forEach((part: unknown, i) => {
    const name = `parts[${i}]`;
    if (typeof part !== 'object' || part === null) {
      throw new TypeError(`${name} must be an object { count, mean, m2 }, got ${describe(part)}`);
    }
    const { count, mean, m2 } = part as Partial<ChannelStats>;
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
      throw new TypeError(`${name}.count must be a non-negative integer, got ${describe(count)}`);
    }
    for (const [field, a] of [
      ['mean', mean],
      ['m2', m2],
    ] as const) {
      if (!(a instanceof Float64Array))
        throw new TypeError(`${name}.${field} must be a Float64Array, got ${describe(a)}`);
      if (channels === -1) channels = a.length;
      if (a.length !== channels) {
        throw new RangeError(
          `${name}.${field} must have length ${channels} (the channels of parts[0]), got ${a.length}`,
        );
      }
    }
  });
  return channels;
}
