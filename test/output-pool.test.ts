// Recycled outputs on the native backend: outputs of 1 MiB and more come from blocks the
// addon lends and takes back after V8 collects them. Kept outputs must never be reused,
// the memory must stay bounded, and the answers must be those of the js backend.
import { setTimeout as sleep, setImmediate as turn } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { type FloatArray, js, native, outputPoolStats, setOutputPoolLimit } from '../index';
import { collectGarbage, MiB, memoryAfterGc } from '../scripts/workload';
import { maxAbsDiff, sameBytes } from './helpers/compare';
import { generator } from './helpers/random.cjs';

// 2 MiB of f32 per output: above the 1 MiB the pool starts at.
const SHAPE = [8, 16, 64, 64];
const SIZE = SHAPE.reduce((a, b) => a * b, 1);
const DEFAULT_LIMIT = 512 * MiB;

function randomArray(seed: number): Float32Array {
  const next = generator(seed);
  const a = new Float32Array(SIZE);
  for (let i = 0; i < SIZE; i++) a[i] = next() * 4 - 2;
  return a;
}

/** Lets V8 collect dropped outputs and Node run their finalizers (the blocks come back). */
/** Node runs a dropped block's finalizer a turn or more after the GC that found it dead (more
 *  under ASan, whose sweeping is slower): collect and turn until the lent bytes stop falling. */
async function returnDroppedBlocks(): Promise<void> {
  let lent = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 20; i++) {
    collectGarbage();
    await turn();
    await turn();
    const now = outputPoolStats().lentBytes;
    if (now === 0 || (now === lent && i >= 2)) return;
    lent = now;
    await sleep(5);
  }
}

describe.skipIf(!native)('recycled outputs (native)', () => {
  const backend = native!;
  afterEach(() => setOutputPoolLimit(DEFAULT_LIMIT));

  it('a dropped output block serves a later output, which holds the right values', async () => {
    const x = randomArray(1);
    const expected = js.batchNormTrain(x, SHAPE).y;
    backend.batchNormTrain(x, SHAPE);
    await returnDroppedBlocks();
    const before = outputPoolStats();
    expect(before.freeBytes).toBeGreaterThan(0);
    const { y } = backend.batchNormTrain(randomArray(2), SHAPE);
    const { y: again } = backend.batchNormTrain(x, SHAPE);
    expect(outputPoolStats().reused).toBeGreaterThan(before.reused);
    expect(sameBytes(y, again)).toBe(false);
    expect(maxAbsDiff(again, expected)).toBeLessThan(1e-5);
  });

  it('outputs kept alive are never lent again: 60 calls of every op, sync and Async', async () => {
    const x = randomArray(3);
    const dy = randomArray(4);
    const saved = backend.batchNormTrain(x, SHAPE);
    const runningMean = new Float32Array(16);
    const runningVar = new Float32Array(16).fill(1);
    const kept: Array<{ array: FloatArray; copy: FloatArray }> = [];
    const keep = (array: FloatArray) => kept.push({ array, copy: array.slice() });
    for (let i = 0; i < 20; i++) {
      const input = randomArray(100 + i);
      const train = backend.batchNormTrain(input, SHAPE).y;
      const evaluated = await backend.batchNormEvalAsync(input, SHAPE, { runningMean, runningVar });
      const dx = (await backend.batchNormBackwardAsync(dy, input, SHAPE, saved)).dx;
      if (i % 3 === 0) [train, evaluated, dx].forEach(keep);
      await returnDroppedBlocks();
    }
    expect(outputPoolStats().reused).toBeGreaterThan(0);
    const buffers = new Set(kept.map((k) => k.array.buffer));
    expect(buffers.size).toBe(kept.length);
    for (const { array, copy } of kept) expect(sameBytes(array, copy)).toBe(true);
  });

  it('memory stays bounded over 10k calls that drop their outputs', async () => {
    const x = randomArray(5);
    const before = memoryAfterGc();
    for (let i = 0; i < 10_000; i++) {
      backend.batchNormTrain(x, SHAPE);
      if (i % 10 === 9) await turn();
      const s = outputPoolStats();
      expect(s.lentBytes).toBeLessThanOrEqual(s.limitBytes);
      expect(s.freeBytes).toBeLessThanOrEqual(s.limitBytes);
    }
    await returnDroppedBlocks();
    const after = memoryAfterGc();
    const stats = outputPoolStats();
    console.log(
      `10k calls: rss ${((after.rss - before.rss) / MiB).toFixed(1)} MiB more, pool ${JSON.stringify(stats)}`,
    );
    expect(stats.reused).toBeGreaterThan(5_000);
    expect(after.rss - before.rss).toBeLessThan(256 * MiB);
  });

  it('a synchronous stretch that never yields stops lending after 256 MiB (V8 memory after that)', () => {
    const x = randomArray(6);
    const before = outputPoolStats();
    for (let i = 0; i < 400; i++) backend.batchNormTrain(x, SHAPE);
    const after = outputPoolStats();
    const lent = after.allocated + after.reused - (before.allocated + before.reused);
    expect(lent).toBeLessThanOrEqual((256 * MiB) / (SIZE * 4));
  });

  it('a limit of 0 turns recycling off; the answers stay the same', async () => {
    await returnDroppedBlocks();
    setOutputPoolLimit(0);
    expect(outputPoolStats().freeBytes).toBe(0);
    const before = outputPoolStats();
    const x = randomArray(7);
    const { y } = backend.batchNormTrain(x, SHAPE);
    await returnDroppedBlocks();
    const after = outputPoolStats();
    expect(after.allocated + after.reused).toBe(before.allocated + before.reused);
    expect(maxAbsDiff(y, js.batchNormTrain(x, SHAPE).y)).toBeLessThan(1e-5);
  });

  it('f64 outputs and channels-last shapes come out right from recycled blocks', async () => {
    const next = generator(8);
    const x = new Float64Array(SIZE);
    for (let i = 0; i < SIZE; i++) x[i] = next() * 2 - 1;
    const options = { axis: -1 };
    for (let i = 0; i < 3; i++) {
      const y = backend.batchNormTrain(x, SHAPE, options).y;
      expect(y).toBeInstanceOf(Float64Array);
      expect(maxAbsDiff(y, js.batchNormTrain(x, SHAPE, options).y)).toBeLessThan(1e-12);
      await returnDroppedBlocks();
    }
  });
});

describe('setOutputPoolLimit', () => {
  it.each([-1, 1.5, Number.NaN, '1024', null])('rejects %s with a TypeError naming bytes', (bad) => {
    expect(() => setOutputPoolLimit(bad as number)).toThrow(/^bytes must be a non-negative integer/);
  });
});
