import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Every native call runs native code in the tests, however small the tensor: the
    // default routes tiny tensors to the TypeScript kernels (test/routing.test.ts covers it).
    // And the rayon pool takes tensors from 2^15 elements (default 2^18), so the suites reach
    // the parallel paths without tensors large enough to slow them down.
    env: { BATCHNORM_NATIVE_MIN_ELEMENTS: '0', BATCHNORM_PARALLEL_MIN_ELEMENTS: '32768' },
  },
});
