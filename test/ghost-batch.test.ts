// Ghost batch normalization (issue 17, item 4): BatchNorm({ virtualBatchSize: k }) normalizes
// each group of k consecutive samples with its own statistics, differentiates each group on
// its own, and moves the running statistics by the groups' average (as Keras does).
import { describe, expect, it } from 'vitest';
import { BatchNorm, SyncBatchNorm } from '../index';
import { backends } from './backends';
import { maxAbsDiff } from './helpers/compare';

const k = 2;
const cases = [
  { shape: [6, 3, 4], axis: 1 },
  { shape: [4, 5, 3], axis: -1 },
];

describe.each(backends)('virtualBatchSize ($name)', (b) => {
  it.each(cases)('$shape axis $axis: each group of k samples is its own batch', async ({ shape, axis }) => {
    const n = shape.reduce((p, d) => p * d, 1);
    const c = shape.at(axis) as number;
    const per = n / (shape[0] / k);
    const groupShape = [k, ...shape.slice(1)];
    const x = Float64Array.from({ length: n }, (_, i) => Math.sin(i * 0.7) * (1 + (i % 5)) + (i % 3));
    const dy = Float64Array.from({ length: n }, (_, i) => Math.cos(i * 1.1));
    const options = { backend: b, dtype: 'float64' as const, axis, momentum: 0.2, activation: 'relu' as const };
    for (const useAsync of [false, true]) {
      const ghost = new BatchNorm(c, { ...options, virtualBatchSize: k });
      ghost.gamma?.set(Array.from({ length: c }, (_, i) => 0.5 + i));
      const y = useAsync ? await ghost.forwardAsync(x, shape) : ghost.forward(x, shape);
      const dx = useAsync ? await ghost.backwardAsync(dy) : ghost.backward(dy);

      // The same with one functional call per group.
      const gamma = Float64Array.from({ length: c }, (_, i) => 0.5 + i);
      const expectedY = new Float64Array(n);
      const expectedDx = new Float64Array(n);
      const dGamma = new Float64Array(c);
      const meanSum = new Float64Array(c);
      const varSum = new Float64Array(c);
      for (let g = 0; g < shape[0] / k; g++) {
        const xs = x.subarray(g * per, (g + 1) * per);
        const r = b.batchNormTrain(xs, groupShape, {
          axis,
          gamma,
          activation: 'relu',
          out: expectedY.subarray(g * per, (g + 1) * per),
        });
        const s = b.batchNormStats(xs, groupShape, { axis });
        for (let j = 0; j < c; j++) {
          meanSum[j] += s.mean[j];
          varSum[j] += s.m2[j] / (s.count - 1);
        }
        const d = b.batchNormBackward(dy.subarray(g * per, (g + 1) * per), xs, groupShape, r, {
          axis,
          gamma,
          activation: 'relu',
          y: r.y,
          out: expectedDx.subarray(g * per, (g + 1) * per),
        });
        for (let j = 0; j < c; j++) dGamma[j] += d.dGamma[j];
      }
      expect(maxAbsDiff(y, expectedY)).toBeLessThan(1e-12);
      expect(maxAbsDiff(dx, expectedDx)).toBeLessThan(1e-12);
      expect(maxAbsDiff(ghost.gammaGrad as Float64Array, dGamma)).toBeLessThan(1e-12);
      const groups = shape[0] / k;
      const runningMean = Array.from(meanSum, (s) => (0.2 * s) / groups);
      const runningVar = Array.from(varSum, (s) => 0.8 + (0.2 * s) / groups);
      expect(maxAbsDiff(ghost.runningMean as Float64Array, Float64Array.from(runningMean))).toBeLessThan(1e-12);
      expect(maxAbsDiff(ghost.runningVar as Float64Array, Float64Array.from(runningVar))).toBeLessThan(1e-12);
    }
  });

  it('eval mode uses the running statistics as usual; a group as large as the batch is plain BatchNorm', () => {
    const shape = [4, 3, 2];
    const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) + i * 0.1);
    const whole = new BatchNorm(3, { backend: b, virtualBatchSize: 4 });
    const plain = new BatchNorm(3, { backend: b });
    expect(maxAbsDiff(whole.forward(x, shape), plain.forward(x, shape))).toBeLessThan(1e-6);
    expect(maxAbsDiff(whole.runningVar as Float32Array, plain.runningVar as Float32Array)).toBeLessThan(1e-6);
    whole.eval();
    plain.eval();
    expect(maxAbsDiff(whole.forward(x, shape), plain.forward(x, shape))).toBe(0);
  });

  it('a batch that is not a multiple of k, channels on axis 0 and bad values are clear errors', () => {
    const layer = new BatchNorm(3, { backend: b, virtualBatchSize: 4 });
    expect(() => layer.forward(new Float32Array(18), [6, 3])).toThrow(
      new RangeError('batchNormTrain: x has a batch of 6 samples, not a multiple of virtualBatchSize 4'),
    );
    expect(() =>
      new BatchNorm(3, { backend: b, axis: 0, virtualBatchSize: 1 }).forward(new Float32Array(6), [3, 2]),
    ).toThrow(/^batchNormTrain: virtualBatchSize groups samples along axis 0/);
    expect(() => new BatchNorm(3, { virtualBatchSize: 0 })).toThrow(
      new RangeError('BatchNorm: virtualBatchSize must be >= 1, got 0'),
    );
    expect(() => new BatchNorm(3, { virtualBatchSize: 1.5 })).toThrow(TypeError);
    expect(() => new SyncBatchNorm(3, { virtualBatchSize: 2, allReduce: async (a: Float64Array) => a })).toThrow(
      /^SyncBatchNorm: virtualBatchSize is not supported/,
    );
  });
});
