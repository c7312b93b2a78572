// Ghost batch normalization (issue 17, item 4): BatchNorm({ virtualBatchSize: k }) normalizes
// each group of k consecutive samples with its own statistics, differentiates each group on
// its own, and moves the running statistics by the groups' average (as Keras does).
import { describe, expect, it } from 'vitest';
import { BatchNorm, js, SyncBatchNorm } from '../index';
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

// The functional form the layer calls: virtualBatchSize on batchNormTrain / batchNormBackward
// and their Async forms, one call for the batch (native: one pass of the core over the groups,
// the fingerprint folded into its sweeps). Shapes above the native backend's small-call
// threshold (4096 elements) so native runs its own kernels.
const functionalCases = [
  { shape: [8, 16, 8, 8], axis: 1, k: 2 }, // channel-major rows
  { shape: [12, 6, 6, 16], axis: -1, k: 4 }, // channels-last
  { shape: [32, 300], axis: 1, k: 8 }, // [N, C]
  { shape: [6, 3, 4], axis: 1, k: 3 }, // small: the js kernels on every backend
  { shape: [16, 5, 64], axis: 1, k: 1 }, // groups of one sample
];

type Dtype = 'float32' | 'float64' | 'bfloat16';

function tensor(dtype: Dtype, n: number, f: (i: number) => number): Float32Array | Float64Array | Uint16Array {
  if (dtype === 'float64') return Float64Array.from({ length: n }, (_, i) => f(i));
  const v = Float32Array.from({ length: n }, (_, i) => f(i));
  if (dtype === 'float32') return v;
  // bfloat16 bits by truncation: any 16-bit pattern is a valid input.
  return Uint16Array.from(new Uint32Array(v.buffer), (w) => w >>> 16);
}

describe.each(backends)('batchNormTrain/batchNormBackward with virtualBatchSize ($name)', (b) => {
  it.each(
    functionalCases.flatMap((c) => (['float32', 'float64', 'bfloat16'] as const).map((dtype) => ({ ...c, dtype }))),
  )(
    '$shape axis $axis k $k $dtype: one call gives what one call per group gives',
    async ({ shape, axis, k, dtype }) => {
      const n = shape.reduce((p, d) => p * d, 1);
      const c = shape.at(axis) as number;
      const groups = shape[0] / k;
      const per = n / groups;
      const groupShape = [k, ...shape.slice(1)];
      const x = tensor(dtype, n, (i) => Math.sin(i * 0.7) * (1 + (i % 5)) + (i % 3) + 2);
      const z = tensor(dtype, n, (i) => Math.cos(i * 0.3));
      const dy = tensor(dtype, n, (i) => Math.cos(i * 1.1));
      const params = (f: (i: number) => number) =>
        dtype === 'float64'
          ? Float64Array.from({ length: c }, (_, i) => f(i))
          : Float32Array.from({ length: c }, (_, i) => f(i));
      const gamma = params((i) => 0.5 + i / c);
      const beta = params((i) => i / c - 0.5);
      const half = dtype === 'bfloat16' ? { dtype } : {};
      const common = { axis, ...half, gamma, activation: 'relu' as const };
      const part = <T extends Float32Array | Float64Array | Uint16Array>(a: T, g: number, size: number) =>
        a.subarray(g * size, (g + 1) * size) as T;
      for (const useAsync of [false, true]) {
        const train = useAsync ? b.batchNormTrainAsync : b.batchNormTrain;
        const backward = useAsync ? b.batchNormBackwardAsync : b.batchNormBackward;
        const runningMean = params(() => 0.5);
        const runningVar = params(() => 2);
        const r = await train(x, shape, {
          ...common,
          beta,
          residual: z,
          runningMean,
          runningVar,
          momentum: 0.25,
          virtualBatchSize: k,
          fingerprint: true,
        });
        expect(r.fingerprint).toBe(b.fingerprint(x));
        expect(r.mean.length).toBe(groups * c);
        const d = await backward(dy, x, shape, r, {
          ...common,
          y: r.y,
          residual: true,
          virtualBatchSize: k,
          fingerprint: true,
        });
        expect(d.fingerprint).toBe(b.fingerprint(x));

        // One call per group, with the running statistics as Keras averages them.
        const expectedY = r.y.slice().fill(0);
        const expectedDx = r.y.slice().fill(0);
        const expectedDz = r.y.slice().fill(0);
        const dGamma = new Float64Array(c);
        const dBeta = new Float64Array(c);
        const meanSum = new Float64Array(c);
        const varSum = new Float64Array(c);
        for (let g = 0; g < groups; g++) {
          const xs = part(x, g, per);
          const rg = b.batchNormTrain(xs, groupShape, {
            ...common,
            beta,
            residual: part(z, g, per),
            out: part(expectedY, g, per),
          });
          expect(Array.from(rg.mean)).toEqual(Array.from(part(r.mean, g, c)));
          expect(Array.from(rg.invStd)).toEqual(Array.from(part(r.invStd, g, c)));
          const s = b.batchNormStats(xs, groupShape, { axis, ...half });
          for (let j = 0; j < c; j++) {
            meanSum[j] += s.mean[j];
            varSum[j] += s.m2[j] / (s.count - 1);
          }
          const dg = b.batchNormBackward(part(dy, g, per), xs, groupShape, rg, {
            ...common,
            y: rg.y,
            residual: true,
            out: part(expectedDx, g, per),
            outResidual: part(expectedDz, g, per),
          });
          for (let j = 0; j < c; j++) {
            dGamma[j] += dg.dGamma[j];
            dBeta[j] += dg.dBeta[j];
          }
        }
        // The same kernels on the same groups: the very same bits.
        expect(Array.from(r.y)).toEqual(Array.from(expectedY));
        expect(Array.from(d.dx)).toEqual(Array.from(expectedDx));
        expect(Array.from(d.dResidual ?? [])).toEqual(Array.from(expectedDz));
        // The per-group calls round each group's dGamma to the parameter type before adding.
        const tol = dtype === 'float64' ? 1e-12 : 1e-4;
        const scale = (a: ArrayLike<number>) => Math.max(1, ...Array.from(a, Math.abs));
        expect(maxAbsDiff(d.dGamma, dGamma)).toBeLessThan(tol * scale(dGamma));
        expect(maxAbsDiff(d.dBeta, dBeta)).toBeLessThan(tol * scale(dBeta));
        const rounding = dtype === 'float64' ? 1e-14 : 1e-6;
        for (let j = 0; j < c; j++) {
          expect(Math.abs(runningMean[j] - (0.75 * 0.5 + 0.25 * (meanSum[j] / groups)))).toBeLessThan(rounding * 4);
          expect(Math.abs(runningVar[j] - (0.75 * 2 + 0.25 * (varSum[j] / groups)))).toBeLessThan(rounding * 8);
        }
      }
    },
  );

  it('agrees with the js backend (float64, random data)', () => {
    const shape = [12, 7, 9, 9];
    const n = shape.reduce((p, d) => p * d, 1);
    const x = Float64Array.from(
      { length: n },
      (_, i) => Math.sin(i * 12.9898) * 43758.5453 - Math.floor(Math.sin(i * 12.9898) * 43758.5453) + 10,
    );
    const dy = Float64Array.from({ length: n }, (_, i) => Math.cos(i * 0.77));
    const options = { virtualBatchSize: 3, dtype: 'float64' as const };
    const here = b.batchNormTrain(x, shape, options);
    const there = js.batchNormTrain(x, shape, options);
    expect(maxAbsDiff(here.y, there.y)).toBeLessThan(1e-12);
    expect(maxAbsDiff(here.invStd, there.invStd)).toBeLessThan(1e-9);
    const dHere = b.batchNormBackward(dy, x, shape, here, options);
    const dThere = js.batchNormBackward(dy, x, shape, there, options);
    expect(maxAbsDiff(dHere.dx, dThere.dx)).toBeLessThan(1e-10);
    expect(maxAbsDiff(dHere.dGamma, dThere.dGamma)).toBeLessThan(1e-9);
  });

  it('in place: y over x and dx over dy', () => {
    const shape = [8, 4, 32, 4];
    const n = shape.reduce((p, d) => p * d, 1);
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 3);
    const dy = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.91));
    const apart = b.batchNormTrain(x, shape, { virtualBatchSize: 2 });
    const dApart = b.batchNormBackward(dy, x, shape, apart, { virtualBatchSize: 2 });
    const dyInPlace = dy.slice();
    const dInPlace = b.batchNormBackward(dyInPlace, x, shape, apart, { virtualBatchSize: 2, out: dyInPlace });
    expect(dInPlace.dx).toBe(dyInPlace);
    expect(Array.from(dInPlace.dx)).toEqual(Array.from(dApart.dx));
    const inPlace = x.slice();
    const r = b.batchNormTrain(inPlace, shape, { virtualBatchSize: 2, out: inPlace, fingerprint: true });
    expect(r.y).toBe(inPlace);
    expect(Array.from(r.y)).toEqual(Array.from(apart.y));
    expect(r.fingerprint).toBe(b.fingerprint(x));
  });

  it('an empty batch gives an empty y and leaves the running statistics alone', () => {
    const runningMean = Float32Array.of(1, 2, 3);
    const runningVar = Float32Array.of(4, 5, 6);
    const r = b.batchNormTrain(new Float32Array(0), [0, 3, 4], { virtualBatchSize: 2, runningMean, runningVar });
    expect(r.y.length).toBe(0);
    expect(r.mean.length).toBe(0);
    expect(Array.from(runningMean)).toEqual([1, 2, 3]);
    expect(Array.from(runningVar)).toEqual([4, 5, 6]);
  });

  it('bad calls are clear errors that write nothing', () => {
    const shape = [8, 4, 16, 16];
    const n = shape.reduce((p, d) => p * d, 1);
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const runningMean = new Float32Array(4);
    expect(() =>
      b.batchNormTrain(x, shape, { virtualBatchSize: 3, runningMean, runningVar: new Float32Array(4) }),
    ).toThrow(new RangeError('batchNormTrain: x has a batch of 8 samples, not a multiple of virtualBatchSize 3'));
    expect(() => b.batchNormTrain(x, shape, { virtualBatchSize: 0 })).toThrow(
      new RangeError('batchNormTrain: virtualBatchSize must be >= 1, got 0'),
    );
    expect(() => b.batchNormTrain(x, shape, { virtualBatchSize: '2' as unknown as number })).toThrow(
      new TypeError('batchNormTrain: virtualBatchSize must be an integer or null, got "2"'),
    );
    expect(() => b.batchNormTrain(new Float32Array(8), [8, 1], { virtualBatchSize: 1 })).toThrow(
      /^batchNormTrain: x must have more than 1 value per channel in each group of virtualBatchSize 1 when training, got 1/,
    );
    const r = b.batchNormTrain(x, shape, { virtualBatchSize: 2 });
    const dy = x.slice();
    expect(() => b.batchNormBackward(dy, x, shape, r, {})).toThrow(
      new RangeError('batchNormBackward: saved.mean must have length 4 (the number of channels), got 16'),
    );
    expect(() => b.batchNormBackward(dy, x, shape, r, { virtualBatchSize: 4 })).toThrow(
      new RangeError(
        'batchNormBackward: saved.mean must have length 8 (2 groups of virtualBatchSize 4 × 4 channels), got 16',
      ),
    );
    expect(() => b.batchNormBackward(dy, x, shape, r, { virtualBatchSize: 2, training: false })).toThrow(
      /^batchNormBackward: virtualBatchSize needs training: true/,
    );
    const stats = b.batchNormStats(x, shape);
    expect(() => b.batchNormTrainWithStats(x, shape, stats, { virtualBatchSize: 2 } as object)).toThrow(
      /^batchNormTrainWithStats: unknown option "virtualBatchSize"/,
    );
    expect(Array.from(runningMean)).toEqual([0, 0, 0, 0]);
    expect(Array.from(dy)).toEqual(Array.from(x));
  });
});
