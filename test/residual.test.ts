// The fused residual tail of a ResNet block, y = activation(BN(x) + z), on every backend:
// against PyTorch (test/fixtures/make_residual_fixtures.py), against finite differences,
// native against js on shapes that take the parallel paths, and its argument checks.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Activation, BatchNorm, type FloatArray, js, native } from '../index';
import { backends } from './backends';
import { maxAbsDiff } from './helpers/compare';
import { generator } from './helpers/random.cjs';

interface Expected {
  y: number[];
  runningMean: number[];
  runningVar: number[];
  dx: number[];
  dGamma: number[];
  dBeta: number[];
  dResidual: number[];
}

interface Case {
  name: string;
  shape: number[];
  axis: number;
  dtype: 'float32' | 'float64';
  activation: Activation;
  eps: number;
  momentum: number;
  x: number[];
  residual: number[];
  dy: number[];
  gamma: number[];
  beta: number[];
  runningMean: number[];
  runningVar: number[];
  train: Expected;
  eval: Expected;
}

const fixtures = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'residual-cases.json'), 'utf8')) as {
  cases: Case[];
};

function expectClose(got: ArrayLike<number> | undefined, want: readonly number[], tol: number, label: string): void {
  expect(got, label).toBeDefined();
  const g = got as ArrayLike<number>;
  expect(g.length, `${label}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const bound = tol * (1 + Math.abs(want[i]));
    if (!(Math.abs(g[i] - want[i]) <= bound)) {
      throw new Error(`${label}[${i}]: got ${g[i]}, want ${want[i]} (tolerance ${bound})`);
    }
  }
}

describe.each(backends)('residual tail against PyTorch ($name)', (backend) => {
  describe.each(fixtures.cases)('$name', (c) => {
    const T = c.dtype === 'float32' ? Float32Array : Float64Array;
    const tol = c.dtype === 'float32' ? 2e-5 : 1e-10;
    const arrays = () => ({
      x: T.from(c.x),
      residual: T.from(c.residual),
      dy: T.from(c.dy),
      gamma: T.from(c.gamma),
      beta: T.from(c.beta),
      runningMean: T.from(c.runningMean),
      runningVar: T.from(c.runningVar),
    });

    it('training forward, running statistics and both backward results', () => {
      const a = arrays();
      const { x, residual, dy, gamma, beta, runningMean, runningVar } = a;
      const { axis, eps, momentum, activation } = c;
      const r = backend.batchNormTrain(x, c.shape, {
        axis,
        eps,
        momentum,
        gamma,
        beta,
        runningMean,
        runningVar,
        residual,
        activation,
      });
      expectClose(r.y, c.train.y, tol, 'y');
      expectClose(runningMean, c.train.runningMean, tol, 'runningMean');
      expectClose(runningVar, c.train.runningVar, tol, 'runningVar');
      const g = backend.batchNormBackward(dy, x, c.shape, r, { axis, gamma, activation, y: r.y, residual: true });
      expectClose(g.dx, c.train.dx, tol * 10, 'dx');
      expectClose(g.dGamma, c.train.dGamma, tol * 10, 'dGamma');
      expectClose(g.dBeta, c.train.dBeta, tol, 'dBeta');
      expectClose(g.dResidual, c.train.dResidual, 0, 'dResidual');
    });

    it('eval forward and the frozen-statistics backward', () => {
      const { x, residual, dy, gamma, beta, runningMean, runningVar } = arrays();
      const { axis, eps, activation } = c;
      const y = backend.batchNormEval(x, c.shape, {
        axis,
        eps,
        gamma,
        beta,
        runningMean,
        runningVar,
        residual,
        activation,
      });
      expectClose(y, c.eval.y, tol, 'y');
      const invStd = runningVar.map((v) => 1 / Math.sqrt(v + eps));
      const saved = { mean: runningMean, invStd };
      const g = backend.batchNormBackward(dy, x, c.shape, saved, {
        axis,
        gamma,
        training: false,
        activation,
        y,
        residual: true,
      });
      expectClose(g.dx, c.eval.dx, tol, 'dx');
      expectClose(g.dGamma, c.eval.dGamma, tol * 10, 'dGamma');
      expectClose(g.dResidual, c.eval.dResidual, 0, 'dResidual');
    });
  });
});

/** Values in [-1, 1) from a fixed seed. */
function randomArray(T: Float32ArrayConstructor | Float64ArrayConstructor, n: number, seed: number): FloatArray {
  const next = generator(seed);
  const a = new T(n);
  for (let i = 0; i < n; i++) a[i] = next() * 2 - 1;
  return a;
}

describe.each(backends)('residual gradients by finite differences ($name)', (backend) => {
  it.each(['none', 'relu'] as const)('d/dx and d/dz of sum(y * dy), activation %s', (activation) => {
    const shape = [5, 3, 4];
    const n = 60;
    const x = randomArray(Float64Array, n, 1);
    const z = randomArray(Float64Array, n, 2);
    const dy = randomArray(Float64Array, n, 3);
    const gamma = Float64Array.from([1.5, -0.7, 0.9]);
    const beta = Float64Array.from([0.1, 0.2, -0.3]);
    const loss = (xv: FloatArray, zv: FloatArray) => {
      const { y } = backend.batchNormTrain(xv, shape, { gamma, beta, residual: zv, activation });
      let s = 0;
      for (let i = 0; i < n; i++) s += y[i] * dy[i];
      return s;
    };
    const r = backend.batchNormTrain(x, shape, { gamma, beta, residual: z, activation });
    const g = backend.batchNormBackward(dy, x, shape, r, { gamma, activation, y: r.y, residual: true });
    const h = 1e-6;
    for (let i = 0; i < n; i++) {
      // A kink of the ReLU within reach of the step would make the difference meaningless.
      const pre = r.y[i];
      if (activation === 'relu' && Math.abs(pre) < 1e-3 && pre !== 0) continue;
      const bump = (a: FloatArray, d: number) => {
        const b = a.slice();
        b[i] += d;
        return b;
      };
      const numericZ = (loss(x, bump(z, h)) - loss(x, bump(z, -h))) / (2 * h);
      const numericX = (loss(bump(x, h), z) - loss(bump(x, -h), z)) / (2 * h);
      expect(Math.abs((g.dResidual as FloatArray)[i] - numericZ), `dResidual[${i}]`).toBeLessThan(1e-6);
      expect(Math.abs(g.dx[i] - numericX), `dx[${i}]`).toBeLessThan(1e-6);
    }
  });
});

describe.each(backends)('residual outputs and in-place forms ($name)', (backend) => {
  const shape = [4, 6, 5];
  const n = 120;

  it('outResidual is written and returned; dx in place over dy still gets the right dResidual', async () => {
    const x = randomArray(Float32Array, n, 4);
    const z = randomArray(Float32Array, n, 5);
    const dy = randomArray(Float32Array, n, 6);
    const r = backend.batchNormTrain(x, shape, { residual: z, activation: 'relu' });
    const options = { activation: 'relu' as const, y: r.y, residual: true };
    const reference = backend.batchNormBackward(dy, x, shape, r, options);
    const outResidual = new Float32Array(n);
    const inPlace = dy.slice();
    const g = backend.batchNormBackward(inPlace, x, shape, r, { ...options, out: inPlace, outResidual });
    expect(g.dResidual).toBe(outResidual);
    expect(g.dx).toBe(inPlace);
    expect(maxAbsDiff(outResidual, reference.dResidual as FloatArray)).toBe(0);
    expect(maxAbsDiff(inPlace, reference.dx)).toBe(0);
    const viaAsync = await backend.batchNormBackwardAsync(dy, x, shape, r, options);
    expect(maxAbsDiff(viaAsync.dResidual as FloatArray, outResidual)).toBe(0);
  });

  it('Async forward forms equal the sync ones; the forward may write y over x', async () => {
    const x = randomArray(Float64Array, n, 7);
    const z = randomArray(Float64Array, n, 8);
    const runningMean = new Float64Array(6);
    const runningVar = new Float64Array(6).fill(1);
    const sync = backend.batchNormTrain(x, shape, { residual: z, activation: 'relu' }).y;
    const viaAsync = (await backend.batchNormTrainAsync(x, shape, { residual: z, activation: 'relu' })).y;
    expect(maxAbsDiff(viaAsync, sync)).toBe(0);
    const evaluated = backend.batchNormEval(x, shape, { runningMean, runningVar, residual: z });
    const evaluatedAsync = await backend.batchNormEvalAsync(x, shape, { runningMean, runningVar, residual: z });
    expect(maxAbsDiff(evaluatedAsync, evaluated)).toBe(0);
    const inPlace = x.slice();
    backend.batchNormTrain(inPlace, shape, { residual: z, activation: 'relu', out: inPlace });
    expect(maxAbsDiff(inPlace, sync)).toBe(0);
  });

  it('without residual: true a backward result has no dResidual', () => {
    const x = randomArray(Float32Array, n, 9);
    const r = backend.batchNormTrain(x, shape);
    expect(backend.batchNormBackward(x.slice(), x, shape, r).dResidual).toBeUndefined();
  });
});

describe.skipIf(!native)('residual: native against js on the parallel paths', () => {
  it.each([
    { shape: [8, 32, 20, 20], axis: 1 },
    { shape: [8, 20, 20, 32], axis: -1 },
    { shape: [16, 300, 7, 7], axis: 1 },
  ])('$shape axis $axis, f32, relu', ({ shape, axis }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const c = shape.at(axis) as number;
    const x = randomArray(Float32Array, n, 10);
    const z = randomArray(Float32Array, n, 11);
    const dy = randomArray(Float32Array, n, 12);
    const gamma = randomArray(Float32Array, c, 13);
    const options = { axis, gamma, residual: z, activation: 'relu' as const };
    const a = native!.batchNormTrain(x, shape, options);
    const b = js.batchNormTrain(x, shape, options);
    expect(maxAbsDiff(a.y, b.y)).toBeLessThan(1e-5);
    const ga = native!.batchNormBackward(dy, x, shape, a, { axis, gamma, activation: 'relu', y: a.y, residual: true });
    const gb = js.batchNormBackward(dy, x, shape, a, { axis, gamma, activation: 'relu', y: a.y, residual: true });
    expect(maxAbsDiff(ga.dx, gb.dx)).toBeLessThan(1e-5);
    expect(maxAbsDiff(ga.dResidual as FloatArray, gb.dResidual as FloatArray)).toBe(0);
  });
});

describe.each(backends)('residual argument checks ($name)', (backend) => {
  const shape = [4, 3, 2];
  const x = () => new Float32Array(24).map((_, i) => Math.sin(i));

  it('a residual of another dtype or length names the argument', () => {
    expect(() => backend.batchNormTrain(x(), shape, { residual: new Float64Array(24) as never })).toThrow(
      new TypeError('batchNormTrain: residual must be a Float32Array like x, got Float64Array'),
    );
    expect(() => backend.batchNormTrain(x(), shape, { residual: new Float32Array(23) })).toThrow(
      new RangeError('batchNormTrain: residual must have length 24 (the length of x), got 23'),
    );
    const runningMean = new Float32Array(3);
    const runningVar = new Float32Array(3).fill(1);
    expect(() => backend.batchNormEval(x(), shape, { runningMean, runningVar, residual: [1, 2] as never })).toThrow(
      TypeError,
    );
  });

  it('out over the residual is refused and nothing is written', () => {
    const memory = new Float32Array(48);
    const residual = memory.subarray(0, 24);
    const out = memory.subarray(12, 36);
    const before = memory.slice();
    expect(() => backend.batchNormTrain(x(), shape, { residual, out })).toThrow(
      new RangeError('batchNormTrain: residual must not share memory with out'),
    );
    expect(maxAbsDiff(memory, before)).toBe(0);
  });

  it('outResidual needs residual: true, and must not overlap dy', () => {
    const xs = x();
    const saved = backend.batchNormTrain(xs, shape);
    const dy = new Float32Array(24).fill(1);
    expect(() => backend.batchNormBackward(dy, xs, shape, saved, { outResidual: new Float32Array(24) })).toThrow(
      new TypeError('batchNormBackward: outResidual is only written with residual: true'),
    );
    expect(() => backend.batchNormBackward(dy, xs, shape, saved, { residual: 'yes' as never })).toThrow(
      new TypeError('batchNormBackward: residual must be a boolean (true: also return dResidual), got "yes"'),
    );
    expect(() => backend.batchNormBackward(dy, xs, shape, saved, { residual: true, outResidual: dy })).toThrow(
      new RangeError('batchNormBackward: outResidual must not share memory with dy'),
    );
  });
});

describe.each(backends)('BatchNorm layer with a residual ($name)', (backend) => {
  it('forward(x, shape, { residual }) and residualGrad after backward match the functional calls', () => {
    const shape = [6, 4, 5];
    const n = 120;
    const x = randomArray(Float64Array, n, 14);
    const z = randomArray(Float64Array, n, 15);
    const dy = randomArray(Float64Array, n, 16);
    const layer = new BatchNorm(4, { dtype: 'float64', activation: 'relu', backend });
    const y = layer.forward(x, shape, { residual: z });
    const r = backend.batchNormTrain(x, shape, { residual: z, activation: 'relu' });
    expect(maxAbsDiff(y, r.y)).toBe(0);
    const dx = layer.backward(dy);
    const g = backend.batchNormBackward(dy, x, shape, r, { activation: 'relu', y: r.y, residual: true });
    expect(maxAbsDiff(dx, g.dx)).toBe(0);
    expect(maxAbsDiff(layer.residualGrad as FloatArray, g.dResidual as FloatArray)).toBe(0);
    layer.forward(x, shape);
    layer.backward(dy);
    expect(layer.residualGrad).toBeNull();
    expect(() => layer.forward(x, shape, { residul: z } as never)).toThrow(
      new TypeError('BatchNorm.forward: unknown option "residul" (expected residual or out)'),
    );
  });
});
