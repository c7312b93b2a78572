// Process and thread lifecycles around in-flight native work, in a child process so that a
// hang or a crash is the parent test's failure. Usage:
//   node lifecycle-child.cjs <path of the .node file> <scenario>
// Writes "done <Date.now()>" on stdout when its own work is finished; the parent measures
// how long the process then takes to exit.
'use strict';
const { Worker } = require('node:worker_threads');
const path = require('node:path');
const { invoke, makeCall, OPS } = require('./raw-ops.cjs');

const [bindingPath, scenario] = process.argv.slice(2);
const binding = require(bindingPath);

/** Mixed Async calls, some above the parallel cut-off so the rayon pool is busy. */
function mixedCalls(count) {
  const ops = Object.keys(OPS);
  return Array.from({ length: count }, (_, i) =>
    makeCall(ops[i % ops.length], i % 2 ? 'f64' : 'f32', {
      shape: i % 3 === 0 ? [16, 32, 200] : [6, 5, 7],
      seed: i,
    }),
  );
}

function done() {
  process.stdout.write(`done ${Date.now()}\n`);
}

const SCENARIOS = {
  /** Finish all work, then let the event loop drain: nothing native may keep it alive. */
  async 'exit-after-work'() {
    await Promise.all(mixedCalls(200).map((call) => invoke(binding, call, true)));
    binding.setNumThreads(3);
    await Promise.all(mixedCalls(20).map((call) => invoke(binding, call, true)));
    done();
  },
  /** process.exit while large calls are still running on the pool. */
  async 'exit-with-work-in-flight'() {
    for (const call of mixedCalls(60)) invoke(binding, call, true);
    const big = makeCall('train', 'f32', { shape: [64, 64, 4096], seed: null });
    invoke(binding, big, true);
    done();
    setTimeout(() => process.exit(0), 5);
  },
  /** Workers that start Async work and are terminated before it settles. */
  async 'terminate-workers-mid-flight'() {
    const script = path.join(__dirname, 'compute-worker.cjs');
    const cases = Array.from({ length: 40 }, (_, i) => ({
      op: Object.keys(OPS)[i % 7],
      dtype: i % 2 ? 'f64' : 'f32',
      shape: [16, 32, 400],
      axis: 1,
      seed: i,
      async: true,
    }));
    for (let round = 0; round < 8; round++) {
      const workers = Array.from({ length: 3 }, () => new Worker(script, { workerData: { bindingPath, cases } }));
      await new Promise((resolve) => setTimeout(resolve, 20 + round * 15));
      await Promise.all(workers.map((w) => w.terminate()));
    }
    // The main thread's own addon instance still works after the workers' envs are gone.
    const check = makeCall('eval', 'f32', { shape: [4, 3], seed: 1 });
    await invoke(binding, check, true);
    if (check.args[check.params.findIndex((p) => p.name === 'out')][0] === -7.25) throw new Error('eval wrote nothing');
    done();
  },
};

SCENARIOS[scenario]().catch((e) => {
  process.stderr.write(`scenario ${scenario} failed: ${e?.stack ?? e}\n`);
  process.exitCode = 2;
});
