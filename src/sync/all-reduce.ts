// An elementwise-sum all-reduce among worker_threads over one SharedArrayBuffer: each
// worker writes its buffer into its own slot, waits at a barrier, then sums every slot in
// rank order, so every worker gets bit-identical results (what keeps running statistics
// identical across workers).
import type { FloatArray } from '../types';
import { describe } from '../validate';

/** The all-reduce SyncBatchNorm takes: the elementwise sum of `buffer` over every worker. */
export type AllReduce = (buffer: Float64Array) => Promise<Float64Array>;

// Int32 header: barrier arrivals, barrier generation, workers, capacity (float64s per slot),
// then each worker's buffer length, padded so the float64 slots start 8-byte aligned.
const ARRIVED = 0;
const GENERATION = 1;
const WORKERS = 2;
const CAPACITY = 3;
const LENGTHS = 4;

function headerInts(workers: number): number {
  return (LENGTHS + workers + 1) & ~1;
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

/** The all-reduce of worker `rank` (0 <= rank < workers) over memory from
 *  createSharedAllReduceMemory. Every worker must call it the same number of times. */
export function sharedAllReduce(memory: SharedArrayBuffer, rank: number): AllReduce {
  if (!(memory instanceof SharedArrayBuffer)) {
    throw new TypeError(`memory must be a SharedArrayBuffer, got ${describe(memory)}`);
  }
  const workers = new Int32Array(memory, 0, LENGTHS)[WORKERS];
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= workers) {
    throw new RangeError(`rank must be an integer in [0, ${workers - 1}], got ${describe(rank)}`);
  }
  const header = new Int32Array(memory, 0, headerInts(workers));
  const capacity = header[CAPACITY];
  const slots = new Float64Array(memory, headerInts(workers) * 4, workers * capacity);
  return async (buffer) => {
    if (!(buffer instanceof Float64Array))
      throw new TypeError(`buffer must be a Float64Array, got ${describe(buffer)}`);
    if (buffer.length > capacity) {
      throw new RangeError(`buffer must have length <= ${capacity} (the shared capacity), got ${buffer.length}`);
    }
    slots.set(buffer, rank * capacity);
    header[LENGTHS + rank] = buffer.length;
    await barrier(header, workers);
    const lengths = Array.from(header.subarray(LENGTHS, LENGTHS + workers));
    const sum = new Float64Array(buffer.length);
    // Every worker sees the same lengths, so they all throw here together (none is left waiting).
    if (lengths.some((n) => n !== buffer.length)) {
      throw new RangeError(`every worker must all-reduce the same length, got lengths [${lengths.join(', ')}]`);
    }
    for (let r = 0; r < workers; r++) addInto(sum, slots.subarray(r * capacity, r * capacity + buffer.length));
    // No worker may overwrite its slot for the next call before every worker has read this one.
    await barrier(header, workers);
    return sum;
  };
}

function addInto(sum: Float64Array, part: FloatArray): void {
  for (let i = 0; i < sum.length; i++) sum[i] += part[i];
}

// Atomics.waitAsync is in Node >= 16 but typed only from lib ES2024 (this project targets ES2022).
type WaitAsync = (a: Int32Array, index: number, value: number) => { value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Resolves once every worker has arrived; waits without blocking the worker's event loop. */
async function barrier(header: Int32Array, workers: number): Promise<void> {
  // Read the generation before arriving: the last arrival bumps it, releasing everyone.
  const generation = Atomics.load(header, GENERATION);
  if (Atomics.add(header, ARRIVED, 1) === workers - 1) {
    Atomics.store(header, ARRIVED, 0);
    Atomics.add(header, GENERATION, 1);
    Atomics.notify(header, GENERATION);
    return;
  }
  // A pending waitAsync does not keep Node's event loop alive: without this timer a worker
  // with nothing else to do would exit in the middle of the barrier.
  const keepAlive = setInterval(() => {}, 1 << 30);
  try {
    while (Atomics.load(header, GENERATION) === generation) {
      await waitAsync(header, GENERATION, generation).value;
    }
  } finally {
    clearInterval(keepAlive);
  }
}
