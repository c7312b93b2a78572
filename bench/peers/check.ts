// The check every peer passes before it is timed: its outputs against batchnorm native's.
import type { Outputs } from './peer';

/** A peer's answer passes when max |peer - batchnorm| <= TOLERANCE * max(1, max |batchnorm|). */
export const TOLERANCE = 1e-4;

/** The largest |a - b| of each output, and whether each is within TOLERANCE. The first output
 *  (y, or dx) gives `maxAbsDiff`; the per-channel sums dGamma and dBeta grow with the count
 *  reduced over, so they are held to the tolerance relative to their size. */
export function compare(reference: Outputs, got: Outputs): { maxAbsDiff: number; ok: boolean; detail: string } {
  let maxAbsDiff = Number.NaN;
  let ok = true;
  const parts: string[] = [];
  for (const [key, want] of Object.entries(reference)) {
    const have = got[key];
    if (!have || have.length !== want.length) return { maxAbsDiff: Number.NaN, ok: false, detail: `${key} missing` };
    let diff = 0;
    let scale = 1;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(have[i] - want[i]);
      // NaN compares false: count it as a failure explicitly.
      if (!(d <= diff)) diff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
      scale = Math.max(scale, Math.abs(want[i]));
    }
    if (Number.isNaN(maxAbsDiff)) maxAbsDiff = diff;
    ok &&= diff <= TOLERANCE * scale;
    const relative = scale > 1 ? ` (${(diff / scale).toExponential(1)} of max ${scale.toPrecision(3)})` : '';
    parts.push(`${key} ${diff.toExponential(1)}${relative}`);
  }
  return { maxAbsDiff, ok, detail: parts.join(', ') };
}
