// Run under mpirun by test/mpi.test.ts: every collective of batchnorm/mpi on this rank, printed
// as one JSON line. Values are small integers, so every sum is exact whatever the order.
const { world } = require('../../dist/src/mpi/index.js');
const report = require('./report.js');

const comm = world();
const { rank, size } = comm;
/** A buffer whose element i on rank r is (r + 1) * (i % 7 - 3). */
const filled = (Type, n) => Type.from({ length: n }, (_, i) => (rank + 1) * ((i % 7) - 3));

async function main() {
  const out = { rank, size, threadLevel: comm.threadLevel, offThread: comm.offThread };
  out.allReduce = {};
  for (const Type of [Float32Array, Float64Array]) {
    for (const n of [0, 1, 7, 1001]) {
      const buffer = filled(Type, n);
      const result = await comm.allReduce(buffer);
      const sync = comm.allReduceSync(filled(Type, n));
      out.allReduce[`${Type.name}:${n}`] = {
        same: result === buffer,
        values: Array.from(result),
        syncValues: Array.from(sync),
      };
    }
  }
  // A view into a larger buffer: only the view's elements are summed.
  const whole = new Float64Array(10).fill(rank + 1);
  await comm.allReduce(whole.subarray(3, 7));
  out.view = Array.from(whole);
  // Over a SharedArrayBuffer (as worker_threads share memory).
  const shared = new Float32Array(new SharedArrayBuffer(16)).fill(rank + 1);
  await comm.allReduce(shared);
  out.shared = Array.from(shared);
  // Unbound, as SyncBatchNorm calls it.
  const { allReduce } = comm;
  out.unbound = Array.from(await allReduce(new Float64Array([rank])));
  // Several in flight at once: each resolves with its own sum, in call order.
  out.concurrent = (await Promise.all([1, 2, 3].map((k) => comm.allReduce(new Float64Array([k * (rank + 1)]))))).map(
    (b) => b[0],
  );
  out.broadcast = [];
  for (let root = 0; root < size; root++) {
    const a = new Float64Array(5).fill(rank * 10 + 1);
    const b = new Float32Array(3).fill(rank * 10 + 2);
    await comm.broadcast(a, root);
    comm.broadcastSync(b, root);
    out.broadcast.push({ root, f64: Array.from(a), f32: Array.from(b) });
  }
  // Barrier: a rank that arrives late (rank 0 waits 300 ms) holds the others back.
  const start = Date.now();
  if (rank === 0) await new Promise((r) => setTimeout(r, 300));
  await comm.barrier();
  out.barrierWaitedMs = Date.now() - start;
  comm.barrierSync();
  report(out);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
