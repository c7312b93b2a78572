// Ghost batch normalization against a NumPy reference written to Keras's definition of
// BatchNormalization(virtual_batch_size) (fixtures/make_ghost_fixtures.py): each virtual batch
// normalized and differentiated with its own moments, the moving statistics moved by the mean
// over the virtual batches (runningVarCorrection 0 as Keras, 1 as the default). Functional
// calls in float64 and float32, and the BatchNorm layer in float64, on every backend.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BatchNorm } from '../index';
import { backends } from './backends';
import { maxAbsDiff } from './helpers/compare';

interface Case {
  name: string;
  shape: number[];
  axis: number;
  virtualBatchSize: number;
  momentum: number;
  eps: number;
  runningVarCorrection: 0 | 1;
  activation: 'relu' | 'none';
  gamma: number[];
  beta: number[];
  runningMeanIn: number[];
  runningVarIn: number[];
  x: number[];
  dy: number[];
  y: number[];
  mean: number[];
  invStd: number[];
  runningMean: number[];
  runningVar: number[];
  dx: number[];
  dGamma: number[];
  dBeta: number[];
}
const { cases } = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'ghost-cases.json'), 'utf8')) as {
  cases: Case[];
};

const dtypes = [
  { dtype: 'float64' as const, from: (a: number[]) => Float64Array.from(a), rel: 1e-10 },
  { dtype: 'float32' as const, from: (a: number[]) => Float32Array.from(a), rel: 1e-5 },
];

/** Relative to the largest expected magnitude (at least 1). */
function expectClose(actual: ArrayLike<number>, expected: number[], rel: number, what: string) {
  const scale = Math.max(1, ...expected.map(Math.abs));
  const diff = maxAbsDiff(actual, expected);
  expect(diff, `${what}: max |diff| ${diff}, scale ${scale}`).toBeLessThanOrEqual(rel * scale);
}

describe.each(backends)('ghost batch norm fixtures ($name)', (b) => {
  it.each(cases.flatMap((c) => dtypes.map((d) => ({ ...c, ...d }))))(
    '$name: $shape axis $axis k $virtualBatchSize, $dtype functional calls match the reference',
    (t) => {
      const gamma = t.from(t.gamma);
      const runningMean = t.from(t.runningMeanIn);
      const runningVar = t.from(t.runningVarIn);
      const r = b.batchNormTrain(t.from(t.x), t.shape, {
        axis: t.axis,
        gamma,
        beta: t.from(t.beta),
        eps: t.eps,
        runningMean,
        runningVar,
        momentum: t.momentum,
        runningVarCorrection: t.runningVarCorrection,
        activation: t.activation,
        virtualBatchSize: t.virtualBatchSize,
      });
      expectClose(r.y, t.y, t.rel, 'y');
      expectClose(r.mean, t.mean, t.rel, 'mean');
      expectClose(r.invStd, t.invStd, t.rel, 'invStd');
      expectClose(runningMean, t.runningMean, t.rel, 'runningMean');
      expectClose(runningVar, t.runningVar, t.rel, 'runningVar');
      const d = b.batchNormBackward(t.from(t.dy), t.from(t.x), t.shape, r, {
        axis: t.axis,
        gamma,
        activation: t.activation,
        y: r.y,
        virtualBatchSize: t.virtualBatchSize,
      });
      expectClose(d.dx, t.dx, t.rel, 'dx');
      expectClose(d.dGamma, t.dGamma, t.rel, 'dGamma');
      expectClose(d.dBeta, t.dBeta, t.rel, 'dBeta');
    },
  );

  it.each(cases)('$name: the float64 BatchNorm layer matches the reference', (t) => {
    const f64 = (a: number[]) => Float64Array.from(a);
    const layer = new BatchNorm(t.gamma.length, {
      backend: b,
      dtype: 'float64',
      axis: t.axis,
      virtualBatchSize: t.virtualBatchSize,
      momentum: t.momentum,
      runningVarCorrection: t.runningVarCorrection,
      eps: t.eps,
      activation: t.activation,
    });
    layer.gamma?.set(t.gamma);
    layer.beta?.set(t.beta);
    layer.runningMean?.set(t.runningMeanIn);
    layer.runningVar?.set(t.runningVarIn);
    layer.zeroGrad();
    const y = layer.forward(f64(t.x), t.shape);
    expectClose(y, t.y, 1e-10, 'y');
    expectClose(layer.runningMean as Float64Array, t.runningMean, 1e-10, 'runningMean');
    expectClose(layer.runningVar as Float64Array, t.runningVar, 1e-10, 'runningVar');
    const dx = layer.backward(f64(t.dy));
    expectClose(dx, t.dx, 1e-10, 'dx');
    expectClose(layer.gammaGrad as Float64Array, t.dGamma, 1e-10, 'gammaGrad');
    expectClose(layer.betaGrad as Float64Array, t.dBeta, 1e-10, 'betaGrad');
  });
});
