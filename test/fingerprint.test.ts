// The checksum the layer compares before backward: the same number on both backends, and
// changed by any one-element change, by a swap, and on views at any offset.
import { describe, expect, it } from 'vitest';
import { js, native } from '../index';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

function randomValues(n: number, seed: number): number[] {
  const next = generator(seed);
  return Array.from({ length: n }, () => (next() - 0.5) * 1e3);
}

describe.each(backends)('fingerprint ($name)', (backend) => {
  it.each([Float32Array, Float64Array])(
    '%o: one changed element or a swap changes it; a view sums like a copy',
    (T) => {
      const x = T.from(randomValues(70_001, 1));
      const base = backend.fingerprint(x);
      expect(Number.isInteger(base) && base >= 0 && base < 2 ** 32).toBe(true);
      for (const i of [0, 1, 65_535, 65_536, 70_000]) {
        const y = x.slice();
        y[i] = y[i] === 0 ? 1 : -y[i];
        expect(backend.fingerprint(y), `element ${i}`).not.toBe(base);
      }
      const swapped = x.slice();
      [swapped[10], swapped[11]] = [swapped[11], swapped[10]];
      expect(backend.fingerprint(swapped)).not.toBe(base);
      expect(backend.fingerprint(x.subarray(3))).toBe(backend.fingerprint(x.slice(3)));
    },
  );

  it('refuses what is not a Float32Array or Float64Array', () => {
    expect(() => backend.fingerprint([1, 2] as never)).toThrow(TypeError);
  });
});

describe.skipIf(!native)('fingerprint: native and js give the same number', () => {
  it.each([Float32Array, Float64Array])('%o, sync and Async, lengths across the chunk size', async (T) => {
    for (const n of [0, 1, 7, 65_536, 65_537, 200_003]) {
      const x = T.from(randomValues(n, n + 2));
      const expected = js.fingerprint(x);
      expect(native!.fingerprint(x), `length ${n}`).toBe(expected);
      expect(await native!.fingerprintAsync(x), `length ${n} Async`).toBe(expected);
    }
  });
});

describe.each(backends)('fingerprint: true on the kernels ($name)', (backend) => {
  it.each([
    { shape: [8, 16, 24, 24], axis: 1 },
    { shape: [8, 24, 24, 16], axis: -1 },
  ])(
    'train, backward and their synchronized pieces report x as they read it ($shape axis $axis)',
    async ({ shape, axis }) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = Float32Array.from(randomValues(n, 5));
      const dy = Float32Array.from(randomValues(n, 6));
      const want = backend.fingerprint(x);
      const r = backend.batchNormTrain(x, shape, { axis, fingerprint: true });
      expect(r.fingerprint).toBe(want);
      expect((await backend.batchNormTrainAsync(x, shape, { axis, fingerprint: true })).fingerprint).toBe(want);
      expect(backend.batchNormTrain(x, shape, { axis }).fingerprint).toBeUndefined();
      expect(backend.batchNormBackward(dy, x, shape, r, { axis, fingerprint: true }).fingerprint).toBe(want);
      const viaAsync = await backend.batchNormBackwardAsync(dy, x, shape, r, { axis, fingerprint: true });
      expect(viaAsync.fingerprint).toBe(want);
      const stats = backend.batchNormStats(x, shape, { axis });
      expect(backend.batchNormTrainWithStats(x, shape, stats, { axis, fingerprint: true }).fingerprint).toBe(want);
      const sums = backend.batchNormBackwardSums(dy, x, shape, r, { axis });
      const withSums = backend.batchNormBackwardWithSums(dy, x, shape, r, sums, { axis, fingerprint: true });
      expect(withSums.fingerprint).toBe(want);
      // In place, the fingerprint is of x before y overwrote it.
      const inPlace = x.slice();
      expect(backend.batchNormTrain(inPlace, shape, { axis, out: inPlace, fingerprint: true }).fingerprint).toBe(want);
      expect(() => backend.batchNormTrain(x, shape, { fingerprint: 1 } as never)).toThrow(
        new TypeError('batchNormTrain: fingerprint must be a boolean, got 1'),
      );
    },
  );
});
