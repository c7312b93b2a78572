// batchNormBackward against central finite differences of the forward pass, in float64, on
// every backend: for a random linear loss L = sum(w * y), dy = w and backward must return
// dx = dL/dx, dGamma = dL/dgamma, dBeta = dL/dbeta. Training form: y from batchNormTrain (the
// batch statistics depend on x); frozen form (training: false): y from batchNormEval; ghost
// batches (virtualBatchSize), each group with its own statistics.
import { describe, expect, it } from 'vitest';
import type { Backend } from '../index';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

interface Layout {
  name: string;
  shape: number[];
  axis: number;
}

const LAYOUTS: Layout[] = [
  { name: 'NCHW, axis 1', shape: [2, 3, 2, 3], axis: 1 },
  { name: 'NHWC, axis -1', shape: [2, 2, 3, 3], axis: -1 },
  { name: '[N, C]', shape: [5, 4], axis: 1 },
  { name: 'NCL with a prime length, axis -2', shape: [2, 3, 5], axis: -2 },
];

const EPS = 1e-3;
// Central differences: truncation error ~h^2, rounding ~1e-16/h; h = 1e-5 balances both
// near 1e-10 for data of size ~1, far below the tolerance.
const H = 1e-5;
const TOL = 1e-8;

function problem(layout: Layout, seed: number) {
  const rand = generator(seed);
  const u = () => 2 * rand() - 1;
  const rank = layout.shape.length;
  const channels = layout.shape[layout.axis < 0 ? layout.axis + rank : layout.axis];
  const n = layout.shape.reduce((p, d) => p * d, 1);
  const vector = (length: number, f: () => number) => Float64Array.from({ length }, f);
  return {
    channels,
    x: vector(n, () => 0.5 + 2 * u()),
    w: vector(n, u),
    gamma: vector(channels, () => 1.5 * u()),
    beta: vector(channels, u),
    runningMean: vector(channels, () => 0.3 * u()),
    runningVar: vector(channels, () => 0.5 + rand()),
  };
}

type Params = { x: Float64Array; gamma: Float64Array | null; beta: Float64Array | null };

/** d(loss)/d(v[i]) for every i, by central differences (v is perturbed in place, then restored). */
function numericGradient(v: Float64Array, loss: () => number): Float64Array {
  const grad = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const saved = v[i];
    const h = H * Math.max(1, Math.abs(saved));
    v[i] = saved + h;
    const up = loss();
    v[i] = saved - h;
    const down = loss();
    v[i] = saved;
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

function expectGradient(got: Float64Array, numeric: Float64Array, label: string) {
  expect(got.length, `${label}: length`).toBe(numeric.length);
  const scale = Math.max(1, ...Array.from(numeric, Math.abs));
  for (let i = 0; i < numeric.length; i++) {
    const diff = Math.abs(got[i] - numeric[i]);
    if (!(diff <= TOL * scale)) {
      throw new Error(
        `${label}[${i}]: backward ${got[i]}, finite differences ${numeric[i]}, |diff| ${diff.toExponential(2)}`,
      );
    }
  }
}

function dot(w: Float64Array, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) s += w[i] * y[i];
  return s;
}

/** All three gradients, numerically, of L(x, gamma, beta) = sum(w * forward(x, gamma, beta)). */
function numericGradients(p: Params, channels: number, w: Float64Array, forward: (q: Params) => ArrayLike<number>) {
  // null gamma/beta mean ones/zeros: differentiate at those values
  const gamma = p.gamma ?? new Float64Array(channels).fill(1);
  const beta = p.beta ?? new Float64Array(channels);
  const loss = () => dot(w, forward({ x: p.x, gamma, beta }));
  return { dx: numericGradient(p.x, loss), dGamma: numericGradient(gamma, loss), dBeta: numericGradient(beta, loss) };
}

describe.each(backends)('backward matches finite differences on backend $name', (b: Backend) => {
  describe.each(LAYOUTS)('$name', (layout) => {
    for (const affine of [true, false]) {
      const withParams = affine ? 'with gamma and beta' : 'gamma and beta null';

      it(`training form (batch statistics), ${withParams}`, () => {
        const pr = problem(layout, 11 + layout.shape.length);
        const p: Params = { x: pr.x, gamma: affine ? pr.gamma : null, beta: affine ? pr.beta : null };
        const forward = (q: Params) =>
          b.batchNormTrain(q.x, layout.shape, { axis: layout.axis, eps: EPS, gamma: q.gamma, beta: q.beta }).y;
        const t = b.batchNormTrain(p.x, layout.shape, { axis: layout.axis, eps: EPS, gamma: p.gamma, beta: p.beta });
        const r = b.batchNormBackward(
          pr.w,
          p.x,
          layout.shape,
          { mean: t.mean, invStd: t.invStd },
          { axis: layout.axis, gamma: p.gamma },
        );
        const numeric = numericGradients(p, pr.channels, pr.w, forward);
        expectGradient(r.dx as Float64Array, numeric.dx, 'dx');
        expectGradient(r.dGamma as Float64Array, numeric.dGamma, 'dGamma');
        expectGradient(r.dBeta as Float64Array, numeric.dBeta, 'dBeta');
      });

      it(`frozen form (training: false, running statistics), ${withParams}`, () => {
        const pr = problem(layout, 23 + layout.shape.length);
        const p: Params = { x: pr.x, gamma: affine ? pr.gamma : null, beta: affine ? pr.beta : null };
        const stats = { axis: layout.axis, eps: EPS, runningMean: pr.runningMean, runningVar: pr.runningVar };
        const forward = (q: Params) => b.batchNormEval(q.x, layout.shape, { ...stats, gamma: q.gamma, beta: q.beta });
        const invStd = pr.runningVar.map((v) => 1 / Math.sqrt(v + EPS));
        const r = b.batchNormBackward(
          pr.w,
          p.x,
          layout.shape,
          { mean: pr.runningMean, invStd },
          { axis: layout.axis, gamma: p.gamma, training: false },
        );
        const numeric = numericGradients(p, pr.channels, pr.w, forward);
        expectGradient(r.dx as Float64Array, numeric.dx, 'dx');
        expectGradient(r.dGamma as Float64Array, numeric.dGamma, 'dGamma');
        expectGradient(r.dBeta as Float64Array, numeric.dBeta, 'dBeta');
      });
    }
  });

  // Ghost batches: groups of 2 samples, each with its own statistics; with ReLU and a residual,
  // whose gradient dResidual is checked too (L = sum(w * relu(BN_group(x) + z))).
  it.each([
    { name: 'NCHW, axis 1', shape: [4, 3, 2, 3], axis: 1 },
    { name: 'NHWC, axis -1', shape: [6, 2, 2, 3], axis: -1 },
    { name: '[N, C]', shape: [8, 3], axis: 1 },
  ])('virtualBatchSize 2 ($name), through ReLU and a residual', (layout) => {
    const pr = problem(layout, 37 + layout.shape.length);
    const z = problem(layout, 41).w;
    const common = { axis: layout.axis, virtualBatchSize: 2 };
    const p: Params = { x: pr.x, gamma: pr.gamma, beta: pr.beta };
    const train = (q: Params, residual: Float64Array) =>
      b.batchNormTrain(q.x, layout.shape, {
        ...common,
        eps: EPS,
        gamma: q.gamma,
        beta: q.beta,
        residual,
        activation: 'relu',
      });
    const t = train(p, z);
    const r = b.batchNormBackward(pr.w, p.x, layout.shape, t, {
      ...common,
      gamma: p.gamma,
      activation: 'relu',
      y: t.y,
      residual: true,
    });
    const numeric = numericGradients(p, pr.channels, pr.w, (q) => train(q, z).y);
    expectGradient(r.dx as Float64Array, numeric.dx, 'dx');
    expectGradient(r.dGamma as Float64Array, numeric.dGamma, 'dGamma');
    expectGradient(r.dBeta as Float64Array, numeric.dBeta, 'dBeta');
    const dz = numericGradient(z, () => dot(pr.w, train(p, z).y));
    expectGradient(r.dResidual as Float64Array, dz, 'dResidual');
  });

  it('the training and frozen forms differ (the batch-statistics terms are not dropped)', () => {
    const layout = LAYOUTS[0];
    const pr = problem(layout, 5);
    const t = b.batchNormTrain(pr.x, layout.shape, { axis: layout.axis, eps: EPS });
    const saved = { mean: t.mean, invStd: t.invStd };
    const training = b.batchNormBackward(pr.w, pr.x, layout.shape, saved, { axis: layout.axis });
    const frozen = b.batchNormBackward(pr.w, pr.x, layout.shape, saved, { axis: layout.axis, training: false });
    const maxDiff = Math.max(...Array.from(training.dx, (v, i) => Math.abs(v - frozen.dx[i])));
    expect(maxDiff).toBeGreaterThan(0.01);
    // dGamma and dBeta do not depend on the form
    expect(Array.from(training.dGamma)).toEqual(Array.from(frozen.dGamma));
    expect(Array.from(training.dBeta)).toEqual(Array.from(frozen.dBeta));
  });
});
