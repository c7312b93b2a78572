// Batch Renormalization (issue 17, item 3): BatchNorm({ renorm: { rMax, dMax } }) against a
// NumPy reference written from the paper's equations (fixtures/make_renorm_fixtures.py),
// several steps in a row so that r and d come from the updated running statistics, with
// clipping active; r = 1 / d = 0 is plain batch norm.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BatchNorm, SyncBatchNorm } from '../index';
import { backends } from './backends';
import { maxAbsDiff } from './helpers/compare';

interface Step {
  x: number[];
  dy: number[];
  y: number[];
  dx: number[];
  dGamma: number[];
  dBeta: number[];
  runningMean: number[];
  runningVar: number[];
}
interface Case {
  shape: number[];
  axis: number;
  rMax: number;
  dMax: number;
  momentum: number;
  eps: number;
  gamma: number[];
  beta: number[];
  steps: Step[];
}
const { cases } = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'renorm-cases.json'), 'utf8')) as {
  cases: Case[];
};
const f64 = (a: number[]) => Float64Array.from(a);

describe.each(backends)('renorm ($name)', (b) => {
  it.each(cases)('$shape axis $axis, rMax $rMax dMax $dMax: every step matches the reference', async (t) => {
    for (const useAsync of [false, true]) {
      const layer = new BatchNorm(t.gamma.length, {
        backend: b,
        dtype: 'float64',
        axis: t.axis,
        eps: t.eps,
        momentum: t.momentum,
        renorm: { rMax: t.rMax, dMax: t.dMax },
      });
      layer.gamma?.set(t.gamma);
      layer.beta?.set(t.beta);
      for (const s of t.steps) {
        layer.zeroGrad();
        const y = useAsync ? await layer.forwardAsync(f64(s.x), t.shape) : layer.forward(f64(s.x), t.shape);
        const dx = useAsync ? await layer.backwardAsync(f64(s.dy)) : layer.backward(f64(s.dy));
        expect(maxAbsDiff(y, f64(s.y))).toBeLessThan(1e-10);
        expect(maxAbsDiff(dx, f64(s.dx))).toBeLessThan(1e-10);
        expect(maxAbsDiff(layer.gammaGrad as Float64Array, f64(s.dGamma))).toBeLessThan(1e-10);
        expect(maxAbsDiff(layer.betaGrad as Float64Array, f64(s.dBeta))).toBeLessThan(1e-10);
        expect(maxAbsDiff(layer.runningMean as Float64Array, f64(s.runningMean))).toBeLessThan(1e-12);
        expect(maxAbsDiff(layer.runningVar as Float64Array, f64(s.runningVar))).toBeLessThan(1e-12);
      }
    }
  });

  it('rMax 1 and dMax 0 is plain batch norm, step for step', () => {
    const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 3 + i * 0.2);
    const dy = Float32Array.from({ length: 24 }, (_, i) => Math.cos(i));
    const plain = new BatchNorm(3, { backend: b });
    const renorm = new BatchNorm(3, { backend: b, renorm: { rMax: 1, dMax: 0 } });
    for (let i = 0; i < 3; i++) {
      expect(maxAbsDiff(renorm.forward(x, [2, 3, 4]), plain.forward(x, [2, 3, 4]))).toBeLessThan(1e-6);
      expect(maxAbsDiff(renorm.backward(dy), plain.backward(dy))).toBeLessThan(1e-6);
    }
    expect(maxAbsDiff(renorm.gammaGrad as Float32Array, plain.gammaGrad as Float32Array)).toBeLessThan(1e-5);
    expect(maxAbsDiff(renorm.runningVar as Float32Array, plain.runningVar as Float32Array)).toBeLessThan(1e-6);
  });

  it('renorm.momentum moves the running statistics instead of the layer momentum', () => {
    const x = Float64Array.from({ length: 12 }, (_, i) => i);
    const a = new BatchNorm(3, {
      backend: b,
      dtype: 'float64',
      momentum: 0.1,
      renorm: { rMax: 2, dMax: 1, momentum: 0.5 },
    });
    const c = new BatchNorm(3, { backend: b, dtype: 'float64', momentum: 0.5 });
    a.forward(x, [4, 3]);
    c.forward(x, [4, 3]);
    expect(Array.from(a.runningMean as Float64Array)).toEqual(Array.from(c.runningMean as Float64Array));
  });

  it('options are checked: numbers, ranges, unknown keys, and the combinations it cannot take', () => {
    expect(() => new BatchNorm(3, { renorm: { rMax: 0.5, dMax: 0 } })).toThrow(
      new RangeError('BatchNorm: renorm.rMax must be a finite number >= 1, got 0.5'),
    );
    expect(() => new BatchNorm(3, { renorm: { rMax: 2, dMax: -1 } })).toThrow(RangeError);
    expect(() => new BatchNorm(3, { renorm: { rMax: 2 } as never })).toThrow(
      new TypeError('BatchNorm: renorm.dMax must be a number, got undefined'),
    );
    expect(() => new BatchNorm(3, { renorm: { rMax: 2, dMax: 1, rmax: 3 } as never })).toThrow(
      /unknown renorm option "rmax"/,
    );
    expect(() => new BatchNorm(3, { renorm: { rMax: 2, dMax: 1 }, trackRunningStats: false })).toThrow(
      /renorm needs trackRunningStats/,
    );
    expect(() => new BatchNorm(3, { renorm: { rMax: 2, dMax: 1 }, virtualBatchSize: 2 })).toThrow(/cannot be combined/);
    expect(
      () => new SyncBatchNorm(3, { renorm: { rMax: 2, dMax: 1 }, allReduce: async (a: Float64Array) => a }),
    ).toThrow(/^SyncBatchNorm: renorm is not supported/);
  });
});
