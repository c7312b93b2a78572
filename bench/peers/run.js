// `npm run bench:peers [-- ARGS]`: installs bench/peers from its lock file when that has not
// been done (or the lock file is newer than the install), compiles, and runs main.ts with ARGS.
// onnxruntime-node's install script would fetch CUDA binaries from NuGet on linux-x64: the two
// variables skip that (its CPU binaries ship in the npm package), so the install is offline.
const { spawnSync } = require('node:child_process');
const { existsSync, statSync } = require('node:fs');
const { join } = require('node:path');

const here = __dirname;
const root = join(here, '..', '..');

function run(command, args, env = {}) {
  const result = spawnSync(command, args, {
    stdio: 'inherit',
    env: { ...process.env, ...env },
    shell: process.platform === 'win32' && command === 'npm',
  });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

const installed = join(here, 'node_modules', '.package-lock.json');
const lock = join(here, 'package-lock.json');
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  console.log('bench:peers: npm ci --prefix bench/peers (ONNXRUNTIME_NODE_INSTALL=skip)');
  // Under `npm run`, npm_execpath is the npm that runs us.
  const npm = process.env.npm_execpath;
  const [command, prefix] = npm?.endsWith('.js') ? [process.execPath, [npm]] : ['npm', []];
  run(command, [...prefix, 'ci', '--prefix', here, '--no-audit', '--no-fund'], {
    ONNXRUNTIME_NODE_INSTALL: 'skip',
    ONNXRUNTIME_NODE_INSTALL_CUDA: 'skip',
  });
}
run(process.execPath, [require.resolve('typescript/bin/tsc', { paths: [root] }), '-p', here]);
run(process.execPath, [join(here, 'dist', 'bench', 'peers', 'main.js'), ...process.argv.slice(2)]);
