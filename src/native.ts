// Loading the compiled addon and adapting it to a Backend. Load order:
// BATCHNORM_NATIVE_PATH -> the locally built native/<name>.node -> the platform package
// -> null, with an error that lists everything tried. Importing never throws here.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import type * as Binding from '../native/binding';
import { type AsyncKernels, createBackend, type Kernels, promisedKernels } from './backend';
import { envInteger, envPath } from './env';
import { recyclingAllocator } from './output-pool';
import type { Backend, TensorArray } from './types';

type NativeBinding = typeof Binding;

const PACKAGE_NAME = 'batchnorm';

/** The napi-rs platform suffix of this process, e.g. linux-x64-gnu, darwin-arm64, win32-x64-msvc. */
export function platformTriple(): string {
  const { platform, arch } = process;
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`;
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/** musl has no glibc version in the process report (the check napi-rs's own loader uses). */
function isMusl(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return !report?.header?.glibcVersionRuntime;
}

/** The folder of this package's package.json, from the source tree or from dist/. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if (JSON.parse(readFileSync(manifest, 'utf8')).name === PACKAGE_NAME) return dir;
      } catch {
        // an unreadable package.json is not ours; keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return join(__dirname, '..');
    dir = parent;
  }
}

/** The calling convention this loader passes arguments in (the addon's bindingInterface()). */
const BINDING_INTERFACE = 5;

/** Why a loaded module is not this package's addon of this version, or null when it is:
 *  BATCHNORM_NATIVE_PATH may name anything require() can load (a folder's index.js, JSON,
 *  another project's addon, a stale build of this one). */
function notOurAddon(module: unknown): string | null {
  const m = module as Record<string, unknown> | null;
  if (typeof m !== 'object' || m === null || typeof m.bindingInterface !== 'function') {
    return "not this package's addon (it has no bindingInterface function)";
  }
  const version = (m.bindingInterface as () => unknown)();
  if (version !== BINDING_INTERFACE) {
    return `built for binding interface ${String(version)}, but this package needs ${BINDING_INTERFACE}; rebuild it (npm run build:native)`;
  }
  return null;
}

export interface LoadResult {
  binding: NativeBinding | null;
  error: Error | null;
  /** Where the binding came from. */
  source: string | null;
}

export function loadBinding(): LoadResult {
  const load = createRequire(__filename);
  const triple = platformTriple();
  const root = packageRoot();
  const candidates: string[] = [];
  // Resolved against the working directory: require() alone would read a relative path from here.
  const path = envPath('BATCHNORM_NATIVE_PATH');
  const explicit = path === null ? null : resolve(path);
  if (explicit) candidates.push(explicit);
  candidates.push(join(root, 'native', `${PACKAGE_NAME}.${triple}.node`), `${PACKAGE_NAME}-${triple}`);
  const failures: string[] = [];
  for (const candidate of candidates) {
    try {
      const binding = load(candidate) as NativeBinding;
      const mismatch = notOurAddon(binding);
      if (mismatch) {
        failures.push(`  ${candidate}: ${mismatch}`);
        continue;
      }
      // An explicit BATCHNORM_NATIVE_PATH that fails must not go unnoticed behind a fallback;
      // a missing local build is the normal case of an installed package and stays silent.
      if (explicit && candidate !== explicit) {
        process.emitWarning(`batchnorm: loaded ${candidate} after failing:\n${failures.join('\n')}`);
      }
      return { binding, error: null, source: candidate };
    } catch (e) {
      failures.push(`  ${candidate}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const error = new Error(
    `batchnorm: no native binary for ${triple} (${process.platform}/${process.arch}${
      process.platform === 'linux' ? `, libc ${isMusl() ? 'musl' : 'glibc'}` : ''
    }); tried:\n${failures.join('\n')}\n${missingBinaryAdvice(triple, prebuiltPlatforms(root))}`,
  );
  return { binding: null, error, source: null };
}

/** The napi-rs platform suffix of a Rust target triple (x86_64-unknown-linux-gnu ->
 *  linux-x64-gnu, aarch64-apple-darwin -> darwin-arm64, x86_64-pc-windows-msvc -> win32-x64-msvc). */
export function platformOfTarget(target: string): string {
  const [arch, , os, abi] = target.split('-');
  const cpu = ({ x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm' } as Record<string, string>)[arch] ?? arch;
  if (os === 'darwin') return `darwin-${cpu}`;
  if (os === 'windows') return `win32-${cpu}-${abi}`;
  return `${os}-${cpu}-${abi}`;
}

/** The platforms with a prebuilt package: package.json's napi.targets, the list the release
 *  builds from. Empty when it cannot be read. */
function prebuiltPlatforms(root: string): string[] {
  try {
    const targets = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).napi?.targets;
    return Array.isArray(targets) ? targets.map((t: string) => platformOfTarget(t)) : [];
  } catch {
    return [];
  }
}

/** What to do without a binary: install the platform package where one is published, else
 *  build from source (a package that does not exist would only fail to install). */
export function missingBinaryAdvice(triple: string, prebuilt: readonly string[]): string {
  if (prebuilt.includes(triple)) {
    return (
      `To get the native backend, install ${PACKAGE_NAME}-${triple} (npm installs it unless optional ` +
      'dependencies are omitted), or build from source and set BATCHNORM_NATIVE_PATH.'
    );
  }
  return (
    `There is no prebuilt binary for ${triple} (prebuilt: ${prebuilt.join(', ') || 'none'}). ` +
    'To get the native backend, build it from source (with Rust: npm run build:native in a checkout; ' +
    'see the installing guide) and set BATCHNORM_NATIVE_PATH to the .node file. Until then the js backend runs.'
  );
}

/** The binding's functions of one dtype and form, looked up once (not on every call). */
function bindingTable(b: NativeBinding, suffix: string) {
  // The casts only merge the f32/f64 overloads: validate.ts guarantees matching dtypes.
  type Loose = (...args: unknown[]) => unknown;
  const pick = (op: string) => (b as unknown as Record<string, Loose>)[`${op}${suffix}`];
  return {
    train: pick('train'),
    trainWithStats: pick('trainWithStats'),
    evaluate: pick('eval'),
    backward: pick('backward'),
    backwardWithSums: pick('backwardWithSums'),
    moments: pick('moments'),
    gradSums: pick('gradSums'),
    fingerprint: pick('fingerprint'),
  };
}

/** The kernels as calls into the binding: `async` picks the forms that run on libuv's pool
 *  and return promises; the sync forms return nothing. */
function bindingCalls(b: NativeBinding, async: boolean) {
  const f32 = bindingTable(b, async ? 'F32Async' : 'F32');
  const f64 = bindingTable(b, async ? 'F64Async' : 'F64');
  const u16 = bindingTable(b, async ? 'U16Async' : 'U16');
  // validate.ts made every tensor of a call x's array type (a Float16Array a Uint16Array view),
  // and the plan's dtype tells the addon what a Uint16Array holds.
  const f = (x: TensorArray) => (x instanceof Float32Array ? f32 : x instanceof Float64Array ? f64 : u16);
  // Arrays (shape among them) go positionally; the scalars and flags go by name in the last
  // argument, which is the validated plan itself: the addon reads only the fields its op's
  // options struct declares (axis, dtype, eps, momentum, runningVarCorrection, relu, training,
  // stats.count, sums.count).
  return {
    train: (p, y, mean, invStd, print) =>
      f(p.x).train(p.x, p.shape, p.gamma, p.beta, p.runningMean, p.runningVar, p.residual, y, mean, invStd, print, p),
    trainWithStats: (p, y, mean, invStd, print) =>
      f(p.x).trainWithStats(
        p.x,
        p.shape,
        p.gamma,
        p.beta,
        p.runningMean,
        p.runningVar,
        p.residual,
        p.stats.mean,
        p.stats.m2,
        y,
        mean,
        invStd,
        print,
        p,
      ),
    evaluate: (p, y) => f(p.x).evaluate(p.x, p.shape, p.gamma, p.beta, p.runningMean, p.runningVar, p.residual, y, p),
    backward: (p, dx, dGamma, dBeta, dResidual, print) =>
      f(p.x).backward(p.dy, p.x, p.shape, p.gamma, p.mean, p.invStd, p.y, dx, dGamma, dBeta, dResidual, print, p),
    backwardWithSums: (p, dx, dGamma, dBeta, dResidual, print) =>
      f(p.x).backwardWithSums(
        p.dy,
        p.x,
        p.shape,
        p.gamma,
        p.mean,
        p.invStd,
        p.y,
        p.sums.sumDy,
        p.sums.sumDyXhat,
        dx,
        dGamma,
        dBeta,
        dResidual,
        print,
        p,
      ),
    stats: (p, mean, m2) => f(p.x).moments(p.x, p.shape, mean, m2, p),
    backwardSums: (p, sumDy, sumDyXhat) =>
      f(p.x).gradSums(p.dy, p.x, p.shape, p.mean, p.invStd, p.y, sumDy, sumDyXhat, p),
    fingerprint: (x: TensorArray) => f(x).fingerprint(x),
  } satisfies { [K in keyof Kernels]: (...args: Parameters<Kernels[K]>) => unknown };
}

/** Where native calls start to beat the js kernels here (measured on [2,4] ... [64,64]: 2048 elements
 *  still favour js by 15-30%, 4096 favour native by 15-60%). */
const DEFAULT_NATIVE_MIN_ELEMENTS = 4096;

/** Below this many elements a native-backend call runs the TypeScript kernels (the same
 *  algorithm): crossing into native code costs ~1.5 µs of argument conversion and borrow
 *  checks, more than the whole computation, and an Async call would also pay a thread hop.
 *  BATCHNORM_NATIVE_MIN_ELEMENTS overrides it (0: every call runs native code). */
export function nativeMinElements(): number {
  return envInteger('BATCHNORM_NATIVE_MIN_ELEMENTS') ?? DEFAULT_NATIVE_MIN_ELEMENTS;
}

export function nativeBackend(b: NativeBinding, small: Kernels, min: number): Backend {
  return createBackend(
    'native',
    bindingCalls(b, false) as Kernels,
    bindingCalls(b, true) as AsyncKernels,
    { minElements: min, sync: small, async: promisedKernels(small) },
    recyclingAllocator(b),
  );
}
