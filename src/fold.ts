// Folding an eval-mode BatchNorm into the convolution or linear layer before it, for
// inference: BN(conv(x)) = conv'(x) with W'[o] = W[o] * s[o], b' = (b - mean) * s + beta,
// s = gamma / sqrt(runningVar + eps). One layer fewer, one pass over the activations fewer.
import { BatchNorm } from './layer';
import { layoutOf } from './layout';
import { floatDtype, plainView } from './typed-arrays';
import type { FloatArray } from './types';
import { DEFAULT_EPS, describe, readDims } from './validate';

/** The layer before the BatchNorm: a conv or linear weight and its bias. */
export interface FoldTarget {
  /** Row-major weight; its output-channel axis has length numFeatures ([outC, ...] for
   *  conv and linear layers, PyTorch's layout). */
  weight: FloatArray;
  /** Per-output-channel bias, of weight's dtype; null/omitted = no bias. */
  bias?: FloatArray | null;
  /** The output-channel axis of weight. Default 0; another axis (e.g. 1 for a transposed
   *  convolution's [inC, outC, kH, kW]) needs `shape`. */
  outAxis?: number;
  /** weight's shape; only needed when outAxis is not 0. */
  shape?: readonly number[];
}

/** A layer whose eval mode can be folded: BatchNorm, SyncBatchNorm, LazyBatchNorm (once it has
 *  seen an input). Its mode is checked: a training-mode layer normalizes with batch statistics. */
export interface FoldableLayer {
  readonly training: boolean;
  readonly eps: number;
  readonly gamma: FloatArray | null;
  readonly beta: FloatArray | null;
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
}

/** Eval-mode batch-norm parameters (a BatchNorm's, or loaded from elsewhere). */
export interface FoldableBatchNorm {
  gamma?: FloatArray | null;
  beta?: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  /** Default 1e-5. */
  eps?: number;
}

/** The folded layer's parameters: the layer with them computes BatchNorm-in-eval of its output. */
export interface FoldedLayer {
  /** New weight, same dtype and layout as the given one. */
  weight: FloatArray;
  /** New bias (always present: the BatchNorm shift needs one), weight's dtype. */
  bias: FloatArray;
}

/** Weight and bias such that the layer with them equals BatchNorm-in-eval of the layer's
 *  output. A fused ReLU of the BatchNorm is not part of the fold: apply it after. */
export function foldBatchNorm(layer: FoldTarget, bn: FoldableLayer | FoldableBatchNorm): FoldedLayer {
  const norm = checkBatchNorm(bn);
  const channels = norm.runningMean.length;
  const { weight, bias, outer, inner } = checkTarget(layer, channels);
  const scale = new Float64Array(channels);
  const folded = {
    weight: weight.slice(),
    bias: floatDtype(weight) === 'float32' ? new Float32Array(channels) : new Float64Array(channels),
  };
  for (let c = 0; c < channels; c++) {
    // In double: the float32 rounding happens once, on the stored result.
    scale[c] = (norm.gamma ? norm.gamma[c] : 1) / Math.sqrt(norm.runningVar[c] + norm.eps);
    folded.bias[c] = ((bias ? bias[c] : 0) - norm.runningMean[c]) * scale[c] + (norm.beta ? norm.beta[c] : 0);
  }
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const start = (o * channels + c) * inner;
      for (let i = start; i < start + inner; i++) folded.weight[i] = weight[i] * scale[c];
    }
  }
  return folded;
}

/** A layer (anything with a boolean `training`, as every layer class here has) or plain parameters. */
function isLayer(bn: unknown): bn is FoldableLayer {
  return (
    bn instanceof BatchNorm ||
    (typeof bn === 'object' && bn !== null && typeof (bn as FoldableLayer).training === 'boolean')
  );
}

function checkBatchNorm(bn: unknown): Required<FoldableBatchNorm> {
  if (isLayer(bn)) {
    if (!bn.runningMean || !bn.runningVar) {
      throw new TypeError(
        'foldBatchNorm: bn has no running statistics (trackRunningStats: false, or a LazyBatchNorm before its first input), so it normalizes with batch statistics, which no fixed weight can reproduce',
      );
    }
    // As PyTorch's fuse_conv_bn_eval: a training-mode layer normalizes with batch statistics.
    if (bn.training) throw new Error('foldBatchNorm: bn is in training mode; call bn.eval() first');
    return { gamma: bn.gamma, beta: bn.beta, runningMean: bn.runningMean, runningVar: bn.runningVar, eps: bn.eps };
  }
  if (typeof bn !== 'object' || bn === null) {
    throw new TypeError(
      `foldBatchNorm: bn must be a BatchNorm or { gamma, beta, runningMean, runningVar, eps }, got ${describe(bn)}`,
    );
  }
  const o = bn as Record<string, unknown>;
  const runningMean = checkChannels('bn.runningMean', o.runningMean, null);
  const channels = runningMean.length;
  const eps = o.eps === undefined ? DEFAULT_EPS : o.eps;
  if (typeof eps !== 'number') throw new TypeError(`foldBatchNorm: bn.eps must be a number, got ${describe(eps)}`);
  if (!Number.isFinite(eps) || eps <= 0)
    throw new RangeError(`foldBatchNorm: bn.eps must be a finite number > 0, got ${eps}`);
  return {
    runningMean,
    runningVar: checkChannels('bn.runningVar', o.runningVar, channels),
    gamma: o.gamma === undefined || o.gamma === null ? null : checkChannels('bn.gamma', o.gamma, channels),
    beta: o.beta === undefined || o.beta === null ? null : checkChannels('bn.beta', o.beta, channels),
    eps,
  };
}

/** A real float array of any realm, as a plain view (see typed-arrays.ts). */
function checkFloatArray(name: string, v: unknown): FloatArray {
  const dtype = floatDtype(v);
  if (dtype === null) {
    throw new TypeError(`foldBatchNorm: ${name} must be a Float32Array or Float64Array, got ${describe(v)}`);
  }
  return plainView(v as FloatArray, dtype);
}

function checkChannels(name: string, v: unknown, channels: number | null): FloatArray {
  const a = checkFloatArray(name, v);
  if (channels !== null && a.length !== channels) {
    throw new RangeError(
      `foldBatchNorm: ${name} must have length ${channels} (the number of channels), got ${a.length}`,
    );
  }
  return a;
}

/** The weight seen as [outer, outC, inner] around its output-channel axis. */
function checkTarget(layer: unknown, channels: number) {
  if (typeof layer !== 'object' || layer === null) {
    throw new TypeError(`foldBatchNorm: layer must be an object { weight, bias }, got ${describe(layer)}`);
  }
  const o = layer as Record<string, unknown>;
  const weight = checkFloatArray('layer.weight', o.weight);
  let bias: FloatArray | null = null;
  const givenBias = o.bias;
  if (givenBias !== undefined && givenBias !== null) {
    if (floatDtype(givenBias) !== floatDtype(weight)) {
      throw new TypeError(
        `foldBatchNorm: layer.bias must be a ${weight.constructor.name} like layer.weight, got ${describe(givenBias)}`,
      );
    }
    bias = checkChannels('layer.bias', givenBias, channels);
  }
  const givenAxis = o.outAxis;
  const givenShape = o.shape;
  const outAxis = givenAxis === undefined ? 0 : givenAxis;
  if (typeof outAxis !== 'number' || !Number.isSafeInteger(outAxis)) {
    throw new TypeError(`foldBatchNorm: layer.outAxis must be an integer, got ${describe(outAxis)}`);
  }
  if (givenShape === undefined) {
    if (outAxis !== 0) throw new TypeError(`foldBatchNorm: layer.shape is required with outAxis ${outAxis}`);
    if (weight.length % channels !== 0) {
      throw new RangeError(
        `foldBatchNorm: layer.weight has length ${weight.length}, not a multiple of the ${channels} channels of bn`,
      );
    }
    return { weight, bias, outer: 1, inner: weight.length / channels };
  }
  const shape = readDims(givenShape);
  if (shape === null || shape.length < 1) {
    throw new TypeError(
      `foldBatchNorm: layer.shape must be an array of non-negative integers, got ${describe(givenShape)}`,
    );
  }
  if (outAxis < -shape.length || outAxis >= shape.length) {
    throw new RangeError(
      `foldBatchNorm: layer.outAxis must be in [${-shape.length}, ${shape.length - 1}], got ${outAxis}`,
    );
  }
  const size = shape.reduce((p: number, d: number) => p * d, 1);
  if (size !== weight.length) {
    throw new RangeError(
      `foldBatchNorm: layer.shape [${shape.join(', ')}] has ${size} elements but layer.weight has length ${weight.length}`,
    );
  }
  const layout = layoutOf(shape, outAxis);
  if (layout.channels !== channels) {
    throw new RangeError(
      `foldBatchNorm: layer.weight has ${layout.channels} output channels (axis ${outAxis}) but bn has ${channels}`,
    );
  }
  return { weight, bias, outer: layout.outer, inner: layout.inner };
}
