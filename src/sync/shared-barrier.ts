// The barrier of sharedAllReduce over the Int32 header of its SharedArrayBuffer, and its
// poisoning: a rank that fails (throws, times out, is entered twice) or the main thread
// (abortSharedAllReduce) marks the memory so that every waiting and later call throws
// instead of waiting for a partner that will never come.

// Int32 header: barrier arrivals, barrier state (generation, poison bit), workers, capacity
// (float64s per slot), who poisoned it and why, then per rank its buffer length and whether
// a call is in flight; padded so the float64 slots start 8-byte aligned.
const ARRIVED = 0;
const STATE = 1;
export const WORKERS = 2;
export const CAPACITY = 3;
const POISONER = 4;
const LENGTHS = 5;

// STATE holds the generation (bumped by the last arrival) in its low 30 bits and the poison
// bit above: poisoning keeps the generation, so a rank still waking from a barrier that was
// released before the poison sees the release, not the poison (every rank agrees on a call).
const POISON = 1 << 30;
const GENERATION_MASK = POISON - 1;

/** Why the memory was poisoned; stored with the rank as (rank + 1) * 8 + cause. */
export const Cause = { Failed: 1, TimedOut: 2, Reentered: 3, Aborted: 4 } as const;
export type Cause = (typeof Cause)[keyof typeof Cause];

export function headerInts(workers: number): number {
  return (LENGTHS + 2 * workers + 1) & ~1;
}

/** The header of memory from createSharedAllReduceMemory, for `workers` ranks. */
export class SharedHeader {
  readonly ints: Int32Array;
  readonly workers: number;

  constructor(memory: SharedArrayBuffer) {
    const workers = new Int32Array(memory, 0, LENGTHS)[WORKERS];
    this.workers = workers;
    this.ints = new Int32Array(memory, 0, headerInts(workers));
  }

  setLength(rank: number, length: number): void {
    Atomics.store(this.ints, LENGTHS + rank, length);
  }

  lengths(): number[] {
    return Array.from(this.ints.subarray(LENGTHS, LENGTHS + this.workers));
  }

  /** Marks `rank` as in a call; false when it already was (a second call before the first settled). */
  enter(rank: number): boolean {
    return Atomics.compareExchange(this.ints, LENGTHS + this.workers + rank, 0, 1) === 0;
  }

  leave(rank: number): void {
    Atomics.store(this.ints, LENGTHS + this.workers + rank, 0);
  }

  isPoisoned(): boolean {
    return (Atomics.load(this.ints, STATE) & POISON) !== 0;
  }

  /** Poisons the memory whatever barrier is current (rank -1: from outside the ranks). */
  poison(rank: number, cause: Cause): void {
    for (;;) {
      const state = Atomics.load(this.ints, STATE);
      if (state & POISON) return;
      if (Atomics.compareExchange(this.ints, STATE, state, state | POISON) === state) break;
    }
    this.#blame(rank, cause);
  }

  /** The error every call on poisoned memory throws. */
  poisonedError(): Error {
    // The poisoner records who it was right after setting the bit: wait out that instant.
    let poisoner = 0;
    for (let spin = 0; spin < 1e5 && poisoner === 0; spin++) poisoner = Atomics.load(this.ints, POISONER);
    const rank = Math.floor(poisoner / 8) - 1;
    const why: Record<number, string> = {
      [Cause.Failed]: `rank ${rank} failed (its all-reduce threw; see that worker's error)`,
      [Cause.TimedOut]: `rank ${rank} timed out waiting for the other workers`,
      [Cause.Reentered]: `rank ${rank} failed (called again while its all-reduce was in flight)`,
      [Cause.Aborted]: 'it was aborted (abortSharedAllReduce)',
    };
    return new Error(
      `sharedAllReduce: this memory is poisoned: ${why[poisoner % 8] ?? 'another rank failed'}; ` +
        'no all-reduce can complete on it: create new memory with createSharedAllReduceMemory',
    );
  }

  /** Resolves once every rank has arrived; throws if the memory is or becomes poisoned, or
   *  (poisoning it) if `deadline` (a performance.now() time) passes first. */
  async barrier(rank: number, deadline: number, timeoutMs: number): Promise<void> {
    const ints = this.ints;
    // Read the state before arriving: the last arrival bumps the generation, releasing everyone.
    const generation = Atomics.load(ints, STATE);
    if (generation & POISON) throw this.poisonedError();
    if (Atomics.add(ints, ARRIVED, 1) === this.workers - 1) {
      Atomics.store(ints, ARRIVED, 0);
      const next = (generation + 1) & GENERATION_MASK;
      // Fails only if poisoned meanwhile: then nobody is released and every rank throws.
      if (Atomics.compareExchange(ints, STATE, generation, next) !== generation) throw this.poisonedError();
      Atomics.notify(ints, STATE);
      return;
    }
    // A pending waitAsync does not keep Node's event loop alive: without this timer a worker
    // with nothing else to do would exit in the middle of the barrier.
    const keepAlive = setInterval(() => {}, 1 << 30);
    try {
      for (;;) {
        const state = Atomics.load(ints, STATE);
        if (state === (generation | POISON)) throw this.poisonedError();
        if (state !== generation) return; // released (even if poisoned since, at a later barrier)
        const left = deadline - performance.now();
        if (left <= 0) {
          // Poison this very barrier, unless the last arrival released it just now.
          if (Atomics.compareExchange(ints, STATE, generation, generation | POISON) !== generation) continue;
          this.#blame(rank, Cause.TimedOut);
          throw new Error(
            `sharedAllReduce: rank ${rank} timed out after ${timeoutMs} ms waiting for the other workers ` +
              '(one failed, exited or is not calling); the memory is now poisoned for every rank',
          );
        }
        await waitAsync(ints, STATE, generation, Number.isFinite(left) ? left : undefined).value;
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** Records the poisoner (the first one only) and wakes every waiting rank. */
  #blame(rank: number, cause: Cause): void {
    Atomics.compareExchange(this.ints, POISONER, 0, (rank + 1) * 8 + cause);
    Atomics.notify(this.ints, STATE);
  }
}

// Atomics.waitAsync is in Node >= 16 but typed only from lib ES2024 (this project targets ES2022).
type WaitAsync = (a: Int32Array, index: number, value: number, timeout?: number) => { value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
