// What a user gets from `npm install batchnorm`: the manifests that decide it, the tarball's file
// list, and a real install of the packed tarballs into a fresh project with no network and no
// Rust toolchain, checked through require() and import() on the native and the js path.
// Needs `npm run build` first (`npm test` does it). The install half runs only where
// native/batchnorm.linux-x64-gnu.node was built.
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const version: string = manifest.version;

/** napi.targets -> the platform package napi-rs makes for it (npm/<dir>, os/cpu/libc fields). */
const PLATFORMS: Record<string, { dir: string; os: string; cpu: string; libc?: string }> = {
  'x86_64-unknown-linux-gnu': { dir: 'linux-x64-gnu', os: 'linux', cpu: 'x64', libc: 'glibc' },
  'x86_64-unknown-linux-musl': { dir: 'linux-x64-musl', os: 'linux', cpu: 'x64', libc: 'musl' },
  'aarch64-unknown-linux-gnu': { dir: 'linux-arm64-gnu', os: 'linux', cpu: 'arm64', libc: 'glibc' },
  'x86_64-apple-darwin': { dir: 'darwin-x64', os: 'darwin', cpu: 'x64' },
  'aarch64-apple-darwin': { dir: 'darwin-arm64', os: 'darwin', cpu: 'arm64' },
  'x86_64-pc-windows-msvc': { dir: 'win32-x64-msvc', os: 'win32', cpu: 'x64' },
};

const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall'];

function run(
  command: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): SpawnSyncReturns<string> {
  // On Windows npm is npm.cmd, which Node only starts through a shell.
  const shell = process.platform === 'win32' && command === 'npm';
  return spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 120_000, shell });
}

function mustRun(command: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): string {
  const child = run(command, args, cwd, env);
  if (child.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} (in ${cwd}) exited with ${child.status}:\n${child.stderr}${child.error ?? ''}`,
    );
  }
  return child.stdout;
}

/** `npm pack --json` prints lifecycle-script output before the JSON; take the JSON. */
function packJson(stdout: string): { filename: string; files: { path: string }[] }[] {
  return JSON.parse(stdout.slice(stdout.search(/^\[/m)));
}

function requireBuild(): void {
  if (!existsSync(join(root, 'dist', 'index.js'))) {
    throw new Error('dist/index.js is missing: run `npm run build` first (`npm test` does)');
  }
}

describe('package manifests', () => {
  it('every napi target has a platform package in npm/ with the right name, version, os, cpu and libc', () => {
    const targets: string[] = manifest.napi.targets;
    expect([...targets].sort()).toEqual(Object.keys(PLATFORMS).sort());
    expect(readdirSync(join(root, 'npm')).sort()).toEqual(targets.map((t) => PLATFORMS[t].dir).sort());
    for (const target of targets) {
      const { dir, os, cpu, libc } = PLATFORMS[target];
      const platform = JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8'));
      const binary = `batchnorm.${dir}.node`;
      expect(platform).toMatchObject({
        name: `batchnorm-${dir}`,
        version,
        main: binary,
        files: [binary],
        os: [os],
        cpu: [cpu],
      });
      expect(platform.libc).toEqual(libc ? [libc] : undefined);
    }
  });

  it('the release workflow builds every napi target, from the description build:cross uses', () => {
    // scripts/targets.mjs: package.json's napi.targets, each with its runner and build command.
    const matrix: { target: string; platform: string; os: string; cpu: string; libc?: string; build: string }[] =
      JSON.parse(mustRun(process.execPath, [join('scripts', 'targets.mjs'), 'matrix'], root));
    expect(matrix.map((t) => t.target)).toEqual(manifest.napi.targets);
    for (const t of matrix) {
      const { dir, os, cpu, libc } = PLATFORMS[t.target];
      expect({ platform: t.platform, os: t.os, cpu: t.cpu, libc: t.libc }).toEqual({ platform: dir, os, cpu, libc });
      // Linux through cargo-zigbuild, gnu against glibc 2.17 (the README's floor).
      const zig = { glibc: '.2.17 -x', musl: ' -x' }[libc ?? ''] ?? '';
      expect(t.build).toBe(`npm run build:native -- --target ${t.target}${zig}`);
    }
    // The workflow's matrix is that output, not a list of its own.
    const workflow = readFileSync(join(root, '.github', 'workflows', 'release.yml'), 'utf8');
    expect(workflow).toContain('node scripts/targets.mjs matrix');
    expect(workflow).toMatch(/^\s*settings: \$\{\{ fromJSON\(needs\.targets\.outputs\.matrix\) \}\}$/m);
    expect(workflow).not.toMatch(/^\s*-?\s*target: /m);
    expect(manifest.scripts['build:cross']).toBe('node scripts/build-cross.mjs');
  });

  it('installing runs no scripts, so nothing is downloaded or compiled at install time', () => {
    const platformScripts = readdirSync(join(root, 'npm')).map(
      (dir) => JSON.parse(readFileSync(join(root, 'npm', dir, 'package.json'), 'utf8')).scripts,
    );
    for (const scripts of [manifest.scripts, ...platformScripts]) {
      for (const name of INSTALL_SCRIPTS) expect(scripts?.[name]).toBeUndefined();
    }
  });

  it('optionalDependencies are written at publish time by napi prepublish, not kept in the repo', () => {
    // Listing unpublished batchnorm-<platform> packages here would make `npm ci` fail (they
    // cannot be in package-lock.json). `napi prepublish` pins each to exactly `version`.
    expect(manifest.optionalDependencies).toBeUndefined();
    expect(manifest.scripts.prepublishOnly).toMatch(/^napi prepublish\b/);
  });

  it('the tarball holds the built package and nothing else', () => {
    requireBuild();
    const [packed] = packJson(mustRun('npm', ['pack', '--dry-run', '--json'], root));
    const files = packed.files.map((f) => f.path);
    for (const wanted of [
      'package.json',
      'LICENSE',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/native/binding.d.ts',
      'esm/index.mjs',
      // batchnorm/mpi's wrapper; its addon is never shipped (npm run build:mpi builds it).
      'esm/mpi.mjs',
      'dist/src/mpi/index.js',
      'dist/src/mpi/index.d.ts',
    ]) {
      expect(files).toContain(wanted);
    }
    const unwanted = files.filter(
      (file) =>
        /^(target|test|crates|src|native|npm|bench|examples)\//.test(file) || /fixtures|\.node$|\.map$/.test(file),
    );
    expect(unwanted).toEqual([]);
    const shipped =
      /^(package\.json|README\.md|docs\/[a-z-]+\.md|LICENSE|esm\/(index|mpi)\.mjs|dist\/index\.(js|d\.ts)|dist\/src\/.+\.(js|d\.ts)|dist\/native\/binding\.d\.ts)$/;
    expect(files.filter((file) => !shipped.test(file))).toEqual([]);
  });
});

const TRIPLE = 'linux-x64-gnu';
const builtBinary = join(root, 'native', `batchnorm.${TRIPLE}.node`);
const hasBinary = existsSync(builtBinary);
const installTitle = hasBinary
  ? 'packed and installed offline'
  : `packed and installed offline (SKIPPED: ${builtBinary} is missing; run \`npm run build:native\` on linux x64 glibc)`;
if (!hasBinary) console.warn(`test/package.test.ts: install tests skipped, ${builtBinary} is missing`);

// One small batch, hand-computed. Shape [2, 2], channel axis 1:
// channel 0 holds {1, 5}: mean 3, biased variance 4; channel 1 holds {10, 30}: mean 20, variance 100.
const EPS = 1e-5;
const INV_STD = [1 / Math.sqrt(4 + EPS), 1 / Math.sqrt(100 + EPS)];
const EXPECTED = {
  mean: [3, 20],
  invStd: INV_STD,
  // y = gamma * (x - mean) * invStd + beta with gamma [2, 0.5], beta [1, -1]
  y: [2 * -2 * INV_STD[0] + 1, 0.5 * -10 * INV_STD[1] - 1, 2 * 2 * INV_STD[0] + 1, 0.5 * 10 * INV_STD[1] - 1],
};

// Written into each consumer project; prints what the installed package did with the batch.
const REPORT_CJS = `module.exports = function report(bn, resolved) {
  const { y, mean, invStd } = bn.batchNormTrain(new Float64Array([1, 10, 5, 30]), [2, 2], {
    gamma: new Float64Array([2, 0.5]), beta: new Float64Array([1, -1]), eps: ${EPS},
  });
  console.log(JSON.stringify({
    backend: bn.backend.name, source: bn.nativeSource,
    loadError: bn.nativeLoadError ? bn.nativeLoadError.message : null, resolved,
    y: Array.from(y), mean: Array.from(mean), invStd: Array.from(invStd),
  }));
};
`;
const CHECK_CJS = `require('./report.cjs')(require('batchnorm'), require.resolve('batchnorm'));\n`;
const CHECK_MJS = `import report from './report.cjs';
report(await import('batchnorm'), typeof import.meta.resolve === 'function' ? import.meta.resolve('batchnorm') : null);
`;
// Type-checked (not run) against the installed declarations, as CommonJS and as ESM.
const CONSUMER_TS = `import { type Backend, type TrainResult, backend, batchNormTrain, nativeLoadError } from 'batchnorm';
// batchnorm/mpi's declarations, through its own export (type-checked only: no MPI here).
import { type Communicator, world } from 'batchnorm/mpi';
const chosen: Backend = backend;
const result: TrainResult = batchNormTrain(new Float32Array(4), [2, 2], { eps: 1e-3 });
const why: Error | null = nativeLoadError;
const connect: () => Communicator = world;
export { chosen, connect, result, why };
`;

interface Report {
  backend: string;
  source: string | null;
  loadError: string | null;
  resolved: string | null;
  y: number[];
  mean: number[];
  invStd: number[];
}

function expectHandComputed(report: Report): void {
  for (const key of ['y', 'mean', 'invStd'] as const) {
    expect(report[key]).toHaveLength(EXPECTED[key].length);
    report[key].forEach((value, i) => {
      expect(value).toBeCloseTo(EXPECTED[key][i], 12);
    });
  }
}

/**
 * The environment of a user's machine: no Rust (folders holding cargo or rustc leave PATH,
 * unless npm lives there too, and `noRust` puts failing cargo and rustc first), and no npm or
 * batchnorm settings from this test run.
 */
function userEnv(noRust: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const has = (dir: string, tool: string) => existsSync(join(dir, tool)) || existsSync(join(dir, `${tool}.exe`));
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('npm_') && !key.startsWith('BATCHNORM_')) env[key] = value;
  }
  const path = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir && (has(dir, 'npm') || !(has(dir, 'cargo') || has(dir, 'rustc'))));
  env.PATH = [noRust, ...path].join(delimiter);
  return { ...env, ...extra };
}

describe.skipIf(!hasBinary)(installTitle, () => {
  let work: string;
  let withNative: string;
  let jsOnly: string;

  const env = (extra?: Record<string, string>) => userEnv(join(work, 'no-rust'), extra);

  function check(project: string, script: 'check.cjs' | 'check.mjs', extra?: Record<string, string>): Report {
    return JSON.parse(mustRun(process.execPath, [script], project, env(extra)));
  }

  beforeAll(() => {
    requireBuild();
    work = mkdtempSync(join(tmpdir(), 'batchnorm-package-'));
    const tarballs = join(work, 'tarballs');
    const cache = join(work, 'npm-cache');
    mkdirSync(tarballs);
    const noRust = join(work, 'no-rust');
    mkdirSync(noRust);
    for (const tool of ['cargo', 'rustc']) {
      writeFileSync(join(noRust, tool), `#!/bin/sh\necho "${tool}: not on this machine" >&2\nexit 127\n`, {
        mode: 0o755,
      });
    }

    // 1. The main package as `npm publish` would ship it: `npm pack` (which runs prepack),
    // then the optionalDependencies that `napi prepublish` adds at publish time.
    const [packed] = packJson(mustRun('npm', ['pack', '--json', '--pack-destination', work], root));
    const staged = join(work, 'staged');
    mkdirSync(staged);
    mustRun('tar', ['-xzf', join(work, packed.filename), '-C', staged], work);
    const stagedManifestPath = join(staged, 'package', 'package.json');
    const stagedManifest = JSON.parse(readFileSync(stagedManifestPath, 'utf8'));
    stagedManifest.optionalDependencies = Object.fromEntries(
      manifest.napi.targets.map((t: string) => [`batchnorm-${PLATFORMS[t].dir}`, version]),
    );
    writeFileSync(stagedManifestPath, JSON.stringify(stagedManifest, null, 2));
    const [main] = packJson(
      mustRun('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tarballs], join(staged, 'package')),
    );

    // 2. The platform package as the release job makes it: npm/<platform> plus the binary.
    const platformDir = join(work, `platform-${TRIPLE}`);
    cpSync(join(root, 'npm', TRIPLE), platformDir, { recursive: true });
    copyFileSync(builtBinary, join(platformDir, `batchnorm.${TRIPLE}.node`));
    const [platform] = packJson(
      mustRun('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tarballs], platformDir),
    );

    // 3. Two fresh projects. `--offline`: nothing may come from the network. `--omit=optional`:
    // batchnorm's optionalDependencies name registry packages that this test has not published,
    // so npm is told not to install them rather than left to fail fetching them (which npm
    // forgives for optional dependencies, but a test should not lean on); a real install
    // fetches the one that matches the machine. The platform tarball named explicitly becomes
    // a direct dependency of the project, so it is installed anyway, at the top of
    // node_modules, where it also satisfies batchnorm's optional dependency on it.
    const install = (name: string, packages: string[]): string => {
      const project = join(work, name);
      mkdirSync(project);
      writeFileSync(
        join(project, 'package.json'),
        JSON.stringify({ name: `consumer-${name}`, version: '1.0.0', private: true }),
      );
      const args = ['install', '--offline', '--omit=optional', '--no-audit', '--no-fund', '--cache', cache];
      mustRun('npm', [...args, ...packages.map((file) => join(tarballs, file))], project, env());
      writeFileSync(join(project, 'report.cjs'), REPORT_CJS);
      writeFileSync(join(project, 'check.cjs'), CHECK_CJS);
      writeFileSync(join(project, 'check.mjs'), CHECK_MJS);
      return project;
    };
    withNative = install('with-native', [main.filename, platform.filename]);
    jsOnly = install('js-only', [main.filename]);
  }, 240_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs with no Rust toolchain on PATH', () => {
    const cargo = run('cargo', ['--version'], work, env());
    expect(cargo.status).not.toBe(0);
  });

  it('installs exactly the two tarballs', () => {
    expect(
      readdirSync(join(withNative, 'node_modules'))
        .filter((name) => !name.startsWith('.'))
        .sort(),
    ).toEqual(['batchnorm', `batchnorm-${TRIPLE}`]);
    expect(readdirSync(join(jsOnly, 'node_modules')).filter((name) => !name.startsWith('.'))).toEqual(['batchnorm']);
  });

  it('require() loads the binary from the platform package', () => {
    const report = check(withNative, 'check.cjs');
    expect(report).toMatchObject({ backend: 'native', source: `batchnorm-${TRIPLE}`, loadError: null });
    expect(report.resolved).toMatch(/node_modules[\\/]batchnorm[\\/]dist[\\/]index\.js$/);
    expectHandComputed(report);
  });

  it('require() of the installed package prints nothing (no warning for the absent local build)', () => {
    const child = run(process.execPath, ['-e', "require('batchnorm')"], withNative, env());
    expect(child.stdout + child.stderr).toBe('');
    expect(child.status).toBe(0);
  });

  it('import() goes through the ESM entry and loads the same binary', () => {
    const report = check(withNative, 'check.mjs');
    expect(report).toMatchObject({ backend: 'native', source: `batchnorm-${TRIPLE}`, loadError: null });
    if (report.resolved !== null) expect(report.resolved).toMatch(/node_modules\/batchnorm\/esm\/index\.mjs$/);
    expectHandComputed(report);
  });

  it('BATCHNORM_BACKEND=js picks the fallback even with the binary installed', () => {
    const report = check(withNative, 'check.cjs', { BATCHNORM_BACKEND: 'js' });
    expect(report.backend).toBe('js');
    expect(report.loadError).toMatch(/BATCHNORM_BACKEND=js/);
    expectHandComputed(report);
  });

  it.each(['check.cjs', 'check.mjs'] as const)(
    'without the platform package %s falls back to js and says what it tried',
    (script) => {
      const report = check(jsOnly, script);
      expect(report.backend).toBe('js');
      expect(report.source).toBeNull();
      expect(report.loadError).toContain(`no native binary for ${TRIPLE}`);
      expect(report.loadError).toContain(`batchnorm.${TRIPLE}.node`);
      expect(report.loadError).toContain(`batchnorm-${TRIPLE}`);
      expect(report.loadError).toContain('BATCHNORM_NATIVE_PATH');
      expectHandComputed(report);
    },
  );

  it.each(['check.cjs', 'check.mjs'] as const)(
    'BATCHNORM_BACKEND=native without a binary makes %s fail at import, clearly',
    (script) => {
      const child = run(process.execPath, [script], jsOnly, env({ BATCHNORM_BACKEND: 'native' }));
      expect(child.status).not.toBe(0);
      expect(child.stdout).toBe('');
      expect(child.stderr).toContain('BATCHNORM_BACKEND=native but the native binary could not be loaded');
      expect(child.stderr).toContain(`batchnorm-${TRIPLE}`);
    },
  );

  it('BATCHNORM_NATIVE_PATH naming something else (a folder with index.js, JSON) is a load failure that says so', () => {
    const folder = join(work, 'not-an-addon');
    mkdirSync(folder);
    writeFileSync(join(folder, 'index.js'), 'module.exports = { trainF32() {} };\n');
    writeFileSync(join(work, 'settings.json'), '{"a": 1}\n');
    for (const path of [folder, join(work, 'settings.json')]) {
      const report = check(jsOnly, 'check.cjs', { BATCHNORM_NATIVE_PATH: path });
      expect(report.backend).toBe('js');
      expect(report.loadError).toContain(`${path}: not this package's addon`);
    }
    // A stale build of this addon, whose argument lists differ from what the loader passes.
    const stale = join(work, 'stale-addon');
    mkdirSync(stale);
    writeFileSync(join(stale, 'index.js'), 'module.exports = { bindingInterface: () => 1 };\n');
    const report = check(jsOnly, 'check.cjs', { BATCHNORM_NATIVE_PATH: stale });
    expect(report.backend).toBe('js');
    expect(report.loadError).toMatch(/built for binding interface 1, but this package needs \d+; rebuild it/);
  });

  it('BATCHNORM_NATIVE_PATH loads a binary from anywhere', () => {
    const elsewhere = join(work, 'elsewhere', 'my-batchnorm.node');
    mkdirSync(join(work, 'elsewhere'));
    copyFileSync(builtBinary, elsewhere);
    const report = check(jsOnly, 'check.cjs', { BATCHNORM_NATIVE_PATH: elsewhere });
    expect(report).toMatchObject({ backend: 'native', source: elsewhere, loadError: null });
    expectHandComputed(report);
    // A relative path means relative to the working directory, as with any other path a user types.
    const relative = check(jsOnly, 'check.mjs', {
      BATCHNORM_NATIVE_PATH: join('..', 'elsewhere', 'my-batchnorm.node'),
    });
    expect(relative).toMatchObject({ backend: 'native', source: elsewhere, loadError: null });
  });

  it.each([
    ['require', "try { require('batchnorm/mpi'); } catch (e) { console.log(e.message); }", 'commonjs'],
    ['import', "try { await import('batchnorm/mpi'); } catch (e) { console.log(e.message); }", 'module'],
  ])('batchnorm/mpi (its addon is not shipped): %s throws how to build it', (_, source, type) => {
    const child = run(process.execPath, [`--input-type=${type}`, '-e', source], jsOnly, env());
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout).toMatch(
      /^batchnorm\/mpi: the MPI addon is not built \(.*node_modules.batchnorm.native-mpi.batchnorm_mpi\.node does not exist\)/,
    );
    expect(child.stdout).toContain('npm run build:mpi');
  });

  it('the installed type declarations compile for CommonJS and ESM consumers', () => {
    writeFileSync(join(withNative, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(join(withNative, 'consumer.mts'), CONSUMER_TS);
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = [
      '--noEmit',
      '--strict',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
    ];
    const child = run(process.execPath, [tsc, ...args, 'consumer.ts', 'consumer.mts'], withNative, env());
    expect(child.stdout + child.stderr).toBe('');
    expect(child.status).toBe(0);
  });
});
