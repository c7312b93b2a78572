// One rule for every BATCHNORM_* variable, whether JS or the Rust core reads it (issue 13,
// item 11): unset or blank is the default; a value that does not parse, or is out of range,
// stops the import with an error naming the variable instead of being ignored.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const report = `
const bn = require('./dist/index.js');
console.log(JSON.stringify({ backend: bn.backend.name, threads: bn.getNumThreads(), min: bn.nativeMinElements }));
`;

function load(env: Record<string, string>) {
  const r = spawnSync(process.execPath, ['-e', report], {
    cwd: root,
    env: { ...process.env, BATCHNORM_BACKEND: '', ...env },
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('BATCHNORM_* variables', () => {
  it.each([
    [
      'BATCHNORM_NUM_THREADS',
      '3000',
      /RangeError: BATCHNORM_NUM_THREADS must be in \[1, 1024\] \(a number of threads\), got 3000/,
    ],
    ['BATCHNORM_NUM_THREADS', '0', /RangeError: BATCHNORM_NUM_THREADS must be in \[1, 1024\]/],
    ['BATCHNORM_NUM_THREADS', '-1', /TypeError: BATCHNORM_NUM_THREADS must be a whole number .*got "-1"/],
    ['BATCHNORM_NUM_THREADS', '2.0', /TypeError: BATCHNORM_NUM_THREADS must be a whole number .*got "2.0"/],
    ['BATCHNORM_NUM_THREADS', 'garbage', /TypeError: BATCHNORM_NUM_THREADS must be a whole number/],
    ['BATCHNORM_PARALLEL_MIN_ELEMENTS', '1e6', /TypeError: BATCHNORM_PARALLEL_MIN_ELEMENTS must be a whole number/],
    ['BATCHNORM_STREAM_MIN_BYTES', '0x100', /TypeError: BATCHNORM_STREAM_MIN_BYTES must be a whole number/],
    ['BATCHNORM_OUTPUT_POOL_BYTES', 'big', /TypeError: BATCHNORM_OUTPUT_POOL_BYTES must be a whole number/],
    ['BATCHNORM_NATIVE_MIN_ELEMENTS', '12abc', /TypeError: BATCHNORM_NATIVE_MIN_ELEMENTS must be a whole number/],
    [
      'BATCHNORM_BACKEND',
      'wasm',
      /TypeError: BATCHNORM_BACKEND must be one of auto, js, native \(or unset\), got "wasm"/,
    ],
  ])('%s=%s stops the import, naming the variable', (name, value, message) => {
    const r = load({ [name]: value });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  it('valid values apply, with surrounding spaces and any letter case for words', () => {
    const r = load({ BATCHNORM_NUM_THREADS: ' 3 ', BATCHNORM_BACKEND: 'JS', BATCHNORM_NATIVE_MIN_ELEMENTS: '10' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.backend).toBe('js');
    expect(out.min).toBe(10);
  });

  it('blank means unset', () => {
    const r = load({ BATCHNORM_NUM_THREADS: '  ', BATCHNORM_OUTPUT_POOL_BYTES: '' });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('the native pool starts the threads BATCHNORM_NUM_THREADS names', () => {
    const r = load({ BATCHNORM_NUM_THREADS: '3' });
    const out = JSON.parse(r.stdout);
    if (out.backend === 'native') expect(out.threads).toBe(3);
  });
});
