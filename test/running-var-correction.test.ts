// runningVarCorrection (issue 17, item 1): the running variance as Keras, TensorFlow and
// ONNX keep it (biased batch variance, correction 0) or as PyTorch does (unbiased, 1, the
// default), on the functional calls, their Async and synchronized forms, and the layers.
import { describe, expect, it } from 'vitest';
import { BatchNorm, SyncBatchNorm } from '../index';
import { backends } from './backends';

const shape = [4, 3, 5];
const x = Float64Array.from({ length: 60 }, (_, i) => Math.sin(i * 0.9) * 3 + (i % 3));
const m = 20;

/** Each channel's mean and M2, in double, straight from the definition. */
function moments(): { mean: number[]; m2: number[] } {
  const mean = [0, 0, 0];
  const m2 = [0, 0, 0];
  for (let i = 0; i < 60; i++) mean[Math.floor(i / 5) % 3] += x[i] / m;
  for (let i = 0; i < 60; i++) m2[Math.floor(i / 5) % 3] += (x[i] - mean[Math.floor(i / 5) % 3]) ** 2;
  return { mean, m2 };
}

/** runningVar after one step from ones with momentum 0.1. */
const expectedVar = (correction: number) => moments().m2.map((s) => 0.9 + (0.1 * s) / (m - correction));

describe.each(backends)('runningVarCorrection ($name)', (b) => {
  it.each([0, 1] as const)('correction %i: the running variance takes M2 / (m - correction)', async (correction) => {
    for (const call of [b.batchNormTrain, b.batchNormTrainAsync]) {
      const runningMean = new Float64Array(3);
      const runningVar = new Float64Array(3).fill(1);
      await call(x, shape, { runningMean, runningVar, runningVarCorrection: correction });
      expect(Array.from(runningVar)).toEqual(expectedVar(correction).map((v) => expect.closeTo(v, 13)));
      expect(Array.from(runningMean)).toEqual(moments().mean.map((v) => expect.closeTo(0.1 * v, 13)));
    }
  });

  it('the default is 1 (PyTorch), and y is the same either way', () => {
    const runningVar = new Float64Array(3).fill(1);
    const a = b.batchNormTrain(x, shape, { runningMean: new Float64Array(3), runningVar });
    expect(Array.from(runningVar)).toEqual(expectedVar(1).map((v) => expect.closeTo(v, 13)));
    const c = b.batchNormTrain(x, shape, {
      runningMean: new Float64Array(3),
      runningVar: new Float64Array(3).fill(1),
      runningVarCorrection: 0,
    });
    expect(Array.from(c.y)).toEqual(Array.from(a.y));
  });

  it('anything but 0 or 1 is refused before anything is written', () => {
    const runningVar = new Float64Array(3).fill(1);
    const call = (v: unknown) => () =>
      b.batchNormTrain(x, shape, { runningMean: new Float64Array(3), runningVar, runningVarCorrection: v as 0 });
    expect(call(0.5)).toThrow(
      new RangeError(
        'batchNormTrain: runningVarCorrection must be 0 (biased, as Keras) or 1 (unbiased, as PyTorch), got 0.5',
      ),
    );
    expect(call('0')).toThrow(new TypeError('batchNormTrain: runningVarCorrection must be a number (0 or 1), got "0"'));
    expect(Array.from(runningVar)).toEqual([1, 1, 1]);
  });

  it('the layer keeps it in its config, and SyncBatchNorm passes it through', async () => {
    const layer = new BatchNorm(3, { backend: b, dtype: 'float64', runningVarCorrection: 0 });
    expect(layer.runningVarCorrection).toBe(0);
    layer.forward(x, shape);
    expect(Array.from(layer.runningVar as Float64Array)).toEqual(expectedVar(0).map((v) => expect.closeTo(v, 13)));
    expect(Object.keys(layer.stateDict()).sort()).toEqual([
      'beta',
      'gamma',
      'numBatchesTracked',
      'runningMean',
      'runningVar',
    ]);
    const sync = new SyncBatchNorm(3, {
      backend: b,
      dtype: 'float64',
      runningVarCorrection: 0,
      allReduce: async (buffer: Float64Array) => buffer,
    });
    expect(sync.runningVarCorrection).toBe(0);
    await sync.forward(x, shape);
    expect(Array.from(sync.runningVar as Float64Array)).toEqual(expectedVar(0).map((v) => expect.closeTo(v, 11)));
    expect(() => new BatchNorm(3, { runningVarCorrection: 2 as 0 })).toThrow(RangeError);
  });
});
