// Fast comparisons of large arrays: vitest's toEqual walks a typed array element by element
// through its generic equality, which takes seconds on a few million values.
import type { FloatArray } from '../../index';

/** The largest |a[i] - b[i]| (Infinity when the lengths differ; NaN counts as equal to NaN). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

/** Whether two arrays hold the very same bytes. */
export function sameBytes(a: FloatArray, b: FloatArray): boolean {
  const view = (v: FloatArray) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return a.byteLength === b.byteLength && view(a).equals(view(b));
}
