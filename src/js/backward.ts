// Backward kernels of the fallback, mirroring backward.rs: per-channel sums of dy and
// dy * xhat, then dx in one pass (through the batch statistics, or frozen). With a fused
// ReLU, dy only counts where the forward output y was > 0.
import type { FloatArray, GradSums } from '../types';
import type { BackwardPlan, BackwardWithSumsPlan } from '../validate';
import { applyChannelAffine, channelAffine } from './elementwise';
import { MIN_RUN } from './stats';

/** sum(dy) and sum(dy * xhat) per channel, over this tensor's values. */
export function gradSums(plan: BackwardPlan): GradSums {
  const { dy, x, y, mean, invStd } = plan;
  const { outer, channels, inner } = plan.layout;
  const sumDy = new Float64Array(channels);
  const sumDyXhat = new Float64Array(channels);
  if (x.length === 0) return { count: outer * inner, sumDy, sumDyXhat };
  const add = (c: number, i: number) => {
    const g = y === null || y[i] > 0 ? dy[i] : 0;
    sumDy[c] += g;
    sumDyXhat[c] += g * (x[i] - mean[c]);
  };
  if (inner >= MIN_RUN) {
    for (let o = 0; o < outer; o++) {
      for (let c = 0; c < channels; c++) {
        const start = (o * channels + c) * inner;
        const mu = mean[c];
        let s = 0;
        let sx = 0;
        if (y === null) {
          for (let i = start; i < start + inner; i++) {
            const g = dy[i];
            s += g;
            sx += g * (x[i] - mu);
          }
          sumDy[c] += s;
          sumDyXhat[c] += sx;
        } else {
          for (let i = start; i < start + inner; i++) add(c, i);
        }
      }
    }
  } else {
    for (let o = 0; o < outer; o++) {
      for (let c = 0; c < channels; c++) {
        const start = (o * channels + c) * inner;
        for (let i = start; i < start + inner; i++) add(c, i);
      }
    }
  }
  // Accumulated as sum(dy * (x - mean)); one multiply per channel turns it into xhat's.
  for (let c = 0; c < channels; c++) sumDyXhat[c] *= invStd[c];
  return { count: outer * inner, sumDy, sumDyXhat };
}

export function backward(plan: BackwardPlan, dx: FloatArray, dGamma: FloatArray, dBeta: FloatArray): void {
  finishBackward(plan, gradSums(plan), dx, dGamma, dBeta);
}

/** dx of this shard and the parameter gradients, from sums reduced over every shard. */
export function backwardWithSums(
  plan: BackwardWithSumsPlan,
  dx: FloatArray,
  dGamma: FloatArray,
  dBeta: FloatArray,
): void {
  finishBackward(plan, plan.sums, dx, dGamma, dBeta);
}

function finishBackward(
  plan: BackwardPlan,
  sums: GradSums,
  dx: FloatArray,
  dGamma: FloatArray,
  dBeta: FloatArray,
): void {
  const { channels } = plan.layout;
  const k = channelAffine(channels);
  for (let c = 0; c < channels; c++) {
    const invStd = plan.invStd[c];
    const dyScale = (plan.gamma ? plan.gamma[c] : 1) * invStd;
    k.scale[c] = dyScale;
    k.centerOther[c] = plan.mean[c];
    if (plan.training) {
      // dx = g*invStd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat))
      k.scaleOther[c] = (-dyScale * invStd * sums.sumDyXhat[c]) / sums.count;
      k.shift[c] = (-dyScale * sums.sumDy[c]) / sums.count;
    }
    dGamma[c] = sums.sumDyXhat[c];
    dBeta[c] = sums.sumDy[c];
  }
  let dyMasked = plan.dy;
  if (plan.y !== null) {
    // dy through the ReLU, written into dx; the affine pass then runs in place on it.
    const y = plan.y;
    for (let i = 0; i < dx.length; i++) dx[i] = y[i] > 0 ? plan.dy[i] : 0;
    dyMasked = dx;
  }
  applyChannelAffine(dyMasked, plan.training ? plan.x : null, dx, plan.layout, k);
}
