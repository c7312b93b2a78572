// Memory under load, CI-sized (the 100k-call soak is `npm run soak`): 20k calls of every op,
// sync and Async, through the native backend with memory measured after a full GC; refused
// calls (in conversion and in the kernel) must not keep their arrays alive either. Then
// large tensors, when the machine has the memory (more than 16 GiB, or forced with
// BATCHNORM_LARGE_TESTS=1; =0 skips them): 2^28 f32 elements (1 GiB per array) in both
// layouts, and 2^31 + 2^21 elements in place (8 GiB), checked at the far end of the array,
// past every 32-bit index. About 45 s on 2 cores, most of it filling and faulting in memory.
import { totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { type FloatArray, native } from '../index';
import { collectGarbage, MiB, memoryAfterGc, runCalls, soakOps } from '../scripts/workload';
import { binding } from './helpers/binding';
import { invoke, makeCall } from './helpers/raw-ops.cjs';

const CALLS = 20_000;

function report(label: string, before: { rss: number; arrayBuffers: number }, after: typeof before): void {
  const mib = (b: number) => `${(b / MiB).toFixed(1)} MiB`;
  console.log(
    `${label}: rss ${mib(before.rss)} -> ${mib(after.rss)}, arrayBuffers ${mib(before.arrayBuffers)} -> ${mib(after.arrayBuffers)}`,
  );
}

describe.skipIf(!native)('memory stays flat under many calls', () => {
  it(`${CALLS} calls of each op, sync and Async, f32 and f64: RSS and typed-array memory flat`, async () => {
    const loops = (['f32', 'f64'] as const).flatMap((dtype) => soakOps(native!, dtype, [8, 4, 3]));
    for (const op of loops) {
      await runCalls(op, 'sync', 1_000);
      await runCalls(op, 'async', 1_000);
    }
    const before = memoryAfterGc();
    for (const op of loops) {
      await runCalls(op, 'sync', CALLS);
      await runCalls(op, 'async', CALLS);
    }
    const after = memoryAfterGc();
    report(`${loops.length * 2 * CALLS} calls`, before, after);
    // Every call allocated fresh outputs: a leaked napi reference would keep them all alive.
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * MiB);
    expect(after.rss - before.rss).toBeLessThan(100 * MiB);
  });

  it('refused Async calls release their arrays: 10k conversion failures and 10k kernel rejections', async () => {
    // 16 KiB per x: 20k leaked calls would hold over 600 MiB of arrays.
    const spoiled = (i: number, where: 'conversion' | 'kernel') => {
      const call = makeCall('train', 'f32', { shape: [1024, 4], seed: null });
      const at = (name: string) => call.params.findIndex((p) => p.name === name);
      if (where === 'conversion')
        call.args[at('invStd')] = null; // refused as the last required argument converts
      else call.args[at('out')] = new Float32Array(4096 + (i % 3) + 1); // out too long: the kernel refuses
      return call;
    };
    const before = memoryAfterGc();
    for (const where of ['conversion', 'kernel'] as const) {
      for (let i = 0; i < 10_000; i += 100) {
        const batch = Array.from({ length: 100 }, (_, k) => invoke(binding, spoiled(i + k, where), true));
        const outcomes = await Promise.allSettled(batch);
        expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
        // Collect now and then, so RSS shows what is kept rather than what awaits a GC.
        if (i % 1_000 === 0) collectGarbage();
      }
    }
    const after = memoryAfterGc();
    report('20k refused calls', before, after);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * MiB);
    expect(after.rss - before.rss).toBeLessThan(100 * MiB);
  });
});

const GiB = 1024 * MiB;
/** Opt in with BATCHNORM_LARGE_TESTS=1, out with =0; otherwise on when memory allows. */
const LARGE =
  process.env.BATCHNORM_LARGE_TESTS === '1' || (process.env.BATCHNORM_LARGE_TESTS !== '0' && totalmem() > 16 * GiB);

/** A period-8 pattern with mean 0 and mean square 5.25. */
const PATTERN = [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5];
const PATTERN_MEAN_SQUARE = 5.25;
const EPS = 1e-5;

/** Channel c of the test tensors: offset + scale * pattern, so its statistics are exact. */
const channelOffset = (c: number) => c - 1.5;
const channelScale = (c: number) => 1 + c;

/** Fills a[from, to) with `period` repeated: one short loop, then memcpy by doubling. */
function fillPeriodic(a: Float32Array, from: number, to: number, period: number[]): void {
  const n = Math.min(period.length, to - from);
  for (let i = 0; i < n; i++) a[from + i] = period[i];
  for (let filled = n; filled < to - from; filled *= 2) {
    a.copyWithin(from + filled, from, from + Math.min(filled, to - from - filled));
  }
}

/** What y should be for pattern element p of channel c (gamma, beta given). */
function expectedY(c: number, p: number, gamma: number, beta: number): number {
  const variance = channelScale(c) ** 2 * PATTERN_MEAN_SQUARE;
  return gamma * ((channelScale(c) * p) / Math.sqrt(variance + EPS)) + beta;
}

function expectClose(actual: number, expected: number, relative: number, what: string): void {
  expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(
    relative * Math.max(1, Math.abs(expected)),
  );
}

/** Per-channel checks of a training result against the exact statistics of the pattern. */
function checkStats(mean: FloatArray, invStd: FloatArray, channels: number[]): void {
  for (const c of channels) {
    expectClose(mean[c], channelOffset(c), 1e-6, `mean[${c}]`);
    const variance = channelScale(c) ** 2 * PATTERN_MEAN_SQUARE;
    expectClose(invStd[c], 1 / Math.sqrt(variance + EPS), 1e-6, `invStd[${c}]`);
  }
}

describe.skipIf(!native || !LARGE)('large tensors: no 32-bit index overflow', () => {
  it('2^28 f32 elements, NCHW [16, 4, 2^22]: train, eval and backward right at the far end', () => {
    const [N, C, inner] = [16, 4, 1 << 22];
    const shape = [N, C, inner];
    let x: Float32Array | null = new Float32Array(N * C * inner);
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < C; c++) {
        const block = (n * C + c) * inner;
        fillPeriodic(
          x,
          block,
          block + inner,
          PATTERN.map((p) => channelOffset(c) + channelScale(c) * p),
        );
      }
    }
    const gamma = Float32Array.from([1, 2, 0.5, 3]);
    const beta = Float32Array.from([0, -1, 0.25, 4]);
    const runningMean = new Float32Array(C);
    const runningVar = new Float32Array(C).fill(1);
    const out = new Float32Array(x.length);
    const saved = native!.batchNormTrain(x, shape, {
      gamma,
      beta,
      runningMean,
      runningVar,
      momentum: 1,
      eps: EPS,
      out,
    });
    checkStats(saved.mean, saved.invStd, [0, 1, 2, 3]);
    const m = N * inner;
    expectClose(runningVar[3], channelScale(3) ** 2 * PATTERN_MEAN_SQUARE * (m / (m - 1)), 1e-6, 'runningVar[3]');
    // The last block (n = 15, channel 3) ends at element 2^28 - 1.
    const last = x.length - 8;
    for (let k = 0; k < 8; k++) expectClose(out[last + k], expectedY(3, PATTERN[k], 3, 4), 1e-5, `y[${last + k}]`);
    let sum = 0;
    for (let i = x.length - inner; i < x.length; i++) sum += out[i];
    expectClose(sum / inner, 4, 1e-6, 'mean of y over the last block');

    const evaluated = native!.batchNormEval(x, shape, { gamma, beta, runningMean, runningVar, eps: EPS, out });
    expect(evaluated).toBe(out);
    expectClose(
      out[x.length - 1],
      3 * ((x[x.length - 1] - runningMean[3]) / Math.sqrt(runningVar[3] + EPS)) + 4,
      1e-5,
      'eval y[last]',
    );

    // dy = x (read-only arrays may share): dBeta = sum(x) per channel = m * offset.
    const grads = native!.batchNormBackward(x, x, shape, saved, { gamma, out });
    for (let c = 0; c < C; c++) expectClose(grads.dBeta[c], m * channelOffset(c), 1e-6, `dBeta[${c}]`);
    expect(Number.isFinite(out[x.length - 1])).toBe(true);
    x = null;
  }, 120_000);

  it('2^28 f32 elements, channels last [2^26, 4] axis -1: every channel spans the whole array', () => {
    const C = 4;
    const rows = 1 << 26;
    const period = PATTERN.flatMap((p) => Array.from({ length: C }, (_, c) => channelOffset(c) + channelScale(c) * p));
    const x = new Float32Array(rows * C);
    fillPeriodic(x, 0, x.length, period);
    const out = new Float32Array(x.length);
    const saved = native!.batchNormTrain(x, [rows, C], { axis: -1, eps: EPS, out });
    checkStats(saved.mean, saved.invStd, [0, 1, 2, 3]);
    for (let i = x.length - 2 * C; i < x.length; i++) {
      const c = i % C;
      const p = PATTERN[Math.floor(i / C) % 8];
      expectClose(out[i], expectedY(c, p, 1, 0), 1e-5, `y[${i}]`);
    }
  }, 120_000);

  it('2^31 + 2^21 f32 elements in place (8 GiB): channel 1 lies past index 2^31', () => {
    const inner = 2 ** 30 + 2 ** 20;
    const shape = [1, 2, inner];
    const x = new Float32Array(2 * inner);
    expect(x.length).toBeGreaterThan(2 ** 31);
    for (let c = 0; c < 2; c++) {
      fillPeriodic(
        x,
        c * inner,
        (c + 1) * inner,
        PATTERN.map((p) => channelOffset(c) + channelScale(c) * p),
      );
    }
    const gamma = Float32Array.from([2, 0.5]);
    const beta = Float32Array.from([1, -3]);
    const runningMean = new Float32Array(2);
    const runningVar = new Float32Array(2).fill(1);
    const saved = native!.batchNormTrain(x, shape, {
      gamma,
      beta,
      runningMean,
      runningVar,
      momentum: 1,
      eps: EPS,
      out: x,
    });
    checkStats(saved.mean, saved.invStd, [0, 1]);
    expectClose(runningMean[1], channelOffset(1), 1e-6, 'runningMean[1]');
    for (const i of [2 ** 31 - 1, 2 ** 31, 2 ** 31 + 5, 2 ** 32 - 1, x.length - 1]) {
      if (i >= x.length) continue;
      expectClose(x[i], expectedY(1, PATTERN[(i - inner) % 8], 0.5, -3), 1e-5, `y[${i}]`);
    }
    // Statistics of the normalized data, read back across the whole array.
    const stats = native!.batchNormStats(x, shape);
    expect(stats.count).toBe(inner);
    expectClose(stats.mean[1], -3, 1e-6, 'mean of y, channel 1');
    const variance = channelScale(1) ** 2 * PATTERN_MEAN_SQUARE;
    expectClose(stats.m2[1] / inner, 0.25 * (variance / (variance + EPS)), 1e-5, 'variance of y, channel 1');
  }, 120_000);
});
