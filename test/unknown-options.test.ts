// An unknown option key is a TypeError naming it on every function and backend: a typo or
// another library's name would otherwise run silently with the default.
import { describe, expect, it } from 'vitest';
import { backends } from './backends';

const shape = [4, 3];
const x = () => new Float32Array(12).map((_, i) => Math.sin(i));
const channels = () => new Float32Array(3).fill(1);

describe.each(backends)('unknown option keys ($name)', (b) => {
  it.each([
    ['weight', 'use gamma'],
    ['bias', 'use beta'],
    ['running_mean', 'use runningMean'],
    ['epsilon', 'use eps'],
    ['moving_variance', 'use runningVar'],
  ])('train with %s names the one to use (%s)', (key, hint) => {
    expect(() => b.batchNormTrain(x(), shape, { [key]: channels() } as never)).toThrow(
      new TypeError(`batchNormTrain: unknown option ${JSON.stringify(key)} (another library's name: ${hint})`),
    );
  });

  it('a typo lists the options the call takes, and nothing is written', () => {
    const runningMean = new Float32Array(3);
    const runningVar = new Float32Array(3).fill(1);
    expect(() => b.batchNormTrain(x(), shape, { runningMean, runningVar, momentun: 0.2 } as never)).toThrow(
      new TypeError(
        'batchNormTrain: unknown option "momentun" (expected one of axis, dtype, eps, gamma, beta, activation, residual, runningMean, runningVar, momentum, runningVarCorrection, out, fingerprint, virtualBatchSize)',
      ),
    );
    expect(Array.from(runningMean)).toEqual([0, 0, 0]);
    expect(() => b.batchNormTrain(x(), shape, { activaton: 'relu' } as never)).toThrow(
      /^batchNormTrain: unknown option "activaton"/,
    );
  });

  it('eval, backward, the Async forms and the sync pieces check their keys too', async () => {
    const xs = x();
    const stats = { runningMean: new Float32Array(3), runningVar: channels() };
    expect(() => b.batchNormEval(xs, shape, { ...stats, epsilon: 1 } as never)).toThrow(
      /^batchNormEval: unknown option "epsilon" \(another library's name: use eps\)/,
    );
    const saved = b.batchNormTrain(xs, shape);
    expect(() => b.batchNormBackward(xs, xs, shape, saved, { trainng: false } as never)).toThrow(
      new TypeError(
        'batchNormBackward: unknown option "trainng" (expected one of axis, dtype, gamma, training, out, activation, y, residual, outResidual, fingerprint, statsGrad, virtualBatchSize)',
      ),
    );
    await expect(b.batchNormTrainAsync(xs, shape, { weight: channels() } as never)).rejects.toThrow(TypeError);
    expect(() => b.batchNormStats(xs, shape, { axes: 1 } as never)).toThrow(
      new TypeError('batchNormStats: unknown option "axes" (expected one of axis, dtype)'),
    );
  });

  it('inherited keys are not options; own keys with undefined values are still checked', () => {
    const options = Object.create({ weight: channels() }) as Record<string, unknown>;
    expect(() => b.batchNormTrain(x(), shape, options)).not.toThrow();
    expect(() => b.batchNormTrain(x(), shape, { gama: undefined } as never)).toThrow(
      /^batchNormTrain: unknown option "gama"/,
    );
  });
});
