// TensorFlow.js: the wasm backend (XNNPACK, loaded from node_modules) and the cpu backend
// (plain JavaScript). Inputs are made tensors once, up front; a timed call runs the ops on
// those tensors and disposes what it made, without copying y back to a JS array.
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { Op, Problem } from '../workloads';
import { channelAxis, EPS, f32, type Peer, type Prepared } from './peer';

export type TfjsBackend = 'wasm' | 'cpu';

/** The .wasm files of the installed package: nothing is fetched. */
const WASM_DIR = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');

async function use(backend: TfjsBackend): Promise<void> {
  if (backend === 'wasm') setWasmPaths(`${WASM_DIR}/`);
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs: backend ${backend} did not initialize`);
}

/** Switches the one global tfjs engine to `backend` when another is active. An initialized
 *  backend switches synchronously (tf.setBackend runs to its end before its first await). */
function activate(backend: TfjsBackend): void {
  if (tf.getBackend() !== backend) void tf.setBackend(backend);
}

type T = tf.Tensor;

/** The forward ops on one layout. tf.batchNorm broadcasts mean, variance, offset and scale
 *  over the last axis only (its wasm and cpu kernels index them by element % C), so a
 *  channel axis that is not the last one runs as broadcast sub/mul/add instead. */
function forward(dims: readonly number[], axis: number) {
  const channelsLast = axis === dims.length - 1;
  const axes = dims.map((_, i) => i).filter((i) => i !== axis);
  return {
    channelsLast,
    /** Per-channel tensors: [C] for channels-last, else C at `axis` and 1 elsewhere. */
    statShape: channelsLast ? [dims[axis]] : dims.map((d, i) => (i === axis ? d : 1)),
    train(x: T, gamma: T, beta: T): T {
      const { mean, variance } = tf.moments(x, axes, !channelsLast);
      if (channelsLast) return tf.batchNorm(x, mean, variance, beta, gamma, EPS);
      const a = tf.mul(gamma, tf.rsqrt(tf.add(variance, EPS)));
      return tf.add(tf.mul(tf.sub(x, mean), a), beta);
    },
    evaluate(x: T, gamma: T, beta: T, mean: T, variance: T): T {
      if (channelsLast) return tf.batchNorm(x, mean, variance, beta, gamma, EPS);
      const a = tf.mul(gamma, tf.rsqrt(tf.add(variance, EPS)));
      return tf.add(tf.mul(x, a), tf.sub(beta, tf.mul(mean, a)));
    },
  };
}

function how(op: Op, channelsLast: boolean): string {
  switch (op) {
    case 'fwd-train':
      return channelsLast ? 'tf.moments + tf.batchNorm' : 'tf.moments + sub, mul, add';
    case 'fwd-eval':
      return channelsLast ? 'tf.batchNorm' : 'x * a + b (a, b per channel)';
    case 'backward':
      return 'tf.grads of the training forward (forward + backward)';
  }
}

export async function tfjsPeer(backend: TfjsBackend): Promise<Peer> {
  await use(backend);
  const wasmFlags = async () =>
    `SIMD ${await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')}, threads ${getThreadsCount()} (WASM_HAS_MULTITHREAD_SUPPORT ${await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')})`;
  const detail = backend === 'wasm' ? await wasmFlags() : 'plain JavaScript on the main thread';
  return {
    name: `tfjs-${backend}`,
    threads: backend === 'wasm' ? getThreadsCount() : 1,
    describe: `@tensorflow/tfjs ${tf.version.tfjs} ${backend} backend: ${detail}`,
    async prepare(p: Problem, op: Op): Promise<Prepared> {
      await use(backend);
      const dims = [...p.shape.dims];
      const f = forward(dims, channelAxis(p.shape));
      const x = tf.tensor(f32(p.x), dims, 'float32');
      const stat = (a: Float32Array | Float64Array) => tf.tensor(f32(a), f.statShape, 'float32');
      const gamma = stat(p.gamma);
      const beta = stat(p.beta);
      const inputs: T[] = [x, gamma, beta];
      let compute: () => T[];
      if (op === 'fwd-train') {
        compute = () => [f.train(x, gamma, beta)];
      } else if (op === 'fwd-eval') {
        const mean = stat(p.evalMean);
        const variance = stat(p.evalVar);
        inputs.push(mean, variance);
        compute = () => [f.evaluate(x, gamma, beta, mean, variance)];
      } else {
        const dy = tf.tensor(f32(p.dy), dims, 'float32');
        inputs.push(dy);
        const grads = tf.grads((xs: T, g: T, b: T) => f.train(xs, g, b));
        compute = () => grads([x, gamma, beta], dy);
      }
      const names = op === 'backward' ? ['dx', 'dGamma', 'dBeta'] : ['y'];
      return {
        how: how(op, f.channelsLast),
        isAsync: false,
        call: () => {
          activate(backend);
          tf.dispose(tf.tidy(compute));
        },
        async outputs() {
          activate(backend);
          const results = tf.tidy(compute);
          const read = await Promise.all(results.map((t) => t.data<'float32'>()));
          tf.dispose(results);
          return Object.fromEntries(names.map((name, i) => [name, read[i]]));
        },
        dispose: () => tf.dispose(inputs),
      };
    },
  };
}
