// The BatchNorm layer against PyTorch runs of nn.BatchNorm1d/2d (test/fixtures/layer-cases.json,
// made by test/fixtures/make_layer_fixtures.py): step sequences with gradient accumulation,
// SGD updates, train/eval switches and state dicts under PyTorch's names; on every backend,
// in float64 (tight) and float32 (the same float32 inputs; float32 storage of results).
// Then the layer's own contract: defaults, argument errors, what backward keeps, state loading.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Backend, BatchNorm, type BatchNormOptions, type FloatArray } from '../index';
import { backends } from './backends';

type DType = 'float32' | 'float64';

interface Step {
  mode: 'train' | 'eval';
  zeroGradBefore: boolean;
  x: number[];
  y: number[];
  dy?: number[];
  dx?: number[];
  gammaGrad?: number[];
  betaGrad?: number[];
  runningMean?: number[];
  runningVar?: number[];
  numBatchesTracked?: number;
  sgd?: number;
  gamma?: number[];
  beta?: number[];
}
type TorchState = Partial<Record<'weight' | 'bias' | 'running_mean' | 'running_var', number[]>> & {
  num_batches_tracked?: number;
};
interface Case {
  name: string;
  shape: number[];
  axis: number;
  numFeatures: number;
  options: Required<Pick<BatchNormOptions, 'eps' | 'momentum' | 'affine' | 'trackRunningStats' | 'activation'>>;
  initialState: TorchState | null;
  steps: Step[];
  finalState: TorchState;
}

const cases = (JSON.parse(readFileSync(join(__dirname, 'fixtures', 'layer-cases.json'), 'utf8')) as { cases: Case[] })
  .cases;

// PyTorch computed in float64 from the very inputs the layer gets. float64: only rounding
// differs (sums in another order). float32: results are stored in float32 (relative 6e-8)
// and the SGD-updated gamma/beta and running stats carry that rounding into later steps.
const TOL: Record<DType, number> = { float64: 1e-12, float32: 4e-6 };

/** |got - expected| <= tol * max(1, max|expected|): gradients can cancel to near zero. */
function expectClose(got: ArrayLike<number> | null, expected: readonly number[], dtype: DType, label: string) {
  expect(got, label).not.toBeNull();
  const g = got as ArrayLike<number>;
  expect(g.length, `${label}: length`).toBe(expected.length);
  const scale = Math.max(1, ...expected.map(Math.abs));
  const tol = TOL[dtype] * scale;
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(g[i] - expected[i]) <= tol)) {
      throw new Error(`${label}[${i}]: got ${g[i]}, expected ${expected[i]} (tolerance ${tol.toExponential(2)})`);
    }
  }
}

function arr(dtype: DType, values: readonly number[]): FloatArray {
  return dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values);
}

function layerFor(c: Case, dtype: DType, backend: Backend): BatchNorm {
  const layer = new BatchNorm(c.numFeatures, { ...c.options, axis: c.axis, dtype, backend });
  if (c.initialState) layer.loadStateDict(c.initialState);
  return layer;
}

/** Replays one PyTorch run, sync or async, checking everything the layer holds after each step. */
async function replay(c: Case, dtype: DType, backend: Backend, useAsync: boolean): Promise<BatchNorm> {
  const layer = layerFor(c, dtype, backend);
  for (const [i, step] of c.steps.entries()) {
    const at = `${backend.name} ${dtype} step ${i} (${step.mode})`;
    layer.train(step.mode === 'train');
    if (step.zeroGradBefore) layer.zeroGrad();
    const x = arr(dtype, step.x);
    const y = useAsync ? await layer.forwardAsync(x, c.shape) : layer.forward(x, c.shape);
    expect(y).toBeInstanceOf(dtype === 'float32' ? Float32Array : Float64Array);
    expectClose(y, step.y, dtype, `${at} y`);
    if (step.runningMean && step.runningVar) {
      expectClose(layer.runningMean, step.runningMean, dtype, `${at} runningMean`);
      expectClose(layer.runningVar, step.runningVar, dtype, `${at} runningVar`);
      expect(layer.numBatchesTracked, `${at} numBatchesTracked`).toBe(step.numBatchesTracked);
    } else {
      expect(layer.runningMean).toBeNull();
      expect(layer.runningVar).toBeNull();
    }
    if (step.dy && step.dx) {
      const dy = arr(dtype, step.dy);
      const dx = useAsync ? await layer.backwardAsync(dy) : layer.backward(dy);
      expectClose(dx, step.dx, dtype, `${at} dx`);
      if (step.gammaGrad && step.betaGrad) {
        expectClose(layer.gammaGrad, step.gammaGrad, dtype, `${at} gammaGrad (accumulated)`);
        expectClose(layer.betaGrad, step.betaGrad, dtype, `${at} betaGrad (accumulated)`);
      } else {
        expect(layer.gammaGrad).toBeNull();
        expect(layer.betaGrad).toBeNull();
      }
    }
    if (step.sgd !== undefined && step.gamma && step.beta) {
      const [gamma, beta, gammaGrad, betaGrad] = [layer.gamma!, layer.beta!, layer.gammaGrad!, layer.betaGrad!];
      for (let k = 0; k < c.numFeatures; k++) {
        gamma[k] -= step.sgd * gammaGrad[k];
        beta[k] -= step.sgd * betaGrad[k];
      }
      expectClose(gamma, step.gamma, dtype, `${at} gamma after SGD`);
      expectClose(beta, step.beta, dtype, `${at} beta after SGD`);
    }
  }
  return layer;
}

function expectFinalState(layer: BatchNorm, c: Case, dtype: DType) {
  const state = layer.stateDict();
  const f = c.finalState;
  const expectEntry = (got: FloatArray | undefined, expected: number[] | undefined, label: string) => {
    if (expected === undefined) expect(got, label).toBeUndefined();
    else expectClose(got ?? null, expected, dtype, label);
  };
  expectEntry(state.gamma, f.weight, 'stateDict gamma (weight)');
  expectEntry(state.beta, f.bias, 'stateDict beta (bias)');
  expectEntry(state.runningMean, f.running_mean, 'stateDict runningMean (running_mean)');
  expectEntry(state.runningVar, f.running_var, 'stateDict runningVar (running_var)');
  expect(state.numBatchesTracked).toBe(f.num_batches_tracked ?? 0);
}

it('fixture file covers the layer options', () => {
  expect(cases.length).toBeGreaterThanOrEqual(8);
  expect(cases.some((c) => c.options.momentum === null)).toBe(true);
  expect(cases.some((c) => !c.options.affine)).toBe(true);
  expect(cases.some((c) => !c.options.trackRunningStats)).toBe(true);
  expect(cases.some((c) => c.axis === -1)).toBe(true);
  expect(cases.some((c) => c.options.activation === 'relu')).toBe(true);
  // gradient accumulation: a backward without zero_grad after an earlier backward
  expect(cases.some((c) => c.steps.filter((s) => s.dy && !s.zeroGradBefore).length >= 3)).toBe(true);
});

for (const b of backends) {
  describe(`BatchNorm layer on backend ${b.name} against PyTorch`, () => {
    for (const c of cases) {
      for (const dtype of ['float64', 'float32'] as const) {
        it(`${dtype} ${c.name}`, async () => {
          const layer = await replay(c, dtype, b, false);
          expectFinalState(layer, c, dtype);
        });
      }
      it(`float64 ${c.name}: forwardAsync/backwardAsync give the same run`, async () => {
        const layer = await replay(c, 'float64', b, true);
        expectFinalState(layer, c, 'float64');
      });
      it(`float64 ${c.name}: PyTorch's final state_dict loads and round-trips`, () => {
        const layer = new BatchNorm(c.numFeatures, { ...c.options, axis: c.axis, dtype: 'float64', backend: b });
        layer.loadStateDict(c.finalState);
        expectFinalState(layer, c, 'float64');
        const copy = new BatchNorm(c.numFeatures, { ...c.options, axis: c.axis, dtype: 'float64', backend: b });
        copy.loadStateDict(layer.stateDict());
        expect(copy.stateDict()).toEqual(layer.stateDict());
      });
    }
  });

  describe(`BatchNorm layer behaviour on backend ${b.name}`, () => {
    const shape = [4, 3, 2];
    const input = (seed: number) =>
      Float64Array.from({ length: 24 }, (_, i) => Math.sin(seed * 7.1 + i * 1.3) * (1 + (i % 3)));
    const layer64 = (options: BatchNormOptions = {}) => new BatchNorm(3, { dtype: 'float64', backend: b, ...options });

    it('starts in training mode with PyTorch defaults', () => {
      const layer = new BatchNorm(3, { backend: b });
      expect(layer.training).toBe(true);
      expect(layer.dtype).toBe('float32');
      expect(layer.gamma).toEqual(new Float32Array([1, 1, 1]));
      expect(layer.beta).toEqual(new Float32Array(3));
      expect(layer.runningMean).toEqual(new Float32Array(3));
      expect(layer.runningVar).toEqual(new Float32Array([1, 1, 1]));
      expect(layer.gammaGrad).toEqual(new Float32Array(3));
      expect(layer.numBatchesTracked).toBe(0);
      expect(layer.momentum).toBe(0.1);
      expect(layer.eps).toBe(1e-5);
      const bare = new BatchNorm(3, { affine: false, trackRunningStats: false, backend: b });
      expect([bare.gamma, bare.beta, bare.gammaGrad, bare.betaGrad, bare.runningMean, bare.runningVar]).toEqual([
        null,
        null,
        null,
        null,
        null,
        null,
      ]);
      expect(bare.stateDict()).toEqual({ numBatchesTracked: 0 });
    });

    it('train() and eval() switch the mode and return the layer', () => {
      const layer = layer64();
      expect(layer.eval()).toBe(layer);
      expect(layer.training).toBe(false);
      expect(layer.train()).toBe(layer);
      expect(layer.training).toBe(true);
      expect(layer.train(false).training).toBe(false);
    });

    it('backward before any forward throws a clear Error', async () => {
      const layer = layer64();
      expect(() => layer.backward(new Float64Array(24))).toThrowError(/no forward pass to differentiate/);
      await expect(layer.backwardAsync(new Float64Array(24))).rejects.toThrowError(/no forward pass/);
    });

    it('eval uses the running statistics and leaves them alone', () => {
      const layer = layer64({ eps: 1e-3 });
      layer.loadStateDict({ runningMean: [0.5, -1, 2], runningVar: [4, 0.25, 1], gamma: [2, 1, -1], beta: [0, 1, 0] });
      layer.eval();
      const x = input(1);
      const y = layer.forward(x, shape);
      const expected = b.batchNormEval(x, shape, {
        eps: 1e-3,
        runningMean: new Float64Array([0.5, -1, 2]),
        runningVar: new Float64Array([4, 0.25, 1]),
        gamma: new Float64Array([2, 1, -1]),
        beta: new Float64Array([0, 1, 0]),
      });
      expect(y).toEqual(expected);
      expect(layer.runningMean).toEqual(new Float64Array([0.5, -1, 2]));
      expect(layer.numBatchesTracked).toBe(0);
    });

    it('backward in eval mode is the frozen form (running statistics are constants)', () => {
      const layer = layer64();
      layer.loadStateDict({ runningMean: [0.5, -1, 2], runningVar: [4, 0.25, 1], gamma: [2, 1, -1], beta: [0, 1, 0] });
      layer.eval();
      const x = input(2);
      const dy = input(3);
      layer.forward(x, shape);
      const dx = layer.backward(dy);
      const invStd = Float64Array.from([4, 0.25, 1], (v) => 1 / Math.sqrt(v + 1e-5));
      const expected = b.batchNormBackward(
        dy,
        x,
        shape,
        { mean: new Float64Array([0.5, -1, 2]), invStd },
        {
          gamma: new Float64Array([2, 1, -1]),
          training: false,
        },
      );
      expect(dx).toEqual(expected.dx);
      expect(layer.gammaGrad).toEqual(expected.dGamma);
      expect(layer.betaGrad).toEqual(expected.dBeta);
    });

    it('trackRunningStats false normalizes with batch statistics in eval too', () => {
      const layer = layer64({ trackRunningStats: false }).eval();
      const x = input(4);
      expect(layer.forward(x, shape)).toEqual(b.batchNormTrain(x, shape).y);
      expect(layer.numBatchesTracked).toBe(0);
    });

    it('momentum null: the first batch sets the running stats (factor 1/1), then averages', () => {
      const layer = layer64({ momentum: null });
      const x1 = input(5);
      const x2 = input(6);
      const rm = new Float64Array(3);
      const rv = new Float64Array(3).fill(1);
      layer.forward(x1, shape);
      b.batchNormTrain(x1, shape, { runningMean: rm, runningVar: rv, momentum: 1 });
      expect(layer.runningMean).toEqual(rm);
      layer.forward(x2, shape);
      b.batchNormTrain(x2, shape, { runningMean: rm, runningVar: rv, momentum: 1 / 2 });
      expect(layer.runningVar).toEqual(rv);
      expect(layer.numBatchesTracked).toBe(2);
    });

    it('backward refuses an x modified since forward (it keeps a reference, not a copy) and changes nothing', async () => {
      const x = input(7);
      const dy = input(8);
      const layer = layer64();
      layer.forward(x, shape);
      x[5] = x[5] + 2 ** -40; // the smallest changes count too
      const message = /^BatchNorm\.backward(Async)?: x was modified after forward/;
      expect(() => layer.backward(dy)).toThrow(message);
      await expect(layer.backwardAsync(dy)).rejects.toThrow(message);
      expect(Array.from(layer.gammaGrad ?? [])).toEqual([0, 0, 0]);
      x.fill(42); // a data loader refilling its batch buffer before backward
      expect(() => layer.backward(dy)).toThrow(message);
      const fresh = input(7);
      layer.forward(fresh, shape);
      const reference = layer64();
      reference.forward(fresh.slice(), shape);
      expect(layer.backward(dy)).toEqual(reference.backward(dy));
    });

    it('backward uses gamma as the forward saw it, even if it was updated since', () => {
      const layer = layer64();
      layer.loadStateDict({ gamma: [2, -1, 0.5], beta: [0, 0, 0], runningMean: [0, 0, 0], runningVar: [1, 1, 1] });
      const x = input(9);
      const dy = input(10);
      layer.forward(x, shape);
      layer.gamma?.fill(7);
      const r = b.batchNormTrain(x, shape, { gamma: new Float64Array([2, -1, 0.5]) });
      const expected = b.batchNormBackward(dy, x, shape, r, { gamma: new Float64Array([2, -1, 0.5]) });
      expect(layer.backward(dy)).toEqual(expected.dx);
    });

    it('gradients accumulate over backward calls until zeroGrad', () => {
      const layer = layer64();
      const x = input(11);
      const dy = input(12);
      layer.forward(x, shape);
      layer.backward(dy);
      const once = layer.gammaGrad!.slice();
      layer.backward(dy);
      expect(Array.from(layer.gammaGrad!)).toEqual(Array.from(once, (v) => v + v));
      layer.zeroGrad();
      expect(layer.gammaGrad).toEqual(new Float64Array(3));
      expect(layer.betaGrad).toEqual(new Float64Array(3));
    });

    it('a failed forward changes nothing', () => {
      const layer = layer64();
      layer.forward(input(13), shape);
      const before = layer.stateDict();
      expect(() => layer.forward(new Float64Array(3), [1, 3])).toThrowError(RangeError); // one value per channel
      expect(() => layer.forward(new Float32Array(24), shape)).toThrowError(
        new TypeError("x must be a Float64Array (the layer's dtype 'float64'), got Float32Array"),
      );
      expect(() => layer.forward(new Float64Array(16), [4, 4])).toThrowError(
        new RangeError('x has 4 channels (shape [4, 4], axis 1) but the layer has numFeatures 3'),
      );
      expect(() => layer.forward(input(1), [4, 3, 3])).toThrowError(RangeError);
      expect(layer.stateDict()).toEqual(before);
    });

    it('the layer is busy while an async call runs', async () => {
      const layer = layer64();
      const pending = layer.forwardAsync(input(14), shape);
      expect(() => layer.forward(input(14), shape)).toThrowError(/forwardAsync is still running/);
      expect(() => layer.loadStateDict({})).toThrowError(/still running/);
      await pending;
      expect(layer.numBatchesTracked).toBe(1);
      const backward = layer.backwardAsync(input(15));
      expect(() => layer.zeroGrad()).toThrowError(/backwardAsync is still running/);
      await backward;
      expect(() => layer.zeroGrad()).not.toThrow();
    });
  });
}

describe('BatchNorm constructor arguments', () => {
  const cases: Array<[string, () => unknown, ErrorConstructor, RegExp]> = [
    ['numFeatures not an integer', () => new BatchNorm(2.5), TypeError, /numFeatures must be an integer, got 2.5/],
    ['numFeatures 0', () => new BatchNorm(0), RangeError, /numFeatures must be >= 1, got 0/],
    ['options not an object', () => new BatchNorm(2, 3 as never), TypeError, /options must be an object, got 3/],
    ['a misspelt option', () => new BatchNorm(2, { momentun: 0.2 } as never), TypeError, /unknown option "momentun"/],
    ['axis not an integer', () => new BatchNorm(2, { axis: 0.5 }), TypeError, /axis must be an integer, got 0.5/],
    ['eps 0', () => new BatchNorm(2, { eps: 0 }), RangeError, /eps must be a finite number > 0, got 0/],
    ['eps a string', () => new BatchNorm(2, { eps: '1' as never }), TypeError, /eps must be a number/],
    ['momentum > 1', () => new BatchNorm(2, { momentum: 1.5 }), RangeError, /momentum must be in \[0, 1\] or null/],
    [
      'momentum a string',
      () => new BatchNorm(2, { momentum: 'x' as never }),
      TypeError,
      /momentum must be a number or null/,
    ],
    [
      'affine not boolean',
      () => new BatchNorm(2, { affine: 1 as never }),
      TypeError,
      /affine must be a boolean, got 1/,
    ],
    [
      'trackRunningStats not boolean',
      () => new BatchNorm(2, { trackRunningStats: null as never }),
      TypeError,
      /trackRunningStats must be a boolean, got null/,
    ],
    [
      'dtype unknown',
      () => new BatchNorm(2, { dtype: 'int8' as never }),
      TypeError,
      /dtype must be 'float32', 'float64', 'bfloat16' or 'float16'/,
    ],
    ['backend not a Backend', () => new BatchNorm(2, { backend: {} as never }), TypeError, /backend must be a Backend/],
    [
      'activation unknown',
      () => new BatchNorm(2, { activation: 'gelu' as never }),
      RangeError,
      /activation must be 'relu' or 'none'/,
    ],
  ];
  for (const [what, make, type, message] of cases) {
    it(`rejects ${what}`, () => {
      expect(make).toThrowError(type);
      expect(make).toThrowError(message);
    });
  }
  it('accepts momentum null and 0 and 1', () => {
    expect(new BatchNorm(2, { momentum: null }).momentum).toBeNull();
    expect(new BatchNorm(2, { momentum: 0 }).momentum).toBe(0);
    expect(new BatchNorm(2, { momentum: 1 }).momentum).toBe(1);
  });
});

describe('BatchNorm state dicts', () => {
  const full = () => new BatchNorm(3, { dtype: 'float64' });
  const torchState = {
    weight: [1.5, 2, 2.5],
    bias: [0.1, 0.2, 0.3],
    running_mean: [-1, 0, 1],
    running_var: [2, 3, 4],
    num_batches_tracked: 12,
  };

  it('loads PyTorch names from plain arrays into the same array objects', () => {
    const layer = full();
    const gamma = layer.gamma;
    layer.loadStateDict(torchState);
    expect(layer.gamma).toBe(gamma);
    expect(layer.stateDict()).toEqual({
      gamma: new Float64Array([1.5, 2, 2.5]),
      beta: new Float64Array([0.1, 0.2, 0.3]),
      runningMean: new Float64Array([-1, 0, 1]),
      runningVar: new Float64Array([2, 3, 4]),
      numBatchesTracked: 12,
    });
  });

  it('stateDict returns copies', () => {
    const layer = full();
    const state = layer.stateDict();
    state.gamma?.fill(9);
    state.runningVar?.fill(9);
    expect(layer.gamma).toEqual(new Float64Array([1, 1, 1]));
    expect(layer.runningVar).toEqual(new Float64Array([1, 1, 1]));
  });

  it('numBatchesTracked may be left out (0, as PyTorch reads old checkpoints)', () => {
    const layer = full();
    layer.loadStateDict({ ...torchState, num_batches_tracked: undefined });
    expect(layer.numBatchesTracked).toBe(0);
  });

  const bad: Array<[string, () => BatchNorm, unknown, ErrorConstructor, RegExp]> = [
    ['a state that is not an object', full, [1, 2], TypeError, /state must be an object/],
    [
      'a wrong length (after valid entries)',
      full,
      { ...torchState, running_var: [1, 2] },
      RangeError,
      /running_var must have length 3 \(numFeatures\), got 2/,
    ],
    [
      'another dtype',
      full,
      { ...torchState, weight: new Float32Array(3) },
      TypeError,
      /weight must be a Float64Array \(the layer's dtype 'float64'\)/,
    ],
    ['non-numbers', full, { ...torchState, bias: ['a', 'b', 'c'] }, TypeError, /bias\[0\] must be a number, got "a"/],
    ['an unknown key', full, { ...torchState, momentum: 0.1 }, TypeError, /unexpected key "momentum"/],
    ['both names of one entry', full, { ...torchState, gamma: [1, 1, 1] }, TypeError, /both gamma and weight given/],
    [
      'a missing array',
      full,
      { ...torchState, running_mean: undefined },
      TypeError,
      /missing runningMean \(or running_mean\)/,
    ],
    [
      'an array the layer does not have',
      () => new BatchNorm(3, { dtype: 'float64', affine: false }),
      torchState,
      TypeError,
      /unexpected key "weight": this layer has no gamma \(affine: false\)/,
    ],
    [
      'a negative count',
      full,
      { ...torchState, num_batches_tracked: -1 },
      RangeError,
      /num_batches_tracked must be >= 0/,
    ],
    [
      'a fractional count',
      full,
      { ...torchState, num_batches_tracked: 1.5 },
      TypeError,
      /num_batches_tracked must be an integer/,
    ],
  ];
  for (const [what, make, state, type, message] of bad) {
    it(`rejects ${what} and changes nothing`, () => {
      const layer = make();
      const before = layer.stateDict();
      const load = () => layer.loadStateDict(state as never);
      expect(load).toThrowError(type);
      expect(load).toThrowError(message);
      expect(layer.stateDict()).toEqual(before);
    });
  }
});
