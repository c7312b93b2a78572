// Checks the prebuilt Linux binaries in npm/<platform>/ (what `npm run build:cross` leaves
// there, or `napi artifacts` in the release job): that each is an ELF shared object for its
// target, needs nothing newer than glibc 2.17 (gnu) or nothing of glibc at all (musl), exports
// the napi entry point, sits in its platform package under the name the loader requires, and
// that `npm pack` of that package holds exactly the binary, package.json and README.md (npm
// always adds a README; ours says what the package is). Exits non-zero naming every failure.
//
//   node scripts/check-prebuilt.mjs [target ...]    default: every Linux target in napi.targets
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GLIBC_FLOOR, root, targets } from './targets.mjs';

/** readelf -h's Machine line per npm cpu. */
const MACHINE = { x64: 'Advanced Micro Devices X86-64', arm64: 'AArch64' };
/** Libraries that only glibc provides (musl's libc.so holds all of them). */
const GLIBC_LIBRARIES = /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux.*)$/;

const readelf = (...args) => execFileSync('readelf', ['-W', ...args], { encoding: 'utf8' });

/** [major, minor] of `2.17`, compared as numbers. */
const versionKey = (v) => v.split('.').map(Number);
const newer = (a, b) => {
  const [x, y] = [versionKey(a), versionKey(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  }
  return false;
};

/**
 * Checks one target's platform package; returns its failures (empty when all is well) and a
 * one-line summary of what was found.
 * @param {ReturnType<typeof import('./targets.mjs').describe>} t
 */
export function checkTarget(t) {
  const failures = [];
  const fail = (what) => failures.push(`${t.target}: ${what}`);
  const dir = join(root, 'npm', t.platform);
  const fileName = `batchnorm.${t.platform}.node`;
  const file = join(dir, fileName);
  if (!existsSync(file)) {
    fail(`${file} is missing (run npm run build:cross)`);
    return { failures, summary: `${t.target}: missing` };
  }

  // The package the loader requires: `batchnorm-<platform>`, whose main is the binary.
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const expected = { name: `batchnorm-${t.platform}`, main: fileName, os: [t.os], cpu: [t.cpu], libc: [t.libc] };
  for (const [key, value] of Object.entries(expected)) {
    if (JSON.stringify(manifest[key]) !== JSON.stringify(value)) {
      fail(`npm/${t.platform}/package.json ${key} is ${JSON.stringify(manifest[key])}, not ${JSON.stringify(value)}`);
    }
  }

  const header = readelf('-h', file);
  const field = (name) => header.match(new RegExp(`^\\s*${name}:\\s*(.+?)\\s*$`, 'm'))?.[1];
  const want = { Class: 'ELF64', Data: "2's complement, little endian", 'OS/ABI': 'UNIX - System V' };
  Object.assign(want, { Type: 'DYN (Shared object file)', Machine: MACHINE[t.cpu] });
  for (const [name, value] of Object.entries(want)) {
    if (field(name) !== value) fail(`readelf -h ${name}: ${JSON.stringify(field(name))}, not ${JSON.stringify(value)}`);
  }

  const needed = [...readelf('-d', file).matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]);
  const glibcVersions = [...new Set(readelf('-V', file).match(/GLIBC_[0-9.]+/g) ?? [])].map((v) => v.slice(6));
  const newest = glibcVersions.reduce((a, b) => (newer(b, a) ? b : a), '0');
  if (t.libc === 'glibc') {
    if (!needed.includes('libc.so.6')) fail(`does not link glibc's libc.so.6 (NEEDED: ${needed.join(', ')})`);
    const tooNew = glibcVersions.filter((v) => newer(v, GLIBC_FLOOR)).sort((a, b) => (newer(a, b) ? 1 : -1));
    if (tooNew.length) fail(`needs GLIBC_${tooNew.join(', GLIBC_')}, newer than the promised ${GLIBC_FLOOR}`);
  } else {
    const glibcOnly = needed.filter((lib) => GLIBC_LIBRARIES.test(lib));
    if (glibcOnly.length) fail(`a musl binary needs glibc's ${glibcOnly.join(', ')}`);
    if (glibcVersions.length) fail(`a musl binary references GLIBC_${glibcVersions.join(', GLIBC_')}`);
    if (!needed.includes('libc.so')) fail(`does not link musl's libc.so (NEEDED: ${needed.join(', ')})`);
  }

  // Defined (a section index, not UND), global, a function: what Node's dlsym finds.
  const entry = readelf('--dyn-syms', file)
    .split('\n')
    .find((line) => / napi_register_module_v1$/.test(line));
  if (!entry || !/\bFUNC\s+GLOBAL\s+DEFAULT\s+\d+\s/.test(entry)) {
    fail(`napi_register_module_v1 is not an exported function (${entry?.trim() ?? 'absent'})`);
  }

  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' }),
  );
  const files = packed[0].files.map((f) => f.path).sort();
  const wanted = ['README.md', fileName, 'package.json'].sort();
  if (JSON.stringify(files) !== JSON.stringify(wanted)) {
    fail(`npm pack holds ${files.join(', ')}, not exactly ${wanted.join(', ')}`);
  }

  const size = statSync(file).size;
  const floor = t.libc === 'glibc' ? `newest glibc symbol ${newest}` : 'no glibc';
  const summary =
    `${t.target}: npm/${t.platform}/${fileName}, ${(size / 2 ** 20).toFixed(2)} MiB, ${field('Machine')}, ` +
    `${floor}, NEEDED ${needed.join(' ')}; pack: ${files.join(' ')} (${packed[0].size} bytes)`;
  return { failures, summary };
}

/** Checks each target; throws listing every failure. */
export function checkPrebuilt(list) {
  const failures = [];
  for (const t of list) {
    const result = checkTarget(t);
    console.log(`${result.failures.length ? 'FAIL' : 'ok  '} ${result.summary}`);
    failures.push(...result.failures);
  }
  if (failures.length) throw new Error(`prebuilt binaries failed their checks:\n  ${failures.join('\n  ')}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const wanted = process.argv.slice(2);
  const all = targets().filter((t) => t.os === 'linux');
  const list = wanted.length ? all.filter((t) => wanted.includes(t.target)) : all;
  if (wanted.length && list.length !== wanted.length) {
    console.error(`not Linux targets of napi.targets: ${wanted.filter((w) => !all.some((t) => t.target === w))}`);
    process.exit(2);
  }
  try {
    checkPrebuilt(list);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
