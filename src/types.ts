/** A tensor's data: a flat, row-major typed array. Every array of one call has x's dtype. */
export type FloatArray = Float32Array | Float64Array;

/** The typed array of A's dtype, over any buffer: what every other array of a call whose x is
 *  an A must be, and what it returns (`batchNormTrain(x: Float32Array, …)` gives Float32Array
 *  fields; a Float64Array gamma with it is a compile error). */
export type DtypeArray<A extends FloatArray> = A extends Float32Array
  ? Float32Array
  : A extends Float64Array
    ? Float64Array
    : FloatArray;

/** What normalizes x in every forward call: the axis, eps, the affine parameters, the fused
 *  activation and residual. A is x's array type; every array here has its dtype. */
export interface NormOptions<A extends FloatArray = FloatArray> {
  /** The channel axis; negative counts from the end (`-1` = channels-last). Default 1. */
  axis?: number;
  /** Added to the variance before the square root. Finite, > 0. Default 1e-5. */
  eps?: number;
  /** Per-channel scale (length C); null/omitted = ones. */
  gamma?: DtypeArray<A> | null;
  /** Per-channel shift (length C); null/omitted = zeros. */
  beta?: DtypeArray<A> | null;
  /** Fused activation after the affine step: 'relu' gives max(0, y) in the same pass. Default 'none'. */
  activation?: Activation;
  /** Added after the affine step and before the activation, in the same pass: y =
   *  activation(BN(x) + residual), the tail of a ResNet block. x's dtype and length. */
  residual?: DtypeArray<A> | null;
}

/** What follows normalization in the same pass (conv -> BN -> ReLU). */
export type Activation = 'none' | 'relu';

/** Options of `batchNormTrain` (and its Async and synchronized forms): the normalization, the
 *  running statistics it updates in place, and where y goes. */
export interface TrainOptions<A extends FloatArray = FloatArray> extends NormOptions<A> {
  /** Updated IN PLACE with the batch mean (give both running arrays or neither). */
  runningMean?: DtypeArray<A>;
  /** Updated IN PLACE with the UNBIASED batch variance m/(m-1). */
  runningVar?: DtypeArray<A>;
  /** running = (1 - momentum) * running + momentum * batch. In [0, 1]. Default 0.1. */
  momentum?: number;
  /** Bessel's correction of the batch variance that enters runningVar, as torch.var's
   *  `correction`: 1 (default) divides M2 by m - 1 (PyTorch); 0 by m (Keras, TensorFlow, ONNX). */
  runningVarCorrection?: 0 | 1;
  /** Where y is written (length of x); may be x itself. */
  out?: DtypeArray<A>;
  /** Also return x's fingerprint (see Backend.fingerprint) as the step read it, taken in
   *  the statistics sweep on native (no extra pass). Default false. */
  fingerprint?: boolean;
}

/** What a training forward gives: y and the batch statistics it normalized with (the saved
 *  statistics `batchNormBackward` takes). */
export interface TrainResult<A extends FloatArray = FloatArray> {
  /** The normalized output; `=== out` when out was given. */
  y: DtypeArray<A>;
  /** Batch mean per channel. */
  mean: DtypeArray<A>;
  /** 1 / sqrt(biased batch variance + eps) per channel; saved for backward. */
  invStd: DtypeArray<A>;
  /** With fingerprint: true, x's fingerprint as the step read it. */
  fingerprint?: number;
}

/** Options of `batchNormEval`: the normalization and the (required) running statistics. */
export interface EvalOptions<A extends FloatArray = FloatArray> extends NormOptions<A> {
  runningMean: DtypeArray<A>;
  runningVar: DtypeArray<A>;
  /** Where y is written (length of x); may be x itself. */
  out?: DtypeArray<A>;
}

/** The statistics a forward normalized with, as `batchNormTrain` returns them (mean, invStd). */
export interface SavedStats<A extends FloatArray = FloatArray> {
  mean: DtypeArray<A>;
  invStd: DtypeArray<A>;
}

/** Options of `batchNormBackward`: the forward's settings (axis, gamma, activation and y,
 *  residual), whether its statistics were the batch's, and where dx goes. */
export interface BackwardOptions<A extends FloatArray = FloatArray> {
  axis?: number;
  gamma?: DtypeArray<A> | null;
  /** true (default): mean/invStd are batch statistics from batchNormTrain.
   *  false: they are frozen running statistics and dx = dy * gamma * invStd. */
  training?: boolean;
  /** Where dx is written (length of x); may be dy itself. */
  out?: DtypeArray<A>;
  /** 'relu' when the forward pass fused a ReLU: dy only flows where the output y was > 0. */
  activation?: Activation;
  /** The forward output (TrainResult.y); required with activation 'relu'. */
  y?: DtypeArray<A>;
  /** The forward pass added a residual: the result also carries dResidual, the gradient that
   *  flows to it (dy, or with a fused ReLU dy where y > 0). Default false. */
  residual?: boolean;
  /** Where dResidual is written (length of x); only with residual: true. */
  outResidual?: DtypeArray<A>;
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

/** What a backward gives: dx and the parameter gradients, plus what the options asked for. */
export interface BackwardResult<A extends FloatArray = FloatArray> {
  dx: DtypeArray<A>;
  dGamma: DtypeArray<A>;
  dBeta: DtypeArray<A>;
  /** With residual: true, what flows to the residual; `=== outResidual` when given. */
  dResidual?: DtypeArray<A>;
  /** With statsGrad: true, the gradients with respect to the given mean and variance. */
  dMean?: DtypeArray<A>;
  dVar?: DtypeArray<A>;
  /** With fingerprint: true, x's fingerprint as the backward read it. */
  fingerprint?: number;
}

/** One implementation of the functional API. */
export interface Backend {
  readonly name: 'native' | 'js';
  /** Training forward: batch statistics, normalization, the running update when given. */
  batchNormTrain<A extends FloatArray>(x: A, shape: readonly number[], options?: TrainOptions<A>): TrainResult<A>;
  /** Inference forward: normalizes with the running statistics. */
  batchNormEval<A extends FloatArray>(x: A, shape: readonly number[], options: EvalOptions<A>): DtypeArray<A>;
  /** dx, dGamma and dBeta for a forward with the saved statistics. */
  batchNormBackward<A extends FloatArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: BackwardOptions<A>,
  ): BackwardResult<A>;
  /** batchNormTrain off the JS thread (native backend); do not touch the arrays until it settles. */
  batchNormTrainAsync<A extends FloatArray>(
    x: A,
    shape: readonly number[],
    options?: TrainOptions<A>,
  ): Promise<TrainResult<A>>;
  /** batchNormEval off the JS thread (native backend). */
  batchNormEvalAsync<A extends FloatArray>(
    x: A,
    shape: readonly number[],
    options: EvalOptions<A>,
  ): Promise<DtypeArray<A>>;
  /** batchNormBackward off the JS thread (native backend). */
  batchNormBackwardAsync<A extends FloatArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: BackwardOptions<A>,
  ): Promise<BackwardResult<A>>;

  /** A position-sensitive checksum of x's bits (a 32-bit unsigned integer, the same on every
   *  backend): any change to one element changes it. The layer keeps a reference to its
   *  input, not a copy, and compares this before backward to refuse a modified input. */
  fingerprint(x: FloatArray): number;
  /** fingerprint off the JS thread (native backend). */
  fingerprintAsync(x: FloatArray): Promise<number>;

  /** Per-channel statistics of one shard of a batch (for synchronized batch norm). */
  batchNormStats<A extends FloatArray>(x: A, shape: readonly number[], options?: { axis?: number }): ChannelStats;
  /** batchNormStats off the JS thread (native backend). */
  batchNormStatsAsync<A extends FloatArray>(
    x: A,
    shape: readonly number[],
    options?: { axis?: number },
  ): Promise<ChannelStats>;
  /** Training forward with statistics given by the caller (e.g. merged over every worker). */
  batchNormTrainWithStats<A extends FloatArray>(
    x: A,
    shape: readonly number[],
    stats: ChannelStats,
    options?: TrainOptions<A>,
  ): TrainResult<A>;
  /** batchNormTrainWithStats off the JS thread (native backend). */
  batchNormTrainWithStatsAsync<A extends FloatArray>(
    x: A,
    shape: readonly number[],
    stats: ChannelStats,
    options?: TrainOptions<A>,
  ): Promise<TrainResult<A>>;
  /** sum(dy) and sum(dy * xhat) per channel of one shard. */
  batchNormBackwardSums<A extends FloatArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: BackwardOptions<A>,
  ): GradSums;
  /** batchNormBackwardSums off the JS thread (native backend). */
  batchNormBackwardSumsAsync<A extends FloatArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: BackwardOptions<A>,
  ): Promise<GradSums>;
  /** dx, dGamma, dBeta of one shard from sums reduced over every shard. */
  batchNormBackwardWithSums<A extends FloatArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    sums: GradSums,
    options?: BackwardOptions<A>,
  ): BackwardResult<A>;
  /** batchNormBackwardWithSums off the JS thread (native backend). */
  batchNormBackwardWithSumsAsync<A extends FloatArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    sums: GradSums,
    options?: BackwardOptions<A>,
  ): Promise<BackwardResult<A>>;
}
