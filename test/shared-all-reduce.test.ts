// sharedAllReduce in one thread (ranks of one memory interleaved on one event loop): a rank
// entered twice, the timeoutMs option, and memory that a failure has poisoned.
// Real worker_threads, with workers that fail or die, are in sync-workers.test.ts.
import { describe, expect, it } from 'vitest';
import { abortSharedAllReduce, createSharedAllReduceMemory, SyncBatchNorm, sharedAllReduce } from '../index';

/** Settles every promise, or reports 'hung' after `ms` (a barrier nobody will complete). */
function settleWithin<T>(promises: Promise<T>[], ms = 3000): Promise<(PromiseSettledResult<T> | 'hung')[]> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), ms);
  });
  return Promise.all(promises.map((p) => Promise.race([Promise.allSettled([p]).then(([r]) => r), hung]))).finally(() =>
    clearTimeout(timer),
  );
}

function reasonOf(r: PromiseSettledResult<unknown> | 'hung'): string {
  if (r === 'hung') return 'hung';
  return r.status === 'rejected' ? String(r.reason) : 'fulfilled';
}

describe('sharedAllReduce entered twice by one rank', () => {
  it('rejects the second call while the first is in flight, with an error that says so', async () => {
    const memory = createSharedAllReduceMemory(2, 1);
    const [a0, b0, a1, b1] = [0, 0, 1, 1].map((rank) => sharedAllReduce(memory, rank));
    const results = await settleWithin([
      a0(Float64Array.of(1)),
      b0(Float64Array.of(2)),
      a1(Float64Array.of(3)),
      b1(Float64Array.of(4)),
    ]);
    expect(reasonOf(results[1])).toMatch(
      /Error: sharedAllReduce: rank 0 already has an all-reduce in flight on this memory/,
    );
    // Rank 1's second call finds either itself in flight or the memory rank 0 poisoned for it.
    expect(reasonOf(results[3])).toMatch(
      /rank 1 already has an all-reduce in flight|rank 0 failed \(called again while/,
    );
    // The misuse poisons the memory: no rank is left waiting, and none gets a wrong sum.
    for (const r of results) {
      expect(r).not.toBe('hung');
      if (r !== 'hung' && r.status === 'fulfilled') expect(Array.from(r.value)).toEqual([4]);
    }
  });

  it('two SyncBatchNorm layers on one memory under Promise.all fail on every worker, none hangs', async () => {
    const memory = createSharedAllReduceMemory(2, 1 + 2 * 2);
    const layers = [0, 1].map((rank) =>
      [0, 1].map(() => new SyncBatchNorm(2, { allReduce: sharedAllReduce(memory, rank) })),
    );
    const x = Float32Array.of(1, 2, 3, 4);
    const results = await settleWithin(layers.flatMap((pair) => pair.map((l) => l.forward(x, [2, 2]))));
    expect(results.map(reasonOf).join('\n')).toMatch(/already has an all-reduce in flight/);
    for (const r of results) expect(r).not.toBe('hung');
  });
});

describe('sharedAllReduce options', () => {
  const memory = createSharedAllReduceMemory(2, 1);
  it('validates timeoutMs and refuses unknown keys', () => {
    expect(() => sharedAllReduce(memory, 0, { timeoutMs: 100 })).not.toThrow();
    expect(() => sharedAllReduce(memory, 0, {})).not.toThrow();
    expect(() => sharedAllReduce(memory, 0, { timeoutMs: Number.POSITIVE_INFINITY })).not.toThrow();
    expect(() => sharedAllReduce(memory, 0, { timeoutMs: -1 })).toThrow(RangeError);
    expect(() => sharedAllReduce(memory, 0, { timeoutMs: Number.NaN })).toThrow(/timeoutMs must be a number >= 0/);
    expect(() => sharedAllReduce(memory, 0, { timeoutMs: '5' as never })).toThrow(TypeError);
    expect(() => sharedAllReduce(memory, 0, { timeout: 5 } as never)).toThrow(
      /sharedAllReduce: unknown option "timeout" \(expected timeoutMs\)/,
    );
    expect(() => sharedAllReduce(memory, 0, 5 as never)).toThrow(/options must be an object/);
  });

  it('times out alone, poisons the memory, and the memory stays unusable until re-created', async () => {
    const memory = createSharedAllReduceMemory(2, 1);
    const started = Date.now();
    await expect(sharedAllReduce(memory, 0, { timeoutMs: 50 })(Float64Array.of(1))).rejects.toThrow(
      /sharedAllReduce: rank 0 timed out after 50 ms waiting for the other workers/,
    );
    expect(Date.now() - started).toBeLessThan(2000);
    // The late rank learns it at once, as does every later call on this memory.
    await expect(sharedAllReduce(memory, 1)(Float64Array.of(2))).rejects.toThrow(
      /sharedAllReduce: this memory is poisoned: rank 0 timed out.*createSharedAllReduceMemory/,
    );
    await expect(sharedAllReduce(memory, 0)(Float64Array.of(1))).rejects.toThrow(/this memory is poisoned/);
    const fresh = createSharedAllReduceMemory(2, 1);
    const sums = await Promise.all([0, 1].map((rank) => sharedAllReduce(fresh, rank)(Float64Array.of(rank + 1))));
    expect(sums.map((s) => s[0])).toEqual([3, 3]);
  });

  it('abortSharedAllReduce releases the waiting ranks with an error', async () => {
    const memory = createSharedAllReduceMemory(3, 1);
    const waiting = [0, 1].map((rank) => sharedAllReduce(memory, rank)(Float64Array.of(rank)));
    abortSharedAllReduce(memory);
    const results = await settleWithin(waiting);
    for (const r of results) expect(reasonOf(r)).toMatch(/this memory is poisoned: it was aborted/);
    expect(() => abortSharedAllReduce(new ArrayBuffer(8) as never)).toThrow(TypeError);
  });
});
