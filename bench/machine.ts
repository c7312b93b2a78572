// The machine a run measured on, for the results of `npm run bench` and `npm run bench:peers`.
import { cpus, loadavg, totalmem } from 'node:os';
import { isAbsolute, relative } from 'node:path';
import { getNumThreads, native, nativeLoadError, nativeSource } from '../index';
import type { Machine } from './report';

/** The binary's path relative to the repository (results should not carry local paths). */
function nativeWhere(source: string | null, repoRoot: string): string {
  if (!source) return 'loaded';
  return isAbsolute(source) ? relative(repoRoot, source) : source;
}

/** CPU, memory, Node, the native binary and its pool, and the load average now (the end
 *  of the run is filled in by the caller). */
export function describeMachine(repoRoot: string): Machine {
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${process.platform}-${process.arch}`,
    node: process.versions.node,
    nativeThreads: getNumThreads(),
    native: native ? nativeWhere(nativeSource, repoRoot) : `not loaded (${nativeLoadError?.message.split('\n')[0]})`,
    loadAverage: { start: loadavg()[0], end: Number.NaN },
  };
}
