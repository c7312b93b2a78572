// onnxruntime-node: a model per workload, built in ./onnx.ts, run by an InferenceSession on
// the CPU execution provider with an intra-op pool of `threads`. Form 'op' runs ONNX's
// BatchNormalization where it applies (channels at axis 1) and a graph elsewhere; form
// 'graph' runs the graph on the axis-1 layouts too, to show which of the two is faster.
import * as ort from 'onnxruntime-node';
import type { Op, Problem } from '../workloads';
import { batchNormOp, channelDims, evalGraph, type Layout, trainGraph } from './onnx';
import { channelAxis, f32, type Peer, type Prepared } from './peer';

const TRAIN_GRAPH = 'graph: ReduceMean, Sub, Mul, ReduceMean, Add, Sqrt, Div, Mul, Add';
const EVAL_GRAPH = 'graph: x * a + b (a, b per channel)';

export type OrtForm = 'op' | 'graph';

function model(
  layout: Layout,
  op: 'fwd-train' | 'fwd-eval',
  form: OrtForm,
): { bytes: Uint8Array; how: string; opStats: boolean } {
  // ONNX's BatchNormalization takes the channels at axis 1 only; other layouts run as graphs.
  if (layout.axis === 1 && form === 'op') {
    const training = op === 'fwd-train';
    const how = training ? 'BatchNormalization training_mode=1' : 'BatchNormalization';
    return { bytes: batchNormOp(layout, training), how, opStats: true };
  }
  return op === 'fwd-train'
    ? { bytes: trainGraph(layout), how: TRAIN_GRAPH, opStats: false }
    : { bytes: evalGraph(layout), how: EVAL_GRAPH, opStats: false };
}

export function ortPeer(threads: number, form: OrtForm): Peer {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
  return {
    name: form === 'op' ? 'onnxruntime-node' : 'onnxruntime-node graph',
    threads,
    describe: `onnxruntime-node ${ort.env.versions.node ?? '?'}${form === 'graph' ? ' (graph form)' : ''}, CPU execution provider, intraOpNumThreads ${threads}`,
    async prepare(p: Problem, op: Op): Promise<Prepared | { unsupported: string } | null> {
      const layout: Layout = { dims: p.shape.dims, axis: channelAxis(p.shape) };
      // Where the op form already runs the graph (or nothing), the graph form adds no row.
      if (form === 'graph' && (op === 'backward' || layout.axis !== 1)) return null;
      if (op === 'backward') {
        return {
          unsupported: 'no backward: onnxruntime-node is an inference build (no gradient ops, no training API)',
        };
      }
      const { bytes, how, opStats } = model(layout, op, form);
      const session = await ort.InferenceSession.create(bytes, options);
      // Inputs wrap batchnorm's own arrays; per-channel ones take the shape the model wants.
      const statDims = opStats ? [p.gamma.length] : channelDims(layout);
      const tensor = (a: Float32Array | Float64Array, dims: readonly number[]) =>
        new ort.Tensor('float32', f32(a), dims);
      const stats = op === 'fwd-eval' ? [p.evalMean, p.evalVar] : [p.runningMean, p.runningVar];
      const feeds: Record<string, ort.Tensor> = {
        x: tensor(p.x, layout.dims),
        gamma: tensor(p.gamma, statDims),
        beta: tensor(p.beta, statDims),
      };
      if (session.inputNames.includes('mean')) {
        feeds.mean = tensor(stats[0], statDims);
        feeds.var = tensor(stats[1], statDims);
      }
      // y goes into a preallocated array (like batchnorm's `out`); the small outputs are
      // allocated by onnxruntime.
      const fetches = (out: Float32Array) =>
        Object.fromEntries(session.outputNames.map((name) => [name, name === 'y' ? tensor(out, layout.dims) : null]));
      const timed = fetches(f32(p.out));
      return {
        how,
        isAsync: true,
        call: async () => {
          await session.run(feeds, timed);
        },
        async outputs() {
          const y = new Float32Array(p.x.length);
          await session.run(feeds, fetches(y));
          return { y };
        },
        dispose: () => void session.release(),
      };
    },
  };
}
