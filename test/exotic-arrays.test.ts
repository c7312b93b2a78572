// Arrays are judged by the engine, not by instanceof or prototype getters (issue 13, items
// 2, 4, 5, 12): another realm's Float32Array works, an impostor is refused, a subclass that
// lies about its length or buffer is read as what it really is, clones of one
// SharedArrayBuffer count as one memory, a failed loadStateDict changes nothing, and an
// Async call refuses a buffer that could shrink under it.
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { BatchNorm, foldBatchNorm } from '../index';
import { backends } from './backends';

const shape = [4, 3, 5];
const n = 60;
const data = (seed = 1) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * seed + 0.3) * 2 + 0.5);

/** Resizable buffers (ES2024; this project's lib is ES2022). */
const resizable = (bytes: number, maxByteLength: number) =>
  new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(bytes, {
    maxByteLength,
  });
const growableShared = (bytes: number, maxByteLength: number) =>
  new (SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer)(bytes, {
    maxByteLength,
  });

/** A subclass whose own view of itself is wrong in every way the checks could read. */
class LyingArray extends Float32Array {
  override get length(): number {
    return 3;
  }
  override get buffer(): ArrayBuffer {
    return new ArrayBuffer(8);
  }
  override get byteOffset(): number {
    return 4;
  }
  override subarray(): Float32Array<ArrayBuffer> {
    return new Float32Array(1);
  }
}

describe.each(backends)('arrays judged by the engine ($name)', (b) => {
  it('a Float32Array from another realm is a Float32Array, with the same results', () => {
    const foreign = runInNewContext('new Float32Array(60)') as Float32Array;
    foreign.set(data());
    expect(b.batchNormTrain(foreign, shape).y).toEqual(b.batchNormTrain(data(), shape).y);
    const out = runInNewContext('new Float32Array(60)') as Float32Array;
    b.batchNormTrain(data(), shape, { out });
    expect(Array.from(out)).toEqual(Array.from(b.batchNormTrain(data(), shape).y));
  });

  it('an object with a typed array prototype is refused as not a typed array', () => {
    const impostor = Object.setPrototypeOf({ length: n }, Float32Array.prototype);
    expect(() => b.batchNormTrain(impostor, shape)).toThrow(
      new TypeError(
        'batchNormTrain: x must be a Float32Array, Float64Array or Uint16Array (bfloat16 or float16 bits, with dtype), got an object posing as Float32Array (not a typed array)',
      ),
    );
    const gamma = Object.setPrototypeOf({ length: 3 }, Float32Array.prototype);
    expect(() => b.batchNormTrain(data(), shape, { gamma })).toThrow(
      /^batchNormTrain: gamma must be a Float32Array like x, got an object posing/,
    );
  });

  it('a Float64Array given a Float32Array prototype is still a Float64Array', () => {
    const disguised = Object.setPrototypeOf(new Float64Array(60), Float32Array.prototype);
    expect(() => b.batchNormTrain(data(), shape, { out: disguised })).toThrow(TypeError);
  });

  it('a subclass whose getters lie is read as the memory it really is', () => {
    const x = new LyingArray(n);
    x.set(data());
    expect(Array.from(b.batchNormTrain(x, shape).y)).toEqual(Array.from(b.batchNormTrain(data(), shape).y));
    const out = new LyingArray(n);
    b.batchNormTrain(data(), shape, { out });
    expect(
      Array.from(new Float32Array(out.buffer === undefined ? [] : Float32Array.prototype.slice.call(out))),
    ).toEqual(Array.from(b.batchNormTrain(data(), shape).y));
    // Its real length is checked, not the one it claims.
    const short = new LyingArray(59);
    expect(() => b.batchNormTrain(short, shape)).toThrow(
      new RangeError('batchNormTrain: shape [4, 3, 5] has 60 elements but x has length 59'),
    );
  });

  it('clones of one SharedArrayBuffer are one memory: overlaps are refused, nothing is written', () => {
    const sab = new SharedArrayBuffer(2 * n * 4);
    const x = new Float32Array(sab, 0, n);
    x.set(data());
    const before = Float32Array.from(new Float32Array(sab));
    const clone = structuredClone(sab);
    expect(clone).not.toBe(sab);
    const outOverX = new Float32Array(clone, 8, n);
    expect(() => b.batchNormTrain(x, shape, { out: outOverX })).toThrow(
      new RangeError('batchNormTrain: out must not share memory with x'),
    );
    const stats = new Float32Array(clone, n * 4, 3);
    const runningMean = new Float32Array(sab, n * 4, 3);
    expect(() => b.batchNormTrain(x, shape, { runningMean, runningVar: stats })).toThrow(
      new RangeError('batchNormTrain: runningVar must not share memory with runningMean'),
    );
    expect(Array.from(new Float32Array(sab))).toEqual(Array.from(before));
    // The documented in-place case still works across clones: out exactly over x.
    const inPlace = new Float32Array(clone, 0, n);
    const expected = b.batchNormTrain(data(), shape).y;
    b.batchNormTrain(x, shape, { out: inPlace });
    expect(Array.from(x)).toEqual(Array.from(expected));
  });

  it('two distinct SharedArrayBuffers of one size are not taken for clones', () => {
    const x = new Float32Array(new SharedArrayBuffer(n * 4));
    x.set(data());
    const out = new Float32Array(new SharedArrayBuffer(n * 4));
    b.batchNormTrain(x, shape, { out });
    expect(Array.from(out)).toEqual(Array.from(b.batchNormTrain(data(), shape).y));
    expect(Array.from(x)).toEqual(Array.from(data()));
  });

  it('backward sees clones too (dx over a clone of dy, partly)', () => {
    const sab = new SharedArrayBuffer(n * 4 + 16);
    const dy = new Float32Array(sab, 0, n);
    dy.set(data(2));
    const { mean, invStd } = b.batchNormTrain(data(), shape);
    const out = new Float32Array(structuredClone(sab), 16, n);
    expect(() => b.batchNormBackward(dy, data(), shape, { mean, invStd }, { out })).toThrow(
      new RangeError('batchNormBackward: out must not share memory with dy'),
    );
  });

  it('an Async call refuses a resizable ArrayBuffer, naming the array; the sync call takes it', async () => {
    const growable = resizable(n * 4, 2 * n * 4);
    const x = new Float32Array(growable, 0, n);
    x.set(data());
    await expect(b.batchNormTrainAsync(x, shape)).rejects.toThrow(
      /^batchNormTrainAsync: x is over a resizable ArrayBuffer, which an Async call cannot use/,
    );
    const out = new Float32Array(resizable(n * 4, n * 8));
    await expect(b.batchNormTrainAsync(data(), shape, { out })).rejects.toThrow(
      /^batchNormTrainAsync: out is over a resizable/,
    );
    const { mean, invStd } = b.batchNormTrain(data(), shape);
    const savedMean = new Float32Array(resizable(12, 24));
    savedMean.set(mean);
    await expect(b.batchNormBackwardAsync(data(2), data(), shape, { mean: savedMean, invStd })).rejects.toThrow(
      /^batchNormBackwardAsync: saved\.mean is over a resizable/,
    );
    expect(Array.from(out)).toEqual(new Array(n).fill(0));
    expect(Array.from(b.batchNormTrain(x, shape).y)).toEqual(Array.from(b.batchNormTrain(data(), shape).y));
    // A growable SharedArrayBuffer can only grow, which moves nothing: allowed.
    const sx = new Float32Array(growableShared(n * 4, n * 8), 0, n);
    sx.set(data());
    expect(Array.from((await b.batchNormTrainAsync(sx, shape)).y)).toEqual(
      Array.from(b.batchNormTrain(data(), shape).y),
    );
  });
});

describe.each(backends)('the layer and the fold read their inputs once ($name)', (b) => {
  const layer = () => new BatchNorm(3, { backend: b });

  it('loadStateDict refuses holes and names the index', () => {
    const bn = layer();
    const state = { gamma: [1, 2, 3], beta: [0, 0, 0], runningMean: [0, 0, 0], runningVar: [1, 1, 1] };
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point
    expect(() => bn.loadStateDict({ ...state, weight: undefined, gamma: [1, , 3] as number[] })).toThrow(
      new TypeError('loadStateDict: gamma[1] must be a number, got a hole'),
    );
    expect(Array.from(bn.gamma as Float32Array)).toEqual([1, 1, 1]);
  });

  it('each element is read once: a getter that would throw on a second read cannot half-load', () => {
    const bn = layer();
    let reads = 0;
    const runningVar = [2, 2, 2];
    Object.defineProperty(runningVar, 2, {
      get() {
        reads++;
        if (reads > 1) throw new Error('second read');
        return 3;
      },
    });
    bn.loadStateDict({ gamma: [4, 4, 4], beta: [5, 5, 5], runningMean: [7, 7, 7], runningVar });
    expect(reads).toBe(1);
    expect(Array.from(bn.runningVar as Float32Array)).toEqual([2, 2, 3]);
  });

  it('a failure on a later entry leaves every earlier one as it was', () => {
    const bn = layer();
    const runningVar = [1, 1, 1];
    Object.defineProperty(runningVar, 1, {
      get() {
        throw new Error('late failure');
      },
    });
    expect(() => bn.loadStateDict({ gamma: [3, 3, 3], beta: [5, 5, 5], runningMean: [7, 7, 7], runningVar })).toThrow(
      'late failure',
    );
    expect(Array.from(bn.gamma as Float32Array)).toEqual([1, 1, 1]);
    expect(Array.from(bn.beta as Float32Array)).toEqual([0, 0, 0]);
    expect(Array.from(bn.runningMean as Float32Array)).toEqual([0, 0, 0]);
  });

  it("loadStateDict takes another realm's arrays and refuses impostors", () => {
    const bn = layer();
    const foreign = runInNewContext('new Float32Array([4, 5, 6])') as Float32Array;
    bn.loadStateDict({ gamma: foreign, beta: [0, 0, 0], runningMean: [0, 0, 0], runningVar: [1, 1, 1] });
    expect(Array.from(bn.gamma as Float32Array)).toEqual([4, 5, 6]);
    const impostor = Object.setPrototypeOf({ length: 3 }, Float32Array.prototype);
    expect(() =>
      bn.loadStateDict({ gamma: impostor, beta: [0, 0, 0], runningMean: [0, 0, 0], runningVar: [1, 1, 1] }),
    ).toThrow(TypeError);
  });

  it('foldBatchNorm refuses a hole in shape instead of folding half', () => {
    const bn = {
      runningMean: new Float32Array(2),
      runningVar: new Float32Array([4, 4]),
      gamma: new Float32Array([1, 1]),
    };
    const weight = new Float32Array(8).fill(1);
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point
    const target = { weight, bias: new Float32Array(2), outAxis: 1, shape: [2, , 2] as number[] };
    expect(() => foldBatchNorm(target, bn)).toThrow(
      /^foldBatchNorm: layer.shape must be an array of non-negative integers/,
    );
  });
});
