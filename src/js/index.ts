// The pure-TypeScript backend: always available, same answers as native.
import { createBackend, type Kernels, promisedKernels } from '../backend';
import type { FloatArray } from '../types';
import { backward, backwardWithSums, gradSums } from './backward';
import { fingerprint } from './fingerprint';
import { evaluate, train, trainWithStats } from './forward';
import { inGroups } from './ghost';
import { channelMoments } from './stats';
import { widening } from './widened';

/** The TypeScript kernels of float32 / float64 tensors (ghost batches cut into groups). */
const floatKernels: Kernels<FloatArray> = inGroups({
  train,
  trainWithStats,
  evaluate,
  backward,
  backwardWithSums,
  stats(plan, mean, m2) {
    const moments = channelMoments(plan.x, plan.layout);
    mean.set(moments.mean);
    m2.set(moments.m2);
  },
  backwardSums: gradSums,
  fingerprint,
});

/** The TypeScript kernels of every dtype (16-bit tensors widened, see widened.ts); the native
 *  backend also runs them on tiny tensors. */
export const jsKernels: Kernels = widening(floatKernels);

/** Runs on the JS thread: the Async forms give the same results but do not free the event loop. */
export const js = createBackend('js', jsKernels, promisedKernels(jsKernels));
