// What every library measured by `npm run bench:peers` provides: a call to time on one
// workload, and its outputs, to check against batchnorm's before any timing.
import type { Call } from '../measure';
import type { Op, Problem, Shape } from '../workloads';

/** The per-element outputs compared with batchnorm's: y, or dx, dGamma and dBeta. */
export type Outputs = Record<string, Float32Array>;

export interface Prepared {
  /** The op or graph that runs, in a few words. */
  how: string;
  call: Call;
  isAsync: boolean;
  /** One call into fresh arrays, read back as Float32Arrays. */
  outputs(): Promise<Outputs>;
  dispose(): void;
}

export interface Peer {
  name: string;
  /** Threads its kernels use, as far as the library reports it. */
  threads: number;
  /** Version and the build details that matter (SIMD, threads). */
  describe: string;
  /** A run of `op` on `problem`, or why this library has none (null: no row to report). */
  prepare(problem: Problem, op: Op): Promise<Prepared | { unsupported: string } | null>;
}

export const EPS = 1e-5;

/** The channel axis in [0, rank). */
export function channelAxis(shape: Shape): number {
  return shape.axis < 0 ? shape.axis + shape.dims.length : shape.axis;
}

export function f32(a: Float32Array | Float64Array): Float32Array {
  if (!(a instanceof Float32Array)) throw new TypeError('the peers are measured on f32 only');
  return a;
}
