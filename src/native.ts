// Loading the compiled addon and adapting it to a Backend. Load order:
// BATCHNORM_NATIVE_PATH -> the locally built native/<name>.node -> the platform package
// -> null, with an error that lists everything tried. Importing never throws here.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as Binding from '../native/binding';
import { createBackend } from './backend';
import type { Backend, FloatArray } from './types';

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
function packageRoot(): string {
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
  if (process.env.BATCHNORM_NATIVE_PATH) candidates.push(process.env.BATCHNORM_NATIVE_PATH);
  candidates.push(join(root, 'native', `${PACKAGE_NAME}.${triple}.node`), `${PACKAGE_NAME}-${triple}`);
  const failures: string[] = [];
  for (const candidate of candidates) {
    try {
      return { binding: load(candidate) as NativeBinding, error: null, source: candidate };
    } catch (e) {
      failures.push(`  ${candidate}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const error = new Error(
    `batchnorm: no native binary for ${triple} (${process.platform}/${process.arch}${
      process.platform === 'linux' ? `, libc ${isMusl() ? 'musl' : 'glibc'}` : ''
    }); tried:\n${failures.join('\n')}\nUsing the pure-TypeScript backend. Build from source with \`npm run build:native\`.`,
  );
  return { binding: null, error, source: null };
}

/** The binding's f32 or f64 functions, picked by x's dtype (validation made all arrays alike). */
function byDtype(b: NativeBinding, x: FloatArray) {
  // The casts only merge the f32/f64 overloads: validate.ts guarantees matching dtypes.
  type Loose = (...args: unknown[]) => unknown;
  const f32 = x instanceof Float32Array;
  return {
    train: (f32 ? b.trainF32 : b.trainF64) as Loose,
    trainAsync: (f32 ? b.trainF32Async : b.trainF64Async) as Loose,
    evaluate: (f32 ? b.evalF32 : b.evalF64) as Loose,
    evaluateAsync: (f32 ? b.evalF32Async : b.evalF64Async) as Loose,
    backward: (f32 ? b.backwardF32 : b.backwardF64) as Loose,
    backwardAsync: (f32 ? b.backwardF32Async : b.backwardF64Async) as Loose,
  };
}

export function nativeBackend(b: NativeBinding): Backend {
  return createBackend({
    name: 'native',
    train(p, y, mean, invStd) {
      byDtype(b, p.x).train(p.x, p.shape, p.axis, p.eps, p.gamma, p.beta, p.runningMean, p.runningVar, p.momentum, y, mean, invStd);
    },
    async trainAsync(p, y, mean, invStd) {
      await byDtype(b, p.x).trainAsync(p.x, p.shape, p.axis, p.eps, p.gamma, p.beta, p.runningMean, p.runningVar, p.momentum, y, mean, invStd);
    },
    evaluate(p, y) {
      byDtype(b, p.x).evaluate(p.x, p.shape, p.axis, p.eps, p.gamma, p.beta, p.runningMean, p.runningVar, y);
    },
    async evaluateAsync(p, y) {
      await byDtype(b, p.x).evaluateAsync(p.x, p.shape, p.axis, p.eps, p.gamma, p.beta, p.runningMean, p.runningVar, y);
    },
    backward(p, dx, dGamma, dBeta) {
      byDtype(b, p.x).backward(p.dy, p.x, p.shape, p.axis, p.gamma, p.mean, p.invStd, p.training, dx, dGamma, dBeta);
    },
    async backwardAsync(p, dx, dGamma, dBeta) {
      await byDtype(b, p.x).backwardAsync(p.dy, p.x, p.shape, p.axis, p.gamma, p.mean, p.invStd, p.training, dx, dGamma, dBeta);
    },
  });
}
