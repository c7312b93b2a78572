// The js kernels compute on float32 / float64 arrays. A bfloat16 or float16 call reaches them
// widened: its tensors converted to float32 (exactly), the float32 kernel run, and its tensor
// outputs rounded to 16 bits with round-to-nearest-even, as the native kernels round. The
// parameters and statistics of a 16-bit call are float32 already and pass as they are.
import type { Kernels } from '../backend';
import { type HalfDtype, narrowToHalf, widenHalf } from '../half';
import type { FloatArray, TensorArray } from '../types';
import type { FloatPlan, TensorsOf } from '../validate';
import { fingerprint } from './fingerprint';

function halfOf(plan: TensorsOf): HalfDtype | null {
  return plan.dtype === 'bfloat16' || plan.dtype === 'float16' ? plan.dtype : null;
}

/** A 16-bit tensor's values as float32 (null stays null). */
function widened(a: TensorArray | null, dtype: HalfDtype): Float32Array | null {
  return a === null ? null : widenHalf(a as Uint16Array, dtype, new Float32Array(a.length));
}

/** The float32 plan of a 16-bit one: its tensors widened, `out` the float32 result. */
function floatPlan<P extends TensorsOf & { x: TensorArray }>(plan: P, dtype: HalfDtype, out: Float32Array): FloatPlan<P> {
  const widenedPlan: Record<string, unknown> = { ...(plan as object), dtype: 'float32', out };
  for (const key of ['x', 'dy', 'residual', 'y'] as const) {
    const a = (plan as Record<string, unknown>)[key];
    // `residual` is a flag, not a tensor, in backward plans.
    if (ArrayBuffer.isView(a)) widenedPlan[key] = widened(a as TensorArray, dtype);
  }
  if ('outResidual' in plan) widenedPlan.outResidual = null;
  return widenedPlan as FloatPlan<P>;
}

/** x's fingerprint into `print` from its own bits (the widened copy has other bits). */
function printOf(x: TensorArray, print: Float64Array | null): null {
  if (print) print[0] = fingerprint(x);
  return null;
}

/** Kernels for every dtype from kernels for float32 / float64 ones. */
export function widening(k: Kernels<FloatArray>): Kernels {
  const float = <P>(plan: P) => plan as FloatPlan<P>;
  return {
    train(plan, y, mean, invStd, print) {
      const dtype = halfOf(plan);
      if (dtype === null) return k.train(float(plan), y as FloatArray, mean, invStd, print);
      const y32 = new Float32Array(y.length);
      k.train(floatPlan(plan, dtype, y32), y32, mean, invStd, printOf(plan.x, print));
      narrowToHalf(y32, dtype, y as Uint16Array);
    },
    trainWithStats(plan, y, mean, invStd, print) {
      const dtype = halfOf(plan);
      if (dtype === null) return k.trainWithStats(float(plan), y as FloatArray, mean, invStd, print);
      const y32 = new Float32Array(y.length);
      k.trainWithStats(floatPlan(plan, dtype, y32), y32, mean, invStd, printOf(plan.x, print));
      narrowToHalf(y32, dtype, y as Uint16Array);
    },
    evaluate(plan, y) {
      const dtype = halfOf(plan);
      if (dtype === null) return k.evaluate(float(plan), y as FloatArray);
      const y32 = new Float32Array(y.length);
      k.evaluate(floatPlan(plan, dtype, y32), y32);
      narrowToHalf(y32, dtype, y as Uint16Array);
    },
    backward(plan, dx, dGamma, dBeta, dResidual, print) {
      const dtype = halfOf(plan);
      if (dtype === null) {
        return k.backward(float(plan), dx as FloatArray, dGamma, dBeta, dResidual as FloatArray | null, print);
      }
      const dx32 = new Float32Array(dx.length);
      const dResidual32 = dResidual && new Float32Array(dResidual.length);
      k.backward(floatPlan(plan, dtype, dx32), dx32, dGamma, dBeta, dResidual32, printOf(plan.x, print));
      narrowToHalf(dx32, dtype, dx as Uint16Array);
      if (dResidual && dResidual32) narrowToHalf(dResidual32, dtype, dResidual as Uint16Array);
    },
    backwardWithSums(plan, dx, dGamma, dBeta, dResidual, print) {
      const dtype = halfOf(plan);
      if (dtype === null) {
        return k.backwardWithSums(float(plan), dx as FloatArray, dGamma, dBeta, dResidual as FloatArray | null, print);
      }
      const dx32 = new Float32Array(dx.length);
      const dResidual32 = dResidual && new Float32Array(dResidual.length);
      k.backwardWithSums(floatPlan(plan, dtype, dx32), dx32, dGamma, dBeta, dResidual32, printOf(plan.x, print));
      narrowToHalf(dx32, dtype, dx as Uint16Array);
      if (dResidual && dResidual32) narrowToHalf(dResidual32, dtype, dResidual as Uint16Array);
    },
    stats(plan, mean, m2) {
      const dtype = halfOf(plan);
      if (dtype === null) return k.stats(float(plan), mean, m2);
      k.stats(floatPlan(plan, dtype, new Float32Array(0)), mean, m2);
    },
    backwardSums(plan, sumDy, sumDyXhat) {
      const dtype = halfOf(plan);
      if (dtype === null) return k.backwardSums(float(plan), sumDy, sumDyXhat);
      k.backwardSums(floatPlan(plan, dtype, new Float32Array(0)), sumDy, sumDyXhat);
    },
    fingerprint: (x) => fingerprint(x),
  };
}
