// The pure-TypeScript backend: always available, same answers as native.
import { createBackend } from '../backend';
import { backward } from './backward';
import { evaluate, train } from './forward';

/** Runs on the JS thread: the Async forms give the same results but do not free the event loop. */
export const js = createBackend({
  name: 'js',
  train,
  evaluate,
  backward,
  trainAsync: async (plan, y, mean, invStd) => train(plan, y, mean, invStd),
  evaluateAsync: async (plan, y) => evaluate(plan, y),
  backwardAsync: async (plan, dx, dGamma, dBeta) => backward(plan, dx, dGamma, dBeta),
});
