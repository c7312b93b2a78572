import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Every native call runs native code in the tests, however small the tensor: the
    // default routes tiny tensors to the TypeScript kernels (test/routing.test.ts covers it).
    // And the rayon pool takes tensors from 2^15 elements (default 2^18), so the suites reach
    // the parallel paths without tensors large enough to slow them down. Likewise outputs
    // from 64 KiB are written with non-temporal stores (default 20 MiB), so both store paths
    // are checked against the fallback and the fixtures.
    env: {
      BATCHNORM_NATIVE_MIN_ELEMENTS: '0',
      BATCHNORM_PARALLEL_MIN_ELEMENTS: '32768',
      BATCHNORM_STREAM_MIN_BYTES: '65536',
    },
  },
});
