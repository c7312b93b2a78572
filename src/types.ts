/** A tensor's data: a flat, row-major typed array. Every array of one call has x's dtype. */
export type FloatArray = Float32Array | Float64Array;

export interface NormOptions {
  /** The channel axis; negative counts from the end (`-1` = channels-last). Default 1. */
  axis?: number;
  /** Added to the variance before the square root. Finite, > 0. Default 1e-5. */
  eps?: number;
  /** Per-channel scale (length C); null/omitted = ones. */
  gamma?: FloatArray | null;
  /** Per-channel shift (length C); null/omitted = zeros. */
  beta?: FloatArray | null;
  /** Fused activation after the affine step: 'relu' gives max(0, y) in the same pass. Default 'none'. */
  activation?: Activation;
  /** Added after the affine step and before the activation, in the same pass: y =
   *  activation(BN(x) + residual), the tail of a ResNet block. x's dtype and length. */
  residual?: FloatArray | null;
}

/** What follows normalization in the same pass (conv -> BN -> ReLU). */
export type Activation = 'none' | 'relu';

export interface TrainOptions extends NormOptions {
  /** Updated IN PLACE with the batch mean (give both running arrays or neither). */
  runningMean?: FloatArray;
  /** Updated IN PLACE with the UNBIASED batch variance m/(m-1). */
  runningVar?: FloatArray;
  /** running = (1 - momentum) * running + momentum * batch. In [0, 1]. Default 0.1. */
  momentum?: number;
  /** Bessel's correction of the batch variance that enters runningVar, as torch.var's
   *  `correction`: 1 (default) divides M2 by m - 1 (PyTorch); 0 by m (Keras, TensorFlow, ONNX). */
  runningVarCorrection?: 0 | 1;
  /** Where y is written (length of x); may be x itself. */
  out?: FloatArray;
  /** Also return x's fingerprint (see Backend.fingerprint) as the step read it, taken in
   *  the statistics sweep on native (no extra pass). Default false. */
  fingerprint?: boolean;
}

export interface TrainResult {
  /** The normalized output; `=== out` when out was given. */
  y: FloatArray;
  /** Batch mean per channel. */
  mean: FloatArray;
  /** 1 / sqrt(biased batch variance + eps) per channel; saved for backward. */
  invStd: FloatArray;
  /** With fingerprint: true, x's fingerprint as the step read it. */
  fingerprint?: number;
}

export interface EvalOptions extends NormOptions {
  runningMean: FloatArray;
  runningVar: FloatArray;
  /** Where y is written (length of x); may be x itself. */
  out?: FloatArray;
}

export interface SavedStats {
  mean: FloatArray;
  invStd: FloatArray;
}

export interface BackwardOptions {
  axis?: number;
  gamma?: FloatArray | null;
  /** true (default): mean/invStd are batch statistics from batchNormTrain.
   *  false: they are frozen running statistics and dx = dy * gamma * invStd. */
  training?: boolean;
  /** Where dx is written (length of x); may be dy itself. */
  out?: FloatArray;
  /** 'relu' when the forward pass fused a ReLU: dy only flows where the output y was > 0. */
  activation?: Activation;
  /** The forward output (TrainResult.y); required with activation 'relu'. */
  y?: FloatArray;
  /** The forward pass added a residual: the result also carries dResidual, the gradient that
   *  flows to it (dy, or with a fused ReLU dy where y > 0). Default false. */
  residual?: boolean;
  /** Where dResidual is written (length of x); only with residual: true. */
  outResidual?: FloatArray;
  /** With training: false, also return dMean and dVar: the gradients with respect to the
   *  mean and variance that normalized x (as TensorFlow.js's batchNorm gives). Default false. */
  statsGrad?: boolean;
  /** Also return x's fingerprint as the backward read it (native: in the sums sweep). */
  fingerprint?: boolean;
}

/** One shard's (or the merged) per-channel statistics: `count` values per channel,
 *  their mean and M2 = sum of squared deviations from the mean. Always float64. */
export interface ChannelStats {
  count: number;
  mean: Float64Array;
  m2: Float64Array;
}

/** One shard's (or the all-reduced) backward sums per channel over `count` values:
 *  sum(dy) and sum(dy * xhat). Always float64. */
export interface GradSums {
  count: number;
  sumDy: Float64Array;
  sumDyXhat: Float64Array;
}

export interface BackwardResult {
  dx: FloatArray;
  dGamma: FloatArray;
  dBeta: FloatArray;
  /** With residual: true, what flows to the residual; `=== outResidual` when given. */
  dResidual?: FloatArray;
  /** With statsGrad: true, the gradients with respect to the given mean and variance. */
  dMean?: FloatArray;
  dVar?: FloatArray;
  /** With fingerprint: true, x's fingerprint as the backward read it. */
  fingerprint?: number;
}

/** One implementation of the functional API. */
export interface Backend {
  readonly name: 'native' | 'js';
  batchNormTrain(x: FloatArray, shape: readonly number[], options?: TrainOptions): TrainResult;
  batchNormEval(x: FloatArray, shape: readonly number[], options: EvalOptions): FloatArray;
  batchNormBackward(
    dy: FloatArray,
    x: FloatArray,
    shape: readonly number[],
    saved: SavedStats,
    options?: BackwardOptions,
  ): BackwardResult;
  batchNormTrainAsync(x: FloatArray, shape: readonly number[], options?: TrainOptions): Promise<TrainResult>;
  batchNormEvalAsync(x: FloatArray, shape: readonly number[], options: EvalOptions): Promise<FloatArray>;
  batchNormBackwardAsync(
    dy: FloatArray,
    x: FloatArray,
    shape: readonly number[],
    saved: SavedStats,
    options?: BackwardOptions,
  ): Promise<BackwardResult>;

  /** A position-sensitive checksum of x's bits (a 32-bit unsigned integer, the same on every
   *  backend): any change to one element changes it. The layer keeps a reference to its
   *  input, not a copy, and compares this before backward to refuse a modified input. */
  fingerprint(x: FloatArray): number;
  fingerprintAsync(x: FloatArray): Promise<number>;

  /** Per-channel statistics of one shard of a batch (for synchronized batch norm). */
  batchNormStats(x: FloatArray, shape: readonly number[], options?: { axis?: number }): ChannelStats;
  batchNormStatsAsync(x: FloatArray, shape: readonly number[], options?: { axis?: number }): Promise<ChannelStats>;
  /** Training forward with statistics given by the caller (e.g. merged over every worker). */
  batchNormTrainWithStats(
    x: FloatArray,
    shape: readonly number[],
    stats: ChannelStats,
    options?: TrainOptions,
  ): TrainResult;
  batchNormTrainWithStatsAsync(
    x: FloatArray,
    shape: readonly number[],
    stats: ChannelStats,
    options?: TrainOptions,
  ): Promise<TrainResult>;
  /** sum(dy) and sum(dy * xhat) per channel of one shard. */
  batchNormBackwardSums(
    dy: FloatArray,
    x: FloatArray,
    shape: readonly number[],
    saved: SavedStats,
    options?: BackwardOptions,
  ): GradSums;
  batchNormBackwardSumsAsync(
    dy: FloatArray,
    x: FloatArray,
    shape: readonly number[],
    saved: SavedStats,
    options?: BackwardOptions,
  ): Promise<GradSums>;
  /** dx, dGamma, dBeta of one shard from sums reduced over every shard. */
  batchNormBackwardWithSums(
    dy: FloatArray,
    x: FloatArray,
    shape: readonly number[],
    saved: SavedStats,
    sums: GradSums,
    options?: BackwardOptions,
  ): BackwardResult;
  batchNormBackwardWithSumsAsync(
    dy: FloatArray,
    x: FloatArray,
    shape: readonly number[],
    saved: SavedStats,
    sums: GradSums,
    options?: BackwardOptions,
  ): Promise<BackwardResult>;
}
