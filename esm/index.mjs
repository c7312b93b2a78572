// The ESM entry: the CommonJS build re-exported, so `import` and `require` share one module
// instance (one loaded binary, one backend choice). test/esm-exports.test.ts keeps the names
// below equal to the CommonJS export names.
import batchnorm from '../dist/index.js';

export const {
  BatchNorm,
  LazyBatchNorm,
  SyncBatchNorm,
  abortSharedAllReduce,
  backend,
  batchNormBackward,
  batchNormBackwardAsync,
  batchNormBackwardSums,
  batchNormBackwardSumsAsync,
  batchNormBackwardWithSums,
  batchNormBackwardWithSumsAsync,
  batchNormEval,
  batchNormEvalAsync,
  batchNormStats,
  batchNormStatsAsync,
  batchNormTrain,
  batchNormTrainAsync,
  batchNormTrainWithStats,
  batchNormTrainWithStatsAsync,
  createSharedAllReduceMemory,
  foldBatchNorm,
  getNumThreads,
  js,
  mergeStats,
  native,
  nativeLoadError,
  nativeMinElements,
  nativeSource,
  outputPoolStats,
  setNumThreads,
  setOutputPoolLimit,
  sharedAllReduce,
} = batchnorm;

export default batchnorm;
