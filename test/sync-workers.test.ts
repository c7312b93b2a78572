// SyncBatchNorm on real worker_threads, all-reducing over a SharedArrayBuffer: the compiled
// example (examples/sync-workers.ts) against one BatchNorm on the whole batch, the shared
// all-reduce under many back-to-back rounds, and the example as the README runs it.
// Needs `npm run build` first (`npm test` does): worker threads run the compiled JavaScript.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import type * as Example from '../examples/sync-workers';
import { abortSharedAllReduce, createSharedAllReduceMemory } from '../index';
import { backends } from './backends';

const root = join(__dirname, '..');
const compiledExample = join(root, 'dist', 'examples', 'sync-workers.js');
const compiledAllReduce = join(root, 'dist', 'src', 'sync', 'all-reduce.js');

function compiled<T>(path: string): T {
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` first (\`npm test\` does)`);
  return createRequire(__filename)(path) as T;
}

const JOBS: { workers: number; sizes: number[] }[] = [
  { workers: 2, sizes: [5, 1] },
  { workers: 3, sizes: [1, 4, 2] },
  { workers: 4, sizes: [3, 1, 6, 2] },
];

describe.each(backends.map((b) => [b.name, b.name]))('SyncBatchNorm on worker_threads (%s)', (_name, backend) => {
  const { trainInWorkers, trainInOneProcess, largestDifferences } = compiled<typeof Example>(compiledExample);
  for (const { workers, sizes } of JOBS) {
    it(`K = ${workers}, shards ${sizes.join('+')}: the same y, dx, running statistics and gradients as one process`, async () => {
      const job: Example.Job = { shape: [sizes.reduce((p, n) => p + n, 0), 3, 4, 5], sizes, steps: 3, backend };
      const results = await trainInWorkers(job);
      const differences = largestDifferences(results, trainInOneProcess(job));
      for (const [field, d] of Object.entries(differences)) expect(d, field).toBeLessThanOrEqual(1e-5);
      for (const r of results.slice(1)) {
        expect(r.runningMean).toEqual(results[0].runningMean);
        expect(r.runningVar).toEqual(results[0].runningVar);
        expect(r.gammaGrad).toEqual(results[0].gammaGrad);
      }
    });
  }
});

/** A worker doing `rounds` all-reduces of rank-dependent buffers; posts the first wrong sum, or 'ok'. */
const ROUNDS_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { sharedAllReduce } = require(workerData.allReduceModule);
const { memory, rank, workers, rounds } = workerData;
(async () => {
  const allReduce = sharedAllReduce(memory, rank);
  for (let round = 0; round < rounds; round++) {
    const length = 1 + (round % 7);
    const buffer = Float64Array.from({ length }, (_, i) => (rank + 1) * (round + i));
    const sum = await allReduce(buffer);
    const ranks = (workers * (workers + 1)) / 2;
    for (let i = 0; i < length; i++) {
      if (sum[i] !== ranks * (round + i)) return parentPort.postMessage({ round, i, got: sum[i] });
    }
  }
  parentPort.postMessage('ok');
})();
`;

describe('sharedAllReduce on worker_threads', () => {
  it('sums correctly over many back-to-back rounds of varying length', async () => {
    const workers = 4;
    const rounds = 500;
    compiled(compiledAllReduce);
    const memory = createSharedAllReduceMemory(workers, 7);
    const answers = await Promise.all(
      Array.from(
        { length: workers },
        (_, rank) =>
          new Promise((resolve, reject) => {
            const workerData = { allReduceModule: compiledAllReduce, memory, rank, workers, rounds };
            const worker = new Worker(ROUNDS_WORKER, { eval: true, workerData });
            worker.once('message', resolve);
            worker.once('error', reject);
          }),
      ),
    );
    expect(answers).toEqual(new Array(workers).fill('ok'));
  });
});

describe('the example', () => {
  it('runs as the README says and agrees with one process', () => {
    compiled(compiledExample);
    const child = spawnSync(process.execPath, [compiledExample, '3'], { cwd: root, encoding: 'utf8' });
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout).toMatch(/3 workers, shards of 2 \+ 3 \+ 1 rows/);
    expect(child.stdout).toMatch(/largest \|difference\| from one BatchNorm on the whole batch/);
  });
});

const failingWorker = join(__dirname, 'helpers', 'failing-all-reduce-worker.cjs');

interface Failure {
  rank: number;
  round: number;
  how: 'throw' | 'exit' | 'crash';
}

/** What each rank ended with: its message, or how it ended without one; 'hung' past `guardMs`.
 *  With `abortOnExit`, the main thread poisons the memory when a worker dies, as a pool would. */
async function runFailing(
  workers: number,
  fail: Failure,
  options: { timeoutMs?: number } | undefined,
  abortOnExit = false,
  guardMs = 8000,
): Promise<unknown[]> {
  compiled(compiledAllReduce);
  const memory = createSharedAllReduceMemory(workers, 2);
  const threads = Array.from(
    { length: workers },
    (_, rank) =>
      new Worker(failingWorker, { workerData: { allReduceModule: compiledAllReduce, memory, rank, options, fail } }),
  );
  const ends = threads.map(
    (worker) =>
      new Promise<unknown>((resolve) => {
        let result: unknown = null;
        worker.on('message', (m) => {
          result = m;
        });
        worker.on('error', (e) => {
          result = { crashed: e.message };
        });
        worker.on('exit', (code) => {
          if (result === null) result = { exit: code };
          if (abortOnExit && code !== 0) abortSharedAllReduce(memory);
          resolve(result);
        });
      }),
  );
  let guard: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    guard = setTimeout(() => resolve('hung'), guardMs);
  });
  const results = await Promise.all(ends.map((end) => Promise.race([end, hung])));
  clearTimeout(guard);
  await Promise.all(threads.map((t) => t.terminate()));
  return results;
}

describe('sharedAllReduce when a worker fails', () => {
  it('a rank whose all-reduce throws before the barrier fails every other rank too (no timeout needed)', async () => {
    const results = await runFailing(3, { rank: 1, round: 2, how: 'throw' }, undefined);
    expect(results[1]).toEqual({ error: expect.stringMatching(/RangeError: buffer must have length <= 2/) });
    for (const r of [results[0], results[2]]) {
      expect(r).toEqual({ error: expect.stringMatching(/Error: sharedAllReduce: .*rank 1 failed/) });
    }
  });

  it('a rank that exits makes the others time out with timeoutMs, and the timeout reaches every rank', async () => {
    const started = Date.now();
    const results = await runFailing(3, { rank: 2, round: 1, how: 'exit' }, { timeoutMs: 300 });
    expect(results[2]).toEqual({ exit: 3 });
    // One survivor times out; the other learns it from the poisoned barrier (or times out too).
    for (const r of results.slice(0, 2)) {
      expect(r).toEqual({
        error: expect.stringMatching(
          /Error: sharedAllReduce: .*(rank [0-2] timed out after 300 ms|rank [0-2] timed out waiting)/,
        ),
      });
    }
    expect(Date.now() - started).toBeLessThan(6000);
  });

  it('a rank that crashes outside the library: the main thread aborts the memory and the others fail', async () => {
    const results = await runFailing(2, { rank: 0, round: 1, how: 'crash' }, undefined, true);
    expect(results[0]).toEqual({ crashed: 'the worker crashed' });
    expect(results[1]).toEqual({ error: expect.stringMatching(/Error: sharedAllReduce: .*aborted/) });
  });

  it('without a failure, timeoutMs changes nothing', async () => {
    const results = await runFailing(3, { rank: -1, round: 0, how: 'throw' }, { timeoutMs: 5000 });
    expect(results).toEqual(new Array(3).fill({ ok: true }));
  });
});
