// The functions are generic in the dtype: a Float32Array x gives Float32Array results, and an
// array of the other dtype beside it is a compile error. `npm run typecheck` checks the
// expected-error lines below (each must be an error) and the expectTypeOf assertions; vitest
// runs the same calls and sees the runtime checks refuse what the compiler refuses.
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  type BackwardResult,
  batchNormBackward,
  batchNormBackwardAsync,
  batchNormEval,
  batchNormTrain,
  batchNormTrainAsync,
  type FloatArray,
  js,
  type TrainResult,
} from '../index';

const shape = [4, 3];

describe('dtype-generic signatures', () => {
  it('Float32Array in, Float32Array out (and Float64Array alike)', async () => {
    const x = new Float32Array(12).map((_, i) => i);
    const r = batchNormTrain(x, shape);
    expectTypeOf(r).toMatchTypeOf<TrainResult<Float32Array>>();
    expectTypeOf(r.y).toEqualTypeOf<Float32Array>();
    expectTypeOf(r.mean).toEqualTypeOf<Float32Array>();
    const y = batchNormEval(x, shape, { runningMean: r.mean, runningVar: new Float32Array(3).fill(1) });
    expectTypeOf(y).toEqualTypeOf<Float32Array>();
    const g = batchNormBackward(new Float32Array(12), x, shape, r);
    expectTypeOf(g).toMatchTypeOf<BackwardResult<Float32Array>>();
    expectTypeOf(g.dx).toEqualTypeOf<Float32Array>();
    expectTypeOf((await batchNormTrainAsync(x, shape)).y).toEqualTypeOf<Float32Array>();
    expectTypeOf(
      (await batchNormBackwardAsync(new Float32Array(12), x, shape, r)).dGamma,
    ).toEqualTypeOf<Float32Array>();

    const x64 = Float64Array.from(x);
    expectTypeOf(batchNormTrain(x64, shape).invStd).toEqualTypeOf<Float64Array>();
    expectTypeOf(js.batchNormTrain(x64, shape).y).toEqualTypeOf<Float64Array>();
    expect(batchNormTrain(x64, shape).y).toBeInstanceOf(Float64Array);
  });

  it('arrays over a SharedArrayBuffer are the same dtype', () => {
    const x = new Float32Array(new SharedArrayBuffer(48)).map((_, i) => i);
    const gamma = new Float32Array(3).fill(2);
    expectTypeOf(batchNormTrain(x, shape, { gamma }).y).toEqualTypeOf<Float32Array>();
  });

  it('an array of the other dtype is a compile error, and a runtime TypeError', () => {
    const x = new Float32Array(12).map((_, i) => i);
    // @ts-expect-error: Float64Array gamma with a Float32Array x
    expect(() => batchNormTrain(x, shape, { gamma: new Float64Array(3) })).toThrow(TypeError);
    // @ts-expect-error: Float64Array out with a Float32Array x
    expect(() => batchNormTrain(x, shape, { out: new Float64Array(12) })).toThrow(TypeError);
    const r = batchNormTrain(x, shape);
    const runningVar = new Float32Array(3).fill(1);
    // @ts-expect-error: a Float64Array runningMean with a Float32Array x
    expect(() => batchNormEval(x, shape, { runningMean: new Float64Array(3), runningVar })).toThrow(TypeError);
    // @ts-expect-error: Float64Array x with a Float32Array dy
    expect(() => batchNormBackward(new Float32Array(12), new Float64Array(12), shape, r)).toThrow(TypeError);
  });

  it('an array of either dtype (FloatArray) gives FloatArray results', () => {
    const x: FloatArray = Math.random() < 2 ? new Float32Array(12).map((_, i) => i) : new Float64Array(12);
    const r = batchNormTrain(x, shape, { gamma: x.slice(0, 3) });
    expectTypeOf(r.y).toEqualTypeOf<FloatArray>();
  });
});
