// Recycled output memory for the native backend. Large outputs the caller did not pass
// (y, dx) are lent from blocks the addon keeps, so a loop that drops its results does not
// pay a page fault per 4 KiB of every new output. A block comes back when V8 has collected
// the array and the event loop turns (Node runs the finalizer then); a loop that never
// yields gets plain V8 memory once the lent cap is reached.
import type * as Binding from '../native/binding';
import { allocLike, type OutputAllocator } from './backend';
import { envInteger } from './env';
import type { TensorArray } from './types';
import { describe } from './validate';

type NativeBinding = typeof Binding;

/** Outputs below this many bytes come from V8 (mirrors the addon's MIN_BYTES). */
export const RECYCLE_MIN_BYTES = 1 << 20;

/** What the pool holds and has done since the process started. */
export interface OutputPoolStats {
  /** The cap on bytes lent out, and separately on bytes kept free. */
  limitBytes: number;
  /** Blocks waiting for the next output. */
  freeBytes: number;
  /** Blocks under arrays that JS still holds (or has dropped, awaiting their finalizer). */
  lentBytes: number;
  /** Outputs served from a recycled block / a new block / V8 because of the cap. */
  reused: number;
  allocated: number;
  refused: number;
}

/** Bytes lent between two turns of the event loop. A block only comes back after a turn,
 *  so in a stretch of synchronous calls every lent block is a new one, and dead ones pile
 *  up until the loop yields: past this budget the stretch gets V8's memory instead. */
export const TURN_BUDGET_BYTES = 256 << 20;

/** The allocator the native backend uses for tensor-sized outputs. */
export function recyclingAllocator(b: NativeBinding): OutputAllocator {
  let lentThisTurn = 0;
  let turnPending = false;
  const turned = () => {
    lentThisTurn = 0;
    turnPending = false;
  };
  return (like: TensorArray, length: number): TensorArray => {
    const bytes = length * like.BYTES_PER_ELEMENT;
    const wanted = bytes >= RECYCLE_MIN_BYTES && lentThisTurn + bytes <= TURN_BUDGET_BYTES;
    const buffer = wanted ? (b.recycledBuffer(bytes) as ArrayBuffer | null) : null;
    if (!buffer) return allocLike(like, length);
    lentThisTurn += bytes;
    if (!turnPending) {
      turnPending = true;
      setImmediate(turned).unref();
    }
    if (like instanceof Float32Array) return new Float32Array(buffer);
    return like instanceof Float64Array ? new Float64Array(buffer) : new Uint16Array(buffer);
  };
}

function checkBytes(bytes: unknown): number {
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
    throw new TypeError(`bytes must be a non-negative integer, got ${describe(bytes)}`);
  }
  return bytes;
}

/** BATCHNORM_OUTPUT_POOL_BYTES, when set: the pool's cap (0 turns recycling off). */
export function outputPoolLimitFromEnv(): number | null {
  return envInteger('BATCHNORM_OUTPUT_POOL_BYTES');
}

export function setOutputPoolLimit(b: NativeBinding | null, bytes: unknown): void {
  const limit = checkBytes(bytes);
  b?.setOutputPoolLimit(limit);
}

export function outputPoolStats(b: NativeBinding | null): OutputPoolStats {
  if (!b) return { limitBytes: 0, freeBytes: 0, lentBytes: 0, reused: 0, allocated: 0, refused: 0 };
  return b.outputPoolStats();
}
