// The "Errors" section of API.md, on every backend: the right class, a message that names the
// argument, the same class and message on js and native, nothing written when a call throws,
// and Async forms that reject (never throw) with that same error. Also what is NOT an error:
// m < 2 outside training, and NaN/Infinity inside the data (they propagate per channel).
import { describe, expect, it } from 'vitest';
import { type Backend, type FloatArray, js, native } from '../index';
import { backends } from './backends';

type Op = 'train' | 'eval' | 'backward';
type ErrorClass = typeof TypeError | typeof RangeError;

/** One call's arguments, as loose as a JavaScript caller could make them. */
interface Call {
  op: Op;
  x: unknown;
  shape: unknown;
  options?: unknown;
  dy?: unknown;
  saved?: unknown;
}

interface ErrorCase {
  name: string;
  error: ErrorClass;
  message: RegExp;
  /** Fresh arguments for one call (every call gets its own arrays, filled with sentinels). */
  call: () => Call;
}

const SHAPE = [4, 3];
const C = 3;
const N = 12;
// Sentinels: a throwing call must leave these exact values behind.
const RUNNING_MEAN = 7.5;
const RUNNING_VAR = 2.5;
const OUT = -3.25;

type Ctor = Float32ArrayConstructor | Float64ArrayConstructor;

/** A new array of type T with a[i] = f(i). */
function tabulate(T: Ctor, n: number, f: (i: number) => number): FloatArray {
  const a = new T(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return a;
}
function ramp(T: Ctor, n: number, start = 0): FloatArray {
  return tabulate(T, n, (i) => start + ((i * 7) % 11) - 5);
}
function filled(T: Ctor, n: number, value: number): FloatArray {
  return new T(n).fill(value);
}

/** A valid training call on [4, 3] with every optional array given, then `over` on top. */
function train(over: Record<string, unknown> = {}, top: Partial<Call> = {}, T: Ctor = Float32Array): Call {
  return {
    op: 'train',
    x: ramp(T, N),
    shape: SHAPE,
    options: {
      gamma: filled(T, C, 1.5),
      beta: filled(T, C, 0.25),
      runningMean: filled(T, C, RUNNING_MEAN),
      runningVar: filled(T, C, RUNNING_VAR),
      momentum: 0.1,
      eps: 1e-5,
      out: filled(T, N, OUT),
      ...over,
    },
    ...top,
  };
}

function evaluate(over: Record<string, unknown> = {}, top: Partial<Call> = {}, T: Ctor = Float32Array): Call {
  return {
    op: 'eval',
    x: ramp(T, N),
    shape: SHAPE,
    options: {
      gamma: filled(T, C, 1.5),
      beta: filled(T, C, 0.25),
      runningMean: filled(T, C, RUNNING_MEAN),
      runningVar: filled(T, C, RUNNING_VAR),
      out: filled(T, N, OUT),
      ...over,
    },
    ...top,
  };
}

function backward(
  over: Record<string, unknown> = {},
  top: Partial<Call> = {},
  savedOver: Record<string, unknown> = {},
  T: Ctor = Float32Array,
): Call {
  return {
    op: 'backward',
    dy: ramp(T, N, 1),
    x: ramp(T, N),
    shape: SHAPE,
    saved: { mean: filled(T, C, 0.5), invStd: filled(T, C, 0.75), ...savedOver },
    options: { gamma: filled(T, C, 1.5), out: filled(T, N, OUT), ...over },
    ...top,
  };
}

/** x and a second view of the same buffer: `other` starts `shift` elements into x. */
function sharedViews(T: Ctor, shift: number, otherLength: number): { x: FloatArray; other: FloatArray } {
  const buffer = new T(Math.max(N, shift + otherLength));
  buffer.set(ramp(T, N));
  return { x: buffer.subarray(0, N), other: buffer.subarray(shift, shift + otherLength) };
}

const cases: ErrorCase[] = [
  // --- arrays that are not Float32Array/Float64Array: TypeError
  {
    name: 'x is a plain array',
    error: TypeError,
    message:
      /^x must be a Float32Array, Float64Array or Uint16Array \(bfloat16 or float16 bits, with dtype\), got an array of length 12$/,
    call: () => train({}, { x: Array.from(ramp(Float32Array, N)) }),
  },
  {
    name: 'x is an Int32Array',
    error: TypeError,
    message:
      /^x must be a Float32Array, Float64Array or Uint16Array \(bfloat16 or float16 bits, with dtype\), got Int32Array$/,
    call: () => train({}, { x: new Int32Array(N) }),
  },
  {
    name: 'x is null (eval)',
    error: TypeError,
    message:
      /^x must be a Float32Array, Float64Array or Uint16Array \(bfloat16 or float16 bits, with dtype\), got null$/,
    call: () => evaluate({}, { x: null }),
  },
  {
    name: 'dy is a plain array (backward)',
    error: TypeError,
    message:
      /^dy must be a Float32Array, Float64Array or Uint16Array \(bfloat16 or float16 bits, with dtype\), got an array of length 12$/,
    call: () => backward({}, { dy: Array.from(ramp(Float32Array, N)) }),
  },
  {
    name: 'gamma is a plain array',
    error: TypeError,
    message: /^gamma must be a Float32Array like x, got \[1, 1, 1\]$/,
    call: () => train({ gamma: [1, 1, 1] }),
  },
  {
    name: 'beta is a plain array (eval)',
    error: TypeError,
    message: /^beta must be a Float32Array like x, got \[0, 0, 0\]$/,
    call: () => evaluate({ beta: [0, 0, 0] }),
  },
  {
    name: 'out is a plain array',
    error: TypeError,
    message: /^out must be a Float32Array like x, got an array of length 12$/,
    call: () => train({ out: new Array(N).fill(0) }),
  },
  {
    name: 'out is a plain array (backward)',
    error: TypeError,
    message: /^out must be a Float32Array like x, got an array of length 12$/,
    call: () => backward({ out: new Array(N).fill(0) }),
  },
  {
    name: 'saved is not an object',
    error: TypeError,
    message: /^saved must be an object \{ mean, invStd \}, got null$/,
    call: () => ({ ...backward(), saved: null }),
  },
  {
    name: 'saved.invStd is missing',
    error: TypeError,
    message: /^saved\.invStd must be a Float32Array like x, got undefined$/,
    call: () => backward({}, {}, { invStd: undefined }),
  },
  {
    name: 'options is a number',
    error: TypeError,
    message: /^options must be an object, got 5$/,
    call: () => train({}, { options: 5 }),
  },
  {
    name: 'eval without options',
    error: TypeError,
    message: /^options must be an object, got undefined$/,
    call: () => evaluate({}, { options: undefined }),
  },
  {
    name: 'eval without runningMean',
    error: TypeError,
    message: /^runningMean must be a Float32Array like x, got undefined$/,
    call: () => evaluate({ runningMean: undefined }),
  },
  {
    name: 'eval without runningVar',
    error: TypeError,
    message: /^runningVar must be a Float32Array like x, got undefined$/,
    call: () => evaluate({ runningVar: undefined }),
  },
  {
    name: 'training option is not a boolean',
    error: TypeError,
    message: /^training must be a boolean, got "yes"$/,
    call: () => backward({ training: 'yes' }),
  },
  {
    name: 'eps is a string',
    error: TypeError,
    message: /^eps must be a number, got "1e-5"$/,
    call: () => train({ eps: '1e-5' }),
  },
  {
    name: 'momentum is a string',
    error: TypeError,
    message: /^momentum must be a number, got "0.1"$/,
    call: () => train({ momentum: '0.1' }),
  },

  // --- dtype mismatch: TypeError
  {
    name: 'Float64Array gamma with Float32Array x',
    error: TypeError,
    message: /^gamma must be a Float32Array like x, got Float64Array$/,
    call: () => train({ gamma: filled(Float64Array, C, 1) }),
  },
  {
    name: 'Float32Array beta with Float64Array x',
    error: TypeError,
    message: /^beta must be a Float64Array like x, got Float32Array$/,
    call: () => train({ beta: filled(Float32Array, C, 0) }, {}, Float64Array),
  },
  {
    name: 'Float64Array runningMean with Float32Array x',
    error: TypeError,
    message: /^runningMean must be a Float32Array like x, got Float64Array$/,
    call: () => train({ runningMean: filled(Float64Array, C, RUNNING_MEAN) }),
  },
  {
    name: 'Float64Array runningVar with Float32Array x (eval)',
    error: TypeError,
    message: /^runningVar must be a Float32Array like x, got Float64Array$/,
    call: () => evaluate({ runningVar: filled(Float64Array, C, RUNNING_VAR) }),
  },
  {
    name: 'Float64Array out with Float32Array x',
    error: TypeError,
    message: /^out must be a Float32Array like x, got Float64Array$/,
    call: () => train({ out: filled(Float64Array, N, OUT) }),
  },
  {
    name: 'Float64Array x with Float32Array dy (backward)',
    error: TypeError,
    message: /^x must be a Float32Array like dy, got Float64Array$/,
    call: () => backward({}, { x: ramp(Float64Array, N) }),
  },
  {
    name: 'Float64Array saved.mean with Float32Array x (backward)',
    error: TypeError,
    message: /^saved\.mean must be a Float32Array like x, got Float64Array$/,
    call: () => backward({}, {}, { mean: filled(Float64Array, C, 0) }),
  },

  // --- bad shapes: TypeError
  {
    name: 'shape is a string',
    error: TypeError,
    message: /^shape must be an array of non-negative integers, got "4,3"$/,
    call: () => train({}, { shape: '4,3' }),
  },
  {
    name: 'shape is a typed array',
    error: TypeError,
    message: /^shape must be an array of non-negative integers, got Int32Array$/,
    call: () => train({}, { shape: Int32Array.of(4, 3) }),
  },
  {
    name: 'shape has a negative size',
    error: TypeError,
    message: /^shape must be an array of non-negative integers, got \[-4, -3\]$/,
    call: () => train({}, { shape: [-4, -3] }),
  },
  {
    name: 'shape has a fractional size',
    error: TypeError,
    message: /^shape must be an array of non-negative integers, got \[8, 1\.5\]$/,
    call: () => train({}, { shape: [8, 1.5] }),
  },
  {
    name: 'shape has NaN',
    error: TypeError,
    message: /^shape must be an array of non-negative integers, got \[4, NaN\]$/,
    call: () => evaluate({}, { shape: [4, Number.NaN] }),
  },
  {
    name: 'shape has a string size',
    error: TypeError,
    message: /^shape must be an array of non-negative integers, got \["4", 3\]$/,
    call: () => backward({}, { shape: ['4', 3] }),
  },
  {
    name: 'shape has Infinity',
    error: TypeError,
    message: /^shape must be an array of non-negative integers, got \[Infinity, 3\]$/,
    call: () => train({}, { shape: [Number.POSITIVE_INFINITY, 3] }),
  },

  // --- shape against x: RangeError
  {
    name: 'product of shape != x.length',
    error: RangeError,
    message: /^shape \[4, 4\] has 16 elements but x has length 12$/,
    call: () => train({}, { shape: [4, 4] }),
  },
  {
    name: 'product of shape != x.length (backward)',
    error: RangeError,
    message: /^shape \[2, 3\] has 6 elements but x has length 12$/,
    call: () => backward({}, { shape: [2, 3] }),
  },
  {
    name: 'rank 1',
    error: RangeError,
    message: /^shape must have rank >= 2, got rank 1$/,
    call: () => train({}, { shape: [12] }),
  },
  {
    name: 'rank 0 (eval)',
    error: RangeError,
    message: /^shape must have rank >= 2, got rank 0$/,
    call: () => evaluate({}, { shape: [] }),
  },

  // --- axis
  {
    name: 'axis past the last dimension',
    error: RangeError,
    message: /^axis must be in \[-2, 1\] for a rank-2 shape, got 2$/,
    call: () => train({ axis: 2 }),
  },
  {
    name: 'negative axis before the first dimension',
    error: RangeError,
    message: /^axis must be in \[-2, 1\] for a rank-2 shape, got -3$/,
    call: () => train({ axis: -3 }),
  },
  {
    name: 'axis out of range (rank 4, eval)',
    error: RangeError,
    message: /^axis must be in \[-4, 3\] for a rank-4 shape, got 4$/,
    call: () => evaluate({ axis: 4 }, { shape: [1, 3, 2, 2] }),
  },
  {
    name: 'negative axis out of range (backward)',
    error: RangeError,
    message: /^axis must be in \[-2, 1\] for a rank-2 shape, got -5$/,
    call: () => backward({ axis: -5 }),
  },
  {
    name: 'fractional axis',
    error: TypeError,
    message: /^axis must be an integer, got 0\.5$/,
    call: () => train({ axis: 0.5 }),
  },
  {
    name: 'NaN axis',
    error: TypeError,
    message: /^axis must be an integer, got NaN$/,
    call: () => evaluate({ axis: Number.NaN }),
  },
  {
    name: 'string axis',
    error: TypeError,
    message: /^axis must be an integer, got "1"$/,
    call: () => backward({ axis: '1' }),
  },

  // --- per-channel arrays of the wrong length: RangeError
  {
    name: 'gamma too short',
    error: RangeError,
    message: /^gamma must have length 3 \(the number of channels\), got 2$/,
    call: () => train({ gamma: filled(Float32Array, 2, 1) }),
  },
  {
    name: 'gamma of length C for the wrong axis',
    error: RangeError,
    message: /^gamma must have length 4 \(the number of channels\), got 3$/,
    call: () => train({ axis: 0 }),
  },
  {
    name: 'beta too long',
    error: RangeError,
    message: /^beta must have length 3 \(the number of channels\), got 4$/,
    call: () => train({ beta: filled(Float32Array, 4, 0) }),
  },
  {
    name: 'runningMean wrong length',
    error: RangeError,
    message: /^runningMean must have length 3 \(the number of channels\), got 2$/,
    call: () => train({ runningMean: filled(Float32Array, 2, RUNNING_MEAN) }),
  },
  {
    name: 'runningVar wrong length',
    error: RangeError,
    message: /^runningVar must have length 3 \(the number of channels\), got 12$/,
    call: () => train({ runningVar: filled(Float32Array, N, RUNNING_VAR) }),
  },
  {
    name: 'runningMean wrong length (eval)',
    error: RangeError,
    message: /^runningMean must have length 3 \(the number of channels\), got 0$/,
    call: () => evaluate({ runningMean: new Float32Array(0) }),
  },
  {
    name: 'gamma wrong length (backward)',
    error: RangeError,
    message: /^gamma must have length 3 \(the number of channels\), got 1$/,
    call: () => backward({ gamma: filled(Float32Array, 1, 1) }),
  },
  {
    name: 'saved.mean wrong length',
    error: RangeError,
    message: /^saved\.mean must have length 3 \(the number of channels\), got 4$/,
    call: () => backward({}, {}, { mean: filled(Float32Array, 4, 0) }),
  },
  {
    name: 'saved.invStd wrong length',
    error: RangeError,
    message: /^saved\.invStd must have length 3 \(the number of channels\), got 2$/,
    call: () => backward({}, {}, { invStd: filled(Float32Array, 2, 1) }),
  },
  {
    name: 'dy of another length than x',
    error: RangeError,
    message: /^dy must have length 12 \(the length of x\), got 13$/,
    call: () => backward({}, { dy: ramp(Float32Array, N + 1) }),
  },

  // --- running stats given alone
  {
    name: 'only runningMean given',
    error: RangeError,
    message: /^runningMean and runningVar must be given together, got only runningMean$/,
    call: () => train({ runningVar: undefined }),
  },
  {
    name: 'only runningVar given (runningMean null)',
    error: RangeError,
    message: /^runningMean and runningVar must be given together, got only runningVar$/,
    call: () => train({ runningMean: null }),
  },

  // --- eps and momentum
  ...[0, -1, Number.NaN, Number.POSITIVE_INFINITY].map(
    (eps): ErrorCase => ({
      name: `eps ${eps}`,
      error: RangeError,
      message: new RegExp(`^eps must be a finite number > 0, got ${eps}$`),
      call: () => train({ eps }),
    }),
  ),
  {
    name: 'eps 0 (eval)',
    error: RangeError,
    message: /^eps must be a finite number > 0, got 0$/,
    call: () => evaluate({ eps: 0 }),
  },
  {
    name: 'eps -Infinity (eval)',
    error: RangeError,
    message: /^eps must be a finite number > 0, got -Infinity$/,
    call: () => evaluate({ eps: Number.NEGATIVE_INFINITY }),
  },
  ...[-0.1, 1.1, Number.NaN].map(
    (momentum): ErrorCase => ({
      name: `momentum ${momentum}`,
      error: RangeError,
      message: new RegExp(`^momentum must be in \\[0, 1\\], got ${momentum}$`),
      call: () => train({ momentum }),
    }),
  ),

  // --- fewer than 2 values per channel when training
  {
    name: 'train on [1, 3] (m = 1)',
    error: RangeError,
    message: /^x must have more than 1 value per channel when training, got 1 \(shape \[1, 3\], axis 1\)$/,
    call: () => train({}, { x: ramp(Float32Array, 3), shape: [1, 3], options: {} }),
  },
  {
    name: 'train on [1, 3] with running stats (m = 1)',
    error: RangeError,
    message: /^x must have more than 1 value per channel when training, got 1 \(shape \[1, 3\], axis 1\)$/,
    call: () => train({ out: filled(Float32Array, 3, OUT) }, { x: ramp(Float32Array, 3), shape: [1, 3] }),
  },
  {
    name: 'train on [3, 1] along axis 0 (m = 1)',
    error: RangeError,
    message: /^x must have more than 1 value per channel when training, got 1 \(shape \[3, 1\], axis 0\)$/,
    call: () => train({}, { x: ramp(Float32Array, 3), shape: [3, 1], options: { axis: 0 } }),
  },
  {
    name: 'training backward on [1, 3, 1] (m = 1)',
    error: RangeError,
    message: /^x must have more than 1 value per channel when training, got 1 \(shape \[1, 3, 1\], axis 1\)$/,
    call: () =>
      backward(
        { out: filled(Float32Array, 3, OUT) },
        { dy: ramp(Float32Array, 3), x: ramp(Float32Array, 3), shape: [1, 3, 1] },
      ),
  },

  // --- out of the wrong length
  {
    name: 'out too short',
    error: RangeError,
    message: /^out must have length 12 \(the length of x\), got 11$/,
    call: () => train({ out: filled(Float32Array, N - 1, OUT) }),
  },
  {
    name: 'out too long (eval)',
    error: RangeError,
    message: /^out must have length 12 \(the length of x\), got 13$/,
    call: () => evaluate({ out: filled(Float32Array, N + 1, OUT) }),
  },
  {
    name: 'out of length C (backward)',
    error: RangeError,
    message: /^out must have length 12 \(the length of x\), got 3$/,
    call: () => backward({ out: filled(Float32Array, C, OUT) }),
  },

  // --- memory shared in a way that is not the documented in-place case
  {
    name: 'out partially overlapping x (shifted view of the same buffer)',
    error: RangeError,
    message: /^out must not share memory with x$/,
    call: () => {
      const { x, other } = sharedViews(Float32Array, 3, N);
      other.fill(OUT, N - 3);
      return train({ out: other }, { x });
    },
  },
  {
    name: 'out partially overlapping x (eval, f64)',
    error: RangeError,
    message: /^out must not share memory with x$/,
    call: () => {
      const { x, other } = sharedViews(Float64Array, 1, N);
      return evaluate({ out: other }, { x }, Float64Array);
    },
  },
  {
    name: 'runningMean sharing memory with x',
    error: RangeError,
    message: /^runningMean must not share memory with x$/,
    call: () => {
      const { x, other } = sharedViews(Float32Array, N - 1, C);
      return train({ runningMean: other }, { x });
    },
  },
  {
    name: 'runningVar sharing memory with gamma',
    error: RangeError,
    message: /^runningVar must not share memory with gamma$/,
    call: () => {
      const buffer = filled(Float32Array, C + 1, RUNNING_VAR);
      return train({ gamma: buffer.subarray(0, C), runningVar: buffer.subarray(1, C + 1) });
    },
  },
  {
    name: 'runningVar is runningMean',
    error: RangeError,
    message: /^runningVar must not share memory with runningMean$/,
    call: () => {
      const running = filled(Float32Array, C, RUNNING_MEAN);
      return train({ runningMean: running, runningVar: running });
    },
  },
  {
    name: 'backward out partially overlapping dy',
    error: RangeError,
    message: /^out must not share memory with dy$/,
    call: () => {
      const { x: dy, other } = sharedViews(Float32Array, 2, N);
      return backward({ out: other }, { dy });
    },
  },
  {
    name: 'backward out === x (only out === dy is in place)',
    error: RangeError,
    message: /^x must not share memory with out$/,
    call: () => {
      const x = ramp(Float32Array, N);
      return backward({ out: x }, { x });
    },
  },
];

// ---------------------------------------------------------------------------------------

type Loose = (...args: unknown[]) => unknown;

const FUNCTIONS = { train: 'batchNormTrain', eval: 'batchNormEval', backward: 'batchNormBackward' } as const;

/** The public function a call goes to, e.g. batchNormEvalAsync. */
function functionOf(c: Call, async: boolean): keyof Backend {
  return `${FUNCTIONS[c.op]}${async ? 'Async' : ''}` as keyof Backend;
}

function invoke(b: Backend, c: Call, async: boolean): unknown {
  const f = (b[functionOf(c, async)] as Loose).bind(b);
  return c.op === 'backward' ? f(c.dy, c.x, c.shape, c.saved, c.options) : f(c.x, c.shape, c.options);
}

/** Every typed array a call can reach (x, dy, options' and saved's arrays), by name. */
function reachableArrays(c: Call): [string, ArrayBufferView][] {
  const found: [string, ArrayBufferView][] = [];
  const visit = (name: string, v: unknown) => {
    if (ArrayBuffer.isView(v)) found.push([name, v]);
    else if (v && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, inner] of Object.entries(v)) visit(`${name}.${k}`, inner);
    }
  };
  visit('x', c.x);
  visit('dy', c.dy);
  visit('options', c.options);
  visit('saved', c.saved);
  return found;
}

function snapshot(c: Call): Map<string, number[]> {
  return new Map(reachableArrays(c).map(([name, a]) => [name, Array.from(a as unknown as ArrayLike<number>)]));
}

function expectUnchanged(c: Call, before: Map<string, number[]>) {
  for (const [name, a] of reachableArrays(c)) {
    expect(Array.from(a as unknown as ArrayLike<number>), `${name} was modified by a throwing call`).toEqual(
      before.get(name),
    );
  }
}

function thrownBy(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the call to throw, it returned');
}

/** Calls the Async form: it must return a promise (no synchronous throw) that rejects. */
async function rejectionOf(b: Backend, c: Call): Promise<Error> {
  let pending: unknown;
  expect(() => {
    pending = invoke(b, c, true);
  }, 'the Async form threw synchronously instead of rejecting').not.toThrow();
  expect(pending).toBeInstanceOf(Promise);
  return (pending as Promise<unknown>).then(
    () => {
      throw new Error('expected the Async call to reject, it resolved');
    },
    (e: unknown) => e as Error,
  );
}

/** The error of case c from function fn: its class, and a message that names fn first and
 *  then says what the case expects. */
function expectError(e: Error, c: ErrorCase, fn: string) {
  expect(e.constructor, `${c.name}: error class (message: ${e.message})`).toBe(c.error);
  expect(e.message.startsWith(`${fn}: `), `${e.message} names ${fn} first`).toBe(true);
  expect(e.message.slice(fn.length + 2)).toMatch(c.message);
}

it('the table covers every op and both error classes', () => {
  const ops = new Set(cases.map((c) => c.call().op));
  expect(ops).toEqual(new Set(['train', 'eval', 'backward']));
  expect(cases.filter((c) => c.error === TypeError).length).toBeGreaterThan(10);
  expect(cases.filter((c) => c.error === RangeError).length).toBeGreaterThan(10);
  expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
});

describe.each(backends)('errors on backend $name', (b) => {
  it.each(cases)('$name', async (c) => {
    const call = c.call();
    const before = snapshot(call);
    expectError(
      thrownBy(() => invoke(b, call, false)),
      c,
      functionOf(call, false),
    );
    expectUnchanged(call, before);
  });

  it.each(cases)('$name: Async form rejects with the same error', async (c) => {
    const syncError = thrownBy(() => invoke(b, c.call(), false));
    const call = c.call();
    const before = snapshot(call);
    const asyncError = await rejectionOf(b, call);
    expectError(asyncError, c, functionOf(call, true));
    // The same words after the function's name.
    const fn = functionOf(call, false);
    expect(asyncError.message).toBe(`${fn}Async${syncError.message.slice(fn.length)}`);
    expectUnchanged(call, before);
  });
});

describe.skipIf(!native)('js and native throw the same error', () => {
  const nb = native as Backend;
  it.each(cases)('$name', async (c) => {
    const fromJs = thrownBy(() => invoke(js, c.call(), false));
    const fromNative = thrownBy(() => invoke(nb, c.call(), false));
    expect(fromNative.constructor).toBe(fromJs.constructor);
    expect(fromNative.message).toBe(fromJs.message);
    const asyncJs = await rejectionOf(js, c.call());
    const asyncNative = await rejectionOf(nb, c.call());
    expect(asyncNative.constructor).toBe(asyncJs.constructor);
    expect(asyncNative.message).toBe(asyncJs.message);
  });
});

describe.each(backends)('shape arrays with holes on backend $name', (b) => {
  // Array.prototype.every skips holes, so a shape check built on it let [4, , 3] through.
  it('a holey shape array ([4, , 3]) is rejected like any non-integer size', () => {
    // A hole reads as undefined: the shape must be rejected like [4, undefined, 3].
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point of this test
    const holey = [4, , 3];
    const x = ramp(Float32Array, N);
    const e = thrownBy(() => b.batchNormTrain(x, holey as number[]));
    expect(e.constructor).toBe(TypeError);
    expect(e.message).toMatch(/^batchNormTrain: shape must be an array of non-negative integers/);
  });
});

// ---------------------------------------------------------------------------------------
// Not errors.

describe.each(backends)('not errors on backend $name', (b) => {
  it('eval works with one value per channel ([1, 3])', () => {
    const x = Float64Array.of(1, 2, 3);
    const runningMean = Float64Array.of(0.5, -1, 3);
    const runningVar = Float64Array.of(4, 0.25, 1);
    const gamma = Float64Array.of(2, 1, -1);
    const beta = Float64Array.of(0, 1, 0.5);
    const y = b.batchNormEval(x, [1, 3], { runningMean, runningVar, gamma, beta, eps: 1e-3 });
    const expected = [0, 1, 2].map(
      (c) => (gamma[c] * (x[c] - runningMean[c])) / Math.sqrt(runningVar[c] + 1e-3) + beta[c],
    );
    for (let c = 0; c < 3; c++) expect(y[c]).toBeCloseTo(expected[c], 12);
  });

  it('frozen backward (training: false) works with one value per channel ([1, 3])', () => {
    const dy = Float64Array.of(1, -2, 0.5);
    const x = Float64Array.of(3, 4, 5);
    const saved = { mean: Float64Array.of(1, 2, 3), invStd: Float64Array.of(0.5, 2, 1) };
    const gamma = Float64Array.of(3, 1, -2);
    const r = b.batchNormBackward(dy, x, [1, 3], saved, { gamma, training: false });
    expect(Array.from(r.dx)).toEqual([1 * 3 * 0.5, -2 * 1 * 2, 0.5 * -2 * 1]);
    expect(Array.from(r.dBeta)).toEqual([1, -2, 0.5]);
    // dGamma = dy * xhat = dy * (x - mean) * invStd
    expect(Array.from(r.dGamma)).toEqual([1 * 2 * 0.5, -2 * 2 * 2, 0.5 * 2 * 1]);
  });

  it('eval of an empty batch ([0, 3]) gives an empty result', () => {
    const y = b.batchNormEval(new Float32Array(0), [0, 3], {
      runningMean: new Float32Array(3),
      runningVar: new Float32Array(3).fill(1),
    });
    expect(y).toBeInstanceOf(Float32Array);
    expect(y.length).toBe(0);
  });

  it('momentum 0 and 1 are in range', () => {
    for (const momentum of [0, 1]) {
      const x = Float64Array.of(1, 10, 3, 20);
      const runningMean = Float64Array.of(5, 5);
      const runningVar = Float64Array.of(7, 7);
      b.batchNormTrain(x, [2, 2], { runningMean, runningVar, momentum });
      // batch means 2 and 15; unbiased variances 2 and 50
      expect(Array.from(runningMean)).toEqual(momentum === 0 ? [5, 5] : [2, 15]);
      expect(Array.from(runningVar)).toEqual(momentum === 0 ? [7, 7] : [2, 50]);
    }
  });
});

/** Channel of each flat index of a [outer, C, inner] view. */
function channelOf(i: number, channels: number, inner: number): number {
  return Math.floor(i / inner) % channels;
}

describe.each(backends)('NaN and Infinity in the data propagate on backend $name', (b) => {
  // [2, 4, 3] NCHW-like: channel 2 holds the poison, the other channels must be untouched by it.
  const shape = [2, 4, 3];
  const channels = 4;
  const inner = 3;
  const n = 24;
  const poisoned = 2;
  const poisonAt = 1 * channels * inner + poisoned * inner + 1; // outer 1, channel 2, inner 1

  for (const [T, poison] of [
    [Float32Array, Number.NaN],
    [Float64Array, Number.NaN],
    [Float32Array, Number.POSITIVE_INFINITY],
    [Float64Array, Number.NEGATIVE_INFINITY],
  ] as const) {
    const label = `${T.name} ${poison}`;
    const poisonedX = () => {
      const x = tabulate(T, n, (i) => Math.sin(i) * 3 + 1);
      x[poisonAt] = poison;
      return x;
    };

    it(`${label}: train gives NaN in the poisoned channel only (y, mean, invStd, running stats)`, () => {
      const runningMean = new T(channels).fill(0.5);
      const runningVar = new T(channels).fill(2);
      const r = b.batchNormTrain(poisonedX(), shape, { runningMean, runningVar });
      for (let i = 0; i < n; i++) {
        const c = channelOf(i, channels, inner);
        if (c === poisoned) expect(r.y[i], `y[${i}]`).toBeNaN();
        else expect(Number.isFinite(r.y[i]), `y[${i}] = ${r.y[i]} should be finite`).toBe(true);
      }
      for (let c = 0; c < channels; c++) {
        const stats = [r.invStd[c], runningVar[c]];
        if (c === poisoned) {
          expect(Number.isFinite(r.mean[c]), `mean[${c}] = ${r.mean[c]}`).toBe(false);
          expect(Number.isFinite(runningMean[c]), `runningMean[${c}] = ${runningMean[c]}`).toBe(false);
          for (const v of stats) expect(v).toBeNaN();
        } else {
          for (const v of [r.mean[c], runningMean[c], ...stats]) expect(Number.isFinite(v)).toBe(true);
        }
      }
    });

    it(`${label}: eval gives a non-finite y at the poisoned element only`, () => {
      const y = b.batchNormEval(poisonedX(), shape, {
        runningMean: new T(channels).fill(0.5),
        runningVar: new T(channels).fill(2),
      });
      for (let i = 0; i < n; i++) {
        expect(Number.isFinite(y[i]), `y[${i}] = ${y[i]}`).toBe(i !== poisonAt);
      }
      expect(y[poisonAt]).toBe(Number.isNaN(poison) ? Number.NaN : poison);
    });

    it(`${label} in dy: backward gives NaN in the poisoned channel only`, () => {
      const x = tabulate(T, n, (i) => Math.cos(i) * 2);
      const saved = { mean: new T(channels).fill(0.1), invStd: new T(channels).fill(0.9) };
      for (const training of [true, false]) {
        const r = b.batchNormBackward(poisonedX(), x, shape, saved, { training });
        for (let i = 0; i < n; i++) {
          const c = channelOf(i, channels, inner);
          // training: every dx of the channel sees sum(dy); frozen: only the element itself
          const bad = training ? c === poisoned : i === poisonAt;
          expect(Number.isFinite(r.dx[i]), `training ${training}: dx[${i}] = ${r.dx[i]}`).toBe(!bad);
        }
        for (let c = 0; c < channels; c++) {
          expect(Number.isFinite(r.dGamma[c]), `dGamma[${c}]`).toBe(c !== poisoned);
          expect(Number.isFinite(r.dBeta[c]), `dBeta[${c}]`).toBe(c !== poisoned);
        }
      }
    });
  }
});

describe.skipIf(!native)('NaN propagation is the same on js and native', () => {
  it('train, eval and backward give non-finite values at the same places', () => {
    const nb = native as Backend;
    const shape = [3, 5, 4];
    const x = Float64Array.from({ length: 60 }, (_, i) => Math.sin(i * 1.3));
    x[7] = Number.NaN;
    x[29] = Number.POSITIVE_INFINITY;
    const nonFinite = (a: FloatArray) => Array.from(a, (v) => (Number.isFinite(v) ? 'finite' : String(v)));
    const run = (b: Backend) => {
      const t = b.batchNormTrain(x, shape);
      const e = b.batchNormEval(x, shape, {
        runningMean: new Float64Array(5),
        runningVar: new Float64Array(5).fill(1),
      });
      const g = b.batchNormBackward(x, x.map(Math.abs), shape, { mean: t.mean, invStd: t.invStd });
      return [t.y, t.mean, t.invStd, e, g.dx, g.dGamma, g.dBeta].map(nonFinite);
    };
    expect(run(nb)).toEqual(run(js));
  });
});

describe.each(backends)('empty tensors on backend $name', (b) => {
  // The timeout is the check: a loop over 2^40 empty rows would never finish.
  it('an empty tensor with a huge outer size returns at once (no loop over outer)', { timeout: 10_000 }, () => {
    const r = b.batchNormTrain(new Float32Array(0), [2 ** 20, 2 ** 20, 0], { axis: 2 });
    expect(r.y.length).toBe(0);
    expect(r.mean.length).toBe(0);
    const g = b.batchNormBackward(new Float32Array(0), new Float32Array(0), [2 ** 20, 2 ** 20, 0], r, { axis: 2 });
    expect(g.dx.length).toBe(0);
  });
});
