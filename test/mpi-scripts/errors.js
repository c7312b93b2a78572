// Run under mpirun by test/mpi.test.ts: calls that do not match across ranks. Every case must
// throw on every rank (never hang), and the communicator must work afterwards. One JSON line.
const { world } = require('../../dist/src/mpi/index.js');
const report = require('./report.js');

const comm = world();
const { rank, size } = comm;

async function outcome(run) {
  try {
    await run();
    return 'ok';
  } catch (e) {
    return `${e.constructor.name}: ${e.message}`;
  }
}

async function main() {
  const out = { rank, size };
  out.lengths = await outcome(() => comm.allReduce(new Float64Array(3 + rank)));
  out.lengthsSync = await outcome(() => comm.allReduceSync(new Float32Array(rank === size - 1 ? 5 : 4)));
  out.dtypes = await outcome(() => comm.allReduce(rank === 0 ? new Float32Array(4) : new Float64Array(4)));
  out.notTyped = await outcome(() => comm.allReduce(rank === 0 ? [1, 2, 3] : new Float64Array(3)));
  out.int32 = await outcome(() => comm.allReduce(rank === size - 1 ? new Int32Array(3) : new Float64Array(3)));
  out.badRootEverywhere = await outcome(() => comm.broadcast(new Float64Array(2), size));
  out.badRootOne = await outcome(() => comm.broadcast(new Float64Array(2), rank === 0 ? -1 : 0));
  out.fractionalRoot = await outcome(() => comm.broadcastSync(new Float64Array(2), 0.5));
  out.rootsDiffer = await outcome(() => comm.broadcast(new Float64Array(2), rank === 0 && size > 1 ? 1 : 0));
  out.opsDiffer = await outcome(() => (rank === 0 ? comm.barrier() : comm.allReduce(new Float64Array(2))));
  // A blocking call while an async one is in flight: refused on this rank, before any MPI call.
  const pending = comm.allReduce(new Float64Array([1]));
  out.syncWhileAsync = await outcome(() => comm.allReduceSync(new Float64Array([1])));
  await pending;
  // Still in step: a normal all-reduce after all that.
  out.after = Array.from(await comm.allReduce(new Float64Array([rank + 1])));
  report(out);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
