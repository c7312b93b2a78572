// The fused BN + ReLU (activation: 'relu'): the forward equals max(0, BN(x)); the backward
// is the chain rule through both (dy masked where the output y <= 0, then the BN backward),
// checked by central finite differences in float64 away from the kink, on every backend, for
// the functional API and the layer; js and native agree in float32 and float64.
import { describe, expect, it } from 'vitest';
import { type Backend, BatchNorm, type FloatArray, js, native } from '../index';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

interface Layout {
  name: string;
  shape: number[];
  axis: number;
}
const LAYOUTS: Layout[] = [
  { name: 'NCHW', shape: [2, 3, 2, 3], axis: 1 },
  { name: 'NHWC, axis -1', shape: [2, 2, 3, 3], axis: -1 },
  { name: '[N, C]', shape: [6, 4], axis: 1 },
];

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
    // beta around 0 so about half of the outputs are clipped by the ReLU
    gamma: vector(channels, () => 0.5 + rand()),
    beta: vector(channels, () => 0.3 * u()),
    runningMean: vector(channels, () => 0.3 * u()),
    runningVar: vector(channels, () => 0.5 + rand()),
  };
}
type Problem = ReturnType<typeof problem>;

const relu = (y: FloatArray) => y.map((v) => (v > 0 ? v : 0));
const sumProduct = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

function expectClose(got: ArrayLike<number>, expected: ArrayLike<number>, tol: number, label: string) {
  expect(got.length, `${label}: length`).toBe(expected.length);
  const scale = Math.max(1, ...Array.from(expected, Math.abs));
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(got[i] - expected[i]) <= tol * scale)) {
      throw new Error(`${label}[${i}]: got ${got[i]}, expected ${expected[i]} (tolerance ${tol * scale})`);
    }
  }
}

// Central differences: truncation ~h^2, rounding ~1e-16/h; the perturbation moves each
// output by ~h * gamma * invStd, so outputs farther than KINK_MARGIN from 0 never cross it.
const H = 1e-6;
const FD_TOL = 1e-7;
const KINK_MARGIN = 1e-3;

/** d(loss)/d(v[i]) for every i by central differences (v perturbed in place, then restored). */
function numericGradient(v: Float64Array, loss: () => number): Float64Array {
  const g = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const keep = v[i];
    v[i] = keep + H;
    const up = loss();
    v[i] = keep - H;
    const down = loss();
    v[i] = keep;
    g[i] = (up - down) / (2 * H);
  }
  return g;
}

/** BN(x) before the ReLU, for the kink check: every |value| must exceed the margin. */
function expectAwayFromKink(preActivation: FloatArray) {
  const nearest = Math.min(...Array.from(preActivation, Math.abs));
  expect(nearest, 'test data: an output lies too close to the ReLU kink').toBeGreaterThan(KINK_MARGIN);
  expect(preActivation.some((v) => v < 0) && preActivation.some((v) => v > 0)).toBe(true);
}

function trainForward(b: Backend, p: Problem, layout: Layout, activation: 'relu' | 'none') {
  return b.batchNormTrain(p.x, layout.shape, { axis: layout.axis, gamma: p.gamma, beta: p.beta, activation });
}
function evalForward(b: Backend, p: Problem, layout: Layout, activation: 'relu' | 'none') {
  const { gamma, beta, runningMean, runningVar } = p;
  return b.batchNormEval(p.x, layout.shape, { axis: layout.axis, gamma, beta, runningMean, runningVar, activation });
}

for (const b of backends) {
  describe(`fused ReLU on backend ${b.name}`, () => {
    for (const layout of LAYOUTS) {
      it(`${layout.name}: train and eval forward equal max(0, BN(x)), in float64 and float32`, () => {
        const p = problem(layout, 11);
        expect(trainForward(b, p, layout, 'relu').y).toEqual(relu(trainForward(b, p, layout, 'none').y));
        expect(evalForward(b, p, layout, 'relu')).toEqual(relu(evalForward(b, p, layout, 'none')));
        const x32 = Float32Array.from(p.x);
        const plain = b.batchNormTrain(x32, layout.shape, { axis: layout.axis });
        const fused = b.batchNormTrain(x32, layout.shape, { axis: layout.axis, activation: 'relu' });
        expect(fused.y).toEqual(relu(plain.y));
      });

      it(`${layout.name}: training backward equals finite differences of sum(w * ReLU(BN(x)))`, () => {
        const p = problem(layout, 23);
        expectAwayFromKink(trainForward(b, p, layout, 'none').y);
        const loss = () => sumProduct(p.w, trainForward(b, p, layout, 'relu').y);
        const r = trainForward(b, p, layout, 'relu');
        const g = b.batchNormBackward(p.w, p.x, layout.shape, r, {
          axis: layout.axis,
          gamma: p.gamma,
          activation: 'relu',
          y: r.y,
        });
        expectClose(g.dx, numericGradient(p.x, loss), FD_TOL, 'dx');
        expectClose(g.dGamma, numericGradient(p.gamma, loss), FD_TOL, 'dGamma');
        expectClose(g.dBeta, numericGradient(p.beta, loss), FD_TOL, 'dBeta');
      });

      it(`${layout.name}: frozen (eval) backward equals finite differences through the ReLU`, () => {
        const p = problem(layout, 37);
        expectAwayFromKink(evalForward(b, p, layout, 'none'));
        const loss = () => sumProduct(p.w, evalForward(b, p, layout, 'relu'));
        const y = evalForward(b, p, layout, 'relu');
        const invStd = p.runningVar.map((v) => 1 / Math.sqrt(v + 1e-5));
        const g = b.batchNormBackward(
          p.w,
          p.x,
          layout.shape,
          { mean: p.runningMean, invStd },
          {
            axis: layout.axis,
            gamma: p.gamma,
            training: false,
            activation: 'relu',
            y,
          },
        );
        expectClose(g.dx, numericGradient(p.x, loss), FD_TOL, 'dx');
        expectClose(g.dGamma, numericGradient(p.gamma, loss), FD_TOL, 'dGamma');
        expectClose(g.dBeta, numericGradient(p.beta, loss), FD_TOL, 'dBeta');
      });
    }

    it('dy does not flow where the output is exactly 0 (the mask is y > 0)', () => {
      // Channel 0 holds its own mean at index 2, so with beta 0 that output is exactly 0.
      const x = new Float64Array([-1, 5, 0, 2, 1, -3]);
      const shape = [3, 2];
      const r = b.batchNormTrain(x, shape, { activation: 'relu' });
      expect(r.y[2]).toBe(0);
      const dy = new Float64Array([0.5, -1, 2, 0.25, -0.75, 1]);
      const masked = dy.map((g, i) => (r.y[i] > 0 ? g : 0));
      const fused = b.batchNormBackward(dy, x, shape, r, { activation: 'relu', y: r.y });
      const plain = b.batchNormBackward(masked, x, shape, r);
      expectClose(fused.dx, plain.dx, 1e-15, 'dx');
      expectClose(fused.dGamma, plain.dGamma, 1e-15, 'dGamma');
      expectClose(fused.dBeta, plain.dBeta, 1e-15, 'dBeta');
    });

    it("the layer's activation 'relu' gives ReLU(BN(x)) and backpropagates through it", () => {
      const layout = LAYOUTS[0];
      const p = problem(layout, 41);
      const layer = new BatchNorm(p.channels, { axis: layout.axis, dtype: 'float64', backend: b, activation: 'relu' });
      layer.loadStateDict({ gamma: p.gamma, beta: p.beta, runningMean: p.runningMean, runningVar: p.runningVar });
      const y = layer.forward(p.x, layout.shape);
      const expected = b.batchNormTrain(p.x, layout.shape, { gamma: p.gamma, beta: p.beta, activation: 'relu' });
      expect(y).toEqual(expected.y);
      const dx = layer.backward(p.w);
      const g = b.batchNormBackward(p.w, p.x, layout.shape, expected, {
        gamma: p.gamma,
        activation: 'relu',
        y: expected.y,
      });
      expect(dx).toEqual(g.dx);
      expect(layer.gammaGrad).toEqual(g.dGamma);
      expect(layer.betaGrad).toEqual(g.dBeta);
      // The output is the mask, kept by reference: a caller who changes it gets an error.
      y[0] = y[0] > 0 ? 0 : 1;
      expect(() => layer.backward(p.w)).toThrow(/^BatchNorm\.backward: the output of forward was modified/);
    });
  });
}

describe.runIf(native)('fused ReLU: js and native agree', () => {
  const nb = native as Backend;
  for (const layout of LAYOUTS) {
    for (const dtype of ['float64', 'float32'] as const) {
      it(`${layout.name} ${dtype}: forward and backward, training and frozen`, () => {
        const p = problem(layout, 53);
        const cast = (a: Float64Array): FloatArray => (dtype === 'float32' ? Float32Array.from(a) : a.slice());
        const tol = dtype === 'float32' ? 1e-5 : 1e-12;
        const results = [js, nb].map((b) => {
          const x = cast(p.x);
          const gamma = cast(p.gamma);
          const beta = cast(p.beta);
          const dy = cast(p.w);
          const r = b.batchNormTrain(x, layout.shape, { axis: layout.axis, gamma, beta, activation: 'relu' });
          const train = b.batchNormBackward(dy, x, layout.shape, r, {
            axis: layout.axis,
            gamma,
            activation: 'relu',
            y: r.y,
          });
          const rm = cast(p.runningMean);
          const rv = cast(p.runningVar);
          const y = b.batchNormEval(x, layout.shape, {
            axis: layout.axis,
            gamma,
            beta,
            runningMean: rm,
            runningVar: rv,
            activation: 'relu',
          });
          const invStd = rv.map((v) => 1 / Math.sqrt(v + 1e-5));
          const frozen = b.batchNormBackward(
            dy,
            x,
            layout.shape,
            { mean: rm, invStd },
            {
              axis: layout.axis,
              gamma,
              training: false,
              activation: 'relu',
              y,
            },
          );
          return { yTrain: r.y, train, yEval: y, frozen };
        });
        const [a, n] = results;
        expectClose(n.yTrain, a.yTrain, tol, 'train y');
        expectClose(n.yEval, a.yEval, tol, 'eval y');
        for (const form of ['train', 'frozen'] as const) {
          expectClose(n[form].dx, a[form].dx, tol, `${form} dx`);
          expectClose(n[form].dGamma, a[form].dGamma, tol, `${form} dGamma`);
          expectClose(n[form].dBeta, a[form].dBeta, tol, `${form} dBeta`);
        }
      });
    }
  }
});
