// Run under mpirun by test/mpi.test.ts: a large allReduce runs off the JS thread. Rank 0 starts
// it at once; the other ranks join 500 ms later, so rank 0's all-reduce waits that long while
// its event loop keeps ticking. One JSON line per rank.
const { world } = require('../../dist/src/mpi/index.js');
const report = require('./report.js');

const comm = world();
const n = 4 * 1024 * 1024; // 32 MB of float64

async function main() {
  if (comm.rank !== 0) await new Promise((r) => setTimeout(r, 500));
  const buffer = new Float64Array(n).fill(comm.rank + 1);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const start = Date.now();
  await comm.allReduce(buffer);
  clearInterval(timer);
  const expected = (comm.size * (comm.size + 1)) / 2;
  report({
    rank: comm.rank,
    ticks,
    ms: Date.now() - start,
    correct: buffer.every((v) => v === expected),
  });
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
