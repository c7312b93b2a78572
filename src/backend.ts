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
  TensorArray,
  TrainResult,
} from './types';
import {
  type BackwardPlan,
  type BackwardWithSumsPlan,
  checkFixedLength,
  type EvalPlan,
  type FloatPlan,
  fromFunction,
  type StatsPlan,
  type TensorsOf,
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

/** A plan as kernels of tensor type T see it: Kernels<FloatArray> (the js kernels) get float
 *  plans only (see FloatPlan), Kernels (native) every plan. */
type On<P, T extends TensorArray> = TensorArray extends T ? P : FloatPlan<P>;

/** What a backend provides: kernels that write into arrays allocated for them. Tensors (y,
 *  dx, dResidual) have x's array type T, parameters and statistics the plan's parameter type. */
export interface Kernels<T extends TensorArray = TensorArray> {
  /** print: where x's fingerprint goes (length 1), or null when not asked for. */
  train(plan: On<TrainPlan, T>, y: T, mean: FloatArray, invStd: FloatArray, print: Float64Array | null): void;
  trainWithStats(
    plan: On<TrainWithStatsPlan, T>,
    y: T,
    mean: FloatArray,
    invStd: FloatArray,
    print: Float64Array | null,
  ): void;
  evaluate(plan: On<EvalPlan, T>, y: T): void;
  /** dResidual: where the residual's gradient goes (null: no residual). Written before dx,
   *  which may overwrite dy. */
  backward(
    plan: On<BackwardPlan, T>,
    dx: T,
    dGamma: FloatArray,
    dBeta: FloatArray,
    dResidual: T | null,
    print: Float64Array | null,
  ): void;
  backwardWithSums(
    plan: On<BackwardWithSumsPlan, T>,
    dx: T,
    dGamma: FloatArray,
    dBeta: FloatArray,
    dResidual: T | null,
    print: Float64Array | null,
  ): void;
  stats(plan: On<StatsPlan, T>, mean: Float64Array, m2: Float64Array): void;
  backwardSums(plan: On<BackwardPlan, T>, sumDy: Float64Array, sumDyXhat: Float64Array): void;
  /** A checksum of x's bits, the same number on every backend (see js/fingerprint.ts). */
  fingerprint(x: T): number;
}

/** The same kernels returning promises (native: run off the JS thread). */
export type AsyncKernels<T extends TensorArray = TensorArray> = {
  [K in keyof Kernels<T>]: (...args: Parameters<Kernels<T>[K]>) => Promise<ReturnType<Kernels<T>[K]>>;
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
  const dMean = allocParams(plan, c);
  const dVar = allocParams(plan, c);
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

/** A new zero-filled array of `like`'s type. */
export function allocLike(like: TensorArray, length: number): TensorArray {
  if (like instanceof Float32Array) return new Float32Array(length);
  return like instanceof Float64Array ? new Float64Array(length) : new Uint16Array(length);
}

/** A new zero-filled array for parameters or statistics of the plan's dtype: float64 for
 *  float64 tensors, float32 for every other (the 16-bit formats' are float32, as PyTorch's). */
export function allocParams(plan: TensorsOf, length: number): FloatArray {
  return plan.dtype === 'float64' ? new Float64Array(length) : new Float32Array(length);
}

/** Where a backend gets the tensor-sized outputs the caller did not pass (y, dx): every
 *  element is written by the kernel, so the memory may come uninitialized. */
export type OutputAllocator = (like: TensorArray, length: number) => TensorArray;

/** Float16Array where the runtime has one (Node 24 on), else undefined. */
const Float16ArrayClass = (globalThis as { Float16Array?: new (b: ArrayBufferLike, o: number, n: number) => unknown })
  .Float16Array;

/** A tensor the call made, as the caller gets it: the kernels' Uint16Array seen as a
 *  Float16Array when x came as one. */
function asGiven<T extends TensorArray>(plan: TensorsOf, a: T): T {
  if (!plan.float16Array || Float16ArrayClass === undefined) return a;
  return new Float16ArrayClass(a.buffer, a.byteOffset, a.length) as T;
}

/** The results' tensors as the caller gets them (see asGiven). */
function givenTensors<R extends { y?: TensorArray; dx?: TensorArray; dResidual?: TensorArray }>(
  plan: TensorsOf,
  r: R,
): R {
  if (!plan.float16Array) return r;
  if (r.y) r.y = asGiven(plan, r.y);
  if (r.dx) r.dx = asGiven(plan, r.dx);
  if (r.dResidual) r.dResidual = asGiven(plan, r.dResidual);
  return r;
}

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
  // One set of statistics per group of a ghost batch.
  const c = plan.groups * plan.layout.channels;
  return { y: plan.out ?? allocate(plan.x, plan.x.length), mean: allocParams(plan, c), invStd: allocParams(plan, c) };
}

function backwardOutputs(plan: BackwardPlan, allocate: OutputAllocator): BackwardResult {
  const c = plan.layout.channels;
  const r: BackwardResult = {
    dx: plan.out ?? allocate(plan.x, plan.x.length),
    dGamma: allocParams(plan, c),
    dBeta: allocParams(plan, c),
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
export function promisedKernels<T extends TensorArray>(k: Kernels<T>): AsyncKernels<T> {
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
  const sync = (plan: { x: TensorArray }) => (plan.x.length < small.minElements ? small.sync : kernels);
  const async = (plan: { x: TensorArray }) => (plan.x.length < small.minElements ? small.async : asyncKernels);
  return namingErrors({
    name,
    batchNormTrain(x, shape, options) {
      const plan = validateTrain(x, shape, options);
      const r = trainOutputs(plan, allocate);
      const print = printFor(plan);
      if (isEmptyBatch(plan)) return givenTensors(plan, emptyTrain(r, print));
      sync(plan).train(plan, r.y, r.mean, r.invStd, print);
      return givenTensors(plan, withPrint(r, print));
    },
    async batchNormTrainAsync(x, shape, options) {
      const plan = validateTrain(x, shape, options);
      checkFixedLength(plan);
      const r = trainOutputs(plan, allocate);
      const print = printFor(plan);
      if (isEmptyBatch(plan)) return givenTensors(plan, emptyTrain(r, print));
      await async(plan).train(plan, r.y, r.mean, r.invStd, print);
      return givenTensors(plan, withPrint(r, print));
    },
    batchNormEval<A extends TensorArray>(x: A, shape: readonly number[], options: EvalOptions<A>) {
      const plan = validateEval(x, shape, options);
      const y = plan.out ?? allocate(plan.x, plan.x.length);
      sync(plan).evaluate(plan, y);
      // validate.ts made out (and allocate made y) of x's dtype.
      return asGiven(plan, y) as DtypeArray<A>;
    },
    async batchNormEvalAsync<A extends TensorArray>(x: A, shape: readonly number[], options: EvalOptions<A>) {
      const plan = validateEval(x, shape, options);
      checkFixedLength(plan);
      const y = plan.out ?? allocate(plan.x, plan.x.length);
      await async(plan).evaluate(plan, y);
      return asGiven(plan, y) as DtypeArray<A>;
    },
    batchNormBackward(dy, x, shape, saved, options) {
      const plan = validateBackward(dy, x, shape, saved, options);
      const r = backwardOutputs(plan, allocate);
      const print = printFor(plan);
      if (!isEmptyBatch(plan)) sync(plan).backward(plan, r.dx, r.dGamma, r.dBeta, r.dResidual ?? null, print);
      return givenTensors(plan, withStatsGrad(withPrint(r, print), plan));
    },
    async batchNormBackwardAsync(dy, x, shape, saved, options) {
      const plan = validateBackward(dy, x, shape, saved, options);
      checkFixedLength(plan);
      const r = backwardOutputs(plan, allocate);
      const print = printFor(plan);
      if (!isEmptyBatch(plan)) await async(plan).backward(plan, r.dx, r.dGamma, r.dBeta, r.dResidual ?? null, print);
      return givenTensors(plan, withStatsGrad(withPrint(r, print), plan));
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
      return givenTensors(plan, withPrint(r, print));
    },
    async batchNormTrainWithStatsAsync(x, shape, stats, options) {
      const plan = validateTrainWithStats(x, shape, stats, options);
      checkFixedLength(plan);
      const r = trainOutputs(plan, allocate);
      const print = printFor(plan);
      await async(plan).trainWithStats(plan, r.y, r.mean, r.invStd, print);
      return givenTensors(plan, withPrint(r, print));
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
      return givenTensors(plan, withStatsGrad(withPrint(r, print), plan));
    },
    async batchNormBackwardWithSumsAsync(dy, x, shape, saved, sums, options) {
      const plan = validateBackwardWithSums(dy, x, shape, saved, sums, options);
      checkFixedLength(plan);
      const r = backwardOutputs(plan, allocate);
      const print = printFor(plan);
      await async(plan).backwardWithSums(plan, r.dx, r.dGamma, r.dBeta, r.dResidual ?? null, print);
      return givenTensors(plan, withStatsGrad(withPrint(r, print), plan));
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
