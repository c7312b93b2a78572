// Many native calls at once against the raw binding: hundreds of Async calls of every op
// and dtype in flight together, sync calls interleaved with them, the addon loaded in
// several worker threads computing at the same time, the pool resized while work runs.
// Every result must be bit-for-bit the sync result of the same inputs (the core cuts work
// by layout only, never by thread count). Then the lifecycles, in child processes: the
// process exits promptly when its work is done (no thread pool keeping it alive), exits
// cleanly with work still in flight, and survives workers terminated mid-call.
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { binding, bindingPath, describeExit, runChild } from './helpers/binding';
import { type DType, invoke, makeCall, OPS, type OpName, outputsOf } from './helpers/raw-ops.cjs';

const OP_NAMES = Object.keys(OPS) as OpName[];

interface CaseSpec {
  op: OpName;
  dtype: DType;
  shape: number[];
  axis: number;
  seed: number;
  async: boolean;
}

const SHAPES = [
  { shape: [5, 3, 7], axis: 1 },
  { shape: [4, 5, 6], axis: -1 },
  { shape: [64, 40], axis: 1 },
  // above the 2^15-element cut-off vitest.config.ts sets: these run on the rayon pool
  { shape: [8, 16, 301], axis: 1 },
  { shape: [6, 23, 17, 16], axis: -1 },
];

/** `count` cases cycling through every op, dtype and shape. */
function mixedCases(count: number, seedBase: number, async = true): CaseSpec[] {
  return Array.from({ length: count }, (_, i) => ({
    op: OP_NAMES[i % OP_NAMES.length],
    dtype: (Math.floor(i / OP_NAMES.length) % 2 ? 'f64' : 'f32') as DType,
    ...SHAPES[i % SHAPES.length],
    seed: seedBase + i,
    async,
  }));
}

/** What each case writes when run alone, synchronously, on this thread. */
async function expectedOutputs(cases: CaseSpec[]) {
  const outputs = [];
  for (const c of cases) {
    const call = makeCall(c.op, c.dtype, c);
    await invoke(binding, call, false);
    outputs.push(outputsOf(call));
  }
  return outputs;
}

/** Indices of the cases whose outputs differ from the expected ones. */
function mismatches(cases: CaseSpec[], got: Record<string, number[]>[], want: Record<string, number[]>[]): string[] {
  const bad: string[] = [];
  cases.forEach((c, i) => {
    if (JSON.stringify(got[i]) !== JSON.stringify(want[i])) bad.push(`#${i} ${c.op} ${c.dtype} [${c.shape}]`);
  });
  return bad;
}

describe.skipIf(!binding)('raw binding under concurrent load', () => {
  const initialThreads = binding ? binding.getNumThreads() : 1;
  afterAll(() => binding?.setNumThreads(initialThreads));

  it('400 Async calls of every op and dtype in flight at once each give their sync result', async () => {
    const cases = mixedCases(400, 1000);
    const want = await expectedOutputs(cases);
    const calls = cases.map((c) => makeCall(c.op, c.dtype, c));
    await Promise.all(calls.map((call) => invoke(binding, call, true)));
    expect(mismatches(cases, calls.map(outputsOf), want)).toEqual([]);
  });

  it('sync calls interleaved with Async ones in flight are right, and so are the Async ones', async () => {
    const asyncCases = mixedCases(150, 2000);
    const syncCases = mixedCases(150, 3000, false);
    const [wantAsync, wantSync] = [await expectedOutputs(asyncCases), await expectedOutputs(syncCases)];
    const pending: Promise<unknown>[] = [];
    const asyncCalls = asyncCases.map((c) => makeCall(c.op, c.dtype, c));
    const syncOutputs: Record<string, number[]>[] = [];
    for (let i = 0; i < asyncCalls.length; i++) {
      pending.push(invoke(binding, asyncCalls[i], true));
      // A sync call on this thread (it runs before invoke returns) while the pool works on
      // the Async ones.
      const c = syncCases[i];
      const call = makeCall(c.op, c.dtype, c);
      await invoke(binding, call, false);
      syncOutputs.push(outputsOf(call));
      if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(pending);
    expect(mismatches(syncCases, syncOutputs, wantSync)).toEqual([]);
    expect(mismatches(asyncCases, asyncCalls.map(outputsOf), wantAsync)).toEqual([]);
  });

  it('the addon loaded in 4 worker threads computes in parallel with the main thread, all correct', async () => {
    const perWorker = 4;
    const workerCases = Array.from({ length: perWorker }, (_, w) =>
      mixedCases(60, 10_000 * (w + 1)).map((c, i) => ({ ...c, async: i % 3 !== 0 })),
    );
    const mainCases = mixedCases(100, 50_000);
    const wantWorkers = await Promise.all(workerCases.map(expectedOutputs));
    const wantMain = await expectedOutputs(mainCases);

    const workers = workerCases.map(
      (cases) => new Worker(`${__dirname}/helpers/compute-worker.cjs`, { workerData: { bindingPath, cases } }),
    );
    const replies = workers.map(
      (w) =>
        new Promise<{ threads?: number; outputs?: Record<string, number[]>[]; error?: string }>((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
        }),
    );
    const mainCalls = mainCases.map((c) => makeCall(c.op, c.dtype, c));
    await Promise.all(mainCalls.map((call) => invoke(binding, call, true)));
    const results = await Promise.all(replies);
    await Promise.all(workers.map((w) => w.terminate()));

    expect(mismatches(mainCases, mainCalls.map(outputsOf), wantMain)).toEqual([]);
    results.forEach((r, w) => {
      expect(r.error, `worker ${w}`).toBeUndefined();
      // One pool per process: the workers see the size the main thread set.
      expect(r.threads).toBe(binding!.getNumThreads());
      expect(mismatches(workerCases[w], r.outputs!, wantWorkers[w]), `worker ${w}`).toEqual([]);
    });
  });

  it('setNumThreads while 200 Async calls run: every result is still the sync result', async () => {
    const cases = mixedCases(200, 4000).map((c, i) => ({ ...c, ...SHAPES[3 + (i % 2)] }));
    const want = await expectedOutputs(cases);
    const calls = cases.map((c) => makeCall(c.op, c.dtype, c));
    const pending = Promise.all(calls.map((call) => invoke(binding, call, true)));
    let settled = false;
    const markSettled = () => {
      settled = true;
    };
    pending.then(markSettled, markSettled);
    const sizes = [1, 3, 2, 4, 1, 2, 3];
    let resized = 0;
    while (!settled || resized < sizes.length) {
      binding!.setNumThreads(sizes[resized % sizes.length]);
      expect(binding!.getNumThreads()).toBe(sizes[resized % sizes.length]);
      resized++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await pending;
    expect(resized).toBeGreaterThanOrEqual(sizes.length);
    expect(mismatches(cases, calls.map(outputsOf), want)).toEqual([]);
  });
});

describe.skipIf(!binding)('process and thread lifecycles around native work (child processes)', () => {
  /** Runs a lifecycle scenario; returns how long the process lived after its work was done. */
  function lifecycle(scenario: string): number {
    const run = runChild('lifecycle-child.cjs', [bindingPath!, scenario], { timeoutMs: 30_000 });
    const end = Date.now();
    expect(run.signal, describeExit(run)).toBeNull();
    expect(run.status, describeExit(run)).toBe(0);
    const done = /done (\d+)/.exec(run.stdout);
    expect(done, describeExit(run)).not.toBeNull();
    return end - Number(done![1]);
  }

  it('the process exits promptly once its Async work is done (the pool keeps nothing alive)', () => {
    // Process teardown takes tens of milliseconds; a pool or a handle left behind would hang
    // until the 30 s timeout.
    expect(lifecycle('exit-after-work')).toBeLessThan(3_000);
  });

  it('process.exit with large calls still running on the pool exits cleanly', () => {
    expect(lifecycle('exit-with-work-in-flight')).toBeLessThan(3_000);
  });

  it('worker threads terminated while their Async calls run do not crash the process', () => {
    expect(lifecycle('terminate-workers-mid-flight')).toBeLessThan(3_000);
  });
});
