// Batch Renormalization (Ioffe, NeurIPS 2017; Keras `renorm`): a training step normalizes with
// the batch statistics and then corrects towards the running ones,
//   y = gamma·(x̂·r + d) + beta,  r = clip(σ_B / σ, 1/rMax, rMax),  d = clip((μ_B − μ) / σ, −dMax, dMax),
// with σ_B = √(var_B + eps) of the batch (biased variance) and μ, σ = √(runningVar + eps) the
// running statistics before this step's update. r and d are constants for backward, so the
// step is an ordinary one with gamma' = gamma·r and beta' = beta + gamma·d, and
// dGamma = r·Σdy·x̂ + d·Σdy. BatchNorm({ renorm }) hands this Backend to its ordinary code;
// the r and d of each forward ride with its saved statistics to the backward.
import { allocLike, namingErrors } from './backend';
import { runAsync, runSync, type Steps } from './kernel-steps';
import type {
  Backend,
  BackwardOptions,
  BackwardResult,
  ChannelStats,
  FloatArray,
  SavedStats,
  TensorArray,
  TrainOptions,
  TrainResult,
} from './types';
import { describe, validateTrain } from './validate';

/** Batch Renormalization's settings (Ioffe 2017; Keras renorm_clipping, renorm_momentum). */
export interface RenormOptions {
  /** r is clipped to [1/rMax, rMax]; rMax >= 1 (1: r = 1). */
  rMax: number;
  /** d is clipped to [-dMax, dMax]; dMax >= 0 (0: d = 0). rMax 1 and dMax 0 give plain BN. */
  dMax: number;
  /** The running statistics' momentum while renormalizing (Keras's renorm_momentum, as
   *  1 − it); default: the layer's. */
  momentum?: number;
}

/** The corrections of one forward, per channel. */
interface Correction {
  r: Float64Array;
  d: Float64Array;
}

export function checkRenorm(v: unknown): RenormOptions | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) {
    throw new TypeError(`BatchNorm: renorm must be an object { rMax, dMax, momentum? } or null, got ${describe(v)}`);
  }
  const o = v as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (key !== 'rMax' && key !== 'dMax' && key !== 'momentum') {
      throw new TypeError(`BatchNorm: unknown renorm option ${JSON.stringify(key)} (expected rMax, dMax, momentum)`);
    }
  }
  const number = (name: string, ok: (n: number) => boolean, what: string): number => {
    const n = o[name];
    if (typeof n !== 'number') throw new TypeError(`BatchNorm: renorm.${name} must be a number, got ${describe(n)}`);
    if (!ok(n)) throw new RangeError(`BatchNorm: renorm.${name} must be ${what}, got ${n}`);
    return n;
  };
  const rMax = number('rMax', (n) => n >= 1 && n < Number.POSITIVE_INFINITY, 'a finite number >= 1');
  const dMax = number('dMax', (n) => n >= 0 && n < Number.POSITIVE_INFINITY, 'a finite number >= 0');
  const renorm: RenormOptions = { rMax, dMax };
  if (o.momentum !== undefined) renorm.momentum = number('momentum', (n) => n >= 0 && n <= 1, 'in [0, 1]');
  return renorm;
}

const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

function correctionOf(
  stats: ChannelStats,
  runningMean: FloatArray,
  runningVar: FloatArray,
  eps: number,
  o: RenormOptions,
) {
  const c = stats.mean.length;
  const r = new Float64Array(c);
  const d = new Float64Array(c);
  for (let j = 0; j < c; j++) {
    const sigmaBatch = Math.sqrt(stats.m2[j] / stats.count + eps);
    const sigma = Math.sqrt(runningVar[j] + eps);
    r[j] = clip(sigmaBatch / sigma, 1 / o.rMax, o.rMax);
    d[j] = clip((stats.mean[j] - runningMean[j]) / sigma, -o.dMax, o.dMax);
  }
  return { r, d };
}

/** gamma·r and beta + gamma·d, in the parameters' dtype (`like`'s). */
function correctedAffine(like: FloatArray, gamma: FloatArray | null, beta: FloatArray | null, k: Correction) {
  const c = k.r.length;
  const g = allocLike(like, c);
  const b = allocLike(like, c);
  for (let j = 0; j < c; j++) {
    const gj = gamma ? gamma[j] : 1;
    g[j] = gj * k.r[j];
    b[j] = (beta ? beta[j] : 0) + gj * k.d[j];
  }
  return { gamma: g, beta: b };
}

export function renormBackend(kernels: Backend, renorm: RenormOptions): Backend {
  // Each forward's r and d, found again from the saved statistics backward is given.
  const corrections = new WeakMap<FloatArray, Correction>();

  function* train(x: TensorArray, shape: readonly number[], options: TrainOptions = {}): Steps<TrainResult> {
    const plan = validateTrain(x, shape, options);
    // Without running statistics there is nothing to renormalize towards: a plain step.
    if (!plan.runningMean || !plan.runningVar) {
      return (yield ['batchNormTrain', [x, shape, options]]) as TrainResult;
    }
    const stats = (yield ['batchNormStats', [x, shape, { axis: plan.axis, dtype: plan.dtype }]]) as ChannelStats;
    const k = correctionOf(stats, plan.runningMean, plan.runningVar, plan.eps, renorm);
    const affine = correctedAffine(plan.runningMean, plan.gamma, plan.beta, k);
    const momentum = renorm.momentum ?? plan.momentum;
    const r = (yield [
      'batchNormTrainWithStats',
      [x, shape, stats, { ...options, ...affine, momentum }],
    ]) as TrainResult;
    corrections.set(r.mean, k);
    return r;
  }

  function* backward(
    dy: TensorArray,
    x: TensorArray,
    shape: readonly number[],
    saved: SavedStats,
    options: BackwardOptions = {},
  ): Steps<BackwardResult> {
    const k = options.training !== false && saved ? corrections.get(saved.mean) : undefined;
    if (!k) return (yield ['batchNormBackward', [dy, x, shape, saved, options]]) as BackwardResult;
    const gamma = options.gamma ?? null;
    const affine = correctedAffine(saved.mean, gamma, null, k);
    const r = (yield [
      'batchNormBackward',
      [dy, x, shape, saved, { ...options, gamma: affine.gamma }],
    ]) as BackwardResult;
    // The kernel's dGamma is Σdy·x̂; y depends on gamma through x̂·r + d.
    for (let j = 0; j < k.r.length; j++) r.dGamma[j] = k.r[j] * r.dGamma[j] + k.d[j] * r.dBeta[j];
    return r;
  }

  return namingErrors({
    ...kernels,
    batchNormTrain: (x, shape, options) => runSync(kernels, train(x, shape, options)),
    batchNormTrainAsync: async (x, shape, options) => runAsync(kernels, train(x, shape, options)),
    batchNormBackward: (dy, x, shape, saved, options) => runSync(kernels, backward(dy, x, shape, saved, options)),
    batchNormBackwardAsync: async (dy, x, shape, saved, options) =>
      runAsync(kernels, backward(dy, x, shape, saved, options)),
  } satisfies Backend);
}
