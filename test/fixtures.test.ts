// Every backend against PyTorch-derived reference values (test/fixtures/batchnorm-cases.json,
// made by test/fixtures/make_fixtures.py). The expected values are the EXACT answers for the
// stored inputs (60-digit decimal, rounded once to float64), checked against PyTorch's
// F.batch_norm and autograd by the generator; so any error seen here is the library's own.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backends } from './backends';

type FloatArray = Float32Array | Float64Array;
type DType = 'float32' | 'float64';

interface Case {
  name: string;
  dtype: DType;
  shape: number[];
  axis: number;
  eps: number;
  momentum: number;
  gamma: number[] | null;
  beta: number[] | null;
  x: number[];
  dy: number[];
  runningMean: number[];
  runningVar: number[];
  train: { y: number[]; mean: number[]; invStd: number[]; runningMean: number[]; runningVar: number[] };
  eval: { y: number[] };
  backwardTraining: Backward;
  backwardFrozen: Backward;
}
interface Backward {
  savedMean: number[];
  savedInvStd: number[];
  dx: number[];
  dGamma: number[];
  dBeta: number[];
}

const fixture = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'batchnorm-cases.json'), 'utf8')) as {
  cases: Case[];
};
const cases = fixture.cases;

// ---------------------------------------------------------------------------------------
// Tolerances.
//
// Base: float32 |got-exp| <= 1e-5 + 2e-5*|exp|, float64 <= 1e-10 + 1e-9*|exp|; for the
// gradients (dx, dGamma, dBeta), whose entries can be near zero after cancellation, |exp| is
// the largest |exp| of that array.
//
// Conditioning term (only matters for the offset data): y = gamma*(x-mean)*invStd + beta has
// condition number kappa = |x|*invStd ~ |mean|/std w.r.t. the data. Representing the mean
// (or the scale/shift of the fused form y = x*s + t) in double already moves y by
// ~u*kappa*|gamma| with u = 2^-53: for the float64 offset cases (mean 1e6, std 1e-2,
// kappa ~ 1e8) that is ~1e-8*|gamma|, above the 1e-9 base. PyTorch itself, in float64, is off
// the exact values by up to 6.9e-8 relative there (generator's torchMaxDiff). So we allow
// K*u*kappa ~ 1.8e-7*|gamma| (K = 16: room for a plain sequential double sum of m <= 257
// values, whose mean error grows ~sqrt(m)*u*|mean|, two-pass, Welford, pairwise/chunked sums
// and the fused y = x*s + t form; measured on such reference kernels: <= 0.3 of this
// allowance). The naive E[x^2]-E[x]^2 variance has error ~u*kappa^2 ~ 1 there and still
// fails by orders of magnitude. For float32 data the library computes in double
// (sums accumulate in double per the API), so u stays 2^-53: kappa ~ 1e4 gives ~1e-12, and
// the float32 offset cases (mean 1e4, std 1) keep the plain float32 tolerance; a kernel that
// normalizes offset float32 data in float32 arithmetic errs by ~u32*kappa ~ 6e-4 and fails.
// ---------------------------------------------------------------------------------------
const TOL: Record<DType, { atol: number; rtol: number }> = {
  float32: { atol: 1e-5, rtol: 2e-5 },
  float64: { atol: 1e-10, rtol: 1e-9 },
};
const U = 2 ** -53;
const K = 16;

function expectClose(got: ArrayLike<number>, expected: ArrayLike<number>, tol: (i: number) => number, label: string) {
  expect(got.length, `${label}: length`).toBe(expected.length);
  let worst = -1;
  let worstRatio = 0;
  let bad = 0;
  for (let i = 0; i < expected.length; i++) {
    const g = got[i];
    const e = expected[i];
    const t = tol(i);
    const d = Math.abs(g - e);
    const ratio = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d / t;
    if (ratio > 1) bad++;
    if (ratio > worstRatio || worst < 0) {
      worstRatio = ratio;
      worst = i;
    }
  }
  if (bad > 0) {
    const g = got[worst];
    const e = expected[worst];
    throw new Error(
      `${label}: ${bad}/${expected.length} elements out of tolerance; worst at index ${worst}: ` +
        `got ${g}, expected ${e}, |diff| ${Math.abs(g - e).toExponential(3)} > tol ${tol(worst).toExponential(3)} ` +
        `(${worstRatio.toExponential(2)}x)`,
    );
  }
}

function expectIdentical(got: ArrayLike<number>, expected: ArrayLike<number>, label: string) {
  expect(got.length, `${label}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(got[i], expected[i])) {
      throw new Error(`${label}: differs at index ${i}: ${got[i]} vs ${expected[i]}`);
    }
  }
}

function arr(dtype: DType, values: readonly number[]): FloatArray {
  return dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values);
}
function arrOrNull(dtype: DType, values: readonly number[] | null): FloatArray | null {
  return values === null ? null : arr(dtype, values);
}
function expectDtype(a: unknown, dtype: DType, label: string) {
  expect(a, `${label}: dtype`).toBeInstanceOf(dtype === 'float32' ? Float32Array : Float64Array);
}

/** channel of each flat index, and per-channel helpers */
function geometry(c: Case) {
  const rank = c.shape.length;
  const a = c.axis < 0 ? c.axis + rank : c.axis;
  const C = c.shape[a];
  let inner = 1;
  for (let d = a + 1; d < rank; d++) inner *= c.shape[d];
  const chan = (i: number) => Math.floor(i / inner) % C;
  const maxAbsX = new Array<number>(C).fill(0);
  const sumAbsDy = new Array<number>(C).fill(0);
  const maxAbsDy = new Array<number>(C).fill(0);
  for (let i = 0; i < c.x.length; i++) {
    const k = chan(i);
    maxAbsX[k] = Math.max(maxAbsX[k], Math.abs(c.x[i]));
    sumAbsDy[k] += Math.abs(c.dy[i]);
    maxAbsDy[k] = Math.max(maxAbsDy[k], Math.abs(c.dy[i]));
  }
  const gammaAbs = (k: number) => (c.gamma === null ? 1 : Math.abs(c.gamma[k]));
  /** kappa_c = max(max|x|, |mean|) * invStd: how far a relative error u in x or mean moves xhat */
  const kappa = (mean: readonly number[], invStd: readonly number[]) =>
    mean.map((mu, k) => Math.max(maxAbsX[k], Math.abs(mu)) * invStd[k]);
  return { C, chan, sumAbsDy, maxAbsDy, gammaAbs, kappa };
}

const maxAbs = (a: readonly number[]) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const evalInvStd = (c: Case) => c.runningVar.map((v) => 1 / Math.sqrt(v + c.eps));

function checkTrain(c: Case, r: { y: FloatArray; mean: FloatArray; invStd: FloatArray }, label: string) {
  const { atol, rtol } = TOL[c.dtype];
  const g = geometry(c);
  const kap = g.kappa(c.train.mean, c.train.invStd);
  const e = c.train;
  expectDtype(r.y, c.dtype, `${label} y`);
  expectDtype(r.mean, c.dtype, `${label} mean`);
  expectDtype(r.invStd, c.dtype, `${label} invStd`);
  expectClose(
    r.y,
    e.y,
    (i) => atol + rtol * Math.abs(e.y[i]) + K * U * kap[g.chan(i)] * g.gammaAbs(g.chan(i)),
    `${label} y`,
  );
  expectClose(r.mean, e.mean, (k) => atol + rtol * Math.abs(e.mean[k]), `${label} mean`);
  expectClose(r.invStd, e.invStd, (k) => atol + (rtol + K * U * kap[k]) * Math.abs(e.invStd[k]), `${label} invStd`);
}

function checkRunning(c: Case, rm: FloatArray, rv: FloatArray, label: string) {
  const { atol, rtol } = TOL[c.dtype];
  const kap = geometry(c).kappa(c.train.mean, c.train.invStd);
  const e = c.train;
  expectClose(rm, e.runningMean, (k) => atol + rtol * Math.abs(e.runningMean[k]), `${label} runningMean (in place)`);
  expectClose(
    rv,
    e.runningVar,
    (k) => atol + (rtol + K * U * kap[k]) * Math.abs(e.runningVar[k]),
    `${label} runningVar (in place)`,
  );
}

function checkEval(c: Case, y: FloatArray, label: string) {
  const { atol, rtol } = TOL[c.dtype];
  const g = geometry(c);
  const kap = g.kappa(c.runningMean, evalInvStd(c));
  const e = c.eval.y;
  expectDtype(y, c.dtype, `${label} y`);
  expectClose(y, e, (i) => atol + rtol * Math.abs(e[i]) + K * U * kap[g.chan(i)] * g.gammaAbs(g.chan(i)), `${label} y`);
}

function checkBackward(
  c: Case,
  form: 'backwardTraining' | 'backwardFrozen',
  r: { dx: FloatArray; dGamma: FloatArray; dBeta: FloatArray },
  label: string,
) {
  const { atol, rtol } = TOL[c.dtype];
  const g = geometry(c);
  const e = c[form];
  const kap = g.kappa(e.savedMean, e.savedInvStd);
  expectDtype(r.dx, c.dtype, `${label} dx`);
  expectDtype(r.dGamma, c.dtype, `${label} dGamma`);
  expectDtype(r.dBeta, c.dtype, `${label} dBeta`);
  // dx: scale = max|dx|. The conditioning term is relative to gamma*invStd*max|dy|, the size
  // of dx before the cancellation in (m*dy - sum(dy) - xhat*sum(dy*xhat)); frozen dx does not
  // involve x at all.
  const sdx = maxAbs(e.dx);
  const dxTol =
    form === 'backwardTraining'
      ? (i: number) => {
          const k = g.chan(i);
          return atol + rtol * sdx + K * U * kap[k] * g.gammaAbs(k) * e.savedInvStd[k] * g.maxAbsDy[k];
        }
      : () => atol + rtol * sdx;
  expectClose(r.dx, e.dx, dxTol, `${label} dx`);
  // dGamma = sum(dy*xhat): an error u*kappa in xhat moves it by u*kappa*sum|dy|.
  const sdg = maxAbs(e.dGamma);
  expectClose(r.dGamma, e.dGamma, (k) => atol + rtol * sdg + K * U * kap[k] * g.sumAbsDy[k], `${label} dGamma`);
  const sdb = maxAbs(e.dBeta);
  expectClose(r.dBeta, e.dBeta, () => atol + rtol * sdb, `${label} dBeta`);
}

/** fresh typed inputs for one call (nothing shared between calls) */
function inputs(c: Case) {
  return {
    x: arr(c.dtype, c.x),
    dy: arr(c.dtype, c.dy),
    gamma: arrOrNull(c.dtype, c.gamma),
    beta: arrOrNull(c.dtype, c.beta),
    runningMean: arr(c.dtype, c.runningMean),
    runningVar: arr(c.dtype, c.runningVar),
  };
}
function saved(c: Case, form: 'backwardTraining' | 'backwardFrozen') {
  return { mean: arr(c.dtype, c[form].savedMean), invStd: arr(c.dtype, c[form].savedInvStd) };
}
function newLike(c: Case): FloatArray {
  return c.dtype === 'float32' ? new Float32Array(c.x.length) : new Float64Array(c.x.length);
}

it('fixture file is complete', () => {
  expect(cases.length).toBeGreaterThanOrEqual(30);
  for (const dtype of ['float32', 'float64'] as const) {
    const ofType = cases.filter((c) => c.dtype === dtype);
    expect(new Set(ofType.map((c) => c.shape.length))).toEqual(new Set([2, 3, 4, 5]));
    expect(ofType.some((c) => c.axis === -1)).toBe(true);
  }
});

for (const b of backends) {
  describe(`fixtures on backend ${b.name}`, () => {
    cases.forEach((c, idx) => {
      const useOut = idx % 2 === 0; // every other case writes into a caller-given `out`

      it(`${c.name}: train`, () => {
        const inp = inputs(c);
        const out = useOut ? newLike(c) : undefined;
        const r = b.batchNormTrain(inp.x, c.shape, {
          axis: c.axis,
          eps: c.eps,
          momentum: c.momentum,
          gamma: inp.gamma,
          beta: inp.beta,
          runningMean: inp.runningMean,
          runningVar: inp.runningVar,
          out,
        });
        if (out) expect(r.y).toBe(out);
        else expect(r.y).not.toBe(inp.x);
        checkTrain(c, r, `${b.name} ${c.name} train`);
        checkRunning(c, inp.runningMean, inp.runningVar, `${b.name} ${c.name} train`);
        expectIdentical(inp.x, arr(c.dtype, c.x), 'x must not be modified');
      });

      it(`${c.name}: train without running stats`, () => {
        const inp = inputs(c);
        const r = b.batchNormTrain(inp.x, c.shape, { axis: c.axis, eps: c.eps, gamma: inp.gamma, beta: inp.beta });
        checkTrain(c, r, `${b.name} ${c.name} train (no running)`);
      });

      it(`${c.name}: eval`, () => {
        const inp = inputs(c);
        const out = useOut ? newLike(c) : undefined;
        const y = b.batchNormEval(inp.x, c.shape, {
          axis: c.axis,
          eps: c.eps,
          gamma: inp.gamma,
          beta: inp.beta,
          runningMean: inp.runningMean,
          runningVar: inp.runningVar,
          out,
        });
        if (out) expect(y).toBe(out);
        checkEval(c, y, `${b.name} ${c.name} eval`);
        // eval never touches the running stats or x
        expectIdentical(inp.runningMean, arr(c.dtype, c.runningMean), 'eval: runningMean unchanged');
        expectIdentical(inp.runningVar, arr(c.dtype, c.runningVar), 'eval: runningVar unchanged');
        expectIdentical(inp.x, arr(c.dtype, c.x), 'eval: x unchanged');
      });

      it(`${c.name}: backward (training)`, () => {
        const inp = inputs(c);
        const out = useOut ? newLike(c) : undefined;
        const r = b.batchNormBackward(inp.dy, inp.x, c.shape, saved(c, 'backwardTraining'), {
          axis: c.axis,
          gamma: inp.gamma,
          out,
        });
        if (out) expect(r.dx).toBe(out);
        checkBackward(c, 'backwardTraining', r, `${b.name} ${c.name} backward(training)`);
        expectIdentical(inp.dy, arr(c.dtype, c.dy), 'backward: dy unchanged');
      });

      it(`${c.name}: backward (frozen, training: false)`, () => {
        const inp = inputs(c);
        const out = useOut ? undefined : newLike(c);
        const r = b.batchNormBackward(inp.dy, inp.x, c.shape, saved(c, 'backwardFrozen'), {
          axis: c.axis,
          gamma: inp.gamma,
          training: false,
          out,
        });
        if (out) expect(r.dx).toBe(out);
        checkBackward(c, 'backwardFrozen', r, `${b.name} ${c.name} backward(frozen)`);
      });
    });

    for (const dtype of ['float32', 'float64'] as const) {
      // one in-place case per dtype (and one offset case, where in-place bugs that re-read
      // overwritten x would show most)
      const picks = cases.filter((c) => c.dtype === dtype);
      const inPlace = [
        picks.find((c) => c.shape.length === 4 && c.axis === -1),
        picks.find((c) => c.name.includes('offset')),
      ];
      for (const c of inPlace) {
        if (!c) throw new Error(`no in-place case for ${dtype}`);
        it(`${c.name}: train in place (out === x)`, () => {
          const inp = inputs(c);
          const r = b.batchNormTrain(inp.x, c.shape, {
            axis: c.axis,
            eps: c.eps,
            momentum: c.momentum,
            gamma: inp.gamma,
            beta: inp.beta,
            runningMean: inp.runningMean,
            runningVar: inp.runningVar,
            out: inp.x,
          });
          expect(r.y).toBe(inp.x);
          checkTrain(c, r, `${b.name} ${c.name} train in place`);
          checkRunning(c, inp.runningMean, inp.runningVar, `${b.name} ${c.name} train in place`);
        });
        it(`${c.name}: eval in place (out === x)`, () => {
          const inp = inputs(c);
          const y = b.batchNormEval(inp.x, c.shape, {
            axis: c.axis,
            eps: c.eps,
            gamma: inp.gamma,
            beta: inp.beta,
            runningMean: inp.runningMean,
            runningVar: inp.runningVar,
            out: inp.x,
          });
          expect(y).toBe(inp.x);
          checkEval(c, y, `${b.name} ${c.name} eval in place`);
        });
      }
    }

    // Async forms: same numbers as sync, bit for bit, and the same in-place running update.
    const asyncCases = cases.filter((c) => /r4 NCHW|r3 NLC|offset r2|m=2 \[/.test(c.name));
    for (const c of asyncCases) {
      it(`${c.name}: async forms equal sync`, async () => {
        const s = inputs(c);
        const a = inputs(c);
        const opts = (i: ReturnType<typeof inputs>) => ({
          axis: c.axis,
          eps: c.eps,
          momentum: c.momentum,
          gamma: i.gamma,
          beta: i.beta,
          runningMean: i.runningMean,
          runningVar: i.runningVar,
        });
        const rs = b.batchNormTrain(s.x, c.shape, opts(s));
        const ra = await b.batchNormTrainAsync(a.x, c.shape, opts(a));
        checkTrain(c, ra, `${b.name} ${c.name} trainAsync`);
        expectIdentical(ra.y, rs.y, 'trainAsync y');
        expectIdentical(ra.mean, rs.mean, 'trainAsync mean');
        expectIdentical(ra.invStd, rs.invStd, 'trainAsync invStd');
        expectIdentical(a.runningMean, s.runningMean, 'trainAsync runningMean (in place)');
        expectIdentical(a.runningVar, s.runningVar, 'trainAsync runningVar (in place)');

        const e1 = inputs(c);
        const e2 = inputs(c);
        const evalOpts = (i: ReturnType<typeof inputs>) => ({
          axis: c.axis,
          eps: c.eps,
          gamma: i.gamma,
          beta: i.beta,
          runningMean: i.runningMean,
          runningVar: i.runningVar,
        });
        const es = b.batchNormEval(e1.x, c.shape, evalOpts(e1));
        const outA = newLike(c);
        const ea = await b.batchNormEvalAsync(e2.x, c.shape, { ...evalOpts(e2), out: outA });
        expect(ea).toBe(outA);
        checkEval(c, ea, `${b.name} ${c.name} evalAsync`);
        expectIdentical(ea, es, 'evalAsync y');

        for (const form of ['backwardTraining', 'backwardFrozen'] as const) {
          const bo = { axis: c.axis, gamma: arrOrNull(c.dtype, c.gamma), training: form === 'backwardTraining' };
          const bs = b.batchNormBackward(arr(c.dtype, c.dy), arr(c.dtype, c.x), c.shape, saved(c, form), bo);
          const ba = await b.batchNormBackwardAsync(arr(c.dtype, c.dy), arr(c.dtype, c.x), c.shape, saved(c, form), bo);
          checkBackward(c, form, ba, `${b.name} ${c.name} ${form}Async`);
          expectIdentical(ba.dx, bs.dx, `${form}Async dx`);
          expectIdentical(ba.dGamma, bs.dGamma, `${form}Async dGamma`);
          expectIdentical(ba.dBeta, bs.dBeta, `${form}Async dBeta`);
        }
      });
    }
  });
}
