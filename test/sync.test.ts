// Synchronized batch norm in one process: mergeStats against the statistics of the
// concatenated batch, the all-reduced buffers against the exact moments (offset data), and
// SyncBatchNorm with K simulated workers against single-process batch norm on the whole batch.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type AllReduce,
  type Backend,
  BatchNorm,
  type BatchNormOptions,
  type ChannelStats,
  type FloatArray,
  mergeStats,
  SyncBatchNorm,
} from '../index';
import { statsBuffer, statsFromBuffer } from '../src/sync/reduce-buffers';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

/** Normal-ish data (sum of uniforms) with the given mean and std per value. */
function data(length: number, seed: number, mean = 0, std = 1): Float64Array {
  const rand = generator(seed);
  return Float64Array.from({ length }, () => mean + std * (rand() + rand() + rand() - 1.5) * 2);
}

/** Rows [start, end) of a batch-major tensor: the shard one worker holds. */
function rows(x: Float64Array, shape: readonly number[], start: number, end: number): Float64Array {
  const rowSize = x.length / shape[0];
  return x.subarray(start * rowSize, end * rowSize);
}

/** Shard boundaries along the batch axis for the given shard sizes. */
function bounds(sizes: readonly number[]): [number, number][] {
  let start = 0;
  return sizes.map((n) => {
    start += n;
    return [start - n, start];
  });
}

function addInto(sum: Float64Array, part: Float64Array): void {
  for (let i = 0; i < sum.length; i++) sum[i] += part[i];
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, label: string): void {
  expect(got.length, `${label}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const tol = rel * Math.max(1, Math.abs(want[i]));
    expect(Math.abs(got[i] - want[i]), `${label}[${i}]: got ${got[i]}, want ${want[i]}`).toBeLessThanOrEqual(tol);
  }
}

function expectStatsClose(got: ChannelStats, want: ChannelStats, rel: number, label: string): void {
  expect(got.count, `${label}: count`).toBe(want.count);
  expectClose(got.mean, want.mean, rel, `${label}: mean`);
  // M2 is compared relative to itself: it is the quantity offset data makes hard.
  for (let c = 0; c < want.m2.length; c++) {
    expect(Math.abs(got.m2[c] - want.m2[c]), `${label}: m2[${c}]`).toBeLessThanOrEqual(rel * want.m2[c]);
  }
}

const SHARDINGS: { name: string; shape: number[]; axis: number; sizes: number[] }[] = [
  { name: 'NCHW, 2 shards', shape: [7, 3, 4, 5], axis: 1, sizes: [6, 1] },
  { name: 'NHWC, 3 shards', shape: [9, 2, 3, 4], axis: -1, sizes: [1, 5, 3] },
  { name: '[N, C], 4 shards with an empty one', shape: [12, 5], axis: 1, sizes: [4, 0, 1, 7] },
];

describe.each(backends.map((b) => [b.name, b] as [string, Backend]))('mergeStats (%s)', (_name, b) => {
  for (const { name, shape, axis, sizes } of SHARDINGS) {
    for (const [label, mean] of [
      ['centred data', 0],
      ['offset data (mean 1e4, std 1)', 1e4],
    ] as const) {
      it(`equals batchNormStats of the concatenation: ${name}, ${label}`, () => {
        const x = data(
          shape.reduce((p, d) => p * d, 1),
          shape.length,
          mean,
        );
        const parts = bounds(sizes).map(([s, e]) =>
          b.batchNormStats(rows(x, shape, s, e), [e - s, ...shape.slice(1)], { axis }),
        );
        expectStatsClose(mergeStats(parts), b.batchNormStats(x, shape, { axis }), 1e-12, name);
      });
    }
  }

  it('of one part is that part, and of only empty parts is count 0', () => {
    const x = data(12, 1);
    const one = b.batchNormStats(x, [4, 3]);
    expect(mergeStats([one])).toEqual(one);
    const empty = b.batchNormStats(new Float64Array(0), [0, 3]);
    expect(mergeStats([empty, empty])).toEqual(empty);
  });
});

describe('mergeStats arguments', () => {
  const part = (channels: number, count = 2): ChannelStats => ({
    count,
    mean: new Float64Array(channels),
    m2: new Float64Array(channels),
  });
  it.each([
    ['not an array', () => mergeStats(part(2) as never), TypeError, /parts must be an array/],
    ['an empty array', () => mergeStats([]), RangeError, /at least one/],
    [
      'a part that is not an object',
      () => mergeStats([part(2), null as never]),
      TypeError,
      /parts\[1\] must be an object/,
    ],
    [
      'a negative count',
      () => mergeStats([part(2, -1)]),
      TypeError,
      /parts\[0\]\.count must be a non-negative integer/,
    ],
    [
      'a Float32Array mean',
      () => mergeStats([{ ...part(2), mean: new Float32Array(2) as never }]),
      TypeError,
      /parts\[0\]\.mean must be a Float64Array/,
    ],
    ['channels that differ', () => mergeStats([part(2), part(3)]), RangeError, /parts\[1\]\.mean must have length 2/],
  ])('rejects %s', (_label, call, error, message) => {
    expect(call).toThrow(error);
    expect(call).toThrow(message);
  });
});

describe('the all-reduced forward buffer', () => {
  /** Sums of the shards' buffers about `shift`, decoded: what every worker computes. */
  function reducedStats(parts: ChannelStats[], shift: Float64Array): ChannelStats {
    const sum = new Float64Array(1 + 2 * shift.length);
    for (const part of parts) addInto(sum, statsBuffer(part, shift));
    return statsFromBuffer(sum, shift);
  }

  const shape = [40, 3];
  const sizes = [17, 1, 9, 13];
  const shards = (x: Float64Array) =>
    bounds(sizes).map(([s, e]) => backends[0].batchNormStats(rows(x, shape, s, e), [e - s, 3]));

  it('gives the exact moments of offset data (mean 1e4, std 1) with a shift near the data', () => {
    const x = data(120, 7, 1e4, 1);
    const shift = new Float64Array(3).fill(1e4 + 0.3);
    expectStatsClose(reducedStats(shards(x), shift), mergeStats(shards(x)), 1e-13, 'shift near the data');
  });

  it('loses at most about 2^-52 * (mean - shift)^2 / variance of M2 with a shift far from it', () => {
    const x = data(120, 7, 1e4, 1);
    const got = reducedStats(shards(x), new Float64Array(3));
    const want = mergeStats(shards(x));
    // (mean - shift)^2 / variance ~ 1e8 here: about 1e-8 relative, far below float32's 6e-8.
    expectStatsClose(got, want, 1e-7, 'shift 0');
  });
});

/** K simulated workers: each call waits until all K have contributed, then every worker gets
 *  its own copy of the sum (in rank order, as a real all-reduce). Counts the calls. */
function inMemoryAllReduce(workers: number): { allReduces: AllReduce[]; calls: number[] } {
  let parts: Float64Array[] = [];
  let waiting: ((sum: Float64Array) => void)[] = [];
  const calls = new Array<number>(workers).fill(0);
  const allReduces = Array.from(
    { length: workers },
    (_, rank): AllReduce =>
      (buffer) => {
        calls[rank]++;
        parts[rank] = buffer.slice();
        return new Promise((resolve) => {
          waiting.push(resolve);
          if (waiting.length < workers) return;
          const sum = new Float64Array(buffer.length);
          for (const part of parts) addInto(sum, part);
          const resolves = waiting;
          parts = [];
          waiting = [];
          for (const r of resolves) r(sum.slice());
        });
      },
  );
  return { allReduces, calls };
}

type Dtype = 'float32' | 'float64';

function cast(x: Float64Array, dtype: Dtype): FloatArray {
  return dtype === 'float32' ? Float32Array.from(x) : x;
}

/** Shards of a batch-major tensor, one per worker, with their shapes. */
function shard(x: FloatArray, shape: readonly number[], sizes: readonly number[]): [FloatArray, number[]][] {
  const rowSize = x.length / shape[0];
  return bounds(sizes).map(([s, e]) => [x.slice(s * rowSize, e * rowSize), [e - s, ...shape.slice(1)]]);
}

function concat(parts: FloatArray[]): number[] {
  return parts.flatMap((p) => Array.from(p));
}

const WORKER_CASES: { workers: number; shape: number[]; axis: number; sizes: number[] }[] = [
  { workers: 2, shape: [5, 3, 4, 4], axis: 1, sizes: [4, 1] },
  { workers: 3, shape: [8, 3, 3, 4], axis: -1, sizes: [1, 4, 3] },
  { workers: 4, shape: [10, 3, 5, 2], axis: 1, sizes: [3, 1, 4, 2] },
  { workers: 3, shape: [6, 2, 3], axis: 1, sizes: [5, 0, 1] },
];

const LAYER_CASES: { name: string; options: BatchNormOptions }[] = [
  { name: 'momentum 0.1, affine', options: {} },
  { name: 'cumulative average, fused ReLU', options: { momentum: null, activation: 'relu' } },
  { name: 'no running statistics, no affine', options: { trackRunningStats: false, affine: false } },
];

/** Layer parameters that are not the defaults, so gamma and beta matter. */
function setParameters(layer: { gamma: FloatArray | null; beta: FloatArray | null }): void {
  for (let c = 0; c < (layer.gamma?.length ?? 0); c++) layer.gamma![c] = 0.5 + 0.25 * c;
  for (let c = 0; c < (layer.beta?.length ?? 0); c++) layer.beta![c] = 0.1 * c - 0.2;
}

const TOLERANCE: Record<Dtype, number> = { float32: 2e-5, float64: 1e-11 };

describe.each(backends.map((b) => [b.name, b] as [string, Backend]))('SyncBatchNorm (%s)', (_name, b) => {
  for (const dtype of ['float64', 'float32'] as const) {
    for (const { workers, shape, axis, sizes } of WORKER_CASES) {
      for (const { name, options } of LAYER_CASES) {
        it(`K = ${workers} workers, shards ${sizes.join('+')} (${dtype}, axis ${axis}, ${name}) match one process on the whole batch`, async () => {
          const layerOptions: BatchNormOptions = { ...options, axis, dtype, backend: b };
          const channels = shape[axis < 0 ? axis + shape.length : axis];
          const reference = new BatchNorm(channels, layerOptions);
          const { allReduces, calls } = inMemoryAllReduce(workers);
          const layers = allReduces.map((allReduce) => new SyncBatchNorm(channels, { ...layerOptions, allReduce }));
          for (const layer of [reference, ...layers]) setParameters(layer);
          const size = shape.reduce((p, d) => p * d, 1);
          const tol = TOLERANCE[dtype];

          for (let step = 0; step < 3; step++) {
            const x = cast(data(size, 10 * step + workers, 0.5 * step, 1 + step), dtype);
            const dy = cast(data(size, 10 * step + workers + 5), dtype);
            const y = reference.forward(x, shape);
            const dx = reference.backward(dy);
            const xs = shard(x, shape, sizes);
            const dys = shard(dy, shape, sizes);
            const ys = await Promise.all(layers.map((l, k) => l.forward(xs[k][0], xs[k][1])));
            const dxs = await Promise.all(layers.map((l, k) => l.backward(dys[k][0])));
            expectClose(concat(ys), y, tol, `step ${step}: y`);
            expectClose(concat(dxs), dx, tol, `step ${step}: dx`);
            expect(calls, 'one all-reduce per forward and per backward').toEqual(
              new Array(workers).fill(2 * (step + 1)),
            );
          }
          for (const [k, layer] of layers.entries()) {
            expect(layer.numBatchesTracked).toBe(reference.numBatchesTracked);
            for (const field of ['runningMean', 'runningVar', 'gammaGrad', 'betaGrad'] as const) {
              const got = layer[field];
              const want = reference[field];
              expect(got === null, `${field} exists as in BatchNorm`).toBe(want === null);
              if (got && want) expectClose(got, want, tol, `worker ${k}: ${field}`);
              // Identical bits on every worker: each computed them from the same reduced buffers.
              expect(got, `worker ${k}: ${field} equals worker 0's`).toEqual(layers[0][field]);
            }
          }

          // Eval: with running statistics it is local (no all-reduce); without, batch statistics.
          const x = cast(data(size, 99), dtype);
          const before = calls[0];
          const want = reference.eval().forward(x, shape);
          const xs = shard(x, shape, sizes);
          const got = await Promise.all(layers.map((l, k) => l.eval().forward(xs[k][0], xs[k][1])));
          expectClose(concat(got), want, tol, 'eval: y');
          expect(calls[0] - before).toBe(layers[0].trackRunningStats ? 0 : 1);

          // Backward after eval: frozen statistics (when tracked); still the whole batch's gradients.
          const dy = cast(data(size, 98), dtype);
          const wantDx = reference.backward(dy);
          const dys = shard(dy, shape, sizes);
          const gotDx = await Promise.all(layers.map((l, k) => l.backward(dys[k][0])));
          expectClose(concat(gotDx), wantDx, tol, 'eval: dx');
          if (reference.gammaGrad)
            expectClose(layers[workers - 1].gammaGrad!, reference.gammaGrad, tol, 'eval: gammaGrad');
        });
      }
    }
  }

  it('keeps offset data (mean 1e4, std 1) as precise as one process from the first step', async () => {
    const shape = [9, 4, 3, 3];
    const sizes = [5, 1, 3];
    const reference = new BatchNorm(4, { dtype: 'float64', backend: b });
    const { allReduces } = inMemoryAllReduce(3);
    const layers = allReduces.map((allReduce) => new SyncBatchNorm(4, { dtype: 'float64', backend: b, allReduce }));
    for (let step = 0; step < 3; step++) {
      const x = data(324, 40 + step, 1e4, 1);
      const y = reference.forward(x, shape);
      const xs = shard(x, shape, sizes);
      const ys = await Promise.all(layers.map((l, k) => l.forward(xs[k][0], xs[k][1])));
      // Step 0's moments about the running mean (0) would lose ~2^-52 * 1e8 of the variance:
      // they are taken again about the batch mean; later steps follow the last global mean.
      expectClose(concat(ys), y, 1e-11, `step ${step}: y`);
    }
    expectClose(layers[0].runningVar!, reference.runningVar!, 1e-11, 'runningVar');
  });

  // A bad batch must cost only its own step, as in BatchNorm: the shift the next step's moments
  // are taken about must not keep a non-finite mean, nor a mean ~1e8 std away from the data.
  // finite: the bad step itself has finite y, which must match too (its moments are retaken).
  // (Shape [6, 3, 4]: x[4] is in channel 1, x[0] in channel 0.)
  const BAD_BATCHES: { name: string; spoil: (x: Float64Array) => void; finite: boolean }[] = [
    { name: 'a NaN in channel 1', spoil: (x) => x.fill(Number.NaN, 4, 5), finite: false },
    { name: 'an Infinity in channel 0', spoil: (x) => x.fill(Number.POSITIVE_INFINITY, 0, 1), finite: false },
    { name: 'a mean 1e8 std away', spoil: (x) => x.set(x.map((v) => v + 1e8)), finite: true },
  ];
  for (const workers of [1, 2]) {
    for (const { name, spoil, finite } of BAD_BATCHES) {
      it(`K = ${workers}: after a batch with ${name}, the next clean step matches BatchNorm`, async () => {
        const shape = [6, 3, 4];
        const sizes = workers === 1 ? [6] : [4, 2];
        const reference = new BatchNorm(3, { dtype: 'float64', backend: b });
        const { allReduces } = inMemoryAllReduce(workers);
        const layers = allReduces.map((allReduce) => new SyncBatchNorm(3, { dtype: 'float64', backend: b, allReduce }));
        for (let step = 0; step < 3; step++) {
          const x = data(72, 60 + step);
          if (step === 1) spoil(x);
          const y = reference.forward(x, shape);
          const xs = shard(x, shape, sizes);
          const ys = await Promise.all(layers.map((l, k) => l.forward(xs[k][0], xs[k][1])));
          // The jump step's mean (~1e8) is exact to its own rounding, 1e8 * 2^-52 ~ 2e-8.
          if (step !== 1 || finite) expectClose(concat(ys), y, step === 1 ? 1e-7 : 1e-11, `step ${step}: y`);
          if (step === 1 && !finite) expect(concat(ys).map(Number.isNaN)).toEqual(Array.from(y, Number.isNaN));
        }
      });
    }
  }

  it('loads the same state on every worker and continues in step', async () => {
    const { allReduces } = inMemoryAllReduce(2);
    const layers = allReduces.map((allReduce) => new SyncBatchNorm(3, { backend: b, allReduce }));
    const state = { weight: [1, 2, 3], bias: [0, 0, 1], running_mean: [5, 5, 5], running_var: [2, 2, 2] };
    for (const l of layers) l.loadStateDict(state);
    const x = Float32Array.from(data(12, 3, 5));
    await Promise.all([layers[0].forward(x.subarray(0, 3), [1, 3]), layers[1].forward(x.subarray(3), [3, 3])]);
    const reference = new BatchNorm(3, { backend: b });
    reference.loadStateDict(state);
    reference.forward(x, [4, 3]);
    expectClose(layers[1].runningMean!, reference.runningMean!, 1e-6, 'runningMean');
    expect(layers[0].stateDict()).toEqual(layers[1].stateDict());
    expect(layers[0].numBatchesTracked).toBe(1);
  });

  it('throws on every worker when allReduce answers with the wrong length', async () => {
    const layers = [0, 1].map(() => new SyncBatchNorm(2, { backend: b, allReduce: async () => new Float64Array(3) }));
    const results = await Promise.allSettled(layers.map((l) => l.forward(new Float32Array(4), [2, 2])));
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RangeError);
      expect(String((r as PromiseRejectedResult).reason)).toMatch(
        /allReduce must resolve to the buffer's length 5, got 3/,
      );
    }
  });
});

describe('SyncBatchNorm arguments', () => {
  it('requires an allReduce function', () => {
    expect(() => new SyncBatchNorm(3, {} as never)).toThrow(/allReduce must be a function/);
    expect(() => new SyncBatchNorm(3, undefined as never)).toThrow(TypeError);
  });
  it("checks the other options as BatchNorm's", () => {
    const allReduce: AllReduce = async (buffer) => buffer;
    expect(() => new SyncBatchNorm(3, { allReduce, eps: 0 })).toThrow(/eps must be a finite number > 0/);
  });
  it('needs the whole batch to hold 2 values per channel when training', async () => {
    const layer = new SyncBatchNorm(2, { allReduce: async (buffer) => buffer });
    await expect(layer.forward(new Float32Array(2), [1, 2])).rejects.toThrow(/stats\.count must be >= 2/);
  });
});

describe('SyncBatchNorm timeoutMs', () => {
  /** World size 1 (the sum is the buffer), except that the calls listed in `hang` never settle. */
  function stallingAllReduce(hang: number[]): AllReduce {
    let call = 0;
    return (buffer) => (hang.includes(call++) ? new Promise<Float64Array>(() => {}) : Promise.resolve(buffer.slice()));
  }

  it('validates the option like the other layer options', () => {
    const allReduce: AllReduce = async (buffer) => buffer;
    expect(new SyncBatchNorm(2, { allReduce, timeoutMs: 10 }).timeoutMs).toBe(10);
    expect(new SyncBatchNorm(2, { allReduce }).timeoutMs).toBe(Number.POSITIVE_INFINITY);
    expect(() => new SyncBatchNorm(2, { allReduce, timeoutMs: -1 })).toThrow(
      /SyncBatchNorm: timeoutMs must be a number >= 0/,
    );
    expect(() => new SyncBatchNorm(2, { allReduce, timeoutMs: '10' as never })).toThrow(TypeError);
    expect(() => new SyncBatchNorm(2, { allReduce, timeout: 10 } as never)).toThrow(/unknown option "timeout"/);
  });

  it('rejects a forward whose allReduce never settles and leaves the layer as it was, usable', async () => {
    const layer = new SyncBatchNorm(2, { allReduce: stallingAllReduce([1]), timeoutMs: 30, dtype: 'float64' });
    const reference = new BatchNorm(2, { dtype: 'float64' });
    const shape = [4, 2];
    for (const l of [layer, reference]) await l.forwardAsync(data(8, 1), shape);
    const before = layer.stateDict();
    await expect(layer.forward(data(8, 2), shape)).rejects.toThrow(
      /SyncBatchNorm: allReduce did not settle within 30 ms/,
    );
    expect(layer.stateDict()).toEqual(before);
    // The next step runs as if the failed one never happened.
    const x = data(8, 3);
    expectClose(await layer.forward(x, shape), reference.forward(x, shape), 1e-12, 'y after the timeout');
    expect(layer.stateDict()).toEqual(reference.stateDict());
  });

  it('rejects a backward whose allReduce never settles without touching the gradients', async () => {
    const layer = new SyncBatchNorm(2, { allReduce: stallingAllReduce([1]), timeoutMs: 30, dtype: 'float64' });
    await layer.forward(data(8, 1), [4, 2]);
    await expect(layer.backward(data(8, 2))).rejects.toThrow(/did not settle within 30 ms/);
    expect(Array.from(layer.gammaGrad!)).toEqual([0, 0]);
    expect(Array.from(layer.betaGrad!)).toEqual([0, 0]);
    await expect(layer.backward(data(8, 2))).resolves.toHaveLength(8);
  });

  it('keeps Node alive until the timeout, so a hung step fails loudly instead of exiting 0', () => {
    const script = `
      const { SyncBatchNorm } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'index.js'))});
      const bn = new SyncBatchNorm(2, { allReduce: () => new Promise(() => {}), timeoutMs: Number(process.argv[1]) });
      bn.forward(new Float32Array(4), [2, 2]).then(() => console.log('settled'));`;
    const withTimeout = spawnSync(process.execPath, ['-e', script, '50'], { encoding: 'utf8' });
    expect(withTimeout.status).toBe(1);
    expect(withTimeout.stderr).toMatch(/SyncBatchNorm: allReduce did not settle within 50 ms/);
    // Without one, the pending collective does not keep Node alive (documented in the README).
    const without = spawnSync(process.execPath, ['-e', script, 'Infinity'], { encoding: 'utf8' });
    expect(without.status).toBe(0);
    expect(without.stdout).toBe('');
  });
});
