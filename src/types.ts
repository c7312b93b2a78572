/** A float32 or float64 tensor's data (or its parameters): a flat, row-major typed array. */
export type FloatArray = Float32Array | Float64Array;

/** The 16-bit formats, held as bit patterns in a Uint16Array (Node has no Float16Array before
 *  24; where it has one, a Float16Array is float16 without a `dtype` option). */
export type HalfDtype = 'bfloat16' | 'float16';

/** Every element type a tensor may have. */
export type Dtype = 'float32' | 'float64' | HalfDtype;

/** A tensor's data: Float32Array, Float64Array, or a Uint16Array of bfloat16 / float16 bits
 *  (with the `dtype` option saying which). The tensors of one call (x, dy, y, residual, out)
 *  share x's array type. */
export type TensorArray = FloatArray | Uint16Array;

/** The typed array of A's dtype, over any buffer: what every other array of a call whose x is
 *  an A must be, and what it returns (`batchNormTrain(x: Float32Array, …)` gives Float32Array
 *  fields; a Float64Array gamma with it is a compile error). */
export type DtypeArray<A extends TensorArray> = A extends Float32Array
  ? Float32Array
  : A extends Float64Array
    ? Float64Array
    : A extends Uint16Array
      ? Uint16Array
      : TensorArray;

/** The array type of the per-channel parameters and statistics that go with a tensor of type
 *  A (gamma, beta, the running and saved statistics, their gradients): A's own for float32 and
 *  float64, Float32Array for the 16-bit formats (PyTorch's mixed precision). */
export type ParamArray<A extends TensorArray> = A extends Float64Array
  ? Float64Array
  : A extends Float32Array | Uint16Array
    ? Float32Array
    : FloatArray;

/** What normalizes x in every forward call: the axis, eps, the affine parameters, the fused
 *  activation and residual. A is x's array type; the tensors here have it, the parameters are
 *  ParamArray<A>. */
export interface NormOptions<A extends TensorArray = TensorArray> {
  /** The channel axis; negative counts from the end (`-1` = channels-last). Default 1. */
  axis?: number;
  /** What x holds: required for a Uint16Array ('bfloat16' or 'float16' bits); for any other
   *  array it may be given and must match it ('float32', 'float64', 'float16'). */
  dtype?: Dtype;
  /** Added to the variance before the square root. Finite, > 0. Default 1e-5. */
  eps?: number;
  /** Per-channel scale (length C); null/omitted = ones. */
  gamma?: ParamArray<A> | null;
  /** Per-channel shift (length C); null/omitted = zeros. */
  beta?: ParamArray<A> | null;
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
export interface TrainOptions<A extends TensorArray = TensorArray> extends NormOptions<A> {
  /** Updated IN PLACE with the batch mean (give both running arrays or neither). */
  runningMean?: ParamArray<A>;
  /** Updated IN PLACE with the UNBIASED batch variance m/(m-1). */
  runningVar?: ParamArray<A>;
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
  /** Ghost batch normalization (Keras `virtual_batch_size`): each group of k consecutive
   *  samples along axis 0 normalized with its own statistics, in one call. The batch must be a
   *  multiple of k; mean and invStd then hold (batch / k) × C values, group-major, and the
   *  running statistics move by the groups' average mean and variance. */
  virtualBatchSize?: number | null;
}

/** Options of the synchronized pieces' training forms: one set of statistics for the batch. */
export type ShardTrainOptions<A extends TensorArray = TensorArray> = Omit<TrainOptions<A>, 'virtualBatchSize'>;

/** What a training forward gives: y and the batch statistics it normalized with (the saved
 *  statistics `batchNormBackward` takes). */
export interface TrainResult<A extends TensorArray = TensorArray> {
  /** The normalized output; `=== out` when out was given. */
  y: DtypeArray<A>;
  /** Batch mean per channel. */
  mean: ParamArray<A>;
  /** 1 / sqrt(biased batch variance + eps) per channel; saved for backward. */
  invStd: ParamArray<A>;
  /** With fingerprint: true, x's fingerprint as the step read it. */
  fingerprint?: number;
}

/** Options of `batchNormEval`: the normalization and the (required) running statistics. */
export interface EvalOptions<A extends TensorArray = TensorArray> extends NormOptions<A> {
  runningMean: ParamArray<A>;
  runningVar: ParamArray<A>;
  /** Where y is written (length of x); may be x itself. */
  out?: DtypeArray<A>;
}

/** The statistics a forward normalized with, as `batchNormTrain` returns them (mean, invStd). */
export interface SavedStats<A extends TensorArray = TensorArray> {
  mean: ParamArray<A>;
  invStd: ParamArray<A>;
}

/** Options of `batchNormBackward`: the forward's settings (axis, gamma, activation and y,
 *  residual), whether its statistics were the batch's, and where dx goes. */
export interface BackwardOptions<A extends TensorArray = TensorArray> {
  axis?: number;
  /** What dy and x hold, as in NormOptions.dtype. */
  dtype?: Dtype;
  gamma?: ParamArray<A> | null;
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
  /** The forward's virtualBatchSize (training only): saved holds one set per group, and each
   *  group is differentiated on its own; dGamma and dBeta are sums over the groups. */
  virtualBatchSize?: number | null;
}

/** Options of the synchronized pieces' backward forms: one set of statistics for the batch. */
export type ShardBackwardOptions<A extends TensorArray = TensorArray> = Omit<BackwardOptions<A>, 'virtualBatchSize'>;

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
export interface BackwardResult<A extends TensorArray = TensorArray> {
  dx: DtypeArray<A>;
  dGamma: ParamArray<A>;
  dBeta: ParamArray<A>;
  /** With residual: true, what flows to the residual; `=== outResidual` when given. */
  dResidual?: DtypeArray<A>;
  /** With statsGrad: true, the gradients with respect to the given mean and variance. */
  dMean?: ParamArray<A>;
  dVar?: ParamArray<A>;
  /** With fingerprint: true, x's fingerprint as the backward read it. */
  fingerprint?: number;
}

/** One implementation of the functional API. */
export interface Backend {
  readonly name: 'native' | 'js';
  /** Training forward: batch statistics, normalization, the running update when given. */
  batchNormTrain<A extends TensorArray>(x: A, shape: readonly number[], options?: TrainOptions<A>): TrainResult<A>;
  /** Inference forward: normalizes with the running statistics. */
  batchNormEval<A extends TensorArray>(x: A, shape: readonly number[], options: EvalOptions<A>): DtypeArray<A>;
  /** dx, dGamma and dBeta for a forward with the saved statistics. */
  batchNormBackward<A extends TensorArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: BackwardOptions<A>,
  ): BackwardResult<A>;
  /** batchNormTrain off the JS thread (native backend); do not touch the arrays until it settles. */
  batchNormTrainAsync<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    options?: TrainOptions<A>,
  ): Promise<TrainResult<A>>;
  /** batchNormEval off the JS thread (native backend). */
  batchNormEvalAsync<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    options: EvalOptions<A>,
  ): Promise<DtypeArray<A>>;
  /** batchNormBackward off the JS thread (native backend). */
  batchNormBackwardAsync<A extends TensorArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: BackwardOptions<A>,
  ): Promise<BackwardResult<A>>;

  /** A position-sensitive checksum of x's bits (a 32-bit unsigned integer, the same on every
   *  backend): any change to one element changes it. The layer keeps a reference to its
   *  input, not a copy, and compares this before backward to refuse a modified input. */
  fingerprint(x: TensorArray): number;
  /** fingerprint off the JS thread (native backend). */
  fingerprintAsync(x: TensorArray): Promise<number>;

  /** Per-channel statistics of one shard of a batch (for synchronized batch norm). */
  batchNormStats<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    options?: { axis?: number; dtype?: Dtype },
  ): ChannelStats;
  /** batchNormStats off the JS thread (native backend). */
  batchNormStatsAsync<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    options?: { axis?: number; dtype?: Dtype },
  ): Promise<ChannelStats>;
  /** Training forward with statistics given by the caller (e.g. merged over every worker). */
  batchNormTrainWithStats<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    stats: ChannelStats,
    options?: ShardTrainOptions<A>,
  ): TrainResult<A>;
  /** batchNormTrainWithStats off the JS thread (native backend). */
  batchNormTrainWithStatsAsync<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    stats: ChannelStats,
    options?: ShardTrainOptions<A>,
  ): Promise<TrainResult<A>>;
  /** sum(dy) and sum(dy * xhat) per channel of one shard. */
  batchNormBackwardSums<A extends TensorArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: ShardBackwardOptions<A>,
  ): GradSums;
  /** batchNormBackwardSums off the JS thread (native backend). */
  batchNormBackwardSumsAsync<A extends TensorArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    options?: ShardBackwardOptions<A>,
  ): Promise<GradSums>;
  /** dx, dGamma, dBeta of one shard from sums reduced over every shard. */
  batchNormBackwardWithSums<A extends TensorArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    sums: GradSums,
    options?: ShardBackwardOptions<A>,
  ): BackwardResult<A>;
  /** batchNormBackwardWithSums off the JS thread (native backend). */
  batchNormBackwardWithSumsAsync<A extends TensorArray>(
    dy: A,
    x: DtypeArray<A>,
    shape: readonly number[],
    saved: SavedStats<A>,
    sums: GradSums,
    options?: ShardBackwardOptions<A>,
  ): Promise<BackwardResult<A>>;
}
