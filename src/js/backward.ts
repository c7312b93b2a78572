// Backward kernels of the fallback, mirroring backward.rs: per-channel sums of g and
// g * xhat, then dx in one pass (through the batch statistics, or frozen). g is dy, or with a
// fused ReLU dy only where the forward output y was > 0.
import type { FloatArray } from '../types';
import type * as Plans from '../validate';

type BackwardPlan = Plans.FloatPlan<Plans.BackwardPlan>;
type BackwardWithSumsPlan = Plans.FloatPlan<Plans.BackwardWithSumsPlan>;

import { halfDtypeOf } from '../half';
import { applyGrad, applyScale, residualGrad } from './elementwise';
import { fingerprint } from './fingerprint';
import { halfPass } from './half-pass';
import { byDtype } from './specialize';
import { columnAccumulators, foldColumns, MIN_RUN } from './stats';
import { beginScratch, scratch } from './workspace';

/** Adds Σg and Σg·(x - mean[c]) of every (outer, channel) run to sumDy[c] and sumDyX[c], in
 *  memory order, eight values per step added pairwise (see addShiftedRuns). */
function addGradRuns(
  dy: FloatArray,
  x: FloatArray,
  mask: FloatArray | null,
  outer: number,
  channels: number,
  inner: number,
  mean: Float64Array,
  sumDy: Float64Array,
  sumDyX: Float64Array,
): void {
  for (let o = 0, begin = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, begin += inner) {
      const mu = mean[c];
      const end = begin + inner;
      let s = 0;
      let sx = 0;
      let i = begin;
      if (mask === null) {
        for (const end8 = end - 7; i < end8; i += 8) {
          const g0 = dy[i];
          const g1 = dy[i + 1];
          const g2 = dy[i + 2];
          const g3 = dy[i + 3];
          const g4 = dy[i + 4];
          const g5 = dy[i + 5];
          const g6 = dy[i + 6];
          const g7 = dy[i + 7];
          s += g0 + g1 + (g2 + g3) + (g4 + g5 + (g6 + g7));
          sx +=
            g0 * (x[i] - mu) +
            g1 * (x[i + 1] - mu) +
            (g2 * (x[i + 2] - mu) + g3 * (x[i + 3] - mu)) +
            (g4 * (x[i + 4] - mu) + g5 * (x[i + 5] - mu) + (g6 * (x[i + 6] - mu) + g7 * (x[i + 7] - mu)));
        }
      }
      for (; i < end; i++) {
        const g = mask === null || mask[i] > 0 ? dy[i] : 0;
        s += g;
        sx += g * (x[i] - mu);
      }
      sumDy[c] += s;
      sumDyX[c] += sx;
    }
  }
}

/** Adds Σg and Σg·(x - mean) of each column j of `rows` rows of `width` values to
 *  acc[3j + 1] and acc[3j + 2], mean = acc[3j]; four rows per step (see addShiftedColumns). */
function addGradColumns(
  dy: FloatArray,
  x: FloatArray,
  mask: FloatArray | null,
  rows: number,
  width: number,
  acc: Float64Array,
): void {
  let r = 0;
  if (mask === null) {
    for (; r + 4 <= rows; r += 4) {
      const r0 = r * width;
      const r1 = r0 + width;
      const r2 = r1 + width;
      const r3 = r2 + width;
      for (let j = 0, q = 0; j < width; j++, q += 3) {
        const mu = acc[q];
        const g0 = dy[r0 + j];
        const g1 = dy[r1 + j];
        const g2 = dy[r2 + j];
        const g3 = dy[r3 + j];
        acc[q + 1] += g0 + g1 + (g2 + g3);
        acc[q + 2] += g0 * (x[r0 + j] - mu) + g1 * (x[r1 + j] - mu) + (g2 * (x[r2 + j] - mu) + g3 * (x[r3 + j] - mu));
      }
    }
  }
  for (; r < rows; r++) {
    const base = r * width;
    for (let j = 0, q = 0; j < width; j++, q += 3) {
      const i = base + j;
      const g = mask === null || mask[i] > 0 ? dy[i] : 0;
      acc[q + 1] += g;
      acc[q + 2] += g * (x[i] - acc[q]);
    }
  }
}

const addGradRunsFor = byDtype(addGradRuns);
const addGradColumnsFor = byDtype(addGradColumns);

/** sum(g) and sum(g * xhat) per channel, over this tensor's values (a kernel entry point). */
export function gradSums(plan: BackwardPlan, sumDy: Float64Array, sumDyXhat: Float64Array): void {
  // An empty tensor may still have a huge outer size (C = 0): do not loop over it.
  if (plan.x.length === 0) return;
  beginScratch();
  channelGradSums(plan, sumDy, sumDyXhat);
}

function channelGradSums(plan: BackwardPlan, sumDy: Float64Array, sumDyXhat: Float64Array): void {
  const { dy, x, y, invStd } = plan;
  const { outer, channels, inner } = plan.layout;
  const means = scratch(channels);
  for (let c = 0; c < channels; c++) {
    means[c] = plan.mean[c];
    sumDy[c] = 0;
    sumDyXhat[c] = 0;
  }
  if (inner >= MIN_RUN) {
    addGradRunsFor(dy)(dy, x, y, outer, channels, inner, means, sumDy, sumDyXhat);
  } else {
    const width = channels * inner;
    const acc = columnAccumulators(means, channels, inner, scratch(3 * width));
    addGradColumnsFor(dy)(dy, x, y, outer, width, acc);
    foldColumns(acc, channels, inner, sumDy, sumDyXhat);
  }
  // Accumulated as sum(g * (x - mean)); one multiply per channel turns it into xhat's.
  for (let c = 0; c < channels; c++) sumDyXhat[c] *= invStd[c];
}

export function backward(
  plan: BackwardPlan,
  dx: FloatArray,
  dGamma: FloatArray,
  dBeta: FloatArray,
  dResidual: FloatArray | null,
  print: Float64Array | null,
): void {
  // An empty tensor may still have a huge outer size (C = 0): do not loop over it. (Its
  // fingerprint is 0, which print already holds, and it has no dResidual to write.)
  if (plan.x.length === 0) return;
  beginScratch();
  const { outer, channels, inner } = plan.layout;
  // Two passes in memory order (sums, then dx), as the forward pass (see forward.ts).
  const sumDy = scratch(channels);
  const sumDyXhat = scratch(channels);
  channelGradSums(plan, sumDy, sumDyXhat);
  finishBackward(plan, outer * inner, sumDy, sumDyXhat, dx, dGamma, dBeta, dResidual, print);
}

/** dx of this shard and the parameter gradients, from sums reduced over every shard. */
export function backwardWithSums(
  plan: BackwardWithSumsPlan,
  dx: FloatArray,
  dGamma: FloatArray,
  dBeta: FloatArray,
  dResidual: FloatArray | null,
  print: Float64Array | null,
): void {
  beginScratch();
  const { count, sumDy, sumDyXhat } = plan.sums;
  finishBackward(plan, count, sumDy, sumDyXhat, dx, dGamma, dBeta, dResidual, print);
}

interface Coefficients {
  /** of g */
  scale: Float64Array;
  /** of x - mean (training only) */
  xScale: Float64Array;
  offset: Float64Array;
}

function coefficients(channels: number): Coefficients {
  return { scale: scratch(channels), xScale: scratch(channels), offset: scratch(channels) };
}

/** Channel c's parameter gradients and dx coefficients from its sums:
 *  training dx = g*invStd/m * (m*g - sum(g) - xhat*sum(g*xhat)); frozen dx = g*gamma*invStd. */
function setChannel(
  plan: BackwardPlan,
  c: number,
  count: number,
  sumDy: number,
  sumDyXhat: number,
  dGamma: FloatArray,
  dBeta: FloatArray,
  k: Coefficients,
): void {
  const invStd = plan.invStd[c];
  const dyScale = (plan.gamma ? plan.gamma[c] : 1) * invStd;
  k.scale[c] = dyScale;
  k.xScale[c] = plan.training ? (-dyScale * invStd * sumDyXhat) / count : 0;
  k.offset[c] = plan.training ? (-dyScale * sumDy) / count : 0;
  dGamma[c] = sumDyXhat;
  dBeta[c] = sumDy;
}

function finishBackward(
  plan: BackwardPlan,
  count: number,
  sumDy: Float64Array,
  sumDyXhat: Float64Array,
  dx: FloatArray,
  dGamma: FloatArray,
  dBeta: FloatArray,
  dResidual: FloatArray | null,
  print: Float64Array | null,
): void {
  if (print) print[0] = fingerprint(plan.x);
  // Before dx, which may overwrite dy in place.
  if (dResidual) residualGrad(plan.dy, plan.y, dResidual);
  const { channels } = plan.layout;
  const k = coefficients(channels);
  for (let c = 0; c < channels; c++) setChannel(plan, c, count, sumDy[c], sumDyXhat[c], dGamma, dBeta, k);
  if (halfDtypeOf(plan.dtype) !== null) {
    const means = plan.training ? plan.mean : null;
    halfPass(plan.dy, dx, plan.layout, {
      scale: k.scale,
      center: null,
      shift: k.offset,
      other: plan.training ? plan.x : null,
      otherScale: plan.training ? k.xScale : null,
      otherCenter: means,
      mask: plan.y,
      relu: false,
    });
    return;
  }
  if (!plan.training) {
    // Frozen statistics: dx = dy * scale + offset, so nothing to center.
    applyScale(plan.dy, plan.y, dx, plan.layout, k.scale, scratch(channels).fill(0), k.offset, false);
    return;
  }
  const means = scratch(channels);
  for (let c = 0; c < channels; c++) means[c] = plan.mean[c];
  applyGrad(plan.dy, plan.x, plan.y, dx, plan.layout, k.scale, means, k.xScale, k.offset);
}
