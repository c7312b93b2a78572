// The calls a soak makes: every op of the public API on one small problem, sync and Async,
// each call allocating its own outputs as a training loop would. Shared by the soak script
// (100k calls of each) and test/memory.test.ts (a CI-sized run of the same loop).

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Backend, FloatArray } from '../index';

export interface SoakOp {
  name: string;
  sync(): void;
  async(): Promise<unknown>;
}

/** Deterministic values in [-2, 2). */
function ramp(T: Float32ArrayConstructor | Float64ArrayConstructor, n: number, seed: number): FloatArray {
  const a = new T(n);
  for (let i = 0; i < n; i++) a[i] = ((i * 7919 + seed * 104729) % 1000) / 250 - 2;
  return a;
}

/** The seven ops on `shape` (channels on axis 1) with every optional array given. */
export function soakOps(backend: Backend, dtype: 'f32' | 'f64', shape: number[]): SoakOp[] {
  const T = dtype === 'f32' ? Float32Array : Float64Array;
  const size = shape.reduce((p, d) => p * d, 1);
  const channels = shape[1];
  const x = ramp(T, size, 1);
  const dy = ramp(T, size, 2);
  const gamma = new T(channels).fill(1.5);
  const beta = new T(channels).fill(0.25);
  const runningMean = new T(channels);
  const runningVar = new T(channels).fill(1);
  const saved = backend.batchNormTrain(x, shape, { gamma, beta });
  const stats = backend.batchNormStats(x, shape);
  const sums = backend.batchNormBackwardSums(dy, x, shape, saved, { gamma });
  const train = { gamma, beta, runningMean, runningVar };
  const evaluate = { gamma, beta, runningMean, runningVar };
  return [
    {
      name: 'train',
      sync: () => backend.batchNormTrain(x, shape, train),
      async: () => backend.batchNormTrainAsync(x, shape, train),
    },
    {
      name: 'eval',
      sync: () => backend.batchNormEval(x, shape, evaluate),
      async: () => backend.batchNormEvalAsync(x, shape, evaluate),
    },
    {
      name: 'backward',
      sync: () => backend.batchNormBackward(dy, x, shape, saved, { gamma }),
      async: () => backend.batchNormBackwardAsync(dy, x, shape, saved, { gamma }),
    },
    {
      name: 'stats',
      sync: () => backend.batchNormStats(x, shape),
      async: () => backend.batchNormStatsAsync(x, shape),
    },
    {
      name: 'trainWithStats',
      sync: () => backend.batchNormTrainWithStats(x, shape, stats, train),
      async: () => backend.batchNormTrainWithStatsAsync(x, shape, stats, train),
    },
    {
      name: 'backwardSums',
      sync: () => backend.batchNormBackwardSums(dy, x, shape, saved, { gamma }),
      async: () => backend.batchNormBackwardSumsAsync(dy, x, shape, saved, { gamma }),
    },
    {
      name: 'backwardWithSums',
      sync: () => backend.batchNormBackwardWithSums(dy, x, shape, saved, sums, { gamma }),
      async: () => backend.batchNormBackwardWithSumsAsync(dy, x, shape, saved, sums, { gamma }),
    },
  ];
}

/** `calls` calls of one op: one after another (sync), or `inFlight` Async calls at a time. */
export async function runCalls(op: SoakOp, mode: 'sync' | 'async', calls: number, inFlight = 64): Promise<void> {
  if (mode === 'sync') {
    for (let i = 0; i < calls; i++) op.sync();
    return;
  }
  for (let done = 0; done < calls; done += inFlight) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < Math.min(inFlight, calls - done); i++) batch.push(op.async());
    await Promise.all(batch);
  }
}

/** A full garbage collection, so that what memoryUsage reports is what is still reachable. */
export const collectGarbage: () => void = (() => {
  if (typeof globalThis.gc === 'function') return globalThis.gc;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

export interface MemoryFigures {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export function memoryAfterGc(): MemoryFigures {
  collectGarbage();
  collectGarbage();
  const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
  return { rss, heapUsed, external, arrayBuffers };
}

export const MiB = 1 << 20;
