// An elementwise-sum all-reduce among worker_threads over one SharedArrayBuffer: each
// worker writes its buffer into its own slot, waits at a barrier, then sums every slot in
// rank order, so every worker gets bit-identical results (what keeps running statistics
// identical across workers). A failure on one rank poisons the memory (shared-barrier.ts),
// so it reaches every rank as an error instead of leaving them waiting.
import type { FloatArray } from '../types';
import { describe } from '../validate';
import { CAPACITY, Cause, headerInts, SharedHeader, WORKERS } from './shared-barrier';

/** The all-reduce SyncBatchNorm takes: the elementwise sum of `buffer` over every worker. */
export type AllReduce = (buffer: Float64Array) => Promise<Float64Array>;

/** Options of sharedAllReduce. */
export interface SharedAllReduceOptions {
  /** Longest a call may wait for the other workers, in ms (default Infinity: no limit). When
   *  it passes, the call rejects and poisons the memory, so every other rank fails too. */
  timeoutMs?: number;
}

/** Memory for an all-reduce among `workers` threads of buffers of up to `capacity` float64s;
 *  created once (e.g. on the main thread) and passed to every worker in workerData. */
export function createSharedAllReduceMemory(workers: number, capacity: number): SharedArrayBuffer {
  if (!Number.isSafeInteger(workers) || workers < 1) {
    throw new RangeError(`workers must be an integer >= 1, got ${describe(workers)}`);
  }
  if (!Number.isSafeInteger(capacity) || capacity < 0) {
    throw new RangeError(`capacity must be a non-negative integer, got ${describe(capacity)}`);
  }
  const memory = new SharedArrayBuffer(headerInts(workers) * 4 + workers * capacity * 8);
  const header = new Int32Array(memory, 0, headerInts(workers));
  header[WORKERS] = workers;
  header[CAPACITY] = capacity;
  return memory;
}

/** Poisons `memory` from outside the ranks (e.g. the main thread when a worker exits or
 *  errors): every waiting and later all-reduce on it rejects. */
export function abortSharedAllReduce(memory: SharedArrayBuffer): void {
  checkMemory(memory);
  new SharedHeader(memory).poison(-1, Cause.Aborted);
}

/** The all-reduce of worker `rank` (0 <= rank < workers) over memory from
 *  createSharedAllReduceMemory. Every worker must call it the same number of times, one call
 *  at a time per rank. Any call that fails poisons the memory for every rank. */
export function sharedAllReduce(
  memory: SharedArrayBuffer,
  rank: number,
  options: SharedAllReduceOptions = {},
): AllReduce {
  checkMemory(memory);
  const header = new SharedHeader(memory);
  const workers = header.workers;
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= workers) {
    throw new RangeError(`rank must be an integer in [0, ${workers - 1}], got ${describe(rank)}`);
  }
  const timeoutMs = checkOptions(options);
  const capacity = header.ints[CAPACITY];
  const slots = new Float64Array(memory, headerInts(workers) * 4, workers * capacity);
  return async (buffer) => {
    if (header.isPoisoned()) throw header.poisonedError();
    if (!header.enter(rank)) {
      header.poison(rank, Cause.Reentered);
      throw new Error(
        `sharedAllReduce: rank ${rank} already has an all-reduce in flight on this memory: await it ` +
          'before the next call (layers sharing one memory must not run under Promise.all); the memory is now poisoned',
      );
    }
    try {
      const deadline = performance.now() + timeoutMs;
      if (!(buffer instanceof Float64Array))
        throw new TypeError(`buffer must be a Float64Array, got ${describe(buffer)}`);
      if (buffer.length > capacity) {
        throw new RangeError(`buffer must have length <= ${capacity} (the shared capacity), got ${buffer.length}`);
      }
      slots.set(buffer, rank * capacity);
      header.setLength(rank, buffer.length);
      await header.barrier(rank, deadline, timeoutMs);
      const lengths = header.lengths();
      // Every worker sees the same lengths, so they all throw here together.
      if (lengths.some((n) => n !== buffer.length)) {
        throw new RangeError(`every worker must all-reduce the same length, got lengths [${lengths.join(', ')}]`);
      }
      const sum = new Float64Array(buffer.length);
      for (let r = 0; r < workers; r++) addInto(sum, slots.subarray(r * capacity, r * capacity + buffer.length));
      // No worker may overwrite its slot for the next call before every worker has read this one.
      await header.barrier(rank, deadline, timeoutMs);
      return sum;
    } catch (e) {
      // Whatever failed here, the other ranks must not wait for this one (a no-op if poisoned).
      header.poison(rank, Cause.Failed);
      throw e;
    } finally {
      header.leave(rank);
    }
  };
}

function checkMemory(memory: unknown): asserts memory is SharedArrayBuffer {
  if (!(memory instanceof SharedArrayBuffer)) {
    throw new TypeError(`memory must be a SharedArrayBuffer, got ${describe(memory)}`);
  }
}

/** The options object, validated like the rest of the API; returns timeoutMs. */
function checkOptions(options: unknown): number {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`sharedAllReduce: options must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'timeoutMs') {
      throw new TypeError(`sharedAllReduce: unknown option ${JSON.stringify(key)} (expected timeoutMs)`);
    }
  }
  return checkTimeoutMs('sharedAllReduce', (options as SharedAllReduceOptions).timeoutMs);
}

/** A timeout in ms: a number >= 0 (Infinity allowed), undefined meaning none. */
export function checkTimeoutMs(owner: string, v: unknown): number {
  if (v === undefined) return Number.POSITIVE_INFINITY;
  if (typeof v !== 'number') throw new TypeError(`${owner}: timeoutMs must be a number, got ${describe(v)}`);
  if (!(v >= 0)) throw new RangeError(`${owner}: timeoutMs must be a number >= 0 (ms), got ${v}`);
  return v;
}

function addInto(sum: Float64Array, part: FloatArray): void {
  for (let i = 0; i < sum.length; i++) sum[i] += part[i];
}
