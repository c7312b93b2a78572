// The Linux binaries `npm run build:cross` leaves in npm/<platform>/ (the release recipe: zig,
// glibc 2.17). The script checks them itself and fails loudly; this file repeats the check where
// they exist, and runs the x64 glibc one through the loader. Skipped, saying so, where
// build:cross has not run (`npm test` does not need the cross tools).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { platformTriple } from '../src/native';

const root = join(__dirname, '..');
const PLATFORMS = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu'];
const binary = (platform: string) => join(root, 'npm', platform, `batchnorm.${platform}.node`);
const missing = PLATFORMS.filter((p) => !existsSync(binary(p)));
const title = missing.length
  ? `prebuilt Linux binaries (SKIPPED: no ${missing.map(binary).join(', ')}; run npm run build:cross)`
  : 'prebuilt Linux binaries';
if (missing.length)
  console.warn(`test/prebuilt.test.ts: skipped, ${missing.join(', ')} not built (npm run build:cross)`);

const hostIsX64Gnu = platformTriple() === 'linux-x64-gnu';

describe.skipIf(missing.length > 0)(title, () => {
  it('pass scripts/check-prebuilt.mjs (ELF machine, glibc floor, entry point, package contents)', () => {
    const child = spawnSync(process.execPath, [join('scripts', 'check-prebuilt.mjs')], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout.match(/^ok /gm)).toHaveLength(PLATFORMS.length);
  });

  it.skipIf(!hostIsX64Gnu)('the linux-x64-gnu one loads through the loader and agrees with the js backend', () => {
    // Shape [2, 3, 4], channel axis 1, in two processes: the native one from the prebuilt file
    // only (BATCHNORM_BACKEND=native fails the import if it cannot load it), and the js one.
    const script = `
      const bn = require('./dist/index.js');
      const x = Float64Array.from({ length: 24 }, (_, i) => Math.sin(i) * 10 + i);
      const { y, mean, invStd } = bn.batchNormTrain(x, [2, 3, 4]);
      console.log(JSON.stringify({ source: bn.nativeSource, backend: bn.backend.name,
        values: [...y, ...mean, ...invStd] }));
    `;
    const run = (backend: string) => {
      const child = spawnSync(process.execPath, ['-e', script], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, BATCHNORM_NATIVE_PATH: binary('linux-x64-gnu'), BATCHNORM_BACKEND: backend },
      });
      expect(child.stderr).toBe('');
      return JSON.parse(child.stdout) as { source: string | null; backend: string; values: number[] };
    };
    const native = run('native');
    const js = run('js');
    expect(native).toMatchObject({ source: binary('linux-x64-gnu'), backend: 'native' });
    expect(js.backend).toBe('js');
    expect(native.values).toHaveLength(24 + 3 + 3);
    native.values.forEach((v, i) => {
      expect(v).toBeCloseTo(js.values[i], 12);
    });
  });
});
