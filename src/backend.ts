// Turns a set of kernels into a Backend: validate -> allocate outputs -> kernel. Both
// backends are built here, so they differ only in the kernels they call.
import type {
  Backend,
  BackwardResult,
  ChannelStats,
  DtypeArray,
  EvalOptions,
  FloatArray,
  GradSums,
  TrainResult,
} from './types';
import {
  type BackwardPlan,
  type BackwardWithSumsPlan,
  checkFixedLength,
  type EvalPlan,
  fromFunction,
  type StatsPlan,
  type TrainPlan,
  type TrainWithStatsPlan,
  validateBackward,
  validateBackwardSums,
  validateBackwardWithSums,
  validateEval,
  validateFingerprint,
  validateStats,
  validateTrain,
  validateTrainWithStats,
} from './validate';

/** What a backend provides: kernels that write into arrays allocated for them. */
export interface Kernels {
  /** print: where x's fingerprint goes (length 1), or null when not asked for. */
  train(plan: TrainPlan, y: FloatArray, mean: FloatArray, invStd: FloatArray, print: Float64Array | null): void;
  trainWithStats(
    plan: TrainWithStatsPlan,
    y: FloatArray,
    mean: FloatArray,
    invStd: FloatArray,
    print: Float64Array | null,
  ): void;
  evaluate(plan: EvalPlan, y: FloatArray): void;
  /** dResidual: where the residual's gradient goes (null: no residual). Written before dx,
   *  which may overwrite dy. */
  backward(
    plan: BackwardPlan,
    dx: FloatArray,
    dGamma: FloatArray,
    dBeta: FloatArray,
    dResidual: FloatArray | null,
    print: Float64Array | null,
  ): void;
  backwardWithSums(
    plan: BackwardWithSumsPlan,
    dx: FloatArray,
    dGamma: FloatArray,
    dBeta: FloatArray,
    dResidual: FloatArray | null,
    print: Float64Array | null,
  ): void;
  stats(plan: StatsPlan, mean: Float64Array, m2: Float64Array): void;
  backwardSums(plan: BackwardPlan, sumDy: Float64Array, sumDyXhat: Float64Array): void;
  /** A checksum of x's bits, the same number on every backend (see js/fingerprint.ts). */
  fingerprint(x: FloatArray): number;
}

/** The same kernels returning promises (native: run off the JS thread). */
export type AsyncKernels = {
  [K in keyof Kernels]: (...args: Parameters<Kernels[K]>) => Promise<ReturnType<Kernels[K]>>;
};

/** The one-element array a kernel writes x's fingerprint to, when the call asked for it. */
function printFor(plan: { fingerprint: boolean }): Float64Array | null {
  return plan.fingerprint ? new Float64Array(1) : null;
}

/** The fingerprint onto the result, when asked for. */
function withPrint<R extends { fingerprint?: number }>(r: R, print: Float64Array | null): R {
  if (print) r.fingerprint = print[0];
  return r;
}

/** The gradients of frozen statistics, from the sums the backward already made: with
 *  y = gamma·(x − mean)·invStd + beta and invStd = (var + eps)^(-1/2),
 *  dMean = −gamma·invStd·Σdy = −gamma·invStd·dBeta and
 *  dVar = −½·gamma·invStd³·Σdy·(x − mean) = −½·gamma·invStd²·dGamma (dy masked by a ReLU). */
function withStatsGrad(r: BackwardResult, plan: BackwardPlan): BackwardResult {
  if (!plan.statsGrad) return r;
  const c = plan.layout.channels;
  const dMean = allocLike(plan.x, c);
  const dVar = allocLike(plan.x, c);
  for (let i = 0; i < c; i++) {
    const g = plan.gamma ? plan.gamma[i] : 1;
    const s = plan.invStd[i];
    dMean[i] = -g * s * r.dBeta[i];
    dVar[i] = -0.5 * g * s * s * r.dGamma[i];
  }
  r.dMean = dMean;
  r.dVar = dVar;
  return r;
}

/** A new zero-filled array of `like`'s dtype. */
export function allocLike(like: FloatArray, length: number): FloatArray {
  return like instanceof Float32Array ? new Float32Array(length) : new Float64Array(length);
}

/** Where a backend gets the tensor-sized outputs the caller did not pass (y, dx): every
 *  element is written by the kernel, so the memory may come uninitialized. */
export type OutputAllocator = (like: FloatArray, length: number) => FloatArray;

/** A training batch with no samples (m = 0). PyTorch gives an empty output and leaves the
 *  running statistics alone; there are no batch statistics (NaN, as the mean of nothing) and
 *  nothing for a kernel to do, so no kernel runs. Backward of it: empty dx, zero dGamma/dBeta. */
function isEmptyBatch(plan: { layout: { outer: number; inner: number } }): boolean {
  return plan.layout.outer * plan.layout.inner === 0;
}

/** The result of an empty training batch: no statistics (NaN), running statistics untouched. */
function emptyTrain(r: TrainResult, print: Float64Array | null): TrainResult {
  r.mean.fill(Number.NaN);
  r.invStd.fill(Number.NaN);
  return withPrint(r, print);
}

function trainOutputs(plan: TrainPlan, allocate: OutputAllocator): TrainResult {
  const c = plan.layout.channels;
  return { y: plan.out ?? allocate(plan.x, plan.x.length), mean: allocLike(plan.x, c), invStd: allocLike(plan.x, c) };
}

function backwardOutputs(plan: BackwardPlan, allocate: OutputAllocator): BackwardResult {
  const c = plan.layout.channels;
  const r: BackwardResult = {
    dx: plan.out ?? allocate(plan.x, plan.x.length),
    dGamma: allocLike(plan.x, c),
    dBeta: allocLike(plan.x, c),
  };
  if (plan.residual) r.dResidual = plan.outResidual ?? allocate(plan.x, plan.x.length);
  return r;
}

function statsOutputs(plan: StatsPlan): ChannelStats {
  const c = plan.layout.channels;
  return { count: plan.layout.outer * plan.layout.inner, mean: new Float64Array(c), m2: new Float64Array(c) };
}

function sumsOutputs(plan: BackwardPlan): GradSums {
  const c = plan.layout.channels;
  return { count: plan.layout.outer * plan.layout.inner, sumDy: new Float64Array(c), sumDyXhat: new Float64Array(c) };
}

/** Async kernels that run the sync ones (the js backend has no other thread to use). */
export function promisedKernels(k: Kernels): AsyncKernels {
  const wrap =
    <A extends unknown[], R>(f: (...args: A) => R) =>
    async (...args: A) =>
      f(...args);
  return {
    train: wrap(k.train),
    trainWithStats: wrap(k.trainWithStats),
    evaluate: wrap(k.evaluate),
    backward: wrap(k.backward),
    backwardWithSums: wrap(k.backwardWithSums),
    stats: wrap(k.stats),
    backwardSums: wrap(k.backwardSums),
    fingerprint: wrap(k.fingerprint),
  };
}

/** The kernels a backend runs on tensors below `minElements` (native: the js ones, since a
 *  call into native code costs more than the work on a tiny tensor). */
export interface SmallTensorKernels {
  minElements: number;
  sync: Kernels;
  async: AsyncKernels;
}

/** The backend `b` with every function's errors naming that function (see `fromFunction`):
 *  `batchNormTrain: eps must be …`. Applied to every Backend the package makes. */
export function namingErrors(b: Backend): Backend {
  const named: Record<string, unknown> = { name: b.name };
  for (const [key, value] of Object.entries(b)) {
    if (typeof value !== 'function') continue;
    const f = value as (...args: unknown[]) => unknown;
    named[key] = key.endsWith('Async')
      ? (...args: unknown[]) => {
          try {
            return (f(...args) as Promise<unknown>).catch((e: unknown) => {
              throw fromFunction(key, e);
            });
          } catch (e) {
            throw fromFunction(key, e);
          }
        }
      : (...args: unknown[]) => {
          try {
            return f(...args);
          } catch (e) {
            throw fromFunction(key, e);
          }
        };
  }
  return Object.freeze(named) as unknown as Backend;
}

export function createBackend(
  name: Backend['name'],
  kernels: Kernels,
  asyncKernels: AsyncKernels,
  small: SmallTensorKernels = { minElements: 0, sync: kernels, async: asyncKernels },
  allocate: OutputAllocator = allocLike,
): Backend {
  // Picked in every method of every backend alike, so a tiny call on native takes exactly
  // the js backend's path (no extra call in between).
  const sync = (plan: { x: FloatArray }) => (plan.x.length < small.minElements ? small.sync : kernels);
  const async = (plan: { x: FloatArray }) => (plan.x.length < small.minElements ? small.async : asyncKernels);
  return namingErrors({
    name,
    batchNormTrain(x, shape, options) {
      const plan = validateTrain(x, shape, options);
      const r = trainOutputs(plan, allocate);
      const print = printFor(plan);
      if (isEmptyBatch(plan)) return emptyTrain(r, print);
      sync(plan).train(plan, r.y, r.mean, r.invStd, print);
      return withPrint(r, print);
    },
    async batchNormTrainAsync(x, shape, options) {
      const plan = validateTrain(x, shape, options);
      checkFixedLength(plan);
      const r = trainOutputs(plan, allocate);
      const print = printFor(plan);
      if (isEmptyBatch(plan)) return emptyTrain(r, print);
      await async(plan).train(plan, r.y, r.mean, r.invStd, print);
      return withPrint(r, print);
    },
    batchNormEval<A extends FloatArray>(x: A, shape: readonly number[], options: EvalOptions<A>) {
      const plan = validateEval(x, shape, options);
      const y = plan.out ?? allocate(plan.x, plan.x.length);
      sync(plan).evaluate(plan, y);
      // validate.ts made out (and allocate made y) of x's dtype.
      return y as DtypeArray<A>;
    },
    async batchNormEvalAsync<A extends FloatArray>(x: A, shape: readonly number[], options: EvalOptions<A>) {
      const plan = validateEval(x, shape, options);
      checkFixedLength(plan);
      const y = plan.out ?? allocate(plan.x, plan.x.length);
      await async(plan).evaluate(plan, y);
      return y as DtypeArray<A>;
    },
    batchNormBackward(dy, x, shape, saved, options) {
      const plan = validateBackward(dy, x, shape, saved, options);
      const r = backwardOutputs(plan, allocate);
      const print = printFor(plan);
      if (!isEmptyBatch(plan)) sync(plan).backward(plan, r.dx, r.dGamma, r.dBeta, r.dResidual ?? null, print);
      return withStatsGrad(withPrint(r, print), plan);
    },
    async batchNormBackwardAsync(dy, x, shape, saved, options) {
      const plan = validateBackward(dy, x, shape, saved, options);
      checkFixedLength(plan);
      const r = backwardOutputs(plan, allocate);
      const print = printFor(plan);
      if (!isEmptyBatch(plan)) await async(plan).backward(plan, r.dx, r.dGamma, r.dBeta, r.dResidual ?? null, print);
      return withStatsGrad(withPrint(r, print), plan);
    },
    batchNormStats(x, shape, options) {
      const plan = validateStats(x, shape, options);
      const r = statsOutputs(plan);
      sync(plan).stats(plan, r.mean, r.m2);
      return r;
    },
    async batchNormStatsAsync(x, shape, options) {
      const plan = validateStats(x, shape, options);
      checkFixedLength(plan);
      const r = statsOutputs(plan);
      await async(plan).stats(plan, r.mean, r.m2);
      return r;
    },
    batchNormTrainWithStats(x, shape, stats, options) {
      const plan = validateTrainWithStats(x, shape, stats, options);
      const r = trainOutputs(plan, allocate);
      const print = printFor(plan);
      sync(plan).trainWithStats(plan, r.y, r.mean, r.invStd, print);
      return withPrint(r, print);
    },
    async batchNormTrainWithStatsAsync(x, shape, stats, options) {
      const plan = validateTrainWithStats(x, shape, stats, options);
      checkFixedLength(plan);
      const r = trainOutputs(plan, allocate);
      const print = printFor(plan);
      await async(plan).trainWithStats(plan, r.y, r.mean, r.invStd, print);
      return withPrint(r, print);
    },
    batchNormBackwardSums(dy, x, shape, saved, options) {
      const plan = validateBackwardSums(dy, x, shape, saved, options);
      const r = sumsOutputs(plan);
      sync(plan).backwardSums(plan, r.sumDy, r.sumDyXhat);
      return r;
    },
    async batchNormBackwardSumsAsync(dy, x, shape, saved, options) {
      const plan = validateBackwardSums(dy, x, shape, saved, options);
      checkFixedLength(plan);
      const r = sumsOutputs(plan);
      await async(plan).backwardSums(plan, r.sumDy, r.sumDyXhat);
      return r;
    },
    batchNormBackwardWithSums(dy, x, shape, saved, sums, options) {
      const plan = validateBackwardWithSums(dy, x, shape, saved, sums, options);
      const r = backwardOutputs(plan, allocate);
      const print = printFor(plan);
      sync(plan).backwardWithSums(plan, r.dx, r.dGamma, r.dBeta, r.dResidual ?? null, print);
      return withStatsGrad(withPrint(r, print), plan);
    },
    async batchNormBackwardWithSumsAsync(dy, x, shape, saved, sums, options) {
      const plan = validateBackwardWithSums(dy, x, shape, saved, sums, options);
      checkFixedLength(plan);
      const r = backwardOutputs(plan, allocate);
      const print = printFor(plan);
      await async(plan).backwardWithSums(plan, r.dx, r.dGamma, r.dBeta, r.dResidual ?? null, print);
      return withStatsGrad(withPrint(r, print), plan);
    },
    fingerprint(x) {
      const plan = validateFingerprint(x);
      return sync(plan).fingerprint(plan.x);
    },
    async fingerprintAsync(x) {
      const plan = validateFingerprint(x);
      checkFixedLength(plan);
      return async(plan).fingerprint(plan.x);
    },
  } satisfies Backend);
}
