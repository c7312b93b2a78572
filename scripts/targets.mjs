// The one description of how each prebuilt binary is made, read by the release workflow (its
// build matrix is `node scripts/targets.mjs matrix`) and by `npm run build:cross`, so the two
// cannot drift. The targets themselves are package.json's `napi.targets`; this file only says,
// per target, which runner builds it, the `npm run build:native` command, and how it is tested.
//
//   node scripts/targets.mjs matrix     the workflow's matrix (JSON, one line)
//   node scripts/targets.mjs tools      the pinned zig and cargo-zigbuild versions (`zig=…` lines)
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The cross-compilation tools of the Linux builds, in the workflow and here (pip's `ziglang`
 *  and `cargo-zigbuild` packages carry the same version numbers). */
export const TOOLS = { zig: '0.14.1', cargoZigbuild: '0.24.1' };

/** Oldest glibc the gnu binaries must load on (the README's promise), as zig's target suffix. */
export const GLIBC_FLOOR = '2.17';

const ARCH = { x86_64: 'x64', aarch64: 'arm64' };

/**
 * One napi target: its napi-rs platform name (the npm/<platform> folder and the
 * `batchnorm.<platform>.node` file the loader requires), npm's os/cpu/libc, and the release
 * job's settings.
 * @param {string} target a Rust target triple from napi.targets
 */
export function describe(target) {
  const [arch, , system, abi] = target.split('-');
  const cpu = ARCH[arch];
  if (!cpu) throw new Error(`scripts/targets.mjs: no rule for the architecture of ${target}`);
  const build = (args) => `npm run build:native -- ${args}`;
  if (system === 'linux' && (abi === 'gnu' || abi === 'musl')) {
    const libc = abi === 'gnu' ? 'glibc' : 'musl';
    // cargo-zigbuild (`-x`); the `.2.17` suffix links the gnu ones against glibc 2.17.
    const zigTarget = abi === 'gnu' ? `${target}.${GLIBC_FLOOR}` : target;
    const settings = {
      target,
      platform: `linux-${cpu}-${abi}`,
      os: 'linux',
      cpu,
      libc,
      // arm64 is built and tested on GitHub's native arm64 runner: it cannot run here (see
      // docs/contributing.md), and under QEMU only a load check could.
      host: cpu === 'arm64' ? 'ubuntu-24.04-arm' : 'ubuntu-latest',
      build: build(`--target ${zigTarget} -x`),
      zig: TOOLS.zig,
      zigbuild: TOOLS.cargoZigbuild,
    };
    if (libc === 'glibc') return { ...settings, test: 'vitest' };
    // vitest's own native dependencies are the host's (glibc): musl gets a load check in Docker.
    return { ...settings, 'smoke-image': 'node:22-alpine', 'smoke-platform': 'linux/amd64' };
  }
  if (system === 'darwin') {
    return {
      target,
      platform: `darwin-${cpu}`,
      os: 'darwin',
      cpu,
      host: 'macos-latest',
      build: build(`--target ${target}`),
      // macos-latest is arm64: the x64 binary is cross-compiled there and cannot be tested.
      ...(cpu === 'arm64' ? { test: 'vitest' } : {}),
    };
  }
  if (system === 'windows' && abi === 'msvc') {
    return {
      target,
      platform: `win32-${cpu}-msvc`,
      os: 'win32',
      cpu,
      host: 'windows-latest',
      build: build(`--target ${target}`),
      test: 'vitest',
    };
  }
  throw new Error(`scripts/targets.mjs: no rule for ${target}`);
}

/** package.json's napi.targets, each described. */
export function targets() {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  return manifest.napi.targets.map(describe);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const command = process.argv[2];
  if (command === 'matrix') {
    console.log(JSON.stringify(targets()));
  } else if (command === 'tools') {
    console.log(`zig=${TOOLS.zig}\ncargo-zigbuild=${TOOLS.cargoZigbuild}`);
  } else {
    console.error('usage: node scripts/targets.mjs matrix|tools');
    process.exit(2);
  }
}
