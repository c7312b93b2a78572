// A worker thread that loads the addon itself and runs raw calls, all in flight at once,
// posting back what each call wrote. Used to check that the context-aware addon computes
// correctly in several threads at the same time.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { invoke, makeCall, outputsOf } = require('./raw-ops.cjs');

const binding = require(workerData.bindingPath);

/** workerData.cases: [{ op, dtype, shape, axis, seed, async }]. */
async function main() {
  const calls = workerData.cases.map((c) => makeCall(c.op, c.dtype, c));
  await Promise.all(calls.map((call, i) => invoke(binding, call, workerData.cases[i].async)));
  parentPort.postMessage({ threads: binding.getNumThreads(), outputs: calls.map(outputsOf) });
}

main().catch((e) => parentPort.postMessage({ error: String(e?.stack ?? e) }));
