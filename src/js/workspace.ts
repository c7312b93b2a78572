// Float64 buffers for the per-channel and per-column values of a kernel call, kept between
// calls: a typed array over 64 bytes costs ~1 µs to allocate, more than a whole small call.
// The js kernels run to completion on one thread, so one set serves every call.

/** Buffers up to this length stay allocated (256 KiB each at most). */
const KEPT_LENGTH = 1 << 15;
/** Smallest kept buffer, so that small calls of growing width do not reallocate. */
const MIN_LENGTH = 1 << 10;
/** A call takes a handful; more than this means a missing beginScratch(): allocate, keep none. */
const MAX_KEPT = 16;

const kept: Float64Array[] = [];
let next = 0;

/** Starts a kernel call: every buffer handed out before is free again. Called only by the
 *  kernels' entry points, never by a function that another kernel calls. */
export function beginScratch(): void {
  next = 0;
}

/** A buffer of at least `length` values with stale contents, the call's own until the next
 *  beginScratch(). */
export function scratch(length: number): Float64Array {
  const i = next++;
  const buffer = kept[i];
  if (buffer !== undefined && buffer.length >= length) return buffer;
  if (length > KEPT_LENGTH || i >= MAX_KEPT) return new Float64Array(length);
  kept[i] = new Float64Array(Math.max(length, MIN_LENGTH));
  return kept[i];
}
