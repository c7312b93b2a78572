// `npm run build:cross`: on Linux x64, every Linux target of package.json's napi.targets built
// the way the release workflow builds it (scripts/targets.mjs gives both the same `npm run
// build:native -- --target … -x` command: cargo-zigbuild, glibc 2.17 for gnu), `cargo clippy
// --target … -D warnings` for each, the binaries moved into npm/<platform>/ by `napi artifacts`
// as in the publish job, then scripts/check-prebuilt.mjs. Installs nothing: a missing tool
// fails here, naming it (`bash scripts/install-cross-tools.sh` installs them all).
// The macOS and Windows targets need their vendors' SDKs and are left to the workflow.
import { execFileSync, execSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { checkPrebuilt } from './check-prebuilt.mjs';
import { root, TOOLS, targets } from './targets.mjs';

const started = Date.now();
const seconds = (since) => `${((Date.now() - since) / 1000).toFixed(0)} s`;
const die = (message) => {
  console.error(`build:cross: ${message}`);
  process.exit(1);
};

if (process.platform !== 'linux' || process.arch !== 'x64') die('runs on Linux x64 only');

// The tools scripts/install-cross-tools.sh puts into the checkout come first.
const tools = join(root, '.tools', 'cross', 'bin');
process.env.PATH = `${tools}${delimiter}${process.env.PATH}`;

const all = targets();
const linux = all.filter((t) => t.zig);
for (const t of all.filter((t) => !t.zig)) console.log(`build:cross: skipping ${t.target} (built on ${t.host})`);

const output = (command, args) => {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
};
const problems = [];
const zig = output('zig', ['version']);
if (zig !== TOOLS.zig) problems.push(`zig ${TOOLS.zig} on PATH (found: ${zig ?? 'none'})`);
// Without it, napi build -x would `cargo install cargo-zigbuild` itself.
const zigbuild = output('cargo-zigbuild', ['--version']);
if (zigbuild !== `cargo-zigbuild ${TOOLS.cargoZigbuild}`) {
  problems.push(`cargo-zigbuild ${TOOLS.cargoZigbuild} on PATH (found: ${zigbuild ?? 'none'})`);
}
const installed = (output('rustup', ['target', 'list', '--installed']) ?? '').split('\n');
for (const t of linux) if (!installed.includes(t.target)) problems.push(`rustup target ${t.target}`);
if (output('readelf', ['--version']) === null) problems.push('readelf (binutils)');
if (problems.length) {
  die(`missing:\n  ${problems.join('\n  ')}\nrun \`bash scripts/install-cross-tools.sh\` (see docs/contributing.md)`);
}

const run = (command, env = {}) => {
  console.log(
    `\n$ ${Object.entries(env)
      .map(([k, v]) => `${k}='${v}' `)
      .join('')}${command}`,
  );
  execSync(command, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
};

// Where the release job's download-artifact step puts them, inside target/.
const artifacts = join(root, 'target', 'cross-artifacts');
rmSync(artifacts, { recursive: true, force: true });
for (const t of linux) {
  const since = Date.now();
  // musl: the flag napi build adds there, without which cargo drops the cdylib (and its check).
  const rustflags = t.libc === 'musl' ? `${process.env.RUSTFLAGS ?? ''} -C target-feature=-crt-static`.trim() : null;
  run(
    `cargo clippy --workspace --all-targets --target ${t.target} -- -D warnings`,
    rustflags ? { RUSTFLAGS: rustflags } : {},
  );
  // The build writes native/batchnorm.<platform>.node; a host build there is kept aside.
  const fileName = `batchnorm.${t.platform}.node`;
  const built = join(root, 'native', fileName);
  const kept = `${built}.host`;
  if (existsSync(built)) renameSync(built, kept);
  try {
    run(t.build);
    mkdirSync(join(artifacts, `bindings-${t.target}`), { recursive: true });
    renameSync(built, join(artifacts, `bindings-${t.target}`, fileName));
  } finally {
    if (existsSync(kept)) renameSync(kept, built);
  }
  rmSync(join(root, 'npm', t.platform, fileName), { force: true });
  console.log(`build:cross: ${t.target} clippy and build took ${seconds(since)}`);
}
// `napi artifacts` wants every configured target: a config naming only these stands in for
// package.json's napi field. It also copies each binary to the package root (git-ignored).
const config = join(artifacts, 'napi.json');
writeFileSync(config, JSON.stringify({ binaryName: 'batchnorm', targets: linux.map((t) => t.target) }));
run(`npm run artifacts -- --output-dir ${artifacts} --config-path ${config}`);
for (const t of linux) rmSync(join(root, `batchnorm.${t.platform}.node`), { force: true });

checkPrebuilt(linux);
console.log(`build:cross: ${linux.map((t) => t.target).join(', ')} built and checked in ${seconds(started)}`);
