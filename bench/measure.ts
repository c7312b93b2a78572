// Median time of one call, with tinybench doing the sampling. Calls far shorter than the
// clock's resolution are repeated inside each sample so the median stays meaningful.
// tinybench 2.x: its CommonJS build loads from the compiled (CommonJS) bench; 3.x+ is ESM-only.
import { Bench, hrtimeNow } from 'tinybench';

export interface Budget {
  /** Keep sampling until this much time (ms) has been spent... */
  timeMs: number;
  /** ...and at least this many samples were taken. */
  minSamples: number;
  warmupSamples: number;
  /** Alternating rounds of the op and its memcpy baseline. */
  rounds: number;
}

export interface Measurement {
  /** Median milliseconds of one call. */
  medianMs: number;
  samples: number;
  /** Calls per sample. */
  callsPerSample: number;
}

/** A sample should last at least this long so clock reads (~50 ns) stay below 0.1 %. */
const MIN_SAMPLE_MS = 0.05;
const MAX_CALLS_PER_SAMPLE = 10_000;

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One call: synchronous, or asynchronous (a peer library whose API returns a promise). */
export type Call = () => void | Promise<void>;

/** How many calls make one sample: timed calls after a short untimed warm-up (so the first,
 *  unoptimized calls do not inflate the estimate) give the answer. */
async function callsPerSample(call: Call): Promise<number> {
  const warmUntil = hrtimeNow() + 20;
  for (let i = 0; i < 50 && hrtimeNow() < warmUntil; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const start = hrtimeNow();
    const pending = call();
    if (pending) await pending; // a sync call is timed without a microtask turn
    times.push(hrtimeNow() - start);
  }
  const estimate = Math.max(median(times), 1e-6);
  return Math.min(MAX_CALLS_PER_SAMPLE, Math.max(1, Math.ceil(MIN_SAMPLE_MS / estimate)));
}

/** `call` `times` over; an async call stays async, so tinybench awaits each sample. */
function repeated(call: Call, times: number, isAsync: boolean): Call {
  if (times === 1) return call;
  return isAsync
    ? async () => {
        for (let i = 0; i < times; i++) await call();
      }
    : () => {
        for (let i = 0; i < times; i++) call();
      };
}

export interface Candidate {
  name: string;
  call: Call;
  /** The call returns a promise that must settle before the next one. */
  isAsync?: boolean;
}

/** Several calls sampled in alternating rounds (a, b, c, a, b, c, ...) so that all of them
 *  see the same moments of a shared machine: their ratios (native/js, op/memcpy) stay
 *  meaningful when the CPU time or memory bandwidth left to this process drifts. */
export async function measureInterleaved(candidates: readonly Candidate[], budget: Budget): Promise<Measurement[]> {
  const reps: number[] = [];
  for (const c of candidates) reps.push(await callsPerSample(c.call));
  const samples = candidates.map(() => [] as number[]);
  for (let round = 0; round < budget.rounds; round++) {
    const bench = new Bench({
      now: hrtimeNow,
      time: budget.timeMs / budget.rounds,
      iterations: Math.ceil(budget.minSamples / budget.rounds),
      warmupTime: 0,
      warmupIterations: budget.warmupSamples,
      throws: true,
    });
    for (const [i, c] of candidates.entries()) bench.add(c.name, repeated(c.call, reps[i], c.isAsync ?? false));
    if (round === 0) await bench.warmup();
    await bench.run();
    for (const [i, task] of bench.tasks.entries()) {
      const result = task.result;
      if (!result || result.error) throw result?.error ?? new Error(`${task.name}: no result`);
      samples[i].push(...result.samples);
    }
  }
  return candidates.map((_, i) => ({
    medianMs: median(samples[i]) / reps[i],
    samples: samples[i].length,
    callsPerSample: reps[i],
  }));
}
