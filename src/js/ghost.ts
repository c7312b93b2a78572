// Ghost batches on the js kernels (`virtualBatchSize`, plan.groups > 1): the ordinary kernels
// run on each group of consecutive samples, a contiguous block of every tensor, as the core's
// train_in_groups and backward_in_groups loop over theirs. The running statistics move by the
// groups' average mean and variance (Keras's), summed in group order as the core sums them;
// dGamma and dBeta are sums over the groups, added in float64 before they are stored.
import type { Kernels } from '../backend';
import type { Layout } from '../layout';
import { updateRunning } from '../moments';
import type { FloatArray } from '../types';
import { fingerprint } from './fingerprint';

/** The part of `a` (tensor-sized, or groups × C statistics) that group g holds. */
function groupPart<A extends FloatArray | null>(a: A, g: number, groups: number): A {
  if (a === null) return a;
  const size = a.length / groups;
  return a.subarray(g * size, (g + 1) * size) as A;
}

function groupLayout(layout: Layout, groups: number): Layout {
  return { ...layout, outer: layout.outer / groups };
}

/** `k` with train and backward cut into the plan's groups (one group: `k` itself). */
export function inGroups(k: Kernels<FloatArray>): Kernels<FloatArray> {
  return {
    ...k,
    train(plan, y, mean, invStd, print) {
      const { groups } = plan;
      if (groups === 1) return k.train(plan, y, mean, invStd, print);
      // Before y is written: it may be x itself.
      if (print) print[0] = fingerprint(plan.x);
      // No channels: nothing to loop over, however many groups the batch has.
      if (plan.x.length === 0) return;
      const c = plan.layout.channels;
      const layout = groupLayout(plan.layout, groups);
      const shape = [plan.shape[0] / groups, ...plan.shape.slice(1)];
      const stats = { mean: new Float64Array(c), m2: new Float64Array(c) };
      const meanSum = new Float64Array(c);
      const varSum = new Float64Array(c);
      const count = layout.outer * layout.inner;
      for (let g = 0; g < groups; g++) {
        const part = { ...plan, x: groupPart(plan.x, g, groups), layout, shape, groups: 1, fingerprint: false };
        k.stats(part, stats.mean, stats.m2);
        const group = {
          ...part,
          residual: groupPart(plan.residual, g, groups),
          runningMean: null,
          runningVar: null,
          stats: { count, ...stats },
        };
        k.trainWithStats(
          group,
          groupPart(y, g, groups),
          groupPart(mean, g, groups),
          groupPart(invStd, g, groups),
          null,
        );
        for (let j = 0; j < c; j++) {
          const v = stats.m2[j] / (count - plan.runningVarCorrection);
          meanSum[j] = g === 0 ? stats.mean[j] : meanSum[j] + stats.mean[j];
          varSum[j] = g === 0 ? v : varSum[j] + v;
        }
      }
      const { runningMean, runningVar } = plan;
      if (!runningMean || !runningVar) return;
      for (let j = 0; j < c; j++) {
        updateRunning(runningMean, runningVar, j, meanSum[j] / groups, varSum[j] / groups, plan.momentum);
      }
    },
    backward(plan, dx, dGamma, dBeta, dResidual, print) {
      const { groups } = plan;
      if (groups === 1) return k.backward(plan, dx, dGamma, dBeta, dResidual, print);
      if (print) print[0] = fingerprint(plan.x);
      if (plan.x.length === 0) return;
      const c = plan.layout.channels;
      const layout = groupLayout(plan.layout, groups);
      const shape = [plan.shape[0] / groups, ...plan.shape.slice(1)];
      const gammaSum = new Float64Array(c);
      const betaSum = new Float64Array(c);
      const groupGamma = new Float64Array(c);
      const groupBeta = new Float64Array(c);
      for (let g = 0; g < groups; g++) {
        const part = {
          ...plan,
          dy: groupPart(plan.dy, g, groups),
          x: groupPart(plan.x, g, groups),
          y: groupPart(plan.y, g, groups),
          mean: groupPart(plan.mean, g, groups),
          invStd: groupPart(plan.invStd, g, groups),
          layout,
          shape,
          groups: 1,
          fingerprint: false,
        };
        k.backward(part, groupPart(dx, g, groups), groupGamma, groupBeta, groupPart(dResidual, g, groups), null);
        for (let j = 0; j < c; j++) {
          gammaSum[j] = g === 0 ? groupGamma[j] : gammaSum[j] + groupGamma[j];
          betaSum[j] = g === 0 ? groupBeta[j] : betaSum[j] + groupBeta[j];
        }
      }
      dGamma.set(gammaSum);
      dBeta.set(betaSum);
    },
  };
}
