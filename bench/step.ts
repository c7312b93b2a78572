// The training step as training code calls it (issue 12): the layer's forward + backward,
// functional calls with and without `out`, the fused residual + ReLU tail, the peak memory
// of a 20-step layer loop, and PyTorch's nn.BatchNorm2d on the same shape and threads when
// torch imports. Every step yields to the event loop, as a pipeline that awaits its data
// does: recycled outputs come back there (a loop that never yields gets fresh memory).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type Backend, BatchNorm, getNumThreads, outputPoolStats, setOutputPoolLimit } from '../index';
import { type Budget, type Candidate, measureInterleaved } from './measure';
import { pseudoRandom } from './workloads';

export interface StepShape {
  dims: number[];
  axis: number;
}

export const STEP_SHAPES: readonly StepShape[] = [
  { dims: [64, 128, 56, 56], axis: 1 },
  { dims: [64, 56, 56, 128], axis: -1 },
];
export const QUICK_STEP_SHAPES: readonly StepShape[] = [
  { dims: [8, 32, 28, 28], axis: 1 },
  { dims: [8, 28, 28, 32], axis: -1 },
];

export interface StepRow {
  shape: string;
  what: string;
  medianMs: number;
}

export interface TorchStep {
  torch: string;
  threads: number;
  layerStepMs: number;
  trainForwardMs: number;
  residualReluForwardMs: number;
  peakBytesAboveCaller: number;
}

export interface StepResults {
  shape: string;
  /** Bytes of x (f32). */
  xBytes: number;
  rows: StepRow[];
  /** Peak RSS of a 20-step layer loop above what the caller holds (x, dy), in units of |x|. */
  layerPeakOverX: number;
  /** The same with y and dx written into two arrays the caller holds (above x, dy, y, dx). */
  layerOutPeakOverX: number;
  torch: TorchStep | null;
  /** Why there is no PyTorch row, when there is none. */
  torchNote: string | null;
}

function shapeText(s: StepShape): string {
  return `[${s.dims.join(',')}]${s.axis === 1 ? '' : ` axis ${s.axis}`}`;
}

/** f32 values in [-1, 1) from a fixed seed, as the kernel rows use. */
function filled(n: number, seed: number): Float32Array {
  return pseudoRandom('f32', n, seed) as Float32Array;
}

/** A call followed by one turn of the event loop. */
function stepping(call: () => void): () => Promise<void> {
  return async () => {
    call();
    await turn();
  };
}

/** The candidates on one shape: every path a training step takes, native backend. */
/** Ghost batches of this many samples (Keras's virtual_batch_size) in the ghost-layer row. */
const GHOST_BATCH = 8;
const GHOST_ROW = `layer forward + backward, out, virtualBatchSize ${GHOST_BATCH}`;

function candidates(backend: Backend, s: StepShape): Candidate[] {
  const { dims, axis } = s;
  const n = dims.reduce((a, b) => a * b, 1);
  const c = dims.at(axis) as number;
  const x = filled(n, 1);
  const dy = filled(n, 2);
  const z = filled(n, 3);
  const out = new Float32Array(n).fill(1);
  const dx = new Float32Array(n).fill(1);
  const gamma = new Float32Array(c).fill(1);
  const beta = new Float32Array(c);
  const runningMean = new Float32Array(c);
  const runningVar = new Float32Array(c).fill(1);
  const train = { axis, gamma, beta, runningMean, runningVar };
  const layer = new BatchNorm(c, { axis, backend });
  const layerOut = new BatchNorm(c, { axis, backend });
  const ghostOut = new BatchNorm(c, { axis, backend, virtualBatchSize: GHOST_BATCH });
  const list: Array<[string, () => void]> = [
    [
      'train + backward, out',
      () => {
        const r = backend.batchNormTrain(x, dims, { ...train, out });
        backend.batchNormBackward(dy, x, dims, r, { axis, gamma, out: dx });
      },
    ],
    [
      'train + backward, no out',
      () => {
        const r = backend.batchNormTrain(x, dims, train);
        backend.batchNormBackward(dy, x, dims, r, { axis, gamma });
      },
    ],
    [
      'layer forward + backward',
      () => {
        layer.forward(x, dims);
        layer.backward(dy);
      },
    ],
    [
      'layer forward + backward, out',
      () => {
        layerOut.forward(x, dims, { out });
        layerOut.backward(dy, { out: dx });
      },
    ],
    [
      GHOST_ROW,
      () => {
        ghostOut.forward(x, dims, { out });
        ghostOut.backward(dy, { out: dx });
      },
    ],
    ['train, out', () => backend.batchNormTrain(x, dims, { ...train, out })],
    ['train, no out', () => backend.batchNormTrain(x, dims, train)],
    [
      'train residual + relu, out',
      () => backend.batchNormTrain(x, dims, { ...train, residual: z, activation: 'relu', out }),
    ],
  ];
  return list.map(([name, call]) => ({ name, call: stepping(call), isAsync: true }));
}

function rss(): number {
  return process.memoryUsage().rss;
}

/** A full garbage collection (what is dropped is gone, and its recycled blocks come back). */
const collectGarbage: () => void = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/** Peak RSS of 20 layer steps (forward, backward, each result dropped) above the RSS with x
 *  and dy allocated, over |x|. Sampled after every forward and every backward. It starts
 *  with no recycled block kept free, so the blocks the loop itself takes are counted. */
async function layerPeak(backend: Backend, s: StepShape, withOut: boolean): Promise<number> {
  const n = s.dims.reduce((a, b) => a * b, 1);
  const x = filled(n, 4);
  const dy = filled(n, 5);
  // With out, the caller holds y and dx too (touched, so counted in the RSS before the loop).
  const out = withOut ? { y: new Float32Array(n).fill(1), dx: new Float32Array(n).fill(1) } : null;
  const layer = new BatchNorm(s.dims.at(s.axis) as number, { axis: s.axis, backend });
  collectGarbage();
  await turn();
  const limit = outputPoolStats().limitBytes;
  setOutputPoolLimit(0);
  setOutputPoolLimit(limit);
  const before = rss();
  let peak = before;
  for (let i = 0; i < 20; i++) {
    layer.forward(x, s.dims, out ? { out: out.y } : undefined);
    peak = Math.max(peak, rss());
    layer.backward(dy, out ? { out: out.dx } : undefined);
    peak = Math.max(peak, rss());
    await turn();
  }
  return (peak - before) / x.byteLength;
}

function torchStep(s: StepShape, iters: number): { result: TorchStep | null; note: string | null } {
  const python = process.env.PYTHON ?? 'python3';
  // PyTorch's BatchNorm2d wants NCHW dims; channels-last is the same tensor in another memory format.
  const nchw = s.axis === 1 ? s.dims : [s.dims[0], s.dims[3], s.dims[1], s.dims[2]];
  try {
    execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
  } catch {
    return { result: null, note: `no PyTorch row: ${python} cannot import torch` };
  }
  const args = [
    join(__dirname, '..', '..', 'bench', 'torch_step.py'),
    '--shape',
    nchw.join(','),
    '--channels-last',
    s.axis === 1 ? '0' : '1',
    '--threads',
    String(getNumThreads()),
    '--iters',
    String(iters),
  ];
  const output = execFileSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  return { result: JSON.parse(output.trim().split('\n').at(-1) as string) as TorchStep, note: null };
}

export async function measureSteps(backend: Backend, quick: boolean): Promise<StepResults[]> {
  const budget: Budget = quick
    ? { timeMs: 50, minSamples: 3, warmupSamples: 1, rounds: 1 }
    : { timeMs: 3000, minSamples: 9, warmupSamples: 2, rounds: 3 };
  const results: StepResults[] = [];
  for (const s of quick ? QUICK_STEP_SHAPES : STEP_SHAPES) {
    const list = candidates(backend, s);
    const measured = await measureInterleaved(list, budget);
    const rows = measured.map((m, i) => ({ shape: shapeText(s), what: list[i].name, medianMs: m.medianMs }));
    const layerPeakOverX = await layerPeak(backend, s, false);
    const layerOutPeakOverX = await layerPeak(backend, s, true);
    const torch = quick ? { result: null, note: 'no PyTorch row in --quick' } : torchStep(s, 9);
    results.push({
      shape: shapeText(s),
      xBytes: s.dims.reduce((a, b) => a * b, 1) * Float32Array.BYTES_PER_ELEMENT,
      rows,
      layerPeakOverX,
      layerOutPeakOverX,
      torch: torch.result,
      torchNote: torch.note,
    });
  }
  return results;
}

function ms(results: StepResults, what: string): number {
  return results.rows.find((r) => r.what === what)?.medianMs ?? Number.NaN;
}

/** The step table and issue 12's ratios, as Markdown. */
export function stepMarkdown(all: readonly StepResults[]): string {
  const lines = ['| shape | path | median ms |', '| --- | --- | ---: |'];
  for (const r of all) {
    for (const row of r.rows) lines.push(`| ${r.shape} | ${row.what} | ${row.medianMs.toFixed(2)} |`);
    if (r.torch) {
      lines.push(
        `| ${r.shape} | PyTorch ${r.torch.torch} nn.BatchNorm2d forward + backward | ${r.torch.layerStepMs.toFixed(2)} |`,
      );
      lines.push(`| ${r.shape} | PyTorch relu(bn(x) + z) forward | ${r.torch.residualReluForwardMs.toFixed(2)} |`);
    }
  }
  lines.push('', '| shape | target | want | got |', '| --- | --- | --- | --- |');
  for (const r of all) {
    const ratio = (a: string, b: string) => (ms(r, a) / ms(r, b)).toFixed(2);
    lines.push(
      `| ${r.shape} | layer fwd+bwd / train+backward with out | <= 1.3 | ${ratio('layer forward + backward', 'train + backward, out')} |`,
    );
    lines.push(`| ${r.shape} | train without out / with out | <= 1.3 | ${ratio('train, no out', 'train, out')} |`);
    lines.push(
      `| ${r.shape} | train+backward without out / with out | <= 1.3 | ${ratio('train + backward, no out', 'train + backward, out')} |`,
    );
    lines.push(
      `| ${r.shape} | residual+relu forward / train forward (out) | <= 1.4 | ${ratio('train residual + relu, out', 'train, out')} |`,
    );
    lines.push(
      `| ${r.shape} | layer loop peak memory above x, dy | <= 2.5 \\|x\\| | ${r.layerPeakOverX.toFixed(2)} \\|x\\| |`,
    );
    lines.push(
      `| ${r.shape} | layer fwd+bwd with out / train+backward with out | (for reference) | ${ratio('layer forward + backward, out', 'train + backward, out')} |`,
    );
    lines.push(
      `| ${r.shape} | layer loop with out: peak above x, dy, y, dx | (for reference) | ${r.layerOutPeakOverX.toFixed(2)} \\|x\\| |`,
    );
    lines.push(
      `| ${r.shape} | ghost-batch layer step / layer step (out) | (for reference) | ${ratio(GHOST_ROW, 'layer forward + backward, out')} |`,
    );
    if (r.torch) {
      const t = r.torch;
      lines.push(
        `| ${r.shape} | PyTorch step / layer step | >= 3.5 | ${(t.layerStepMs / ms(r, 'layer forward + backward')).toFixed(2)} |`,
      );
      lines.push(
        `| ${r.shape} | PyTorch relu(bn+z) / residual+relu (out) | >= 4 | ${(t.residualReluForwardMs / ms(r, 'train residual + relu, out')).toFixed(2)} |`,
      );
      lines.push(
        `| ${r.shape} | PyTorch loop peak memory above x, dy | (ours no more) | ${(t.peakBytesAboveCaller / r.xBytes).toFixed(2)} \\|x\\| |`,
      );
    } else {
      lines.push(`| ${r.shape} | PyTorch rows | | ${r.torchNote} |`);
    }
  }
  lines.push('', `recycled outputs after the run: ${JSON.stringify(outputPoolStats())}`);
  return lines.join('\n');
}
