// `node dist/examples/sync-workers.js [workers]` (after `npm run build:ts`): data-parallel
// training of one SyncBatchNorm layer on worker_threads. Each worker holds a shard of every
// batch (unequal sizes, one of a single row); the layers all-reduce over one SharedArrayBuffer,
// and the result is checked against one BatchNorm on the whole batch in this thread.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import {
  type Backend,
  BatchNorm,
  backend,
  createSharedAllReduceMemory,
  type FloatArray,
  js,
  native,
  SyncBatchNorm,
  sharedAllReduce,
} from '../index';

/** What to train: NCHW batches of `shape`, split along the batch axis into `sizes` rows. */
export interface Job {
  shape: number[];
  sizes: number[];
  steps: number;
  /** The kernels every layer uses; default: the selected backend. */
  backend?: 'js' | 'native';
}

/** One layer after the job: its shard of the last step's y and dx, and its state. */
export interface LayerResult {
  y: FloatArray;
  dx: FloatArray;
  runningMean: FloatArray;
  runningVar: FloatArray;
  gammaGrad: FloatArray;
  betaGrad: FloatArray;
}

interface WorkerInput {
  syncWorkersJob: Job;
  memory: SharedArrayBuffer;
  rank: number;
}

/** The whole batch and its output gradient at `step`, seeded: every thread can make it. */
function batch(job: Job, step: number): { x: Float32Array; dy: Float32Array } {
  const size = job.shape.reduce((p, d) => p * d, 1);
  const perChannel = job.shape.slice(2).reduce((p, d) => p * d, 1);
  const channels = job.shape[1];
  let seed = 1 + step;
  const uniform = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  // Channel c: mean 10 * c + step, std 1 + c (index / perChannel % channels is the channel in NCHW).
  const x = Float32Array.from({ length: size }, (_, i) => {
    const c = Math.floor(i / perChannel) % channels;
    return 10 * c + step + (1 + c) * uniform() * Math.sqrt(12);
  });
  const dy = Float32Array.from({ length: size }, uniform);
  return { x, dy };
}

function kernels(job: Job): Backend {
  if (job.backend === 'native' && !native) throw new Error('the native backend did not load');
  return job.backend === 'js' ? js : job.backend === 'native' ? native! : backend;
}

/** Rows [start, end) of rank's shard. */
function shardRows(job: Job, rank: number): [number, number] {
  const start = job.sizes.slice(0, rank).reduce((p, n) => p + n, 0);
  return [start, start + job.sizes[rank]];
}

function rowsOf(a: Float32Array, job: Job, [start, end]: [number, number]): Float32Array {
  const rowSize = a.length / job.shape[0];
  return a.slice(start * rowSize, end * rowSize);
}

/** In a worker: train this rank's shard; the layer all-reduces with the other workers. */
async function trainShard({ syncWorkersJob: job, memory, rank }: WorkerInput): Promise<LayerResult> {
  const layer = new SyncBatchNorm(job.shape[1], {
    backend: kernels(job),
    allReduce: sharedAllReduce(memory, rank),
  });
  const rows = shardRows(job, rank);
  const shape = [rows[1] - rows[0], ...job.shape.slice(1)];
  let y: FloatArray = new Float32Array(0);
  let dx: FloatArray = new Float32Array(0);
  for (let step = 0; step < job.steps; step++) {
    const { x, dy } = batch(job, step);
    y = await layer.forward(rowsOf(x, job, rows), shape);
    dx = await layer.backward(rowsOf(dy, job, rows));
  }
  return {
    y,
    dx,
    runningMean: layer.runningMean!,
    runningVar: layer.runningVar!,
    gammaGrad: layer.gammaGrad!,
    betaGrad: layer.betaGrad!,
  };
}

/** Runs the job on one worker thread per shard; resolves to each worker's result, in rank order. */
export function trainInWorkers(job: Job): Promise<LayerResult[]> {
  // Each all-reduce is 1 + 2C float64s (see the README, "The buffers that are all-reduced").
  const memory = createSharedAllReduceMemory(job.sizes.length, 1 + 2 * job.shape[1]);
  return Promise.all(
    job.sizes.map(
      (_, rank) =>
        new Promise<LayerResult>((resolve, reject) => {
          const input: WorkerInput = { syncWorkersJob: job, memory, rank };
          const worker = new Worker(__filename, { workerData: input });
          worker.once('message', resolve);
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new Error(`worker ${rank} exited with code ${code} before answering`)));
        }),
    ),
  );
}

/** The same job as one process would run it: one BatchNorm on the whole batch. */
export function trainInOneProcess(job: Job): LayerResult {
  const layer = new BatchNorm(job.shape[1], { backend: kernels(job) });
  let y: FloatArray = new Float32Array(0);
  let dx: FloatArray = new Float32Array(0);
  for (let step = 0; step < job.steps; step++) {
    const { x, dy } = batch(job, step);
    y = layer.forward(x, job.shape);
    dx = layer.backward(dy);
  }
  return {
    y,
    dx,
    runningMean: layer.runningMean!,
    runningVar: layer.runningVar!,
    gammaGrad: layer.gammaGrad!,
    betaGrad: layer.betaGrad!,
  };
}

/** The largest |difference| of each field between the workers (y, dx concatenated) and one process. */
export function largestDifferences(workers: LayerResult[], whole: LayerResult): Record<keyof LayerResult, number> {
  const largest = (got: ArrayLike<number>, want: ArrayLike<number>) => {
    if (got.length !== want.length) return Number.POSITIVE_INFINITY;
    let d = 0;
    for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got[i] - want[i]));
    return d;
  };
  const joined = (field: 'y' | 'dx') => workers.flatMap((w) => Array.from(w[field]));
  // Per-channel state must match on every worker, so take the worst worker.
  const worst = (field: 'runningMean' | 'runningVar' | 'gammaGrad' | 'betaGrad') =>
    Math.max(...workers.map((w) => largest(w[field], whole[field])));
  return {
    y: largest(joined('y'), whole.y),
    dx: largest(joined('dx'), whole.dx),
    runningMean: worst('runningMean'),
    runningVar: worst('runningVar'),
    gammaGrad: worst('gammaGrad'),
    betaGrad: worst('betaGrad'),
  };
}

async function main(): Promise<void> {
  const arg = process.argv[2] ?? '4';
  const workers = Number(arg);
  if (!/^\d+$/.test(arg) || workers < 2 || workers > 64) {
    console.error(
      `usage: node dist/examples/sync-workers.js [workers]: a whole number from 2 to 64, got ${JSON.stringify(arg)}`,
    );
    process.exitCode = 2;
    return;
  }
  // Unequal shards, the last of a single row: 2 + 3 + ... rows, then 1.
  const sizes = Array.from({ length: workers }, (_, k) => (k === workers - 1 ? 1 : k + 2));
  const job: Job = { shape: [sizes.reduce((p, n) => p + n, 0), 8, 16, 16], sizes, steps: 5 };
  const t0 = process.hrtime.bigint();
  const results = await trainInWorkers(job);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`${workers} workers, shards of ${sizes.join(' + ')} rows of [C, H, W] = [${job.shape.slice(1)}],`);
  console.log(`${job.steps} training steps (forward + backward) in ${ms.toFixed(0)} ms on the ${backend.name} backend`);
  console.log('running mean (worker 0):', Array.from(results[0].runningMean, (v) => v.toFixed(4)).join(' '));
  const differences = largestDifferences(results, trainInOneProcess(job));
  console.log('largest |difference| from one BatchNorm on the whole batch:');
  for (const [field, d] of Object.entries(differences)) console.log(`  ${field.padEnd(12)} ${d.toExponential(2)}`);
  // float32 outputs: a few units in the last place of values of size ~1-10.
  if (Object.values(differences).some((d) => !(d <= 1e-4))) {
    console.error('FAILED: the workers disagree with one process');
    process.exitCode = 1;
  }
}

const input = workerData as Partial<WorkerInput> | null;
if (!isMainThread && input?.syncWorkersJob) {
  trainShard(input as WorkerInput).then((result) => parentPort!.postMessage(result));
} else if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
