// Finite float64 data near the edge of the range (±1e308), issue 13 item 6: x - K and its
// square overflow the shifted sums, which gave mean ±Infinity and y NaN where PyTorch's
// statistics are finite (mean 0 for ±1e308, variance Infinity, so invStd 0 and y = beta).
// Both backends now rescale such a channel and give finite means; NaN and Infinity in the
// data still propagate. Shapes above 4096 elements reach the native kernels themselves.
import { describe, expect, it } from 'vitest';
import { js, native } from '../index';
import { backends } from './backends';

/** Channel c of [outer, C, inner] data: value at (o, i). */
function build(outer: number, channels: number, inner: number, value: (c: number, o: number, i: number) => number) {
  const x = new Float64Array(outer * channels * inner);
  for (let o = 0; o < outer; o++)
    for (let c = 0; c < channels; c++)
      for (let i = 0; i < inner; i++) x[(o * channels + c) * inner + i] = value(c, o, i);
  return x;
}

// Channel 0: ±1e308 alternating (PyTorch: mean 0, var inf). Channel 1: 1e308 with every
// fourth value 5e307 (true mean 8.75e307, var ~1.6e614: inf). Channel 2: ordinary values.
const value = (c: number, o: number, i: number): number => {
  const k = o * 7 + i;
  if (c === 0) return k % 2 === 0 ? 1e308 : -1e308;
  if (c === 1) return k % 4 === 3 ? 5e307 : 1e308;
  return Math.sin(k);
};

// [outer, C, inner] and the shape/axis the call sees: runs (inner >= 16), columns (NHWC), native-sized.
const CASES: Array<{ name: string; dims: [number, number, number]; shape: number[]; axis: number }> = [
  { name: 'NCHW runs', dims: [4, 3, 16], shape: [4, 3, 4, 4], axis: 1 },
  { name: 'channels-last columns', dims: [16, 3, 1], shape: [16, 3], axis: 1 },
  { name: 'NCHW, native-sized', dims: [8, 3, 256], shape: [8, 3, 16, 16], axis: 1 },
  { name: 'NHWC, native-sized', dims: [2048, 3, 1], shape: [8, 16, 16, 3], axis: 3 },
];

describe.each(backends)('finite data near the float64 range ($name)', (b) => {
  describe.each(CASES)('$name', ({ dims, shape, axis }) => {
    const x = build(...dims, value);
    const gamma = Float64Array.of(2, 3, 1);
    const beta = Float64Array.of(0.5, -0.25, 0);

    it('gives finite means, invStd 0 where the variance overflows, and y = beta there', () => {
      const runningMean = new Float64Array(3);
      const runningVar = Float64Array.of(1, 1, 1);
      const r = b.batchNormTrain(x, shape, { axis, gamma, beta, runningMean, runningVar });
      expect(r.mean[0]).toBe(0);
      expect(r.mean[1] / 8.75e307).toBeCloseTo(1, 12);
      expect(r.invStd[0]).toBe(0);
      expect(r.invStd[1]).toBe(0);
      expect(Number.isFinite(r.mean[2]) && r.invStd[2] > 0).toBe(true);
      expect(Number.isFinite(runningMean[0]) && Number.isFinite(runningMean[1])).toBe(true);
      expect(runningVar[0]).toBe(Number.POSITIVE_INFINITY);
      const [outer, channels, inner] = dims;
      for (let o = 0; o < outer; o++)
        for (let c = 0; c < 2; c++)
          for (let i = 0; i < inner; i++) expect(r.y[(o * channels + c) * inner + i]).toBe(beta[c]);
    });

    it('batchNormStats gives the same finite means', () => {
      const s = b.batchNormStats(x, shape, { axis });
      expect(s.mean[0]).toBe(0);
      expect(s.mean[1] / 8.75e307).toBeCloseTo(1, 12);
      expect(s.m2[0]).toBe(Number.POSITIVE_INFINITY);
    });

    it('NaN and Infinity in such a channel still propagate', () => {
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
        const poisoned = x.slice();
        poisoned[0] = bad;
        const r = b.batchNormTrain(poisoned, shape, { axis });
        expect(Number.isNaN(r.y[0])).toBe(true);
        expect(Number.isFinite(r.mean[0]) && Number.isFinite(r.invStd[0])).toBe(false);
        expect(r.mean[1] / 8.75e307).toBeCloseTo(1, 12);
      }
    });
  });
});

describe.skipIf(!native)('near the float64 range: native and js agree', () => {
  it.each(CASES)('$name', ({ dims, shape, axis }) => {
    const x = build(...dims, value);
    const a = js.batchNormTrain(x, shape, { axis });
    const n = (native as NonNullable<typeof native>).batchNormTrain(x, shape, { axis });
    // The rescaled channels sum in one order on both backends: equal to the bit. The ordinary
    // channel is summed in parallel blocks natively: equal to rounding.
    expect(Array.from(n.mean.subarray(0, 2))).toEqual(Array.from(a.mean.subarray(0, 2)));
    expect(Array.from(n.invStd.subarray(0, 2))).toEqual(Array.from(a.invStd.subarray(0, 2)));
    expect(Math.abs(n.mean[2] - a.mean[2])).toBeLessThan(1e-14);
    expect(Math.abs(n.invStd[2] / a.invStd[2] - 1)).toBeLessThan(1e-13);
  });
});
