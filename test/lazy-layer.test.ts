// LazyBatchNorm (issue 17, item 6): the channel count comes from the first input (or from a
// state dict's arrays), as PyTorch's LazyBatchNorm*d; from then on it is that BatchNorm.
import { describe, expect, it } from 'vitest';
import { BatchNorm, LazyBatchNorm } from '../index';
import { backends } from './backends';

const shape = [2, 3, 4];
const x = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 2 + 1);
const dy = Float32Array.from({ length: 24 }, (_, i) => Math.cos(i));

describe.each(backends)('LazyBatchNorm ($name)', (b) => {
  it('takes numFeatures from the first input and then matches a BatchNorm step for step', async () => {
    const lazy = new LazyBatchNorm({ backend: b, momentum: 0.3, activation: 'relu' });
    expect(lazy.numFeatures).toBeNull();
    expect(lazy.gamma).toBeNull();
    const eager = new BatchNorm(3, { backend: b, momentum: 0.3, activation: 'relu' });
    expect(Array.from(lazy.forward(x, shape))).toEqual(Array.from(eager.forward(x, shape)));
    expect(lazy.numFeatures).toBe(3);
    expect(lazy.layer).toBeInstanceOf(BatchNorm);
    expect(Array.from(lazy.backward(dy))).toEqual(Array.from(eager.backward(dy)));
    expect(Array.from(lazy.gammaGrad as Float32Array)).toEqual(Array.from(eager.gammaGrad as Float32Array));
    expect(Array.from(await lazy.forwardAsync(x, shape))).toEqual(Array.from(await eager.forwardAsync(x, shape)));
    expect(lazy.stateDict()).toEqual(eager.stateDict());
    // A later input with another channel count is the layer's usual error.
    expect(() => lazy.forward(new Float32Array(8), [2, 4])).toThrow(/has 4 channels .* numFeatures 3/);
  });

  it('the mode set before the first input holds: eval uses the running statistics', () => {
    const lazy = new LazyBatchNorm({ backend: b }).eval();
    expect(lazy.training).toBe(false);
    const y = lazy.forward(x, shape);
    const eager = new BatchNorm(3, { backend: b }).eval();
    expect(Array.from(y)).toEqual(Array.from(eager.forward(x, shape)));
    expect(lazy.numBatchesTracked).toBe(0);
  });

  it('options are checked at construction, an input at the first forward, both with the usual messages', () => {
    expect(() => new LazyBatchNorm({ momentun: 0.1 } as never)).toThrow(/^BatchNorm: unknown option "momentun"/);
    const lazy = new LazyBatchNorm({ backend: b });
    expect(() => lazy.forward(x, [5, 5])).toThrow(new RangeError('shape [5, 5] has 25 elements but x has length 24'));
    expect(lazy.numFeatures).toBeNull();
    expect(() => lazy.backward(dy)).toThrow(/^LazyBatchNorm.backward: there is no forward pass/);
  });

  it('loadStateDict before the first input fixes numFeatures from the arrays; a bad state leaves it unfixed', () => {
    const lazy = new LazyBatchNorm({ backend: b, dtype: 'float64' });
    expect(() =>
      lazy.loadStateDict({ weight: [1, 2], bias: [0, 0, 0], running_mean: [0, 0], running_var: [1, 1] }),
    ).toThrow(/bias must have length 2/);
    expect(lazy.numFeatures).toBeNull();
    lazy.loadStateDict({
      weight: [1, 2],
      bias: [0, 0],
      running_mean: [0, 0],
      running_var: [1, 1],
      num_batches_tracked: 5,
    });
    expect(lazy.numFeatures).toBe(2);
    expect(Array.from(lazy.gamma as Float64Array)).toEqual([1, 2]);
    expect(lazy.numBatchesTracked).toBe(5);
  });
});
