import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Every native call runs native code in the tests, however small the tensor: the
    // default routes tiny tensors to the TypeScript kernels (test/routing.test.ts covers it).
    env: { BATCHNORM_NATIVE_MIN_ELEMENTS: '0' },
  },
});
