// The native backend runs tensors below `nativeMinElements` on the TypeScript kernels (a call
// into native code costs more than the work). The other suites set the threshold to 0 so they
// exercise the native kernels at every size; these checks run children with the default.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const built = existsSync(join(root, 'dist', 'index.js')) && existsSync(join(root, 'native'));

function runChild(script: string, env: Record<string, string | undefined>) {
  const childEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  return spawnSync(process.execPath, ['-e', script], { cwd: root, env: childEnv, encoding: 'utf8' });
}

// Counts calls into the raw binding the loader took (BATCHNORM_NATIVE_PATH's under
// scripts/asan.sh, else the local build: the same module object, from require's
// cache), then makes one tiny and one large training call on the native backend.
const probe = `
const { platformTriple } = require('./dist/src/native.js');
const raw = require(process.env.BATCHNORM_NATIVE_PATH || './native/batchnorm.' + platformTriple() + '.node');
let calls = 0;
const trainF32 = raw.trainF32;
raw.trainF32 = (...args) => { calls++; return trainF32(...args); };
const bn = require('./dist/index.js');
const tiny = Float32Array.from({ length: 8 }, (_, i) => Math.sin(i) * 3 + 1);
const large = Float32Array.from({ length: 8192 }, (_, i) => Math.sin(i) * 3 + 1);
const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
const identical = same(bn.native.batchNormTrain(tiny, [2, 4]).y, bn.js.batchNormTrain(tiny, [2, 4]).y);
const tinyCalls = calls;
bn.native.batchNormTrain(large, [2048, 4]);
console.log(JSON.stringify({ min: bn.nativeMinElements, backend: bn.backend.name, identical, tinyCalls, largeCalls: calls - tinyCalls }));
`;

describe.skipIf(!built)('tiny tensors on the native backend', () => {
  it('run the TypeScript kernels by default: bit-identical to js', () => {
    const r = runChild(probe, { BATCHNORM_NATIVE_MIN_ELEMENTS: undefined });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out).toEqual({ min: 4096, backend: 'native', identical: true, tinyCalls: 0, largeCalls: 1 });
  });

  it('BATCHNORM_NATIVE_MIN_ELEMENTS sets the threshold (0: always native code)', () => {
    const r = runChild(probe, { BATCHNORM_NATIVE_MIN_ELEMENTS: '0' });
    const out = JSON.parse(r.stdout);
    expect(out.min).toBe(0);
    expect(out.tinyCalls).toBe(1);
  });

  it('a malformed BATCHNORM_NATIVE_MIN_ELEMENTS fails the import with a TypeError naming it', () => {
    const r = runChild(probe, { BATCHNORM_NATIVE_MIN_ELEMENTS: 'lots' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(
      /TypeError: BATCHNORM_NATIVE_MIN_ELEMENTS must be a whole number \(a number of elements, 0 to \d+\), got "lots"/,
    );
  });
});

// Every op, sync and Async, on a tiny and a large tensor: the tiny calls reach no binding
// function and give js's exact answers; the large ones call into the binding.
const everyOp = `
const { platformTriple } = require('./dist/src/native.js');
const raw = require(process.env.BATCHNORM_NATIVE_PATH || './native/batchnorm.' + platformTriple() + '.node');
let calls = 0;
for (const name of Object.keys(raw)) {
  const f = raw[name];
  if (typeof f === 'function' && /(F32|F64)(Async)?$/.test(name)) raw[name] = (...a) => { calls++; return f(...a); };
}
const bn = require('./dist/index.js');
const data = (n, phase) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + phase) * 3 + 1);
async function run(backend, n) {
  const shape = [n / 4, 4];
  const x = data(n, 0), dy = data(n, 1);
  const opts = { gamma: data(4, 2), beta: data(4, 3) };
  const grad = { gamma: opts.gamma };
  const out = {};
  for (const suffix of ['', 'Async']) {
    const call = (op, ...args) => backend[op + suffix](...args);
    const t = await call('batchNormTrain', x, shape, opts);
    const stats = await call('batchNormStats', x, shape);
    const sums = await call('batchNormBackwardSums', dy, x, shape, t, grad);
    out['train' + suffix] = t;
    out['eval' + suffix] = await call('batchNormEval', x, shape, { ...opts, runningMean: t.mean, runningVar: data(4, 4).map(Math.abs) });
    out['backward' + suffix] = await call('batchNormBackward', dy, x, shape, t, grad);
    out['stats' + suffix] = stats;
    out['trainWithStats' + suffix] = await call('batchNormTrainWithStats', x, shape, stats, opts);
    out['sums' + suffix] = sums;
    out['backwardWithSums' + suffix] = await call('batchNormBackwardWithSums', dy, x, shape, t, sums, grad);
  }
  return out;
}
const flat = (o) => JSON.stringify(o, (_, v) => (ArrayBuffer.isView(v) ? Array.from(v) : v));
(async () => {
  const before = calls;
  const tiny = await run(bn.native, 8);
  const tinyCalls = calls - before;
  const same = flat(tiny) === flat(await run(bn.js, 8));
  const mid = calls;
  await run(bn.native, 8192);
  console.log(JSON.stringify({ ops: Object.keys(tiny).length, same, tinyCalls, largeCalls: calls - mid }));
})();
`;

describe.skipIf(!built)('routing of every op', () => {
  it('tiny tensors: no binding call on any op, sync or Async, and js answers; large: binding calls', () => {
    const r = runChild(everyOp, { BATCHNORM_NATIVE_MIN_ELEMENTS: undefined });
    expect(r.stderr).toBe('');
    // 7 kernels per form, each called once per form on the large tensor.
    expect(JSON.parse(r.stdout)).toEqual({ ops: 14, same: true, tinyCalls: 0, largeCalls: 14 });
  });
});
