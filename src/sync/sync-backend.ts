// A Backend whose training forward and whose backward are synchronized across workers:
// each computes this shard's per-channel partials, all-reduces them (one call of the
// user's allReduce), and finishes with the global values. SyncBatchNorm hands it to an
// ordinary BatchNorm layer, so the layer's behaviour (running statistics, momentum or
// cumulative average, caching for backward, gradient accumulation) is the same code.
import type { Backend, FloatArray, TrainOptions } from '../types';
import type { AllReduce } from './all-reduce';
import { statsBuffer, statsFromBuffer, sumsBuffer, sumsFromBuffer } from './reduce-buffers';

/** The per-channel point the forward moments are taken about. It must be identical on every
 *  worker: it starts at the running mean (or zero) and then follows the global batch mean,
 *  which every worker decodes from the same reduced buffer. */
export class StatsShift {
  #mean: Float64Array | null = null;

  /** Forget the followed mean (e.g. after loading state): start again from the running mean. */
  reset(): void {
    this.#mean = null;
  }

  current(channels: number, runningMean: FloatArray | undefined): Float64Array {
    this.#mean ??= runningMean ? Float64Array.from(runningMean) : new Float64Array(channels);
    return this.#mean;
  }

  follow(globalMean: Float64Array): void {
    this.#mean = globalMean;
  }
}

export function synchronizedBackend(kernels: Backend, allReduce: AllReduce, shift: StatsShift): Backend {
  // A synchronous call cannot wait for the other workers: refuse rather than normalize unsynchronized.
  const asyncOnly = (): never => {
    throw new Error('SyncBatchNorm: training forward and backward all-reduce across workers; use the async forms');
  };
  return Object.freeze({
    ...kernels,
    batchNormTrain: asyncOnly,
    batchNormBackward: asyncOnly,

    async batchNormTrainAsync(x: FloatArray, shape: readonly number[], options: TrainOptions = {}) {
      const local = await kernels.batchNormStatsAsync(x, shape, { axis: options.axis });
      const about = shift.current(local.mean.length, options.runningMean);
      const global = statsFromBuffer(await allReduce(statsBuffer(local, about)), about);
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
