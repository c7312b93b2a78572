// Which backend the top-level functions use, decided once at import from the environment:
// BATCHNORM_BACKEND=js forces the fallback, =native fails loudly without the binary.
import { checkIntegerVariables, envChoice } from './env';
import { js, jsKernels } from './js';
import { loadBinding, nativeBackend, nativeMinElements } from './native';
import { outputPoolLimitFromEnv } from './output-pool';
// Without a binary the js backend serves every call; nativeLoadError says why.
import type { Backend } from './types';

checkIntegerVariables();
const requested = envChoice('BATCHNORM_BACKEND') ?? 'auto';

const loaded =
  requested === 'js'
    ? { binding: null, error: new Error('batchnorm: native backend disabled by BATCHNORM_BACKEND=js'), source: null }
    : loadBinding();

if (requested === 'native' && !loaded.binding) {
  throw new Error(`BATCHNORM_BACKEND=native but the native binary could not be loaded.\n${loaded.error?.message}`);
}

/** The raw addon, for setNumThreads; null when not loaded. */
export const binding = loaded.binding;
const poolLimit = outputPoolLimitFromEnv();
if (binding && poolLimit !== null) binding.setOutputPoolLimit(poolLimit);
/** Tensors with fewer elements run the TypeScript kernels on the native backend too. */
export const nativeMinElementsInUse = nativeMinElements();
/** The native backend, or null when the binary cannot load (nativeLoadError says why). */
export const native: Backend | null = loaded.binding
  ? nativeBackend(loaded.binding, jsKernels, nativeMinElementsInUse)
  : null;
/** Why `native` is null. */
export const nativeLoadError: Error | null = loaded.binding ? null : loaded.error;
/** Where the binary was loaded from (a path or package name), or null. */
export const nativeSource: string | null = loaded.source;
/** native when it loads, else js. */
export const backend: Backend = native ?? js;
