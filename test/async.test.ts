// The Async forms: bit-for-bit the sync results on every backend, many calls in flight at
// once, and (native) the event loop keeps turning while the work runs off the JS thread.
// Also the native pool size: setNumThreads / getNumThreads.
import { afterEach, describe, expect, it } from 'vitest';
import { type Backend, type FloatArray, getNumThreads, js, native, setNumThreads } from '../index';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

type Ctor = Float32ArrayConstructor | Float64ArrayConstructor;

interface Case {
  name: string;
  T: Ctor;
  shape: number[];
  axis: number;
}

const CASES: Case[] = [
  { name: 'f32 NCHW [4, 5, 6, 7]', T: Float32Array, shape: [4, 5, 6, 7], axis: 1 },
  { name: 'f64 NHWC [3, 4, 5, 6] axis -1', T: Float64Array, shape: [3, 4, 5, 6], axis: -1 },
  { name: 'f32 [N, C] [257, 3]', T: Float32Array, shape: [257, 3], axis: 1 },
  // above native's 2^15-element parallel cut-off
  { name: 'f64 NCHW [8, 16, 17, 19] (parallel)', T: Float64Array, shape: [8, 16, 17, 19], axis: 1 },
  { name: 'f32 NHWC [8, 17, 19, 16] axis 3 (parallel)', T: Float32Array, shape: [8, 17, 19, 16], axis: 3 },
];

/** A new array of type T with a[i] = f(). */
function tabulate(T: Ctor, n: number, f: () => number): FloatArray {
  const a = new T(n);
  for (let i = 0; i < n; i++) a[i] = f();
  return a;
}

/** Fresh, seeded inputs for one call: the same seed always gives the same arrays. */
function inputs(c: Case, seed: number) {
  const rand = generator(seed);
  const u = () => 2 * rand() - 1;
  const rank = c.shape.length;
  const channels = c.shape[c.axis < 0 ? c.axis + rank : c.axis];
  const n = c.shape.reduce((p, d) => p * d, 1);
  const x = tabulate(c.T, n, () => 3 + 2 * u());
  const dy = tabulate(c.T, n, u);
  const perChannel = (f: () => number) => tabulate(c.T, channels, f);
  return {
    x,
    dy,
    gamma: perChannel(() => 1 + u()),
    beta: perChannel(u),
    runningMean: perChannel(() => 3 + u()),
    runningVar: perChannel(() => 1 + rand()),
    saved: { mean: perChannel(() => 3 + 0.1 * u()), invStd: perChannel(() => 0.8 + 0.1 * u()) },
  };
}

type Inputs = ReturnType<typeof inputs>;

function expectIdentical(got: ArrayLike<number>, expected: ArrayLike<number>, label: string) {
  expect(got.length, `${label}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(got[i], expected[i])) throw new Error(`${label}: index ${i}: ${got[i]} vs ${expected[i]}`);
  }
}

/** One op, sync or Async, on fresh inputs; returns every array it produced or updated. */
type Op = 'train' | 'trainInPlace' | 'eval' | 'evalInPlace' | 'backward' | 'backwardInPlace' | 'frozen';
const OPS: Op[] = ['train', 'trainInPlace', 'eval', 'evalInPlace', 'backward', 'backwardInPlace', 'frozen'];

type Results = Record<string, FloatArray>;

function call(b: Backend, c: Case, op: Op, inp: Inputs, async: true): Promise<Results>;
function call(b: Backend, c: Case, op: Op, inp: Inputs, async: false): Results;
function call(b: Backend, c: Case, op: Op, inp: Inputs, async: boolean): Results | Promise<Results> {
  const { axis, shape } = c;
  const { x, dy, gamma, beta, runningMean, runningVar, saved } = inp;
  switch (op) {
    case 'train':
    case 'trainInPlace': {
      const options = {
        axis,
        gamma,
        beta,
        runningMean,
        runningVar,
        momentum: 0.3,
        out: op === 'trainInPlace' ? x : undefined,
      };
      const collect = (r: { y: FloatArray; mean: FloatArray; invStd: FloatArray }) => ({
        ...r,
        runningMean,
        runningVar,
      });
      return async
        ? b.batchNormTrainAsync(x, shape, options).then(collect)
        : collect(b.batchNormTrain(x, shape, options));
    }
    case 'eval':
    case 'evalInPlace': {
      const options = {
        axis,
        gamma,
        beta,
        runningMean,
        runningVar,
        eps: 1e-3,
        out: op === 'evalInPlace' ? x : undefined,
      };
      const collect = (y: FloatArray) => ({ y });
      return async
        ? b.batchNormEvalAsync(x, shape, options).then(collect)
        : collect(b.batchNormEval(x, shape, options));
    }
    default: {
      const options = { axis, gamma, training: op !== 'frozen', out: op === 'backwardInPlace' ? dy : undefined };
      const collect = (r: { dx: FloatArray; dGamma: FloatArray; dBeta: FloatArray }) => ({ ...r });
      return async
        ? b.batchNormBackwardAsync(dy, x, shape, saved, options).then(collect)
        : collect(b.batchNormBackward(dy, x, shape, saved, options));
    }
  }
}

function expectSameResults(got: Record<string, FloatArray>, expected: Record<string, FloatArray>, label: string) {
  expect(Object.keys(got).sort()).toEqual(Object.keys(expected).sort());
  for (const key of Object.keys(expected)) {
    expect(got[key], `${label} ${key}: dtype`).toBeInstanceOf(expected[key].constructor);
    expectIdentical(got[key], expected[key], `${label} ${key}`);
  }
}

describe.each(backends)('Async forms on backend $name', (b) => {
  describe.each(CASES)('$name', (c) => {
    it.each(OPS)('%s: Async result is bit-for-bit the sync result', async (op) => {
      const sync = call(b, c, op, inputs(c, 7), false);
      const asyncInputs = inputs(c, 7);
      const pending = call(b, c, op, asyncInputs, true);
      expect(pending).toBeInstanceOf(Promise);
      const got = await pending;
      expectSameResults(got, sync, `${b.name} ${c.name} ${op}`);
      // in-place forms return the caller's array itself
      if (op === 'trainInPlace' || op === 'evalInPlace') expect(got.y).toBe(asyncInputs.x);
      if (op === 'backwardInPlace') expect(got.dx).toBe(asyncInputs.dy);
    });
  });

  it('200 Async calls in flight at once all give their own sync result', async () => {
    const calls = Array.from({ length: 200 }, (_, i) => ({
      c: CASES[i % CASES.length],
      op: OPS[i % OPS.length],
      seed: 1000 + i,
    }));
    const pending = calls.map(({ c, op, seed }) => call(b, c, op, inputs(c, seed), true));
    const results = await Promise.all(pending);
    calls.forEach(({ c, op, seed }, i) => {
      expectSameResults(results[i], call(b, c, op, inputs(c, seed), false), `call ${i} (${c.name} ${op})`);
    });
  });
});

// ---------------------------------------------------------------------------------------
// The event loop while native works.

/** Counts event-loop turns (setImmediate callbacks) until stop() is called. */
function tickCounter() {
  let ticks = 0;
  let running = true;
  const tick = () => {
    if (!running) return;
    ticks++;
    setImmediate(tick);
  };
  setImmediate(tick);
  return {
    stop: () => {
      running = false;
      return ticks;
    },
  };
}

describe.skipIf(!native)('native Async work runs off the JS thread', () => {
  const nb = native as Backend;
  const big: Case = { name: 'f32 [32, 64, 56, 56]', T: Float32Array, shape: [32, 64, 56, 56], axis: 1 };
  // made on first use, so nothing this size is allocated when native is missing
  let made: Inputs | undefined;
  const bigInputs = () => {
    made ??= inputs(big, 99);
    return made;
  };

  it('the event loop keeps turning while a large Async train, eval and backward run', async () => {
    const counter = tickCounter();
    const results = [];
    for (const op of ['train', 'eval', 'backward'] as const) results.push(await call(nb, big, op, bigInputs(), true));
    const ticks = counter.stop();
    expect(ticks).toBeGreaterThan(0);
    // and the answers are the sync ones
    const sync = call(nb, big, 'train', inputs(big, 99), false);
    expectIdentical(results[0].y, sync.y, 'large Async train y');
  });

  it('for contrast, the sync call blocks it: 0 turns during the call', async () => {
    const counter = tickCounter();
    const { x } = bigInputs();
    const r = nb.batchNormTrain(x, big.shape);
    const ticks = counter.stop();
    expect(ticks).toBe(0);
    expect(r.y.length).toBe(x.length);
  });

  it('an Async call has not settled before the event loop turns', async () => {
    let settled = false;
    const { x, runningMean, runningVar } = bigInputs();
    const pending = nb.batchNormEvalAsync(x, big.shape, { runningMean, runningVar });
    pending.then(() => {
      settled = true;
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(settled).toBe(false);
    await pending;
    expect(settled).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------
// Thread count.

describe('setNumThreads / getNumThreads', () => {
  const initial = getNumThreads();
  afterEach(() => setNumThreads(initial));

  it('getNumThreads is a positive integer', () => {
    expect(Number.isInteger(initial)).toBe(true);
    expect(initial).toBeGreaterThanOrEqual(1);
  });

  it.skipIf(!native)('setNumThreads(1) then getNumThreads() === 1, and a larger size reads back too', () => {
    setNumThreads(1);
    expect(getNumThreads()).toBe(1);
    setNumThreads(3);
    expect(getNumThreads()).toBe(3);
  });

  it.skipIf(!native)('one thread gives the same answers as the default pool (large tensor)', async () => {
    const c = CASES[3];
    const many = call(native as Backend, c, 'train', inputs(c, 5), false);
    const manyBack = call(native as Backend, c, 'backward', inputs(c, 5), false);
    setNumThreads(1);
    const one = call(native as Backend, c, 'train', inputs(c, 5), false);
    const oneBack = await call(native as Backend, c, 'backward', inputs(c, 5), true);
    const close = (a: FloatArray, e: FloatArray, label: string) => {
      let scale = 0;
      let worst = 0;
      for (let i = 0; i < e.length; i++) {
        scale = Math.max(scale, Math.abs(e[i]));
        worst = Math.max(worst, Math.abs(a[i] - e[i]));
      }
      expect(worst, `${label}: largest difference`).toBeLessThanOrEqual(1e-12 * scale);
    };
    for (const k of Object.keys(many)) close(one[k], many[k], `train ${k}`);
    for (const k of Object.keys(manyBack)) close(oneBack[k], manyBack[k], `backward ${k}`);
  });

  it.skipIf(!native)('resizing the pool while an Async call runs does not disturb it', async () => {
    const c = CASES[4];
    const expected = call(native as Backend, c, 'train', inputs(c, 3), false);
    const pending = call(native as Backend, c, 'train', inputs(c, 3), true);
    setNumThreads(1);
    expectSameResults(await pending, expected, 'train across a resize');
  });

  it.runIf(!native)('without the native binary the js backend reports 1 thread', () => {
    expect(js.name).toBe('js');
    expect(getNumThreads()).toBe(1);
  });

  it.each([
    { threads: 0, error: RangeError, message: /^threads must be in \[1, 1024\], got 0$/ },
    { threads: -1, error: RangeError, message: /^threads must be in \[1, 1024\], got -1$/ },
    { threads: 1025, error: RangeError, message: /^threads must be in \[1, 1024\], got 1025$/ },
    { threads: 1.5, error: TypeError, message: /^threads must be an integer, got 1\.5$/ },
    { threads: Number.NaN, error: TypeError, message: /^threads must be an integer, got NaN$/ },
    { threads: Number.POSITIVE_INFINITY, error: TypeError, message: /^threads must be an integer, got Infinity$/ },
    { threads: '2', error: TypeError, message: /^threads must be an integer, got "2"$/ },
    { threads: undefined, error: TypeError, message: /^threads must be an integer, got undefined$/ },
  ])('setNumThreads($threads) throws $error.name and keeps the pool', ({ threads, error, message }) => {
    const before = getNumThreads();
    let thrown: unknown;
    try {
      setNumThreads(threads as number);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect((thrown as Error).constructor).toBe(error);
    expect((thrown as Error).message).toMatch(message);
    expect(getNumThreads()).toBe(before);
  });
});
