// batchnorm: batch normalization for Node.js. Native (Rust + rayon) when the binary
// loads, pure TypeScript otherwise; same functions, same answers, same errors.
import * as outputPool from './src/output-pool';
import { backend, binding } from './src/select';

export { js } from './src/js';
export type { OutputPoolStats } from './src/output-pool';
export {
  backend,
  native,
  nativeLoadError,
  nativeMinElementsInUse as nativeMinElements,
  nativeSource,
} from './src/select';
export { getNumThreads, setNumThreads } from './src/threads';

/** Caps the native backend's recycled output memory: bytes lent out, and separately bytes
 *  kept free for reuse (0 turns recycling off). Default 512 MiB, or BATCHNORM_OUTPUT_POOL_BYTES. */
export function setOutputPoolLimit(bytes: number): void {
  outputPool.setOutputPoolLimit(binding, bytes);
}

/** What the recycled output memory holds and has served (all zeros without the native backend). */
export function outputPoolStats(): outputPool.OutputPoolStats {
  return outputPool.outputPoolStats(binding);
}
export type * from './src/types';

/** Training forward: per-channel batch statistics over every axis but `axis`, then
 *  `y = gamma·(x − mean)/√(var + eps) + beta` (with `activation: 'relu'` and `residual: z`,
 *  `relu(BN(x) + z)`). Updates `runningMean`/`runningVar` in place when given. Returns
 *  `{ y, mean, invStd }` (what backward needs). Writes y into `out` when given (may be x). */
export const batchNormTrain = backend.batchNormTrain;
/** Inference forward with the running statistics (`runningMean`, `runningVar` required):
 *  returns y, written into `out` when given (may be x). */
export const batchNormEval = backend.batchNormEval;
/** Backward of a forward: `{ dx, dGamma, dBeta }` from dy, x and the forward's saved
 *  `{ mean, invStd }`. `training: false` treats them as frozen statistics (`statsGrad: true`
 *  also gives dMean, dVar); `activation: 'relu'` needs the forward's y; `residual: true` also
 *  gives dResidual. dx goes into `out` when given (may be dy). */
export const batchNormBackward = backend.batchNormBackward;
/** batchNormTrain off the JS thread (native backend); do not touch the arrays until it settles. */
export const batchNormTrainAsync = backend.batchNormTrainAsync;
/** batchNormEval off the JS thread (native backend); do not touch the arrays until it settles. */
export const batchNormEvalAsync = backend.batchNormEvalAsync;
/** batchNormBackward off the JS thread (native backend); do not touch the arrays until it settles. */
export const batchNormBackwardAsync = backend.batchNormBackwardAsync;

// The pieces of synchronized batch norm (statistics of one shard, training with merged
// statistics, backward sums of one shard, backward from reduced sums).
/** One shard's per-channel `{ count, mean, m2 }` (float64), for merging across workers. */
export const batchNormStats = backend.batchNormStats;
/** batchNormStats off the JS thread (native backend). */
export const batchNormStatsAsync = backend.batchNormStatsAsync;
/** Training forward normalizing with statistics the caller merged (every shard of a
 *  synchronized batch); updates the running statistics with them. */
export const batchNormTrainWithStats = backend.batchNormTrainWithStats;
/** batchNormTrainWithStats off the JS thread (native backend). */
export const batchNormTrainWithStatsAsync = backend.batchNormTrainWithStatsAsync;
/** One shard's per-channel backward sums `{ count, sumDy, sumDyXhat }` (float64), to be
 *  all-reduced before batchNormBackwardWithSums. */
export const batchNormBackwardSums = backend.batchNormBackwardSums;
/** batchNormBackwardSums off the JS thread (native backend). */
export const batchNormBackwardSumsAsync = backend.batchNormBackwardSumsAsync;
/** Backward of one shard from the all-reduced sums of every shard. */
export const batchNormBackwardWithSums = backend.batchNormBackwardWithSums;
/** batchNormBackwardWithSums off the JS thread (native backend). */
export const batchNormBackwardWithSumsAsync = backend.batchNormBackwardWithSumsAsync;

export {
  type FoldableBatchNorm,
  type FoldableLayer,
  type FoldedLayer,
  type FoldTarget,
  foldBatchNorm,
} from './src/fold';
// The layer (nn.BatchNorm semantics, PyTorch state names) and folding it into the layer before.
export {
  BatchNorm,
  type BatchNormOptions,
  type BatchNormState,
  type BatchNormStateInput,
  type ForwardOptions,
  type LayerBackwardOptions,
} from './src/layer';
// The layer whose channel count comes from its first input (PyTorch's LazyBatchNorm*d).
export { LazyBatchNorm } from './src/lazy-layer';
export type { RenormOptions } from './src/renorm-backend';

// Synchronized batch norm across workers: exact merge of shard statistics, the layer, and
// an all-reduce over shared memory for worker_threads.
export {
  type AllReduce,
  abortSharedAllReduce,
  createSharedAllReduceMemory,
  type SharedAllReduceOptions,
  sharedAllReduce,
} from './src/sync/all-reduce';
export { mergeStats } from './src/sync/merge';
export { SyncBatchNorm, type SyncBatchNormOptions } from './src/sync/sync-layer';
