// Backward kernels of the fallback, mirroring backward.rs: per-channel sums of dy and
// dy * (x - mean), then dx in one pass (through the batch statistics, or frozen).
import type { Layout } from '../layout';
import type { FloatArray } from '../types';
import type { BackwardPlan } from '../validate';
import { applyChannelAffine, channelAffine } from './elementwise';
import { MIN_RUN } from './stats';

export interface GradSums {
  sumDy: Float64Array;
  sumDyXmu: Float64Array;
}

export function gradSums(dy: FloatArray, x: FloatArray, layout: Layout, mean: FloatArray): GradSums {
  const { outer, channels, inner } = layout;
  const sumDy = new Float64Array(channels);
  const sumDyXmu = new Float64Array(channels);
  if (inner >= MIN_RUN) {
    for (let o = 0; o < outer; o++) {
      for (let c = 0; c < channels; c++) {
        const start = (o * channels + c) * inner;
        const mu = mean[c];
        let s = 0;
        let sx = 0;
        for (let i = start; i < start + inner; i++) {
          const g = dy[i];
          s += g;
          sx += g * (x[i] - mu);
        }
        sumDy[c] += s;
        sumDyXmu[c] += sx;
      }
    }
    return { sumDy, sumDyXmu };
  }
  const width = channels * inner;
  const columnMean = new Float64Array(width);
  for (let c = 0; c < channels; c++) columnMean.fill(mean[c], c * inner, (c + 1) * inner);
  const columnDy = new Float64Array(width);
  const columnDyXmu = new Float64Array(width);
  for (let r = 0; r < outer; r++) {
    const base = r * width;
    for (let j = 0; j < width; j++) {
      const g = dy[base + j];
      columnDy[j] += g;
      columnDyXmu[j] += g * (x[base + j] - columnMean[j]);
    }
  }
  for (let j = 0; j < width; j++) {
    const c = Math.floor(j / inner);
    sumDy[c] += columnDy[j];
    sumDyXmu[c] += columnDyXmu[j];
  }
  return { sumDy, sumDyXmu };
}

export function backward(plan: BackwardPlan, dx: FloatArray, dGamma: FloatArray, dBeta: FloatArray): void {
  const sums = gradSums(plan.dy, plan.x, plan.layout, plan.mean);
  finishBackward(plan, sums, plan.layout.outer * plan.layout.inner, dx, dGamma, dBeta);
}

/** dx and the parameter gradients from (possibly all-reduced) sums over `count` values. */
export function finishBackward(
  plan: BackwardPlan,
  sums: GradSums,
  count: number,
  dx: FloatArray,
  dGamma: FloatArray,
  dBeta: FloatArray,
): void {
  const { channels } = plan.layout;
  const k = channelAffine(channels);
  for (let c = 0; c < channels; c++) {
    const invStd = plan.invStd[c];
    const dg = sums.sumDyXmu[c] * invStd;
    const dyScale = (plan.gamma ? plan.gamma[c] : 1) * invStd;
    k.scale[c] = dyScale;
    k.centerOther[c] = plan.mean[c];
    if (plan.training) {
      // dx = g*invStd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat))
      k.scaleOther[c] = (-dyScale * invStd * dg) / count;
      k.shift[c] = (-dyScale * sums.sumDy[c]) / count;
    }
    dGamma[c] = dg;
    dBeta[c] = sums.sumDy[c];
  }
  applyChannelAffine(plan.dy, plan.training ? plan.x : null, dx, plan.layout, k);
}
