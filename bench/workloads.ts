// What the benchmark measures: ops x shapes x dtypes x backends, each as a call that reuses
// preallocated arrays, plus a memcpy of the same bytes to compare against.
import type { Backend, FloatArray, HalfDtype, TensorArray } from '../index';
import { halfBitsOf } from '../src/half';

export type Op = 'fwd-train' | 'fwd-eval' | 'backward';
export type DType = 'f32' | 'f64' | 'bf16' | 'f16';

/** The 16-bit dtypes' option names. */
const HALF: Partial<Record<DType, HalfDtype>> = { bf16: 'bfloat16', f16: 'float16' };

export const OPS: readonly Op[] = ['fwd-train', 'fwd-eval', 'backward'];

export interface Shape {
  dims: readonly number[];
  axis: number;
}

/** The workloads: the two big conv layouts, a mid-size conv, a dense layer, a late
 *  conv stage, and a tiny call that measures per-call overhead. */
export const FULL_SHAPES: readonly Shape[] = [
  { dims: [64, 128, 56, 56], axis: 1 },
  { dims: [64, 56, 56, 128], axis: -1 },
  { dims: [32, 64, 56, 56], axis: 1 },
  { dims: [256, 1024], axis: 1 },
  { dims: [8, 256, 14, 14], axis: 1 },
  // A ResNet's last stage: 7x7 maps, so rows of 49 values across many channels.
  { dims: [32, 512, 7, 7], axis: 1 },
  // Between the cut-offs: one native thread (below the pool's 2^18) and the smallest tensor
  // that runs native code by default (4096 elements), so "never slower than js" covers them.
  { dims: [1, 256, 14, 14], axis: 1 },
  { dims: [64, 64], axis: 1 },
  { dims: [2, 4], axis: 1 },
];

/** For CI smoke runs: small enough that every backend finishes in milliseconds. */
export const QUICK_SHAPES: readonly Shape[] = FULL_SHAPES.filter((s) => elementCount(s) <= 1 << 20);

/** The shape whose fresh-output row shows what page faults of a new array cost. */
export const FRESH_OUTPUT_SHAPE = FULL_SHAPES[0];

export function elementCount(shape: Shape): number {
  return shape.dims.reduce((a, b) => a * b, 1);
}

export function shapeText(shape: Shape): string {
  const dims = `[${shape.dims.join(',')}]`;
  return shape.axis === 1 ? dims : `${dims} axis ${shape.axis}`;
}

function channelCount(shape: Shape): number {
  const axis = shape.axis < 0 ? shape.axis + shape.dims.length : shape.axis;
  return shape.dims[axis];
}

/** A tensor of the dtype (16-bit ones as Uint16Array bits). */
function allocate(dtype: DType, length: number): TensorArray {
  if (HALF[dtype]) return new Uint16Array(length);
  return dtype === 'f32' ? new Float32Array(length) : new Float64Array(length);
}

/** Parameters and statistics: float32 for the 16-bit dtypes. */
function allocateParams(dtype: DType, length: number): FloatArray {
  return dtype === 'f64' ? new Float64Array(length) : new Float32Array(length);
}

/** Deterministic values in [-1, 1) (xorshift32), so every run sees the same data. */
function fillPseudoRandom<A extends TensorArray>(a: A, dtype: DType, seed: number): A {
  const half = HALF[dtype];
  let s = seed | 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const v = (s >>> 0) / 2 ** 31 - 1;
    a[i] = half ? halfBitsOf(v, half) : v;
  }
  return a;
}

export function pseudoRandom(dtype: DType, length: number, seed: number): TensorArray {
  return fillPseudoRandom(allocate(dtype, length), dtype, seed);
}

/** The arrays of one shape and dtype, shared by every op and backend measured on it. */
export class Problem {
  readonly x: TensorArray;
  readonly dy: TensorArray;
  /** Reused output (y or dx), written once up front so its pages are mapped. */
  readonly out: TensorArray;
  readonly gamma: FloatArray;
  readonly beta: FloatArray;
  readonly runningMean: FloatArray;
  readonly runningVar: FloatArray;
  /** Frozen statistics for eval, so repeated eval calls see the same inputs. */
  readonly evalMean: FloatArray;
  readonly evalVar: FloatArray;

  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
  ) {
    const n = elementCount(shape);
    const c = channelCount(shape);
    this.x = pseudoRandom(dtype, n, 1);
    this.dy = pseudoRandom(dtype, n, 2);
    this.out = allocate(dtype, n).fill(1);
    const params = dtype === 'f64' ? 'f64' : 'f32';
    this.gamma = fillPseudoRandom(allocateParams(dtype, c), params, 3);
    this.beta = fillPseudoRandom(allocateParams(dtype, c), params, 4);
    this.runningMean = allocateParams(dtype, c);
    this.runningVar = allocateParams(dtype, c).fill(1);
    this.evalMean = fillPseudoRandom(allocateParams(dtype, c), params, 5);
    this.evalVar = allocateParams(dtype, c).fill(0.5);
  }

  get bytesPerArray(): number {
    return this.x.byteLength;
  }

  /** Bytes one call moves at least once: x + y, or x + dy + dx for backward. */
  bytesMoved(op: Op): number {
    return (op === 'backward' ? 3 : 2) * this.bytesPerArray;
  }

  /** A memcpy of x's bytes into the reused output. */
  memcpy(): () => void {
    const { x, out } = this;
    if (x instanceof Float32Array && out instanceof Float32Array) return () => out.set(x);
    if (x instanceof Float64Array && out instanceof Float64Array) return () => out.set(x);
    if (x instanceof Uint16Array && out instanceof Uint16Array) return () => out.set(x);
    throw new TypeError('x and out must share a dtype');
  }

  /** One call of `op` on `backend`; `reuseOut: false` lets each call allocate its output. */
  call(backend: Backend, op: Op, reuseOut = true): () => void {
    const { x, dy, shape, gamma, beta } = this;
    const dims = shape.dims;
    const axis = shape.axis;
    const out = reuseOut ? this.out : undefined;
    const dtype = HALF[this.dtype];
    switch (op) {
      case 'fwd-train': {
        const { runningMean, runningVar } = this;
        return () => {
          backend.batchNormTrain(x, dims, { axis, dtype, gamma, beta, runningMean, runningVar, out });
        };
      }
      case 'fwd-eval': {
        const { evalMean: runningMean, evalVar: runningVar } = this;
        return () => {
          backend.batchNormEval(x, dims, { axis, dtype, gamma, beta, runningMean, runningVar, out });
        };
      }
      case 'backward': {
        // Training-form backward needs the batch statistics a training forward saved.
        const { mean, invStd } = backend.batchNormTrain(x, dims, { axis, dtype, gamma, beta });
        const saved = { mean, invStd };
        return () => {
          backend.batchNormBackward(dy, x, dims, saved, { axis, dtype, gamma, out });
        };
      }
    }
  }
}
