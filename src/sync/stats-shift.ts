// The per-channel point SyncBatchNorm takes the forward moments about. It must be identical on
// every worker without communicating, and near the data: the sum all-reduce loses about
// 2^-52 * (mean - shift)^2 / variance of the variance (README, "Precision with only a sum").
import type { ChannelStats, FloatArray } from '../types';

/** (mean - shift)^2 / variance above which a step's moments are taken again about its own mean:
 *  below it the variance keeps ~2^-41 relative precision (one process's rounding). */
export const FAR_RATIO = 1024;

/** The shift: starts at the running mean (or zero), then follows the global batch mean, which
 *  every worker decodes from the same reduced buffer. Only finite values are ever kept, so a
 *  NaN or Infinity in one batch costs that batch only. */
export class StatsShift {
  #mean: Float64Array | null = null;

  /** Forget the followed mean (e.g. after loading state): start again from the running mean. */
  reset(): void {
    this.#mean = null;
  }

  current(channels: number, runningMean: FloatArray | undefined): Float64Array {
    if (this.#mean === null) {
      // A running mean a NaN batch has spoiled must not spoil the shift too.
      this.#mean = new Float64Array(channels);
      if (runningMean) this.follow(Float64Array.from(runningMean));
    }
    return this.#mean as Float64Array;
  }

  /** Follows each channel's finite mean; a non-finite channel keeps its last finite shift. */
  follow(globalMean: Float64Array): void {
    const mean = this.#mean ?? new Float64Array(globalMean.length);
    for (let c = 0; c < mean.length; c++) if (Number.isFinite(globalMean[c])) mean[c] = globalMean[c];
    this.#mean = mean;
  }
}

/** Whether some channel's moments were taken about a shift so far from its mean that the
 *  variance lost precision (a first step on offset data, a jump in the data, the step after
 *  one). Every worker decides alike: `global` is decoded from the same reduced buffer. */
export function isFarFrom(global: ChannelStats, shift: Float64Array): boolean {
  if (global.count === 0) return false;
  for (let c = 0; c < shift.length; c++) {
    const offset = global.mean[c] - shift[c];
    if (!Number.isFinite(offset) || !Number.isFinite(global.m2[c])) continue;
    if (global.count * offset * offset > FAR_RATIO * global.m2[c]) return true;
  }
  return false;
}
