// Ghost batch normalization (Hoffer et al. 2017; Keras `virtual_batch_size`): a Backend
// whose training forward normalizes each group of k consecutive samples along the batch axis
// (axis 0) with that group's own statistics, and whose training backward differentiates each
// group on its own. BatchNorm({ virtualBatchSize }) hands it to its ordinary code, as
// SyncBatchNorm does with the synchronized backend. Each group is one contiguous block of x,
// so the groups together read and write memory once.
//
// The running statistics follow the groups' average, as Keras keeps them: the mean of the
// group means and of the group variances (each M2 / (count - runningVarCorrection)).
import { allocLike, allocParams, namingErrors } from './backend';
import { runAsync, runSync, type Steps } from './kernel-steps';
import type {
  Backend,
  BackwardOptions,
  BackwardResult,
  FloatArray,
  SavedStats,
  TensorArray,
  TrainOptions,
  TrainResult,
} from './types';
import { validateBackward, validateStats, validateTrain } from './validate';

/** The groups of a ghost batch: k samples each, `elements` values per group. */
interface Groups {
  count: number;
  elements: number;
  shape: number[];
  channels: number;
}

function groupsOf(k: number, dims: number[], axis: number, channels: number, length: number): Groups {
  if ((axis < 0 ? axis + dims.length : axis) === 0) {
    throw new RangeError(
      `virtualBatchSize groups samples along axis 0, so the channels must be on another axis, got axis ${axis}`,
    );
  }
  const n = dims[0];
  if (n % k !== 0) {
    throw new RangeError(`x has a batch of ${n} samples, not a multiple of virtualBatchSize ${k}`);
  }
  const count = n / k;
  return { count, elements: count === 0 ? 0 : length / count, shape: [k, ...dims.slice(1)], channels };
}

function* trainSteps(k: number, x: unknown, shape: unknown, options: unknown): Steps<TrainResult> {
  const plan = validateTrain(x, shape, options);
  const g = groupsOf(k, plan.shape, plan.axis, plan.layout.channels, plan.x.length);
  const c = g.channels;
  // x's fingerprint before anything is written (y may be x itself).
  const fingerprint = plan.fingerprint ? ((yield ['fingerprint', [plan.x]]) as number) : undefined;
  const y = plan.out ?? allocLike(plan.x, plan.x.length);
  const mean = allocParams(plan, g.count * c);
  const invStd = allocParams(plan, g.count * c);
  const meanSum = new Float64Array(c);
  const varSum = new Float64Array(c);
  for (let i = 0; i < g.count; i++) {
    const block = (a: TensorArray) => a.subarray(i * g.elements, (i + 1) * g.elements);
    const xs = block(plan.x);
    const stats = (yield ['batchNormStats', [xs, g.shape, { axis: plan.axis, dtype: plan.dtype }]]) as {
      count: number;
      mean: Float64Array;
      m2: Float64Array;
    };
    const r = (yield [
      'batchNormTrainWithStats',
      [
        xs,
        g.shape,
        stats,
        {
          axis: plan.axis,
          dtype: plan.dtype,
          eps: plan.eps,
          gamma: plan.gamma,
          beta: plan.beta,
          activation: plan.relu ? 'relu' : 'none',
          residual: plan.residual ? block(plan.residual) : null,
          out: block(y),
        },
      ],
    ]) as TrainResult;
    mean.set(r.mean, i * c);
    invStd.set(r.invStd, i * c);
    for (let j = 0; j < c; j++) {
      meanSum[j] += stats.mean[j];
      varSum[j] += stats.m2[j] / (stats.count - plan.runningVarCorrection);
    }
  }
  if (plan.runningMean && plan.runningVar && g.count > 0) {
    const m = plan.momentum;
    for (let j = 0; j < c; j++) {
      plan.runningMean[j] = (1 - m) * plan.runningMean[j] + (m * meanSum[j]) / g.count;
      plan.runningVar[j] = (1 - m) * plan.runningVar[j] + (m * varSum[j]) / g.count;
    }
  }
  const result: TrainResult = { y, mean, invStd };
  if (fingerprint !== undefined) result.fingerprint = fingerprint;
  return result;
}

function* backwardSteps(
  k: number,
  dy: unknown,
  x: unknown,
  shape: unknown,
  saved: SavedStats,
  options: BackwardOptions,
): Steps<BackwardResult> {
  // saved holds every group's statistics (count × C); the rest of the call is checked as an
  // ordinary one, with the first group's statistics standing in for saved.
  if (typeof saved !== 'object' || saved === null) validateBackward(dy, x, shape, saved, options);
  const probe = validateStats(x, shape, { axis: options.axis, dtype: options.dtype });
  const g = groupsOf(k, probe.shape, probe.axis, probe.layout.channels, probe.x.length);
  const c = g.channels;
  const perGroup = g.count * c;
  for (const [name, a] of [
    ['saved.mean', saved?.mean],
    ['saved.invStd', saved?.invStd],
  ] as const) {
    if (a?.length !== perGroup) {
      throw new RangeError(
        `${name} must have length ${perGroup} (${g.count} groups of virtualBatchSize ${k} × ${c} channels), got ${a?.length}`,
      );
    }
  }
  const first = (a: FloatArray) => (g.count === 0 ? allocParams(probe, c) : a.subarray(0, c));
  const plan = validateBackward(dy, x, shape, { mean: first(saved.mean), invStd: first(saved.invStd) }, options);
  const fingerprint = plan.fingerprint ? ((yield ['fingerprint', [plan.x]]) as number) : undefined;
  const dx = plan.out ?? allocLike(plan.x, plan.x.length);
  const dResidual = plan.residual ? (plan.outResidual ?? allocLike(plan.x, plan.x.length)) : null;
  const dGamma = allocParams(plan, c);
  const dBeta = allocParams(plan, c);
  const gammaSum = new Float64Array(c);
  const betaSum = new Float64Array(c);
  for (let i = 0; i < g.count; i++) {
    const block = (a: TensorArray) => a.subarray(i * g.elements, (i + 1) * g.elements);
    const stats = (a: FloatArray) => a.subarray(i * c, (i + 1) * c);
    const r = (yield [
      'batchNormBackward',
      [
        block(plan.dy),
        block(plan.x),
        g.shape,
        { mean: stats(saved.mean), invStd: stats(saved.invStd) },
        {
          axis: plan.axis,
          dtype: plan.dtype,
          gamma: plan.gamma,
          activation: plan.y ? 'relu' : 'none',
          y: plan.y ? block(plan.y) : undefined,
          residual: plan.residual,
          outResidual: dResidual ? block(dResidual) : undefined,
          out: block(dx),
        },
      ],
    ]) as BackwardResult;
    for (let j = 0; j < c; j++) {
      gammaSum[j] += r.dGamma[j];
      betaSum[j] += r.dBeta[j];
    }
  }
  dGamma.set(gammaSum);
  dBeta.set(betaSum);
  const result: BackwardResult = { dx, dGamma, dBeta };
  if (dResidual) result.dResidual = dResidual;
  if (fingerprint !== undefined) result.fingerprint = fingerprint;
  return result;
}

export function ghostBackend(kernels: Backend, virtualBatchSize: number): Backend {
  const k = virtualBatchSize;
  // Frozen statistics (eval mode, or training: false) have one set for the whole batch.
  const frozen = (options: BackwardOptions | undefined) => options?.training === false;
  return namingErrors({
    ...kernels,
    batchNormTrain: (x: TensorArray, shape: readonly number[], options?: TrainOptions) =>
      runSync(kernels, trainSteps(k, x, shape, options)),
    batchNormTrainAsync: async (x: TensorArray, shape: readonly number[], options?: TrainOptions) =>
      runAsync(kernels, trainSteps(k, x, shape, options)),
    batchNormBackward: (dy, x, shape, saved, options) =>
      frozen(options)
        ? kernels.batchNormBackward(dy, x, shape, saved, options)
        : runSync(kernels, backwardSteps(k, dy, x, shape, saved, options ?? {})),
    batchNormBackwardAsync: async (dy, x, shape, saved, options) =>
      frozen(options)
        ? kernels.batchNormBackwardAsync(dy, x, shape, saved, options)
        : runAsync(kernels, backwardSteps(k, dy, x, shape, saved, options ?? {})),
  } satisfies Backend);
}
