// foldBatchNorm: a real 2-D convolution (computed here) with the folded weight and bias
// equals the BatchNorm layer in eval mode applied to the convolution's output; the same for a
// linear layer ([out, in], PyTorch's layout) and for a weight whose output axis is not first.
import { describe, expect, it } from 'vitest';
import { type Backend, BatchNorm, type FloatArray, foldBatchNorm, LazyBatchNorm, SyncBatchNorm } from '../index';
import { backends } from './backends';
import { generator } from './helpers/random.cjs';

type DType = 'float32' | 'float64';

function randomArray(dtype: DType, length: number, rand: () => number, lo: number, hi: number): FloatArray {
  const a = dtype === 'float32' ? new Float32Array(length) : new Float64Array(length);
  for (let i = 0; i < length; i++) a[i] = lo + (hi - lo) * rand();
  return a;
}

/** NCHW convolution, stride 1, zero padding `pad`; weight [outC, inC, kH, kW]. */
function conv2d(
  x: FloatArray,
  [n, inC, h, w]: number[],
  weight: FloatArray,
  [outC, , kh, kw]: number[],
  bias: FloatArray | null,
  pad: number,
): { y: FloatArray; shape: number[] } {
  const oh = h + 2 * pad - kh + 1;
  const ow = w + 2 * pad - kw + 1;
  const y = x instanceof Float32Array ? new Float32Array(n * outC * oh * ow) : new Float64Array(n * outC * oh * ow);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < outC; o++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          let s = bias ? bias[o] : 0;
          for (let c = 0; c < inC; c++) {
            for (let di = 0; di < kh; di++) {
              for (let dj = 0; dj < kw; dj++) {
                const r = i + di - pad;
                const q = j + dj - pad;
                if (r < 0 || r >= h || q < 0 || q >= w) continue;
                s += x[((b * inC + c) * h + r) * w + q] * weight[((o * inC + c) * kh + di) * kw + dj];
              }
            }
          }
          y[((b * outC + o) * oh + i) * ow + j] = s;
        }
      }
    }
  }
  return { y, shape: [n, outC, oh, ow] };
}

/** x [N, in] times weight: [out, in] (PyTorch's Linear) or [in, out] (outAxis 1). */
function linear(
  x: FloatArray,
  n: number,
  weight: FloatArray,
  inF: number,
  outF: number,
  bias: FloatArray | null,
  outFirst: boolean,
) {
  const y = x instanceof Float32Array ? new Float32Array(n * outF) : new Float64Array(n * outF);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < outF; o++) {
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) s += x[b * inF + i] * weight[outFirst ? o * inF + i : i * outF + o];
      y[b * outF + o] = s;
    }
  }
  return y;
}

/** A BatchNorm in eval mode with trained-looking state (gamma of both signs). */
function trainedBatchNorm(b: Backend, dtype: DType, channels: number, rand: () => number, options = {}): BatchNorm {
  const bn = new BatchNorm(channels, { dtype, backend: b, eps: 1e-3, ...options });
  const v = (lo: number, hi: number) => Array.from(randomArray('float64', channels, rand, lo, hi));
  bn.loadStateDict({
    ...(bn.affine ? { weight: v(-2, 2), bias: v(-1, 1) } : {}),
    running_mean: v(-1, 1),
    running_var: v(0.2, 3),
    num_batches_tracked: 100,
  });
  return bn.eval();
}

const TOL: Record<DType, number> = { float64: 1e-12, float32: 2e-5 };

function expectClose(got: ArrayLike<number>, expected: ArrayLike<number>, dtype: DType, label: string) {
  expect(got.length, `${label}: length`).toBe(expected.length);
  const scale = Math.max(1, ...Array.from(expected, Math.abs));
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(got[i] - expected[i]) <= TOL[dtype] * scale)) {
      throw new Error(`${label}[${i}]: got ${got[i]}, expected ${expected[i]}`);
    }
  }
}

for (const b of backends) {
  describe(`foldBatchNorm with backend ${b.name}`, () => {
    for (const dtype of ['float64', 'float32'] as const) {
      for (const withBias of [true, false]) {
        it(`${dtype}: conv2d 3x3 pad 1 ${withBias ? 'with' : 'without'} bias: folded conv equals BN_eval(conv(x))`, () => {
          const rand = generator(withBias ? 1 : 2);
          const xShape = [2, 3, 5, 4];
          const wShape = [4, 3, 3, 3];
          const x = randomArray(dtype, 2 * 3 * 5 * 4, rand, -1, 1);
          const weight = randomArray(dtype, 4 * 3 * 3 * 3, rand, -0.5, 0.5);
          const bias = withBias ? randomArray(dtype, 4, rand, -0.5, 0.5) : null;
          const bn = trainedBatchNorm(b, dtype, 4, rand);
          const conv = conv2d(x, xShape, weight, wShape, bias, 1);
          const expected = bn.forward(conv.y, conv.shape);
          const weightBefore = weight.slice();
          const folded = foldBatchNorm({ weight, bias }, bn);
          expect(folded.weight).toBeInstanceOf(weight.constructor);
          expect(folded.bias).toBeInstanceOf(weight.constructor);
          expect(weight, 'the given weight is not modified').toEqual(weightBefore);
          expectClose(conv2d(x, xShape, folded.weight, wShape, folded.bias, 1).y, expected, dtype, 'y');
        });
      }

      it(`${dtype}: linear [out, in] folded equals BN_eval(linear(x)), affine and not`, () => {
        for (const affine of [true, false]) {
          const rand = generator(affine ? 3 : 4);
          const [n, inF, outF] = [8, 5, 6];
          const x = randomArray(dtype, n * inF, rand, -2, 2);
          const weight = randomArray(dtype, outF * inF, rand, -1, 1);
          const bias = randomArray(dtype, outF, rand, -1, 1);
          const bn = trainedBatchNorm(b, dtype, outF, rand, { affine });
          const expected = bn.forward(linear(x, n, weight, inF, outF, bias, true), [n, outF]);
          const folded = foldBatchNorm({ weight, bias }, bn);
          expectClose(linear(x, n, folded.weight, inF, outF, folded.bias, true), expected, dtype, `affine ${affine}`);
        }
      });
    }

    it('a weight stored [in, out] folds along outAxis 1', () => {
      const rand = generator(5);
      const [n, inF, outF] = [4, 3, 5];
      const x = randomArray('float64', n * inF, rand, -2, 2);
      const weight = randomArray('float64', inF * outF, rand, -1, 1);
      const bn = trainedBatchNorm(b, 'float64', outF, rand);
      const expected = bn.forward(linear(x, n, weight, inF, outF, null, false), [n, outF]);
      const folded = foldBatchNorm({ weight, outAxis: 1, shape: [inF, outF] }, bn);
      expectClose(linear(x, n, folded.weight, inF, outF, folded.bias, false), expected, 'float64', 'y');
    });

    it("a layer with activation 'relu' equals ReLU of the folded conv", () => {
      const rand = generator(6);
      const x = randomArray('float64', 2 * 2 * 4 * 4, rand, -1, 1);
      const weight = randomArray('float64', 3 * 2 * 3 * 3, rand, -0.5, 0.5);
      const bn = trainedBatchNorm(b, 'float64', 3, rand, { activation: 'relu' });
      const conv = conv2d(x, [2, 2, 4, 4], weight, [3, 2, 3, 3], null, 1);
      const expected = bn.forward(conv.y, conv.shape);
      const folded = foldBatchNorm({ weight }, bn);
      const y = conv2d(x, [2, 2, 4, 4], folded.weight, [3, 2, 3, 3], folded.bias, 1).y.map((v) => Math.max(0, v));
      expectClose(y, expected, 'float64', 'y');
    });
  });
}

describe('foldBatchNorm arguments', () => {
  const weight = new Float64Array(12);
  const state = {
    gamma: new Float64Array([1, 2, 3]),
    beta: new Float64Array(3),
    runningMean: new Float64Array(3),
    runningVar: new Float64Array([1, 1, 1]),
    eps: 1e-5,
  };

  it('accepts plain batch-norm parameters (gamma/beta null = 1/0, eps default 1e-5)', () => {
    const folded = foldBatchNorm(
      { weight: new Float64Array([1, 1, 2, 2]), bias: new Float64Array([1, 0]) },
      {
        runningMean: new Float64Array([1, -1]),
        runningVar: new Float64Array([3, 0]),
        gamma: null,
      },
    );
    const s = [1 / Math.sqrt(3 + 1e-5), 1 / Math.sqrt(1e-5)];
    expect(Array.from(folded.weight)).toEqual([s[0], s[0], 2 * s[1], 2 * s[1]]);
    expect(Array.from(folded.bias)).toEqual([0, s[1]]);
  });

  it('SyncBatchNorm and LazyBatchNorm fold like BatchNorm, and their training mode is refused too', () => {
    const allReduce = async (a: Float64Array) => a;
    const sync = new SyncBatchNorm(3, { allReduce });
    const lazy = new LazyBatchNorm();
    expect(() => foldBatchNorm({ weight: new Float32Array(6) }, sync)).toThrow(/training mode; call bn.eval\(\)/);
    expect(() => foldBatchNorm({ weight: new Float32Array(6) }, lazy.eval())).toThrow(
      /or a LazyBatchNorm before its first input/,
    );
    const plain = new BatchNorm(3).eval();
    for (const layer of [sync, plain]) {
      layer.runningMean?.set([1, 2, 3]);
      layer.runningVar?.set([4, 5, 6]);
      layer.gamma?.set([0.5, 1, 2]);
    }
    const w = Float32Array.from({ length: 6 }, (_, i) => i + 1);
    expect(foldBatchNorm({ weight: w }, sync.eval())).toEqual(foldBatchNorm({ weight: w }, plain));
  });

  const bad: Array<[string, () => unknown, ErrorConstructor, RegExp]> = [
    [
      'a BatchNorm in training mode',
      () => foldBatchNorm({ weight }, new BatchNorm(3)),
      Error,
      /training mode; call bn.eval\(\)/,
    ],
    [
      'a BatchNorm without running statistics',
      () => foldBatchNorm({ weight }, new BatchNorm(3, { trackRunningStats: false }).eval()),
      TypeError,
      /no running statistics/,
    ],
    [
      'a weight whose length is not a multiple of the channels',
      () => foldBatchNorm({ weight: new Float64Array(10) }, state),
      RangeError,
      /length 10, not a multiple of the 3 channels/,
    ],
    [
      'a bias of another dtype',
      () => foldBatchNorm({ weight, bias: new Float32Array(3) }, state),
      TypeError,
      /layer.bias must be a Float64Array like layer.weight/,
    ],
    [
      'a bias of the wrong length',
      () => foldBatchNorm({ weight, bias: new Float64Array(4) }, state),
      RangeError,
      /layer.bias must have length 3/,
    ],
    [
      'outAxis 1 without a shape',
      () => foldBatchNorm({ weight, outAxis: 1 }, state),
      TypeError,
      /layer.shape is required/,
    ],
    [
      'a shape whose output axis is not the channel count',
      () => foldBatchNorm({ weight, outAxis: 1, shape: [3, 4] }, state),
      RangeError,
      /4 output channels \(axis 1\) but bn has 3/,
    ],
    [
      'running stats of different lengths',
      () => foldBatchNorm({ weight }, { ...state, runningVar: new Float64Array(2) }),
      RangeError,
      /bn.runningVar must have length 3/,
    ],
    ['eps 0', () => foldBatchNorm({ weight }, { ...state, eps: 0 }), RangeError, /bn.eps must be a finite number > 0/],
    [
      'a weight that is not a typed array',
      () => foldBatchNorm({ weight: [1, 2, 3] as never }, state),
      TypeError,
      /layer.weight must be/,
    ],
  ];
  for (const [what, call, type, message] of bad) {
    it(`rejects ${what}`, () => {
      expect(call).toThrowError(type);
      expect(call).toThrowError(message);
    });
  }
});
