// A training batch with zero samples (issue 17, item 5): as PyTorch, an empty output and the
// running statistics left alone; the layer counts the call (PyTorch 1.13 increments
// num_batches_tracked); backward gives an empty dx and zero parameter gradients. m = 1 stays
// an error.
import { describe, expect, it } from 'vitest';
import { BatchNorm } from '../index';
import { backends } from './backends';

describe.each(backends)('empty training batches ($name)', (b) => {
  it.each([
    [[0, 3, 4, 4], 1],
    [[2, 3, 0], 1],
    [[0, 5, 3], -1],
  ])('train on %j (axis %i): empty y, no statistics, running stats untouched', async (shape, axis) => {
    const c = shape.at(axis) as number;
    for (const call of [b.batchNormTrain, b.batchNormTrainAsync]) {
      const runningMean = Float64Array.from({ length: c }, (_, i) => i);
      const runningVar = Float64Array.from({ length: c }, (_, i) => i + 1);
      const r = await call(new Float64Array(0), shape, { axis, runningMean, runningVar, fingerprint: true });
      expect(r.y.length).toBe(0);
      expect(Array.from(r.mean).every(Number.isNaN)).toBe(true);
      expect(Array.from(r.invStd).every(Number.isNaN)).toBe(true);
      expect(r.fingerprint).toBe(b.fingerprint(new Float64Array(0)));
      expect(Array.from(runningMean)).toEqual(Array.from({ length: c }, (_, i) => i));
      expect(Array.from(runningVar)).toEqual(Array.from({ length: c }, (_, i) => i + 1));
    }
  });

  it('backward of an empty batch: empty dx and dResidual, zero dGamma and dBeta', async () => {
    const shape = [0, 3, 2];
    const { mean, invStd } = b.batchNormTrain(new Float32Array(0), shape);
    for (const call of [b.batchNormBackward, b.batchNormBackwardAsync]) {
      const r = await call(
        new Float32Array(0),
        new Float32Array(0),
        shape,
        { mean, invStd },
        {
          gamma: Float32Array.of(1, 2, 3),
          residual: true,
        },
      );
      expect(r.dx.length).toBe(0);
      expect(r.dResidual?.length).toBe(0);
      expect(Array.from(r.dGamma)).toEqual([0, 0, 0]);
      expect(Array.from(r.dBeta)).toEqual([0, 0, 0]);
    }
  });

  it('the layer: empty output, numBatchesTracked counts the call, statistics and gradients unchanged', async () => {
    const layer = new BatchNorm(3, { backend: b, activation: 'relu' });
    layer.forward(
      Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)),
      [2, 3, 2],
    );
    layer.backward(new Float32Array(12).fill(1));
    const mean = Array.from(layer.runningMean as Float32Array);
    const gammaGrad = Array.from(layer.gammaGrad as Float32Array);
    expect(layer.forward(new Float32Array(0), [0, 3, 2]).length).toBe(0);
    expect(layer.backward(new Float32Array(0)).length).toBe(0);
    expect((await layer.forwardAsync(new Float32Array(0), [0, 3, 7])).length).toBe(0);
    expect(layer.numBatchesTracked).toBe(3);
    expect(Array.from(layer.runningMean as Float32Array)).toEqual(mean);
    expect(Array.from(layer.gammaGrad as Float32Array)).toEqual(gammaGrad);
  });

  it('one sample per channel is still an error', () => {
    expect(() => b.batchNormTrain(new Float32Array(3), [1, 3])).toThrow(
      new RangeError(
        'batchNormTrain: x must have more than 1 value per channel when training, got 1 (shape [1, 3], axis 1)',
      ),
    );
  });
});
