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

// Counts calls into the raw binding (the same module object the loader gets from require's
// cache), then makes one tiny and one large training call on the native backend.
const probe = `
const { platformTriple } = require('./dist/src/native.js');
const raw = require('./native/batchnorm.' + platformTriple() + '.node');
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
    expect(r.stderr).toMatch(/TypeError: BATCHNORM_NATIVE_MIN_ELEMENTS must be a non-negative integer, got "lots"/);
  });
});
