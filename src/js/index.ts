// The pure-TypeScript backend: always available, same answers as native.
import { createBackend, type Kernels, promisedKernels } from '../backend';
import { backward, backwardWithSums, gradSums } from './backward';
import { evaluate, train, trainWithStats } from './forward';
import { channelMoments } from './stats';

const kernels: Kernels = {
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
};

/** Runs on the JS thread: the Async forms give the same results but do not free the event loop. */
export const js = createBackend('js', kernels, promisedKernels(kernels));
