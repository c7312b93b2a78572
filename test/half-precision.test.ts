// bfloat16 and float16 tensors (Uint16Array bits with the dtype option, float32 parameters):
// native against js on random problems (every element within one 16-bit unit, at least 99.9%
// identical), the errors both backends give, the layer and SyncBatchNorm with a 16-bit dtype,
// fingerprints of 16-bit inputs, and the Async, out and in-place forms.
// Fixtures made by PyTorch are in half-fixtures.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Backend, BatchNorm, type HalfDtype, js, native, SyncBatchNorm } from '../index';
import { halfBitsOf, halfValueOf, ulpDistanceHalf } from '../src/half';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

const FORMATS: HalfDtype[] = ['bfloat16', 'float16'];

/** 16-bit bits of offset + scale * u, u uniform in [-1, 1). */
function halfData(n: number, dtype: HalfDtype, seed: number, offset = 0, scale = 2): Uint16Array {
  const next = generator(seed);
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) a[i] = halfBitsOf(offset + scale * (2 * next() - 1), dtype);
  return a;
}

function floats(n: number, seed: number, offset: number, scale: number): Float32Array {
  const next = generator(seed);
  return Float32Array.from({ length: n }, () => offset + scale * (2 * next() - 1));
}

/** Counts how many elements of two 16-bit outputs are identical, and fails on any further
 *  apart than one unit in the last place, except a result that cancels: one under 1/64 of the
 *  largest term that made it (`terms`: the residual, or dy's term of dx). There both backends
 *  keep a float32 rounding of the terms (~6e-8 of them, as PyTorch's float32 does), which is
 *  more than a unit of the small result; up to 4 are allowed. */
function compareHalf(
  got: Uint16Array,
  want: Uint16Array,
  dtype: HalfDtype,
  label: string,
  terms: (i: number) => number = () => 0,
): number {
  expect(got.length, label).toBe(want.length);
  let same = 0;
  for (let i = 0; i < got.length; i++) {
    const d = ulpDistanceHalf(got[i], want[i], dtype);
    const cancels = Math.abs(halfValueOf(want[i], dtype)) * 64 < terms(i);
    if (d > (cancels ? 4 : 1)) expect.fail(`${label}[${i}]: ${got[i]} vs ${want[i]} (${d} units apart)`);
    if (d === 0) same++;
  }
  return same;
}

function expectClose(got: Float32Array, want: Float32Array, label: string): void {
  for (let i = 0; i < want.length; i++) {
    const tol = 1e-5 * Math.max(1, Math.abs(want[i]));
    if (!(Math.abs(got[i] - want[i]) <= tol)) expect.fail(`${label}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

describe.skipIf(!native)('16-bit native against js on random problems', () => {
  const nat = native as Backend;
  for (const dtype of FORMATS) {
    it(`${dtype}: train, eval and backward within one unit, >= 99.9% identical`, async () => {
      let total = 0;
      let identical = 0;
      const tally = (got: Uint16Array, want: Uint16Array, label: string, terms?: (i: number) => number) => {
        identical += compareHalf(got, want, dtype, label, terms);
        total += got.length;
      };
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            // Large enough that the native backend runs its own kernels (4096+ elements).
            dims: fc.array(fc.constantFrom(1, 2, 3, 5, 8, 13, 16, 17, 31), { minLength: 2, maxLength: 4 }),
            channelsLast: fc.boolean(),
            relu: fc.boolean(),
            residual: fc.boolean(),
            inPlace: fc.boolean(),
            offset: fc.constantFrom(0, 3, 100),
            seed: fc.integer({ min: 1, max: 1 << 30 }),
          }),
          async (p) => {
            const shape = [64, ...p.dims];
            const axis = p.channelsLast ? -1 : 1;
            const c = shape[p.channelsLast ? shape.length - 1 : 1];
            const n = shape.reduce((a, b) => a * b, 1);
            const x = halfData(n, dtype, p.seed, p.offset, 2);
            const z = p.residual ? halfData(n, dtype, p.seed + 1) : null;
            const gamma = floats(c, p.seed + 2, 1, 0.5);
            const beta = floats(c, p.seed + 3, 0, 0.5);
            const options = (rm: Float32Array, rv: Float32Array) => ({
              dtype,
              axis,
              gamma,
              beta,
              runningMean: rm,
              runningVar: rv,
              activation: p.relu ? ('relu' as const) : ('none' as const),
              residual: z,
            });
            const rmJ = new Float32Array(c);
            const rvJ = new Float32Array(c).fill(1);
            const rmN = rmJ.slice();
            const rvN = rvJ.slice();
            const tj = js.batchNormTrain(x, shape, options(rmJ, rvJ));
            const xn = x.slice();
            const tn = p.inPlace
              ? await nat.batchNormTrainAsync(xn, shape, { ...options(rmN, rvN), out: xn })
              : nat.batchNormTrain(x, shape, options(rmN, rvN));
            if (p.inPlace) expect(tn.y).toBe(xn);
            expect(tn.y).toBeInstanceOf(Uint16Array);
            expect(tn.mean).toBeInstanceOf(Float32Array);
            const zTerm = (i: number) => (z ? Math.abs(halfValueOf(z[i], dtype)) : 0);
            tally(tn.y, tj.y, 'train y', zTerm);
            expectClose(tn.mean, tj.mean, 'mean');
            expectClose(tn.invStd, tj.invStd, 'invStd');
            expectClose(rmN, rmJ, 'runningMean');
            expectClose(rvN, rvJ, 'runningVar');

            const ej = js.batchNormEval(x, shape, options(rmJ, rvJ));
            const en = await nat.batchNormEvalAsync(x, shape, options(rmJ, rvJ));
            tally(en, ej, 'eval y', zTerm);

            const dy = halfData(n, dtype, p.seed + 4, 0, 1);
            const saved = { mean: tj.mean, invStd: tj.invStd };
            const bo = { dtype, axis, gamma, activation: options(rmJ, rvJ).activation, y: tj.y, residual: p.residual };
            const bj = js.batchNormBackward(dy, x, shape, saved, bo);
            const bn = nat.batchNormBackward(dy, x, shape, saved, bo);
            const perRow = n / shape[0] / c;
            const dyTerm = (i: number) =>
              Math.abs(
                halfValueOf(dy[i], dtype) * gamma[Math.floor(i / perRow) % c] * tj.invStd[Math.floor(i / perRow) % c],
              );
            tally(
              bn.dx,
              bj.dx,
              'dx',
              p.channelsLast ? (i) => Math.abs(halfValueOf(dy[i], dtype) * gamma[i % c] * tj.invStd[i % c]) : dyTerm,
            );
            if (p.residual) tally(bn.dResidual as Uint16Array, bj.dResidual as Uint16Array, 'dResidual');
            expectClose(bn.dBeta, bj.dBeta, 'dBeta');
            for (let i = 0; i < c; i++) {
              const scale = Math.max(1, Math.abs(bj.dGamma[i]), Math.abs(bj.dBeta[i]));
              expect(Math.abs(bn.dGamma[i] - bj.dGamma[i])).toBeLessThanOrEqual(1e-4 * scale);
            }
          },
        ),
        { numRuns: 25, seed: dtype === 'bfloat16' ? 16 : 17 },
      );
      expect(identical / total).toBeGreaterThanOrEqual(0.999);
    });
  }
});

describe.each(backends.map((b) => [b.name, b] as const))('16-bit calls on %s', (_name, b) => {
  const shape = [4, 3, 5];

  it('y is exactly the float32 answer rounded to 16 bits on a simple case', () => {
    for (const dtype of FORMATS) {
      // Rows [0, 1], [2, 3], [0, 1], [2, 3]: channel means 1 and 2, biased variances 1.
      const x = Uint16Array.from([0, 1, 2, 3, 0, 1, 2, 3], (v) => halfBitsOf(v, dtype));
      const r = b.batchNormTrain(x, [4, 2], { dtype, axis: 1 });
      expect(Array.from(r.mean)).toEqual([1, 2]);
      const a = 1 / Math.sqrt(1 + 1e-5);
      const want = [-a, -a, a, a, -a, -a, a, a].map((v) => halfBitsOf(v, dtype));
      expect(Array.from(r.y)).toEqual(want);
    }
  });

  it('NaN and Infinity propagate as in float32; subnormal results are kept', () => {
    for (const dtype of FORMATS) {
      const x = halfData(60, dtype, 5);
      x[0] = dtype === 'bfloat16' ? 0x7fc0 : 0x7e00; // NaN in channel 0
      const r = b.batchNormTrain(x, shape, { dtype });
      expect(Number.isNaN(r.mean[0])).toBe(true);
      for (let i = 0; i < 5; i++) expect(Number.isNaN(halfValueOf(r.y[i], dtype))).toBe(true);
      expect(Number.isFinite(r.mean[1])).toBe(true);
      // A tiny gamma gives results in the subnormal range.
      const tiny = b.batchNormEval(halfData(60, dtype, 6, 0, 1), shape, {
        dtype,
        gamma: new Float32Array(3).fill(dtype === 'float16' ? 1e-6 : 1e-39),
        runningMean: new Float32Array(3),
        runningVar: new Float32Array(3).fill(1),
      });
      const limit = dtype === 'float16' ? 0x0400 : 0x0080;
      expect(Array.from(tiny).some((h) => (h & 0x7fff) !== 0 && (h & 0x7fff) < limit)).toBe(true);
    }
  });

  it('gives clear errors naming the argument, the same on every backend, and writes nothing', () => {
    const x = halfData(60, 'bfloat16', 1);
    const rm = new Float32Array(3);
    const rv = new Float32Array(3).fill(1);
    expect(() => b.batchNormTrain(x, shape)).toThrow(
      new TypeError(
        "batchNormTrain: x is a Uint16Array: give dtype 'bfloat16' or 'float16' (the format of its bits), got undefined",
      ),
    );
    expect(() => b.batchNormTrain(new Float32Array(60), shape, { dtype: 'bfloat16' })).toThrow(
      new TypeError('batchNormTrain: dtype "bfloat16" does not match x, a Float32Array (dtype \'float32\')'),
    );
    expect(() => b.batchNormTrain(x, shape, { dtype: 'half' as never })).toThrow(
      new TypeError("batchNormTrain: dtype must be 'float32', 'float64', 'bfloat16' or 'float16', got \"half\""),
    );
    expect(() =>
      b.batchNormTrain(x, shape, { dtype: 'bfloat16', runningMean: new Float64Array(3) as never, runningVar: rv }),
    ).toThrow(
      new TypeError(
        'batchNormTrain: runningMean must be a Float32Array (the parameters and statistics of bfloat16 tensors are float32), got Float64Array',
      ),
    );
    expect(() =>
      b.batchNormTrain(x, shape, {
        dtype: 'bfloat16',
        runningMean: rm,
        runningVar: rv,
        out: new Float32Array(60) as never,
      }),
    ).toThrow(new TypeError('batchNormTrain: out must be a Uint16Array like x (bfloat16 bits), got Float32Array'));
    expect(rm.every((v) => v === 0) && rv.every((v) => v === 1)).toBe(true);
    expect(() =>
      b.batchNormBackward(x, new Float32Array(60) as never, shape, { mean: rm, invStd: rv }, { dtype: 'bfloat16' }),
    ).toThrow(new TypeError('batchNormBackward: x must be a Uint16Array like dy (bfloat16 bits), got Float32Array'));
    expect(() => b.batchNormStats(x, shape, { dtype: 'float32' })).toThrow(TypeError);
  });

  it('the statistics pieces and the fingerprint read 16-bit tensors', () => {
    for (const dtype of FORMATS) {
      const x = halfData(60, dtype, 9);
      const widened = Float32Array.from(x, (h) => halfValueOf(h, dtype));
      const s16 = b.batchNormStats(x, shape, { dtype });
      const s32 = b.batchNormStats(widened, shape);
      expect(Array.from(s16.mean)).toEqual(Array.from(s32.mean));
      for (let c = 0; c < 3; c++) expect(s16.m2[c]).toBeCloseTo(s32.m2[c], 10);
      expect(b.fingerprint(x)).toBe(js.fingerprint(x));
      const y = x.slice();
      y[7] ^= 1;
      expect(b.fingerprint(y)).not.toBe(b.fingerprint(x));
    }
  });

  it('the layer keeps float32 parameters and state, takes and gives 16-bit tensors', async () => {
    for (const dtype of FORMATS) {
      const layer = new BatchNorm(3, { dtype, backend: b, activation: 'relu' });
      expect(layer.gamma).toBeInstanceOf(Float32Array);
      const x = halfData(60, dtype, 11, 1, 3);
      const y = layer.forward(x, shape);
      const f = b.batchNormTrain(x, shape, { dtype, activation: 'relu' });
      expect(Array.from(y)).toEqual(Array.from(f.y));
      const dy = halfData(60, dtype, 12);
      const dx = await layer.backwardAsync(dy);
      const g = b.batchNormBackward(dy, x, shape, f, { dtype, activation: 'relu', y: f.y });
      expect(dx).toBeInstanceOf(Uint16Array);
      expect(Array.from(dx)).toEqual(Array.from(g.dx));
      expect(Array.from(layer.betaGrad as Float32Array)).toEqual(Array.from(g.dBeta));
      const state = layer.stateDict();
      expect(state.runningMean).toBeInstanceOf(Float32Array);
      const other = new BatchNorm(3, { dtype, backend: b });
      other.loadStateDict(state);
      expect(Array.from(other.runningVar as Float32Array)).toEqual(Array.from(layer.runningVar as Float32Array));
      expect(() => other.loadStateDict({ ...state, runningMean: new Float64Array(3) })).toThrow(
        /runningMean must be a Float32Array \(the layer's parameters, for dtype '(bfloat16|float16)'\)/,
      );
      expect(() => layer.forward(new Float32Array(60), shape)).toThrow(
        new TypeError(`x must be a Uint16Array (the layer's dtype '${dtype}'), got Float32Array`),
      );
      // A changed input is refused by backward, through the 16-bit fingerprint.
      layer.forward(x, shape);
      x[3] ^= 0x10;
      expect(() => layer.backward(dy)).toThrow(/x was modified after forward/);
    }
  });

  it('SyncBatchNorm with one worker matches BatchNorm in 16 bits', async () => {
    const dtype = 'bfloat16';
    const sync = new SyncBatchNorm(3, { dtype, backend: b, allReduce: async (buffer) => buffer });
    const plain = new BatchNorm(3, { dtype, backend: b });
    const x = halfData(60, dtype, 13);
    expect(Array.from(await sync.forward(x, shape))).toEqual(Array.from(plain.forward(x, shape)));
    const dy = halfData(60, dtype, 14);
    expect(Array.from(await sync.backward(dy))).toEqual(Array.from(plain.backward(dy)));
    expect(Array.from(sync.runningVar as Float32Array)).toEqual(Array.from(plain.runningVar as Float32Array));
  });
});
