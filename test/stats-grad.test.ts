// Gradients with respect to given, frozen statistics (issue 17, item 2): with
// `{ training: false, statsGrad: true }` backward also returns dMean and dVar, checked here by
// central finite differences of an eval forward over runningMean / runningVar.
import { describe, expect, it } from 'vitest';
import { backends } from './backends';

const shape = [3, 4, 5];
const n = 60;
const seq = (f: (i: number) => number, len = n) => Float64Array.from({ length: len }, (_, i) => f(i));

describe.each(backends)('statsGrad ($name)', (b) => {
  const x = seq((i) => Math.sin(i * 1.3) * 2 + 0.5);
  const dy = seq((i) => Math.cos(i * 0.7));
  const gamma = seq((i) => 0.5 + i, 4);
  const beta = seq((i) => i - 1, 4);
  const mean = seq((i) => 0.1 * i, 4);
  const variance = seq((i) => 0.5 + 0.3 * i, 4);
  const eps = 1e-5;
  const invStd = variance.map((v) => 1 / Math.sqrt(v + eps));

  /** Σ dy·y of the eval forward with these statistics. */
  const loss = (m: Float64Array, v: Float64Array, activation: 'relu' | 'none') => {
    const y = b.batchNormEval(x, shape, { runningMean: m, runningVar: v, gamma, beta, eps, activation });
    let sum = 0;
    for (let i = 0; i < y.length; i++) sum += y[i] * dy[i];
    return sum;
  };

  it.each(['none', 'relu'] as const)('dMean and dVar match finite differences (activation %s)', (activation) => {
    const y = b.batchNormEval(x, shape, { runningMean: mean, runningVar: variance, gamma, beta, eps, activation });
    const r = b.batchNormBackward(
      dy,
      x,
      shape,
      { mean, invStd },
      {
        training: false,
        statsGrad: true,
        gamma,
        activation,
        y: activation === 'relu' ? y : undefined,
      },
    );
    const h = 1e-6;
    for (let c = 0; c < 4; c++) {
      const bump = (a: Float64Array, d: number) => a.map((v, i) => (i === c ? v + d : v));
      const fdMean = (loss(bump(mean, h), variance, activation) - loss(bump(mean, -h), variance, activation)) / (2 * h);
      const fdVar = (loss(mean, bump(variance, h), activation) - loss(mean, bump(variance, -h), activation)) / (2 * h);
      expect(r.dMean?.[c]).toBeCloseTo(fdMean, 5);
      expect(r.dVar?.[c]).toBeCloseTo(fdVar, 5);
    }
    expect(r.dMean).toBeInstanceOf(Float64Array);
  });

  it('is refused with training statistics, and by the backward sums', () => {
    expect(() => b.batchNormBackward(dy, x, shape, { mean, invStd }, { statsGrad: true })).toThrow(
      /^batchNormBackward: statsGrad needs training: false/,
    );
    expect(() => b.batchNormBackwardSums(dy, x, shape, { mean, invStd }, { training: false, statsGrad: true })).toThrow(
      /^batchNormBackwardSums: statsGrad is given by batchNormBackward/,
    );
    expect(() =>
      b.batchNormBackward(dy, x, shape, { mean, invStd }, { training: false, statsGrad: 1 } as never),
    ).toThrow(new TypeError('batchNormBackward: statsGrad must be a boolean, got 1'));
  });

  it('without it the result has no dMean / dVar, and the Async form gives the same', async () => {
    expect('dMean' in b.batchNormBackward(dy, x, shape, { mean, invStd }, { training: false })).toBe(false);
    const options = { training: false, statsGrad: true, gamma };
    const sync = b.batchNormBackward(dy, x, shape, { mean, invStd }, options);
    const later = await b.batchNormBackwardAsync(dy, x, shape, { mean, invStd }, options);
    expect(Array.from(later.dMean as Float64Array)).toEqual(Array.from(sync.dMean as Float64Array));
    expect(Array.from(later.dVar as Float64Array)).toEqual(Array.from(sync.dVar as Float64Array));
  });
});
