// The elementwise pass of a bfloat16 / float16 call, step by step as the native kernels run it
// in float32 (kernels/affine.rs, `at_f32`): the center taken off in two float32 parts, then
// fused multiply-adds, each rounded to float32. Their 16-bit results are then those of
// native: a result near 0 (a residual cancelling BN(x), a gradient of cancelling terms) keeps
// the float32 rounding the native pass has. Values arrive and leave widened to float64.
import type { Layout } from '../layout';
import type { FloatArray } from '../types';

const f32 = Math.fround;

/** `v - center` as the native pass takes it: center = hi + lo, both float32. */
function centered(v: number, hi: number, lo: number): number {
  return f32(f32(v - hi) - lo);
}

/** fma(a, b, c) in float32: a·b of two float32 values is exact in a double, so one rounding
 *  of the sum to double and one to float32 (the double rounding differs from the fused
 *  instruction only on a sum exactly between two float32 values, a 2^-29 chance). */
function fma32(a: number, b: number, c: number): number {
  return f32(a * b + c);
}

/** The pass's per-channel coefficients (float64, as the kernels compute them): dst = act(
 *  (src·mask − center)·scale + shift + (other − otherCenter)·otherScale). */
export interface HalfPass {
  scale: ArrayLike<number>;
  center: ArrayLike<number> | null;
  shift: ArrayLike<number>;
  other: FloatArray | null;
  otherScale: ArrayLike<number> | null;
  otherCenter: ArrayLike<number> | null;
  mask: FloatArray | null;
  relu: boolean;
}

export function halfPass(src: FloatArray, dst: FloatArray, layout: Layout, p: HalfPass): void {
  const { outer, channels, inner } = layout;
  let i = 0;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      const scale = f32(p.scale[c]);
      const shift = f32(p.shift[c]);
      const center = p.center ? p.center[c] : 0;
      const hi = f32(center);
      const lo = f32(center - hi);
      const otherScale = p.otherScale ? f32(p.otherScale[c]) : 1;
      const otherCenter = p.otherCenter ? p.otherCenter[c] : 0;
      const otherHi = f32(otherCenter);
      const otherLo = f32(otherCenter - otherHi);
      for (let j = 0; j < inner; j++, i++) {
        const v = p.mask && !(p.mask[i] > 0) ? 0 : src[i];
        let r = fma32(centered(v, hi, lo), scale, shift);
        if (p.other) r = fma32(centered(p.other[i], otherHi, otherLo), otherScale, r);
        dst[i] = p.relu && r < 0 ? 0 : r;
      }
    }
  }
}
