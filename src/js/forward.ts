// Forward kernels of the fallback, mirroring forward.rs: statistics, then one fused
// (x - mean) * (gamma * invStd) + beta pass.

import type { FloatArray } from '../types';
import type { EvalPlan, TrainPlan, TrainWithStatsPlan } from '../validate';
import { applyChannelAffine, channelAffine } from './elementwise';
import { type ChannelMoments, channelMoments, updateRunningStats } from './stats';

export function train(plan: TrainPlan, y: FloatArray, mean: FloatArray, invStd: FloatArray): void {
  normalizeWithMoments(plan, channelMoments(plan.x, plan.layout), y, mean, invStd);
}

/** Normalizes with statistics the caller merged (every shard of a synchronized batch). */
export function trainWithStats(plan: TrainWithStatsPlan, y: FloatArray, mean: FloatArray, invStd: FloatArray): void {
  const { count, mean: m, m2 } = plan.stats;
  normalizeWithMoments(plan, { count: new Float64Array(m.length).fill(count), mean: m, m2 }, y, mean, invStd);
}

/** Normalizes with given per-channel moments (the batch's, or merged across workers). */
function normalizeWithMoments(
  plan: TrainPlan,
  moments: ChannelMoments,
  y: FloatArray,
  mean: FloatArray,
  invStd: FloatArray,
): void {
  const { channels } = plan.layout;
  const k = channelAffine(channels, plan.relu);
  for (let c = 0; c < channels; c++) {
    const inv = 1 / Math.sqrt(moments.m2[c] / moments.count[c] + plan.eps);
    k.scale[c] = (plan.gamma ? plan.gamma[c] : 1) * inv;
    k.center[c] = moments.mean[c];
    k.shift[c] = plan.beta ? plan.beta[c] : 0;
    mean[c] = moments.mean[c];
    invStd[c] = inv;
  }
  applyChannelAffine(plan.x, null, y, plan.layout, k);
  if (plan.runningMean && plan.runningVar) {
    updateRunningStats(plan.runningMean, plan.runningVar, moments, plan.momentum);
  }
}

export function evaluate(plan: EvalPlan, y: FloatArray): void {
  const { channels } = plan.layout;
  const k = channelAffine(channels, plan.relu);
  for (let c = 0; c < channels; c++) {
    k.scale[c] = (plan.gamma ? plan.gamma[c] : 1) / Math.sqrt(plan.runningVar[c] + plan.eps);
    k.center[c] = plan.runningMean[c];
    k.shift[c] = plan.beta ? plan.beta[c] : 0;
  }
  applyChannelAffine(plan.x, null, y, plan.layout, k);
}
