// The native thread pool's size. The js backend is single-threaded, so these only
// affect native; with no binary, getNumThreads() reports 1.
import { binding } from './select';
import { describe } from './validate';

export function setNumThreads(threads: number): void {
  if (typeof threads !== 'number' || !Number.isInteger(threads)) {
    throw new TypeError(`threads must be an integer, got ${describe(threads)}`);
  }
  if (threads < 1 || threads > 1024) throw new RangeError(`threads must be in [1, 1024], got ${threads}`);
  binding?.setNumThreads(threads);
}

export function getNumThreads(): number {
  return binding ? binding.getNumThreads() : 1;
}
