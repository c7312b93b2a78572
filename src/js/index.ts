// The pure-TypeScript backend: always available, same answers as native.
import { createBackend, type Kernels, promisedKernels } from '../backend';
import { backward, backwardWithSums, gradSums } from './backward';
import { fingerprint } from './fingerprint';
import { evaluate, train, trainWithStats } from './forward';
import { channelMoments } from './stats';

/** The TypeScript kernels; the native backend also runs them on tiny tensors. */
export const jsKernels: Kernels = {
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
};

/** Runs on the JS thread: the Async forms give the same results but do not free the event loop. */
export const js = createBackend('js', jsKernels, promisedKernels(jsKernels));
