// The all-reduce of batchnorm/mpi against the worker_threads one (sharedAllReduce), on the
// payloads of data-parallel training: SyncBatchNorm's per-step buffer (1 + 2C float64s) and a
// 10 MB gradient. Results in bench/README.md ("batchnorm/mpi's all-reduce").
//
//   tsc -p bench/tsconfig.json
//   mpirun -np 3 node dist/bench/mpi-all-reduce.js        batchnorm/mpi, 3 ranks
//   node dist/bench/mpi-all-reduce.js --threads 3          sharedAllReduce, 3 worker threads
//
// Each round: every rank lines up (a barrier), then `calls` all-reduces back to back; the time
// per call is the round's time / calls, on rank 0, median over the rounds.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createSharedAllReduceMemory, sharedAllReduce } from '../index';

interface Payload {
  name: string;
  make: () => Float32Array | Float64Array;
  calls: number;
}

const MB10 = 10 * 1000 * 1000;
const PAYLOADS: Payload[] = [
  { name: 'SyncBatchNorm, C = 64 (129 float64)', make: () => new Float64Array(1 + 2 * 64), calls: 2000 },
  { name: 'SyncBatchNorm, C = 512 (1025 float64)', make: () => new Float64Array(1 + 2 * 512), calls: 1000 },
  { name: 'gradient, 10 MB float64', make: () => new Float64Array(MB10 / 8), calls: 10 },
  { name: 'gradient, 10 MB float32', make: () => new Float32Array(MB10 / 4), calls: 10 },
];
const ROUNDS = 7;

type Reduce = (buffer: Float32Array | Float64Array) => Promise<unknown>;

/** Median ms per call of each payload; `lineUp` is a barrier. */
async function measure(reduce: Reduce, lineUp: () => Promise<unknown>, payloads: Payload[]) {
  const results: { name: string; ms: number }[] = [];
  for (const p of payloads) {
    const buffer = p.make();
    for (let i = 0; i < Math.min(p.calls, 50); i++) await reduce(buffer); // warm-up
    const perCall: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await lineUp();
      const start = performance.now();
      for (let i = 0; i < p.calls; i++) await reduce(buffer);
      perCall.push((performance.now() - start) / p.calls);
    }
    perCall.sort((a, b) => a - b);
    results.push({ name: p.name, ms: perCall[ROUNDS >> 1] });
  }
  return results;
}

function print(title: string, results: { name: string; ms: number }[]): void {
  console.log(title);
  for (const r of results) {
    const time = r.ms < 1 ? `${(r.ms * 1000).toFixed(1)} µs` : `${r.ms.toFixed(2)} ms`;
    console.log(`  ${r.name.padEnd(40)} ${time.padStart(12)}`);
  }
}

async function mpiMain(): Promise<void> {
  const { world } = await import('../src/mpi');
  const comm = world();
  const asyncResults = await measure(comm.allReduce, comm.barrier, PAYLOADS);
  const syncResults = await measure(
    async (b) => comm.allReduceSync(b),
    comm.barrier,
    PAYLOADS.filter((p) => p.make().length < 10_000),
  );
  if (comm.rank === 0) {
    print(`batchnorm/mpi allReduce, ${comm.size} ranks (${comm.libraryVersion.split(',')[0]})`, asyncResults);
    print('batchnorm/mpi allReduceSync', syncResults);
  }
}

/** sharedAllReduce carries float64 only. */
const THREAD_PAYLOADS = PAYLOADS.filter((p) => p.make() instanceof Float64Array);

async function threadsMain(workers: number): Promise<void> {
  const capacity = Math.max(...THREAD_PAYLOADS.map((p) => p.make().length));
  const memory = createSharedAllReduceMemory(workers, capacity);
  const results = await Promise.all(
    Array.from(
      { length: workers },
      (_, rank) =>
        new Promise<{ name: string; ms: number }[]>((resolve, reject) => {
          const worker = new Worker(__filename, { workerData: { memory, rank } });
          worker.once('message', resolve);
          worker.once('error', reject);
        }),
    ),
  );
  print(`sharedAllReduce (worker_threads), ${workers} threads`, results[0]);
}

async function workerMain(): Promise<void> {
  const { memory, rank } = workerData as { memory: SharedArrayBuffer; rank: number };
  const reduce = sharedAllReduce(memory, rank);
  const one = new Float64Array(1);
  parentPort!.postMessage(
    await measure(
      (b) => reduce(b as Float64Array),
      () => reduce(one),
      THREAD_PAYLOADS,
    ),
  );
}

const threadsAt = process.argv.indexOf('--threads');
const main = !isMainThread
  ? workerMain()
  : threadsAt >= 0
    ? threadsMain(Number(process.argv[threadsAt + 1] ?? 2))
    : mpiMain();
main.catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
