// A Backend whose training forward and whose backward are synchronized across workers:
// each computes this shard's per-channel partials, all-reduces them (one call of the
// user's allReduce; two in the rare forward whose batch mean is far from the shift), and finishes with the global values. SyncBatchNorm hands it to an
// ordinary BatchNorm layer, so the layer's behaviour (running statistics, momentum or
// cumulative average, caching for backward, gradient accumulation) is the same code.
import { namingErrors } from '../backend';
import type { Backend, TensorArray, TrainOptions } from '../types';
import type { AllReduce } from './all-reduce';
import { statsBuffer, statsFromBuffer, sumsBuffer, sumsFromBuffer } from './reduce-buffers';
import { isFarFrom, type StatsShift } from './stats-shift';

export function synchronizedBackend(kernels: Backend, allReduce: AllReduce, shift: StatsShift): Backend {
  // A synchronous call cannot wait for the other workers: refuse rather than normalize unsynchronized.
  const asyncOnly = (): never => {
    throw new Error('SyncBatchNorm: training forward and backward all-reduce across workers; use the async forms');
  };
  return namingErrors({
    ...kernels,
    batchNormTrain: asyncOnly,
    batchNormBackward: asyncOnly,

    async batchNormTrainAsync(x: TensorArray, shape: readonly number[], options: TrainOptions = {}) {
      const local = await kernels.batchNormStatsAsync(x, shape, { axis: options.axis, dtype: options.dtype });
      const about = shift.current(local.mean.length, options.runningMean);
      let global = statsFromBuffer(await allReduce(statsBuffer(local, about)), about);
      // A shift far from the data cost the variance its precision: take the moments again
      // about the batch's own mean (exact to rounding whatever the shift). Rare: a second call.
      if (isFarFrom(global, about)) {
        const near = about.map((k, c) => (Number.isFinite(global.mean[c]) ? global.mean[c] : k));
        global = statsFromBuffer(await allReduce(statsBuffer(local, near)), near);
      }
      const result = await kernels.batchNormTrainWithStatsAsync(x, shape, global, options);
      shift.follow(global.mean);
      return result;
    },

    async batchNormBackwardAsync(dy, x, shape, saved, options = {}) {
      const local = await kernels.batchNormBackwardSumsAsync(dy, x, shape, saved, options);
      const global = sumsFromBuffer(await allReduce(sumsBuffer(local)), local.sumDy.length);
      return kernels.batchNormBackwardWithSumsAsync(dy, x, shape, saved, global, options);
    },
  } satisfies Backend);
}
