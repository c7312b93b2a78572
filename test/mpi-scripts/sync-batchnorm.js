// Run under mpirun by test/mpi.test.ts: SyncBatchNorm over comm.allReduce against one
// BatchNorm on the whole batch (computed on every rank from the same seeded data). Shards of
// unequal sizes, one of them empty; three training steps; NCHW [rows, C, 3] and NHWC.
// Argument: the dtype. One JSON line per rank with the largest differences.
const { BatchNorm, SyncBatchNorm } = require('../../dist/index.js');
const { world } = require('../../dist/src/mpi/index.js');
const report = require('./report.js');

const comm = world();
const { rank, size } = comm;
const dtype = process.argv[2] === 'float32' ? 'float32' : 'float64';
const Type = dtype === 'float32' ? Float32Array : Float64Array;
const C = 5;
const INNER = 3;
// Rows per rank: rank 1 holds none (with 2 or more ranks), the others differ.
const rowsOf = (r) => (r === 1 ? 0 : 2 + 3 * r);
const sizes = Array.from({ length: size }, (_, r) => rowsOf(r));
const total = sizes.reduce((a, b) => a + b, 0);
const first = sizes.slice(0, rank).reduce((a, b) => a + b, 0);

function seeded(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const worst = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

async function run(axis) {
  // NCHW: [N, C, INNER] with axis 1; NHWC: [N, INNER, C] with axis -1. Rows are the first axis.
  const shapeOf = (n) => (axis === 1 ? [n, C, INNER] : [n, INNER, C]);
  const perRow = C * INNER;
  const sync = new SyncBatchNorm(C, { axis, dtype, allReduce: comm.allReduce });
  const single = new BatchNorm(C, { axis, dtype });
  const diff = { y: 0, dx: 0, runningMean: 0, runningVar: 0, gammaGrad: 0, betaGrad: 0 };
  for (let step = 0; step < 3; step++) {
    const rand = seeded(100 * step + axis + 7);
    const x = Type.from({ length: total * perRow }, () => 3 + 2 * rand());
    const dy = Type.from({ length: total * perRow }, () => rand() - 0.5);
    const yAll = single.forward(x, shapeOf(total));
    const dxAll = single.backward(dy);
    const mine = (a) => a.subarray(first * perRow, (first + sizes[rank]) * perRow);
    const y = await sync.forward(mine(x).slice(), shapeOf(sizes[rank]));
    const dx = await sync.backward(mine(dy).slice());
    diff.y = Math.max(diff.y, worst(y, mine(yAll)));
    diff.dx = Math.max(diff.dx, worst(dx, mine(dxAll)));
  }
  for (const key of ['runningMean', 'runningVar', 'gammaGrad', 'betaGrad']) diff[key] = worst(sync[key], single[key]);
  return {
    diff,
    numBatchesTracked: [sync.numBatchesTracked, single.numBatchesTracked],
    runningVar: Array.from(sync.runningVar),
  };
}

async function main() {
  const nchw = await run(1);
  const nhwc = await run(-1);
  report({ rank, size, rows: sizes[rank], backend: new BatchNorm(1).backend.name, nchw, nhwc });
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
