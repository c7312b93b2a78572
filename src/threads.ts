// The native thread pool's size. The js backend is single-threaded, so these only
// affect native; with no binary, getNumThreads() reports 1.
import { MAX_THREADS } from './env';
import { binding } from './select';
import { describe } from './validate';

/** Sizes the native thread pool (1 to MAX_THREADS; BATCHNORM_NUM_THREADS sets it at start).
 *  Calls already running finish on the old pool. No effect without the native backend. */
export function setNumThreads(threads: number): void {
  if (typeof threads !== 'number' || !Number.isInteger(threads)) {
    throw new TypeError(`threads must be an integer, got ${describe(threads)}`);
  }
  if (threads < 1 || threads > MAX_THREADS)
    throw new RangeError(`threads must be in [1, ${MAX_THREADS}], got ${threads}`);
  binding?.setNumThreads(threads);
}

/** The threads the native pool uses (1 without the native backend). */
export function getNumThreads(): number {
  return binding ? binding.getNumThreads() : 1;
}
