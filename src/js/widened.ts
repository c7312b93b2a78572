// The js kernels compute on float32 / float64 arrays. A bfloat16 or float16 call reaches them
// widened: its tensors converted to float64 (exactly), the float64 kernel run, and its tensor
// outputs rounded to float32 and then to 16 bits with round-to-nearest-even, as the native
// kernels round. Not float32: its kernel keeps the shift x·scale + (beta − mean·scale) in
// float32, whose rounding (~1e-5 at a mean of 100) is many 16-bit units of a result near 0.
// The parameters and statistics of a 16-bit call are float32 and pass as they are.
import type { Kernels } from '../backend';
import { type HalfDtype, halfDtypeOf, narrowToHalf, widenHalf } from '../half';
import type { FloatArray, TensorArray } from '../types';
import type { FloatPlan, TensorsOf } from '../validate';
import { fingerprint } from './fingerprint';

/** A 16-bit tensor's values as float64 (null stays null). */
function widened(a: TensorArray | null, dtype: HalfDtype): Float64Array | null {
  return a === null ? null : Float64Array.from(widenHalf(a as Uint16Array, dtype, new Float32Array(a.length)));
}

/** The float64 plan of a 16-bit one: its tensors widened, `out` the float64 result. */
function floatPlan<P extends TensorsOf & { x: TensorArray }>(
  plan: P,
  dtype: HalfDtype,
  out: Float64Array,
): FloatPlan<P> {
  // The dtype stays: the kernels' elementwise pass runs as native's float32 one (half-pass.ts).
  const widenedPlan: Record<string, unknown> = { ...(plan as object), out };
  for (const key of ['x', 'dy', 'residual', 'y'] as const) {
    const a = (plan as Record<string, unknown>)[key];
    // `residual` is a flag, not a tensor, in backward plans.
    if (ArrayBuffer.isView(a)) widenedPlan[key] = widened(a as TensorArray, dtype);
  }
  if ('outResidual' in plan) widenedPlan.outResidual = null;
  return widenedPlan as FloatPlan<P>;
}

/** float64 results rounded to float32, then to 16 bits, into `into`. */
function narrowed(values: Float64Array, dtype: HalfDtype, into: Uint16Array): void {
  narrowToHalf(Float32Array.from(values), dtype, into);
}

/** x's fingerprint into `print` from its own bits (the widened copy has other bits). */
function printOf(x: TensorArray, print: Float64Array | null): null {
  if (print) print[0] = fingerprint(x);
  return null;
}

/** A 16-bit call: `run` on the widened plan into float64 outputs (y or dx, and backward's
 *  dResidual), each narrowed into the caller's array after. */
function runWidened<P extends TensorsOf & { x: TensorArray }>(
  dtype: HalfDtype,
  plan: P,
  out: TensorArray,
  dResidual: TensorArray | null,
  run: (plan: FloatPlan<P>, out: Float64Array, dResidual: Float64Array | null) => void,
): void {
  const out64 = new Float64Array(out.length);
  const dResidual64 = dResidual && new Float64Array(dResidual.length);
  run(floatPlan(plan, dtype, out64), out64, dResidual64);
  narrowed(out64, dtype, out as Uint16Array);
  if (dResidual && dResidual64) narrowed(dResidual64, dtype, dResidual as Uint16Array);
}

/** Kernels for every dtype from kernels for float32 / float64 ones. */
export function widening(k: Kernels<FloatArray>): Kernels {
  const float = <P>(plan: P) => plan as FloatPlan<P>;
  return {
    train(plan, y, mean, invStd, print) {
      const dtype = halfDtypeOf(plan.dtype);
      if (dtype === null) return k.train(float(plan), y as FloatArray, mean, invStd, print);
      runWidened(dtype, plan, y, null, (p, y64) => k.train(p, y64, mean, invStd, printOf(plan.x, print)));
    },
    trainWithStats(plan, y, mean, invStd, print) {
      const dtype = halfDtypeOf(plan.dtype);
      if (dtype === null) return k.trainWithStats(float(plan), y as FloatArray, mean, invStd, print);
      runWidened(dtype, plan, y, null, (p, y64) => k.trainWithStats(p, y64, mean, invStd, printOf(plan.x, print)));
    },
    evaluate(plan, y) {
      const dtype = halfDtypeOf(plan.dtype);
      if (dtype === null) return k.evaluate(float(plan), y as FloatArray);
      runWidened(dtype, plan, y, null, (p, y64) => k.evaluate(p, y64));
    },
    backward(plan, dx, dGamma, dBeta, dResidual, print) {
      const dtype = halfDtypeOf(plan.dtype);
      if (dtype === null) {
        return k.backward(float(plan), dx as FloatArray, dGamma, dBeta, dResidual as FloatArray | null, print);
      }
      runWidened(dtype, plan, dx, dResidual, (p, dx64, dResidual64) =>
        k.backward(p, dx64, dGamma, dBeta, dResidual64, printOf(plan.x, print)),
      );
    },
    backwardWithSums(plan, dx, dGamma, dBeta, dResidual, print) {
      const dtype = halfDtypeOf(plan.dtype);
      if (dtype === null) {
        return k.backwardWithSums(float(plan), dx as FloatArray, dGamma, dBeta, dResidual as FloatArray | null, print);
      }
      runWidened(dtype, plan, dx, dResidual, (p, dx64, dResidual64) =>
        k.backwardWithSums(p, dx64, dGamma, dBeta, dResidual64, printOf(plan.x, print)),
      );
    },
    stats(plan, mean, m2) {
      const dtype = halfDtypeOf(plan.dtype);
      if (dtype === null) return k.stats(float(plan), mean, m2);
      k.stats(floatPlan(plan, dtype, new Float64Array(0)), mean, m2);
    },
    backwardSums(plan, sumDy, sumDyXhat) {
      const dtype = halfDtypeOf(plan.dtype);
      if (dtype === null) return k.backwardSums(float(plan), sumDy, sumDyXhat);
      k.backwardSums(floatPlan(plan, dtype, new Float64Array(0)), sumDy, sumDyXhat);
    },
    fingerprint: (x) => fingerprint(x),
  };
}
