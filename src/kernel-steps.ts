// A computation made of several kernel calls, written once as a generator that yields each
// call, and run either synchronously or with the Async kernels (awaiting each). The backend
// wrappers (ghost batches, batch renormalization) use it so their sync and Async forms are
// one algorithm.
import type { Backend } from './types';

/** One kernel call: a Backend method (by its sync name) and its arguments. */
export type Call = [
  method: 'batchNormTrain' | 'batchNormStats' | 'batchNormTrainWithStats' | 'batchNormBackward' | 'fingerprint',
  args: unknown[],
];
export type Steps<R> = Generator<Call, R, unknown>;

export function runSync<R>(kernels: Backend, steps: Steps<R>): R {
  let step = steps.next();
  while (!step.done) {
    const [method, args] = step.value;
    step = steps.next((kernels[method] as (...a: unknown[]) => unknown)(...args));
  }
  return step.value;
}

export async function runAsync<R>(kernels: Backend, steps: Steps<R>): Promise<R> {
  let step = steps.next();
  while (!step.done) {
    const [method, args] = step.value;
    step = steps.next(await (kernels[`${method}Async`] as (...a: unknown[]) => Promise<unknown>)(...args));
  }
  return step.value;
}
