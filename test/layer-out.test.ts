// The layer writing into arrays the caller passes (forward { out }, backward { out }), on
// every backend: the same numbers as without, the same running statistics and gradients, dx
// in place over dy, and the arrays it refuses before anything changes.
import { describe, expect, it } from 'vitest';
import { type Backend, BatchNorm, LazyBatchNorm, SyncBatchNorm, type TensorArray } from '../index';
import { backends } from './backends';
import { maxAbsDiff } from './helpers/compare';
import { generator } from './helpers/random.cjs';

interface Setup {
  shape: number[];
  axis: number;
  x: Float32Array;
  dy: Float32Array;
  z: Float32Array;
}

function setup(shape: number[], axis: number, seed: number): Setup {
  const n = shape.reduce((a, b) => a * b, 1);
  const rand = generator(seed);
  const fill = () => Float32Array.from({ length: n }, () => rand() * 4 - 1);
  return { shape, axis, x: fill(), dy: fill(), z: fill() };
}

/** Two identical layers, one step each: one into fresh arrays, one into the given ones. */
function twoLayers(backend: Backend, s: Setup, activation: 'none' | 'relu') {
  const c = s.shape.at(s.axis) as number;
  const make = () => {
    const l = new BatchNorm(c, { axis: s.axis, backend, activation });
    l.gamma?.forEach((_, i, g) => {
      g[i] = 0.5 + i / c;
    });
    return l;
  };
  return [make(), make()] as const;
}

function expectSame(got: TensorArray | null, want: TensorArray | null, label: string): void {
  expect(got, label).not.toBeNull();
  expect(Array.from(got as TensorArray), label).toEqual(Array.from(want as TensorArray));
}

const SHAPES: Array<[number[], number]> = [
  [[4, 3, 5, 5], 1],
  [[4, 5, 5, 3], -1],
  [[8, 32, 16, 16], 1],
];

describe.each(backends)('layer out arrays ($name)', (backend) => {
  describe.each(SHAPES)('%j axis %i', (shape, axis) => {
    for (const activation of ['none', 'relu'] as const) {
      it(`forward and backward into out (${activation}, with a residual) match fresh arrays`, () => {
        const s = setup(shape, axis, 7);
        const [fresh, given] = twoLayers(backend, s, activation);
        const n = s.x.length;
        const out = new Float32Array(n).fill(Number.NaN);
        const dxOut = new Float32Array(n).fill(Number.NaN);
        for (let step = 0; step < 2; step++) {
          const y = fresh.forward(s.x, s.shape, { residual: s.z });
          const yOut = given.forward(s.x, s.shape, { residual: s.z, out });
          expect(yOut).toBe(out);
          expectSame(yOut, y, 'y');
          const dx = fresh.backward(s.dy);
          const dxGot = given.backward(s.dy, { out: dxOut });
          expect(dxGot).toBe(dxOut);
          expectSame(dxGot, dx, 'dx');
          expectSame(given.residualGrad, fresh.residualGrad, 'residualGrad');
        }
        expectSame(given.gammaGrad, fresh.gammaGrad, 'gammaGrad');
        expectSame(given.betaGrad, fresh.betaGrad, 'betaGrad');
        expectSame(given.runningMean, fresh.runningMean, 'runningMean');
        expectSame(given.runningVar, fresh.runningVar, 'runningVar');
      });
    }

    it('backward writes dx over dy in place', () => {
      const s = setup(shape, axis, 11);
      const [fresh, given] = twoLayers(backend, s, 'relu');
      fresh.forward(s.x, s.shape);
      given.forward(s.x, s.shape);
      const dx = fresh.backward(s.dy);
      const dy = s.dy.slice();
      expect(given.backward(dy, { out: dy })).toBe(dy);
      expectSame(dy, dx, 'dx over dy');
    });

    it('the Async forms take out too', async () => {
      const s = setup(shape, axis, 13);
      const [fresh, given] = twoLayers(backend, s, 'none');
      const out = new Float32Array(s.x.length);
      const dxOut = new Float32Array(s.x.length);
      const y = await fresh.forwardAsync(s.x, s.shape);
      expect(await given.forwardAsync(s.x, s.shape, { out })).toBe(out);
      expectSame(out, y, 'y');
      const dx = await fresh.backwardAsync(s.dy);
      expect(await given.backwardAsync(s.dy, { out: dxOut })).toBe(dxOut);
      expectSame(dxOut, dx, 'dx');
    });
  });

  it('eval mode writes into out as well', () => {
    const s = setup([6, 4, 3, 3], 1, 17);
    const [fresh, given] = twoLayers(backend, s, 'none');
    fresh.forward(s.x, s.shape);
    given.forward(s.x, s.shape);
    fresh.eval();
    given.eval();
    const out = new Float32Array(s.x.length);
    const y = fresh.forward(s.x, s.shape);
    expect(given.forward(s.x, s.shape, { out })).toBe(out);
    expectSame(out, y, 'eval y');
    const dxOut = new Float32Array(s.x.length);
    expectSame(given.backward(s.dy, { out: dxOut }), fresh.backward(s.dy), 'frozen dx');
  });

  it('refuses out over x, of the wrong length or dtype, and unknown keys, changing nothing', () => {
    const s = setup([4, 3, 5, 5], 1, 19);
    const layer = new BatchNorm(3, { backend });
    const before = { mean: layer.runningMean?.slice(), count: layer.numBatchesTracked };
    const x = s.x.slice();
    expect(() => layer.forward(x, s.shape, { out: x })).toThrow(/out must not share memory with x/);
    expect(() => layer.forward(x, s.shape, { out: new Float32Array(x.length - 1) })).toThrow(RangeError);
    expect(() => layer.forward(x, s.shape, { out: new Float32Array(x.length - 1) })).toThrow(/out/);
    expect(() => layer.forward(x, s.shape, { out: new Float64Array(x.length) })).toThrow(TypeError);
    // @ts-expect-error: a typo of out
    expect(() => layer.forward(x, s.shape, { output: new Float32Array(x.length) })).toThrow(
      /unknown option "output" \(expected residual or out\)/,
    );
    expect(Array.from(x)).toEqual(Array.from(s.x));
    expect(Array.from(layer.runningMean ?? [])).toEqual(Array.from(before.mean ?? []));
    expect(layer.numBatchesTracked).toBe(before.count);

    layer.forward(x, s.shape);
    const grads = Array.from(layer.gammaGrad ?? []);
    expect(() => layer.backward(s.dy, { out: new Float32Array(3) })).toThrow(RangeError);
    expect(() => layer.backward(s.dy, { out: x })).toThrow(/share memory/);
    // @ts-expect-error: a typo of out
    expect(() => layer.backward(s.dy, { dx: new Float32Array(x.length) })).toThrow(
      /BatchNorm.backward: unknown option "dx" \(expected out\)/,
    );
    expect(Array.from(layer.gammaGrad ?? [])).toEqual(grads);
    expect(Array.from(x)).toEqual(Array.from(s.x));
  });

  it('a ReLU layer notices a forward out changed before backward', () => {
    const s = setup([4, 3, 5, 5], 1, 23);
    const layer = new BatchNorm(3, { backend, activation: 'relu' });
    const out = new Float32Array(s.x.length);
    layer.forward(s.x, s.shape, { out });
    out[0] += 1;
    expect(() => layer.backward(s.dy)).toThrow(/output of forward was modified/);
  });

  it('LazyBatchNorm passes out through', () => {
    const s = setup([4, 3, 5, 5], 1, 29);
    const lazy = new LazyBatchNorm({ backend });
    const plain = new BatchNorm(3, { backend });
    const out = new Float32Array(s.x.length);
    const dxOut = new Float32Array(s.x.length);
    expect(lazy.forward(s.x, s.shape, { out })).toBe(out);
    expectSame(out, plain.forward(s.x, s.shape), 'y');
    expect(lazy.backward(s.dy, { out: dxOut })).toBe(dxOut);
    expectSame(dxOut, plain.backward(s.dy), 'dx');
  });
});

describe.each(backends)('SyncBatchNorm out arrays and residual ($name)', (backend) => {
  it('forward { out, residual } and backward { out } match a plain BatchNorm on one worker', async () => {
    const s = setup([4, 3, 5, 5], 1, 31);
    const sync = new SyncBatchNorm(3, { backend, activation: 'relu', allReduce: async (buffer) => buffer });
    const plain = new BatchNorm(3, { backend, activation: 'relu' });
    const out = new Float32Array(s.x.length);
    const dxOut = new Float32Array(s.x.length);
    expect(await sync.forward(s.x, s.shape, { out, residual: s.z })).toBe(out);
    const y = plain.forward(s.x, s.shape, { residual: s.z });
    expect(maxAbsDiff(out, y)).toBeLessThan(1e-6);
    expect(await sync.backwardAsync(s.dy, { out: dxOut })).toBe(dxOut);
    expect(maxAbsDiff(dxOut, plain.backward(s.dy))).toBeLessThan(1e-6);
    // @ts-expect-error: a typo of out
    await expect(sync.backward(s.dy, { dx: dxOut })).rejects.toThrow(/unknown option "dx"/);
  });
});
