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

export const batchNormTrain = backend.batchNormTrain;
export const batchNormEval = backend.batchNormEval;
export const batchNormBackward = backend.batchNormBackward;
export const batchNormTrainAsync = backend.batchNormTrainAsync;
export const batchNormEvalAsync = backend.batchNormEvalAsync;
export const batchNormBackwardAsync = backend.batchNormBackwardAsync;

// The pieces of synchronized batch norm (statistics of one shard, training with merged
// statistics, backward sums of one shard, backward from reduced sums).
export const batchNormStats = backend.batchNormStats;
export const batchNormStatsAsync = backend.batchNormStatsAsync;
export const batchNormTrainWithStats = backend.batchNormTrainWithStats;
export const batchNormTrainWithStatsAsync = backend.batchNormTrainWithStatsAsync;
export const batchNormBackwardSums = backend.batchNormBackwardSums;
export const batchNormBackwardSumsAsync = backend.batchNormBackwardSumsAsync;
export const batchNormBackwardWithSums = backend.batchNormBackwardWithSums;
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
