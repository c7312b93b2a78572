// A worker doing a few all-reduces over shared memory, where one rank may fail at one round:
// 'throw' (an over-capacity buffer: the all-reduce throws before the barrier), 'exit' (the
// worker ends in the middle of training) or 'crash' (its own code throws, outside the library).
// Posts { ok: true } or { error: 'Name: message' }.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { sharedAllReduce } = require(workerData.allReduceModule);

const { memory, rank, options, fail } = workerData;

async function main() {
  const allReduce = sharedAllReduce(memory, rank, options);
  for (let round = 0; round < 4; round++) {
    if (fail && fail.rank === rank && fail.round === round) {
      if (fail.how === 'exit') process.exit(3);
      if (fail.how === 'crash') throw new Error('the worker crashed');
      if (fail.how === 'throw') await allReduce(new Float64Array(1000));
    }
    await allReduce(Float64Array.of(rank, round));
  }
  parentPort.postMessage({ ok: true });
}

main().catch((e) => {
  if (fail?.how === 'crash' && fail.rank === rank) throw e;
  parentPort.postMessage({ error: `${e.name}: ${e.message}` });
});
