// The formulas of mergeable per-channel moments (count, mean, M2), shared by the js kernels
// (src/js/stats.ts) and synchronized batch norm (src/sync): the moments from sums about a
// shift K and back, the exact merge of two sets (Chan, Golub & LeVeque), and the running-stat
// update. As crates/batchnorm-core/src/stats.rs's Moments, so the backends agree.
import type { FloatArray } from './types';

/** Count, mean and sum of squared deviations (M2) of each channel. */
export interface ChannelMoments {
  count: Float64Array;
  mean: Float64Array;
  m2: Float64Array;
}

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

/** The sums about `shift` of a set with these moments, s1 = n·(mean - K) and
 *  s2 = M2 + n·(mean - K)², the inverse of shiftedMean/shiftedM2. An empty set has none. */
export function shiftedSums(count: number, mean: number, m2: number, shift: number): { s1: number; s2: number } {
  const d = count === 0 ? 0 : mean - shift;
  return { s1: count * d, s2: m2 + count * d * d };
}

/** The mean of `count` values from their shifted sums. */
export function shiftedMean(count: number, shift: number, s1: number): number {
  return shift + s1 / count;
}

/** M2 from the shifted sums, clamped at 0 against rounding (NaN stays NaN). */
export function shiftedM2(count: number, s1: number, s2: number): number {
  const m2 = s2 - (s1 * s1) / count;
  return m2 < 0 ? 0 : m2;
}

/** running = (1 - momentum) * running + momentum * batch for channel c, with the batch
 *  variance M2 / (count - varCorrection) (1: unbiased, PyTorch; 0: biased, Keras/TF/ONNX). */
export function updateRunningChannel(
  runningMean: FloatArray,
  runningVar: FloatArray,
  c: number,
  count: number,
  mean: number,
  m2: number,
  momentum: number,
  varCorrection: number,
): void {
  updateRunning(runningMean, runningVar, c, mean, m2 / (count - varCorrection), momentum);
}

/** running = (1 - momentum) * running + momentum * batch for channel c, given the batch's mean
 *  and (already corrected) variance: a ghost batch's are its groups' averages. */
export function updateRunning(
  runningMean: FloatArray,
  runningVar: FloatArray,
  c: number,
  mean: number,
  variance: number,
  momentum: number,
): void {
  runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean;
  runningVar[c] = (1 - momentum) * runningVar[c] + momentum * variance;
}
