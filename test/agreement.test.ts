// Native against js on random problems (fast-check): ranks 2-5, sizes with 1s and primes, any
// channel axis (positive or negative), both dtypes, random eps/momentum, gamma/beta given or
// not, `out` fresh or in place, all three ops. Then invariants that hold on each backend alone:
// the output of training has per-channel mean beta and variance gamma^2*var/(var+eps), and the
// statistics, running update, eval and parameter gradients follow their defining formulas.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Backend, type FloatArray, js, native } from '../index';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

type DType = 'float32' | 'float64';
type OutMode = 'none' | 'fresh' | 'inPlace';

const MAX_ELEMENTS = 50_000;
const SIZES = [1, 1, 2, 3, 4, 5, 7, 8, 11, 13, 16, 17, 31, 32, 61, 64, 127];
const NUM_RUNS = 40;

// Relative to each array's natural scale (see `scales`): sums run in double on both backends,
// so what differs is summation order (~1e-16 * conditioning) and the final rounding to dtype.
const RTOL: Record<DType, number> = { float32: 1e-5, float64: 1e-11 };

interface Problem {
  dtype: DType;
  shape: number[];
  axis: number;
  /** [outer, C, inner] of (shape, axis) */
  outer: number;
  channels: number;
  inner: number;
  eps: number;
  momentum: number;
  withGamma: boolean;
  withBeta: boolean;
  out: OutMode;
  /** data: x = offset_c + scale * u, u uniform in [-1, 1) */
  seed: number;
  scale: number;
  offset: number;
}

/** Halves the largest size until the tensor fits MAX_ELEMENTS. */
function fitToBudget(dims: number[]): number[] {
  const d = dims.slice();
  while (d.reduce((p, v) => p * v, 1) > MAX_ELEMENTS) {
    const k = d.indexOf(Math.max(...d));
    d[k] = Math.max(1, Math.floor(d[k] / 2));
  }
  return d;
}

interface Draw {
  dims: number[];
  axisIndex: number;
  negativeAxis: boolean;
  dtype: DType;
  log10Eps: number;
  momentum: number;
  withGamma: boolean;
  withBeta: boolean;
  out: OutMode;
  seed: number;
  log10Scale: number;
  offsetInScales: number;
}

function toProblem(r: Draw): Problem {
  const shape = fitToBudget(r.dims);
  const rank = shape.length;
  const a = r.axisIndex;
  const outer = shape.slice(0, a).reduce((p, v) => p * v, 1);
  const inner = shape.slice(a + 1).reduce((p, v) => p * v, 1);
  const scale = 10 ** r.log10Scale;
  return {
    dtype: r.dtype,
    shape,
    axis: r.negativeAxis ? a - rank : a,
    outer,
    channels: shape[a],
    inner,
    eps: 10 ** r.log10Eps,
    momentum: r.momentum,
    withGamma: r.withGamma,
    withBeta: r.withBeta,
    out: r.out,
    seed: r.seed,
    scale,
    offset: r.offsetInScales * scale,
  };
}

const problem: fc.Arbitrary<Problem> = fc
  .integer({ min: 2, max: 5 })
  .chain((rank) =>
    fc.record({
      dims: fc.array(fc.constantFrom(...SIZES), { minLength: rank, maxLength: rank }),
      axisIndex: fc.integer({ min: 0, max: rank - 1 }),
      negativeAxis: fc.boolean(),
      dtype: fc.constantFrom<DType>('float32', 'float64'),
      log10Eps: fc.double({ min: -8, max: -1, noNaN: true }),
      momentum: fc.double({ min: 0, max: 1, noNaN: true }),
      withGamma: fc.boolean(),
      withBeta: fc.boolean(),
      out: fc.constantFrom<OutMode>('none', 'fresh', 'inPlace'),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      log10Scale: fc.double({ min: -3, max: 3, noNaN: true }),
      offsetInScales: fc.double({ min: -20, max: 20, noNaN: true }),
    }),
  )
  .map(toProblem);

// Always-run examples above native's parallel cut-off (2^15 elements), one per layout path
// (long contiguous rows, many channels per row, and the two routes of short rows across a
// wide row of channels: 7x7 maps by row, rows of 8 by column), so every run exercises the
// rayon kernels.
const LARGE: Problem[] = [
  { dims: [8, 16, 19, 23], axisIndex: 1, negativeAxis: false, dtype: 'float32' as const, out: 'inPlace' as const },
  { dims: [8, 19, 23, 16], axisIndex: 3, negativeAxis: true, dtype: 'float64' as const, out: 'fresh' as const },
  { dims: [4099, 11], axisIndex: 1, negativeAxis: false, dtype: 'float64' as const, out: 'none' as const },
  { dims: [3, 7, 2003], axisIndex: 1, negativeAxis: true, dtype: 'float32' as const, out: 'fresh' as const },
  { dims: [4, 300, 7, 7], axisIndex: 1, negativeAxis: false, dtype: 'float32' as const, out: 'fresh' as const },
  { dims: [9, 520, 8], axisIndex: 1, negativeAxis: false, dtype: 'float64' as const, out: 'inPlace' as const },
].map((d, i) =>
  toProblem({
    ...d,
    log10Eps: -5,
    momentum: 0.1,
    withGamma: i % 2 === 0,
    withBeta: i < 2,
    seed: 1000 + i,
    log10Scale: (i % 4) - 1,
    offsetInScales: 3 * (i % 4),
  }),
);
const examples = (ps: Problem[]) => ({ numRuns: NUM_RUNS, examples: ps.map((p) => [p] as [Problem]) });

/** Problems that can be trained on (at least 2 values per channel). */
const trainable = problem.filter((p) => p.outer * p.inner >= 2);

// ---------------------------------------------------------------------------------------
// Data.

function alloc(dtype: DType, n: number): FloatArray {
  return dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
}

function copy(a: FloatArray): FloatArray {
  return a.slice();
}

const size = (p: Problem) => p.outer * p.channels * p.inner;
const channelOf = (p: Problem, i: number) => Math.floor(i / p.inner) % p.channels;

interface Inputs {
  x: FloatArray;
  dy: FloatArray;
  gamma: FloatArray | null;
  beta: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
}

/** The same seed always gives the same inputs: each backend gets its own fresh copy. */
function inputs(p: Problem): Inputs {
  const rand = generator(p.seed);
  const u = () => 2 * rand() - 1;
  const n = size(p);
  const channelOffset = Array.from({ length: p.channels }, () => p.offset * (1 + 0.1 * u()));
  const x = alloc(p.dtype, n);
  for (let i = 0; i < n; i++) x[i] = channelOffset[channelOf(p, i)] + p.scale * u();
  const dy = alloc(p.dtype, n);
  for (let i = 0; i < n; i++) dy[i] = u();
  const perChannel = (f: () => number) => {
    const a = alloc(p.dtype, p.channels);
    for (let c = 0; c < p.channels; c++) a[c] = f();
    return a;
  };
  return {
    x,
    dy,
    gamma: p.withGamma ? perChannel(() => 2 * u()) : null,
    beta: p.withBeta ? perChannel(() => 3 * u()) : null,
    runningMean: perChannel(() => p.offset + p.scale * u()),
    runningVar: perChannel(() => p.scale * p.scale * (0.5 + rand())),
  };
}

function outFor(p: Problem, source: FloatArray): FloatArray | undefined {
  if (p.out === 'none') return undefined;
  return p.out === 'inPlace' ? source : alloc(p.dtype, source.length);
}

// ---------------------------------------------------------------------------------------
// Reference statistics (double precision, two-pass) and scales for the tolerances.

function channelStats(p: Problem, x: FloatArray) {
  const m = p.outer * p.inner;
  const mean = new Float64Array(p.channels);
  const variance = new Float64Array(p.channels);
  const maxAbsX = new Float64Array(p.channels);
  for (let i = 0; i < x.length; i++) {
    const c = channelOf(p, i);
    mean[c] += x[i];
    maxAbsX[c] = Math.max(maxAbsX[c], Math.abs(x[i]));
  }
  for (let c = 0; c < p.channels; c++) mean[c] /= m;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - mean[channelOf(p, i)];
    variance[channelOf(p, i)] += d * d;
  }
  for (let c = 0; c < p.channels; c++) variance[c] /= m;
  return { m, mean, variance, maxAbsX };
}

const maxAbs = (a: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s = Math.max(s, Math.abs(a[i]));
  return s;
};

/** |got - expected| <= tol(i) everywhere, NaN only where expected has NaN; names the worst index. */
function expectClose(got: FloatArray, expected: ArrayLike<number>, tol: (i: number) => number, label: string) {
  expect(got.length, `${label}: length`).toBe(expected.length);
  let worst = -1;
  let worstRatio = 1;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(got[i] - expected[i]);
    const ratio = Number.isNaN(diff)
      ? Number.isNaN(got[i]) && Number.isNaN(expected[i])
        ? 0
        : Infinity
      : diff / tol(i);
    if (ratio > worstRatio) {
      worst = i;
      worstRatio = ratio;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: index ${worst}: got ${got[worst]}, expected ${expected[worst]}, ` +
        `|diff| ${Math.abs(got[worst] - expected[worst]).toExponential(3)} > tol ${tol(worst).toExponential(3)}`,
    );
  }
}

function describeProblem(p: Problem): string {
  return `${p.dtype} shape [${p.shape}] axis ${p.axis} eps ${p.eps.toExponential(2)} out ${p.out} gamma ${p.withGamma} beta ${p.withBeta} scale ${p.scale.toExponential(2)} offset ${p.offset.toExponential(2)}`;
}

// ---------------------------------------------------------------------------------------
// The three ops on one backend, on fresh inputs.

function runTrain(b: Backend, p: Problem) {
  const inp = inputs(p);
  const out = outFor(p, inp.x);
  const r = b.batchNormTrain(inp.x, p.shape, {
    axis: p.axis,
    eps: p.eps,
    momentum: p.momentum,
    gamma: inp.gamma,
    beta: inp.beta,
    runningMean: inp.runningMean,
    runningVar: inp.runningVar,
    out,
  });
  if (out) expect(r.y).toBe(out);
  return { ...r, runningMean: inp.runningMean, runningVar: inp.runningVar };
}

function runEval(b: Backend, p: Problem) {
  const inp = inputs(p);
  const out = outFor(p, inp.x);
  const y = b.batchNormEval(inp.x, p.shape, {
    axis: p.axis,
    eps: p.eps,
    gamma: inp.gamma,
    beta: inp.beta,
    runningMean: inp.runningMean,
    runningVar: inp.runningVar,
    out,
  });
  if (out) expect(y).toBe(out);
  return y;
}

/** Saved statistics for backward: the batch's (training) or the running ones (frozen). */
function savedFor(p: Problem, training: boolean) {
  const inp = inputs(p);
  if (training) {
    const s = channelStats(p, inp.x);
    const mean = alloc(p.dtype, p.channels);
    const invStd = alloc(p.dtype, p.channels);
    for (let c = 0; c < p.channels; c++) {
      mean[c] = s.mean[c];
      invStd[c] = 1 / Math.sqrt(s.variance[c] + p.eps);
    }
    return { mean, invStd };
  }
  const invStd = alloc(p.dtype, p.channels);
  for (let c = 0; c < p.channels; c++) invStd[c] = 1 / Math.sqrt(inp.runningVar[c] + p.eps);
  return { mean: copy(inp.runningMean), invStd };
}

function runBackward(b: Backend, p: Problem, training: boolean) {
  const inp = inputs(p);
  const saved = savedFor(p, training);
  // out 'inPlace' here means dx over dy
  const out = outFor(p, inp.dy);
  const r = b.batchNormBackward(inp.dy, inp.x, p.shape, saved, { axis: p.axis, gamma: inp.gamma, training, out });
  if (out) expect(r.dx).toBe(out);
  return { ...r, saved };
}

/** Natural scales of the backward outputs (sizes before any cancellation). */
function backwardScales(p: Problem, saved: { mean: FloatArray; invStd: FloatArray }) {
  const inp = inputs(p);
  let dx = 0;
  let dGamma = 0;
  let dBeta = 0;
  const sumAbsDy = new Float64Array(p.channels);
  const maxAbsXhat = new Float64Array(p.channels);
  const maxAbsDy = new Float64Array(p.channels);
  for (let i = 0; i < inp.x.length; i++) {
    const c = channelOf(p, i);
    sumAbsDy[c] += Math.abs(inp.dy[i]);
    maxAbsDy[c] = Math.max(maxAbsDy[c], Math.abs(inp.dy[i]));
    // |x| and |mean| bound the error of (x - mean) however either side rounds
    const xhat = (Math.abs(inp.x[i]) + Math.abs(saved.mean[c])) * saved.invStd[c];
    maxAbsXhat[c] = Math.max(maxAbsXhat[c], xhat);
  }
  for (let c = 0; c < p.channels; c++) {
    const g = inp.gamma ? Math.abs(inp.gamma[c]) : 1;
    dx = Math.max(dx, g * saved.invStd[c] * maxAbsDy[c] * (1 + maxAbsXhat[c]));
    dGamma = Math.max(dGamma, sumAbsDy[c] * maxAbsXhat[c]);
    dBeta = Math.max(dBeta, sumAbsDy[c]);
  }
  return { dx, dGamma, dBeta };
}

// ---------------------------------------------------------------------------------------
// Native against js.

describe.skipIf(!native)('native agrees with js on random problems', () => {
  const nb = native as Backend;

  it('train: y, mean, invStd and the running stats updated in place', () => {
    fc.assert(
      fc.property(trainable, (p) => {
        const a = runTrain(js, p);
        const b = runTrain(nb, p);
        const rtol = RTOL[p.dtype];
        const stats = channelStats(p, inputs(p).x);
        const label = describeProblem(p);
        const yTol = rtol * Math.max(maxAbs(a.y), 1e-30);
        expectClose(b.y, a.y, () => yTol, `${label}: y`);
        expectClose(b.mean, a.mean, (c) => rtol * stats.maxAbsX[c], `${label}: mean`);
        // invStd relative, widened by the conditioning |x|/std of the variance
        const kappa = (c: number) => 1 + stats.maxAbsX[c] * a.invStd[c];
        expectClose(b.invStd, a.invStd, (c) => rtol * a.invStd[c] * kappa(c), `${label}: invStd`);
        const rm0 = inputs(p).runningMean;
        expectClose(
          b.runningMean,
          a.runningMean,
          (c) => rtol * (stats.maxAbsX[c] + Math.abs(rm0[c])),
          `${label}: runningMean`,
        );
        expectClose(
          b.runningVar,
          a.runningVar,
          (c) => rtol * Math.abs(a.runningVar[c]) * kappa(c),
          `${label}: runningVar`,
        );
      }),
      examples(LARGE),
    );
  });

  it('eval: y from the running stats, including one value per channel', () => {
    fc.assert(
      fc.property(problem, (p) => {
        const a = runEval(js, p);
        const b = runEval(nb, p);
        const yTol = RTOL[p.dtype] * Math.max(maxAbs(a), 1e-30);
        expectClose(b, a, () => yTol, `${describeProblem(p)}: eval y`);
      }),
      examples(LARGE),
    );
  });

  for (const training of [true, false]) {
    const form = training ? 'training' : 'frozen (training: false)';
    it(`backward ${form}: dx (fresh, or in place over dy), dGamma, dBeta`, () => {
      fc.assert(
        fc.property(training ? trainable : problem, (p) => {
          const a = runBackward(js, p, training);
          const b = runBackward(nb, p, training);
          const s = backwardScales(p, a.saved);
          const rtol = RTOL[p.dtype];
          const label = `${describeProblem(p)} backward ${form}`;
          expectClose(b.dx, a.dx, () => rtol * Math.max(s.dx, 1e-30), `${label}: dx`);
          expectClose(b.dGamma, a.dGamma, () => rtol * Math.max(s.dGamma, 1e-30), `${label}: dGamma`);
          expectClose(b.dBeta, a.dBeta, () => rtol * Math.max(s.dBeta, 1e-30), `${label}: dBeta`);
        }),
        examples(LARGE),
      );
    });
  }
});

// ---------------------------------------------------------------------------------------
// Invariants, on each backend alone.

// Coarser than the agreement tolerance: here float32 outputs are compared with double
// formulas, so every element carries its own rounding to float32.
const INVARIANT_RTOL: Record<DType, number> = { float32: 2e-5, float64: 1e-10 };

describe.each(backends)('invariants on backend $name', (b) => {
  it('train output has per-channel mean beta and variance gamma^2*var/(var+eps)', () => {
    fc.assert(
      fc.property(trainable, (p) => {
        const inp = inputs(p);
        const stats = channelStats(p, inp.x);
        const r = runTrain(b, p);
        const ys = channelStats(p, r.y);
        const rtol = INVARIANT_RTOL[p.dtype];
        const label = describeProblem(p);
        const gamma = (c: number) => (inp.gamma ? inp.gamma[c] : 1);
        const beta = (c: number) => (inp.beta ? inp.beta[c] : 0);
        // |y - beta| <= |gamma| * max|xhat|: the natural scale of y's mean and spread
        const yScale = (c: number) =>
          Math.abs(beta(c)) + Math.abs(gamma(c)) * (stats.maxAbsX[c] + Math.abs(stats.mean[c])) * r.invStd[c];
        const expectedVar = Float64Array.from(stats.variance, (v, c) => (gamma(c) ** 2 * v) / (v + p.eps));
        expectClose(
          Float64Array.from(ys.mean),
          Float64Array.from({ length: p.channels }, (_, c) => beta(c)),
          (c) => rtol * yScale(c),
          `${label}: mean of y`,
        );
        expectClose(
          Float64Array.from(ys.variance),
          expectedVar,
          (c) => rtol * yScale(c) ** 2,
          `${label}: variance of y`,
        );
        // the saved statistics and the running update, from their definitions
        const kappa = (c: number) => 1 + stats.maxAbsX[c] * r.invStd[c];
        expectClose(r.mean, stats.mean, (c) => rtol * stats.maxAbsX[c], `${label}: mean`);
        const invStd = Float64Array.from(stats.variance, (v) => 1 / Math.sqrt(v + p.eps));
        expectClose(r.invStd, invStd, (c) => rtol * invStd[c] * kappa(c), `${label}: invStd`);
        const m = stats.m;
        const rm = Float64Array.from(inp.runningMean, (v, c) => (1 - p.momentum) * v + p.momentum * stats.mean[c]);
        const rv = Float64Array.from(
          inp.runningVar,
          (v, c) => (1 - p.momentum) * v + p.momentum * ((stats.variance[c] * m) / (m - 1)),
        );
        expectClose(
          r.runningMean,
          rm,
          (c) => rtol * (stats.maxAbsX[c] + Math.abs(inp.runningMean[c])),
          `${label}: runningMean`,
        );
        expectClose(r.runningVar, rv, (c) => rtol * rv[c] * kappa(c), `${label}: runningVar (unbiased)`);
      }),
      examples(LARGE),
    );
  });

  it('eval is gamma * (x - runningMean) / sqrt(runningVar + eps) + beta, elementwise', () => {
    fc.assert(
      fc.property(problem, (p) => {
        const inp = inputs(p);
        const y = runEval(b, p);
        const expected = new Float64Array(inp.x.length);
        const g = (c: number) => (inp.gamma ? inp.gamma[c] : 1);
        for (let i = 0; i < expected.length; i++) {
          const c = channelOf(p, i);
          const beta = inp.beta ? inp.beta[c] : 0;
          expected[i] = (g(c) * (inp.x[i] - inp.runningMean[c])) / Math.sqrt(inp.runningVar[c] + p.eps) + beta;
        }
        const rtol = INVARIANT_RTOL[p.dtype];
        const tol = (i: number) => {
          const c = channelOf(p, i);
          const scale =
            (Math.abs(g(c)) * (Math.abs(inp.x[i]) + Math.abs(inp.runningMean[c]))) /
            Math.sqrt(inp.runningVar[c] + p.eps);
          return rtol * (scale + Math.abs(expected[i]));
        };
        expectClose(y, expected, tol, `${describeProblem(p)}: eval y`);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('backward: dBeta = sum(dy), dGamma = sum(dy * xhat); frozen dx = dy * gamma * invStd', () => {
    fc.assert(
      fc.property(problem, fc.boolean(), (p, trainingWanted) => {
        const training = trainingWanted && p.outer * p.inner >= 2;
        const inp = inputs(p);
        const r = runBackward(b, p, training);
        const s = backwardScales(p, r.saved);
        const dBeta = new Float64Array(p.channels);
        const dGamma = new Float64Array(p.channels);
        const frozenDx = new Float64Array(inp.x.length);
        for (let i = 0; i < inp.x.length; i++) {
          const c = channelOf(p, i);
          dBeta[c] += inp.dy[i];
          dGamma[c] += inp.dy[i] * (inp.x[i] - r.saved.mean[c]) * r.saved.invStd[c];
          frozenDx[i] = inp.dy[i] * (inp.gamma ? inp.gamma[c] : 1) * r.saved.invStd[c];
        }
        const rtol = INVARIANT_RTOL[p.dtype];
        const label = `${describeProblem(p)} backward training ${training}`;
        expectClose(r.dBeta, dBeta, () => rtol * s.dBeta, `${label}: dBeta`);
        expectClose(r.dGamma, dGamma, () => rtol * s.dGamma, `${label}: dGamma`);
        if (!training) {
          expectClose(r.dx, frozenDx, () => rtol * s.dx, `${label}: dx`);
        } else {
          // the training dx is orthogonal to the batch statistics: sum(dx) = 0 per channel
          const sumDx = new Float64Array(p.channels);
          for (let i = 0; i < inp.x.length; i++) sumDx[channelOf(p, i)] += r.dx[i];
          expectClose(
            Float64Array.from(sumDx),
            new Float64Array(p.channels),
            () => rtol * s.dx * p.outer * p.inner,
            `${label}: sum of dx`,
          );
        }
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
