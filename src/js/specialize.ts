// One compiled copy of each hot loop per dtype. V8 optimizes a function for the array types
// it has met: a loop that has seen both Float32Array and Float64Array checks the type at
// every element access and runs ~1.5x slower, and every closure of one function literal
// shares that feedback. A copy compiled from the function's own source has its own.
import type { FloatArray } from '../types';

/** Picks the copy of a kernel made for x's dtype. */
export type ByDtype<F> = (x: FloatArray) => F;

/** `kernel` must be self-contained: it may use its parameters and globals, nothing else
 *  from its module (the copy is compiled outside it). */
export function byDtype<F extends (...args: never[]) => void>(kernel: F): ByDtype<F> {
  const f32 = kernel;
  const f64 = copyOf(kernel);
  return (x) => (x instanceof Float32Array ? f32 : f64);
}

function copyOf<F>(kernel: F): F {
  try {
    return new Function(`return ${String(kernel)}`)() as F;
  } catch {
    // Code generation from strings is off (--disallow-code-generation-from-strings): share one.
    return kernel;
  }
}
