// Every backend on 16-bit activations (bfloat16, float16 bits in a Uint16Array) against
// test/fixtures/half-cases.json, made by test/fixtures/make_half_fixtures.py from PyTorch.
// The contract: each 16-bit output is the float64 answer from the widened inputs, rounded to
// float32 and then to 16 bits (the fixture's `*Ref` bits); a backend may be 1 ulp off that
// (it computes in float32 where it likes) and must match it exactly on >= 99% of the elements.
// PyTorch's own bits are checked too: within 1 ulp on >= 99% of the elements, except where
// torch itself is further from Ref (a residual added after rounding bn(x) to 16 bits; float32
// cancellation near zero on offset data), where the backend must do at least as well as Ref.
// The float32 statistics and parameter gradients follow torch to 1e-4 relative + 1e-5.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type HalfDtype, ulpDistanceHalf } from '../src/half';
import { backends } from './backends';

type Num = number | null;

interface Case {
  name: string;
  dtype: HalfDtype;
  shape: number[];
  axis: number;
  eps: number;
  momentum: number;
  activation: 'none' | 'relu';
  gamma: number[] | null;
  beta: number[] | null;
  runningMean: number[];
  runningVar: number[];
  x: number[];
  dy: number[];
  residual: number[] | null;
  train: {
    y: number[];
    yRef: number[];
    yTorchF32: number[];
    mean: Num[];
    invStd: Num[];
    runningMean: Num[];
    runningVar: Num[];
  };
  eval: { y: number[]; yRef: number[]; yTorchF32: number[] };
  backwardTraining: Backward;
  backwardFrozen: Backward;
}
interface Backward {
  savedMean: Num[];
  savedInvStd: Num[];
  y: number[] | null;
  dx: number[];
  dxRef: number[];
  dGamma: Num[];
  dBeta: Num[];
}

const fixture = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'half-cases.json'), 'utf8')) as {
  cases: Case[];
};
const cases = fixture.cases;

const f32 = (values: readonly Num[]) => Float32Array.from(values, (v) => (v === null ? Number.NaN : v));
const u16 = (values: readonly number[]) => Uint16Array.from(values);

/** Per output: how the backend's bits compare with Ref and with torch (printed at the end). */
const report: string[] = [];

function within(got: Uint16Array, expected: readonly number[], dtype: HalfDtype, ulps: number): number {
  let n = 0;
  for (let i = 0; i < expected.length; i++) if (ulpDistanceHalf(got[i], expected[i], dtype) <= ulps) n++;
  return n;
}

function checkHalf(
  c: Case,
  got: unknown,
  ref: readonly number[],
  torchBits: readonly number[],
  label: string,
  torchF32?: readonly number[],
) {
  expect(got, `${label}: type`).toBeInstanceOf(Uint16Array);
  const g = got as Uint16Array;
  expect(g.length, `${label}: length`).toBe(ref.length);
  const n = ref.length;
  // 1 ulp of Ref everywhere.
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < n; i++) {
    const d = ulpDistanceHalf(g[i], ref[i], c.dtype);
    if (d > worst) {
      worst = d;
      worstAt = i;
    }
  }
  const same = within(g, ref, c.dtype, 0);
  const torch1 = within(g, torchBits, c.dtype, 1);
  const refTorch1 = within(u16(ref), torchBits, c.dtype, 1);
  let line = `${label}: ${same}/${n} == Ref, worst ${worst} ulp; torch within 1 ulp ${torch1}/${n} (Ref ${refTorch1}/${n})`;
  if (torchF32) line += `; torch-f32 within 1 ulp ${within(g, torchF32, c.dtype, 1)}/${n}`;
  report.push(line);
  if (worst > 1) {
    throw new Error(
      `${label}: ${n - within(g, ref, c.dtype, 1)}/${n} elements over 1 ulp of Ref; worst ${worst} ulp at ${worstAt}: ` +
        `got 0x${g[worstAt].toString(16)}, Ref 0x${ref[worstAt].toString(16)}`,
    );
  }
  expect(same, `${label}: elements identical to Ref`).toBeGreaterThanOrEqual(Math.ceil(0.99 * n));
  expect(torch1, `${label}: elements within 1 ulp of torch`).toBeGreaterThanOrEqual(
    Math.min(Math.ceil(0.99 * n), refTorch1),
  );
  if (torchF32) {
    const refF32 = within(u16(ref), torchF32, c.dtype, 1);
    expect(within(g, torchF32, c.dtype, 1), `${label}: within 1 ulp of torch-f32`).toBeGreaterThanOrEqual(
      Math.min(Math.ceil(0.99 * n), refF32),
    );
  }
}

/** float32 results against torch's float32: |got - exp| <= 1e-5 + 1e-4 |exp|; NaN where torch has NaN. */
function checkClose(got: unknown, expected: readonly Num[], label: string) {
  expect(got, `${label}: type`).toBeInstanceOf(Float32Array);
  const g = got as Float32Array;
  expect(g.length, `${label}: length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    if (e === null) {
      expect(g[i], `${label}[${i}] (torch: NaN)`).toBeNaN();
      continue;
    }
    const tol = 1e-5 + 1e-4 * Math.abs(e);
    if (!(Math.abs(g[i] - e) <= tol)) {
      throw new Error(
        `${label}[${i}]: got ${g[i]}, torch ${e}, |diff| ${Math.abs(g[i] - e).toExponential(3)} > ${tol}`,
      );
    }
  }
}

function expectSame(a: ArrayLike<number>, b: ArrayLike<number>, label: string) {
  expect(Array.from(a), label).toEqual(Array.from(b));
}

it('fixture file is complete', () => {
  for (const dtype of ['bfloat16', 'float16'] as const) {
    const ofType = cases.filter((c) => c.dtype === dtype);
    expect(ofType.length).toBeGreaterThanOrEqual(6);
    expect(ofType.some((c) => c.axis === -1)).toBe(true);
    expect(ofType.some((c) => c.gamma === null)).toBe(true);
    expect(ofType.some((c) => c.activation === 'relu' && c.residual === null)).toBe(true);
    expect(ofType.some((c) => c.residual !== null)).toBe(true);
    expect(ofType.some((c) => c.train.mean.includes(null))).toBe(true);
  }
});

for (const b of backends) {
  describe(`16-bit fixtures on backend ${b.name}`, () => {
    for (const c of cases) {
      const params = () => ({
        dtype: c.dtype,
        axis: c.axis,
        eps: c.eps,
        gamma: c.gamma === null ? null : f32(c.gamma),
        beta: c.beta === null ? null : f32(c.beta),
        runningMean: f32(c.runningMean),
        runningVar: f32(c.runningVar),
        activation: c.activation,
        ...(c.residual === null ? {} : { residual: u16(c.residual) }),
      });

      it(`${c.name}: train`, () => {
        const x = u16(c.x);
        const p = params();
        const r = b.batchNormTrain(x, c.shape, { ...p, momentum: c.momentum });
        const label = `${b.name} ${c.name} train`;
        checkHalf(c, r.y, c.train.yRef, c.train.y, `${label} y`, c.train.yTorchF32);
        checkClose(r.mean, c.train.mean, `${label} mean`);
        checkClose(r.invStd, c.train.invStd, `${label} invStd`);
        checkClose(p.runningMean, c.train.runningMean, `${label} runningMean (in place)`);
        checkClose(p.runningVar, c.train.runningVar, `${label} runningVar (in place)`);
        expectSame(x, c.x, 'x unchanged');
      });

      it(`${c.name}: eval`, () => {
        const x = u16(c.x);
        const p = params();
        const y = b.batchNormEval(x, c.shape, p);
        checkHalf(c, y, c.eval.yRef, c.eval.y, `${b.name} ${c.name} eval y`, c.eval.yTorchF32);
        expectSame(p.runningMean, f32(c.runningMean), 'eval: runningMean unchanged');
        expectSame(p.runningVar, f32(c.runningVar), 'eval: runningVar unchanged');
        expectSame(x, c.x, 'eval: x unchanged');
      });

      for (const form of ['backwardTraining', 'backwardFrozen'] as const) {
        it(`${c.name}: ${form}`, () => {
          const e = c[form];
          const dy = u16(c.dy);
          const x = u16(c.x);
          const saved = { mean: f32(e.savedMean), invStd: f32(e.savedInvStd) };
          const r = b.batchNormBackward(dy, x, c.shape, saved, {
            dtype: c.dtype,
            axis: c.axis,
            ...(c.gamma === null ? {} : { gamma: f32(c.gamma) }),
            training: form === 'backwardTraining',
            activation: c.activation,
            ...(e.y === null ? {} : { y: u16(e.y) }),
          });
          const label = `${b.name} ${c.name} ${form}`;
          checkHalf(c, r.dx, e.dxRef, e.dx, `${label} dx`);
          checkClose(r.dGamma, e.dGamma, `${label} dGamma`);
          checkClose(r.dBeta, e.dBeta, `${label} dBeta`);
          expectSame(dy, c.dy, 'backward: dy unchanged');
        });
      }
    }
  });
}

afterAll(() => {
  if (report.length > 0 && process.env.BATCHNORM_HALF_REPORT === '1') console.log(report.join('\n'));
});
