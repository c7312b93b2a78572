// Offset data (mean 1e6, spread 1e-2, float64): both backends subtract the mean before the
// multiply, as the core does, so they agree to float64 rounding and match the exact answer;
// the x * scale + (beta - mean * scale) form lost ~8 digits here (issue 14).
import { describe, expect, it } from 'vitest';
import { js, native } from '../index';
import { backends } from './backends';
import { maxAbsDiff } from './helpers/compare';

const shape = [8, 3, 10];
const n = 240;
const x = Float64Array.from({ length: n }, (_, i) => 1e6 + 1e-2 * Math.sin(i * 0.37));
const gamma = Float64Array.of(1.5, 0.5, 2);
const beta = Float64Array.of(0.25, -1, 0);

/** y from the deviations from 1e6 (exact in double here), so nothing cancels. */
function expected(): Float64Array {
  const y = new Float64Array(n);
  for (let c = 0; c < 3; c++) {
    const idx: number[] = [];
    for (let o = 0; o < 8; o++) for (let i = 0; i < 10; i++) idx.push(o * 30 + c * 10 + i);
    const d = idx.map((i) => x[i] - 1e6);
    const mean = d.reduce((s, v) => s + v, 0) / d.length;
    const variance = d.reduce((s, v) => s + (v - mean) ** 2, 0) / d.length;
    const inv = 1 / Math.sqrt(variance + 1e-5);
    idx.forEach((i, j) => {
      y[i] = (d[j] - mean) * gamma[c] * inv + beta[c];
    });
  }
  return y;
}

describe.each(backends)('offset data ($name)', (b) => {
  it('train and eval keep every digit the data has', () => {
    const y = b.batchNormTrain(x, shape, { gamma, beta }).y;
    // The batch mean itself is a double near 1e6 (ulp 1.2e-10): over σ ≈ 7e-3 and γ ≤ 2 that
    // bounds y's error by ~3.3e-8. x * scale + (beta - mean * scale) was ~1e2 times worse.
    expect(maxAbsDiff(y, expected())).toBeLessThan(5e-8);
    const runningMean = Float64Array.of(1e6, 1e6, 1e6);
    const runningVar = Float64Array.of(1e-4, 2e-4, 5e-5);
    const e = b.batchNormEval(x, shape, { gamma, beta, runningMean, runningVar });
    for (let i = 0; i < n; i++) {
      const c = Math.floor(i / 10) % 3;
      const want = ((x[i] - 1e6) * gamma[c]) / Math.sqrt(runningVar[c] + 1e-5) + beta[c];
      expect(Math.abs(e[i] - want)).toBeLessThan(1e-9);
    }
  });
});

describe.skipIf(!native)('offset data: native and js agree to float64 rounding', () => {
  it('train, eval and the fused residual', () => {
    const nb = native as NonNullable<typeof native>;
    const z = Float64Array.from({ length: n }, (_, i) => Math.cos(i));
    const a = js.batchNormTrain(x, shape, { gamma, beta, residual: z, activation: 'relu' }).y;
    const c = nb.batchNormTrain(x, shape, { gamma, beta, residual: z, activation: 'relu' }).y;
    expect(maxAbsDiff(a, c)).toBeLessThan(1e-12);
    const stats = { runningMean: Float64Array.of(1e6, 1e6, 1e6), runningVar: Float64Array.of(1e-4, 2e-4, 5e-5) };
    expect(maxAbsDiff(js.batchNormEval(x, shape, stats), nb.batchNormEval(x, shape, stats))).toBeLessThan(1e-12);
  });
});
