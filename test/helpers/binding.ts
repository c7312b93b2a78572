// The raw addon for tests that bypass the validating wrapper, and the absolute path of its
// .node file for child processes and worker threads that load it themselves.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import { loadBinding } from '../../src/native';

const loaded = loadBinding();

export const binding = loaded.binding;

/** Where the .node file is (the loader may have found a package name), or null. */
export const bindingPath: string | null = loaded.source
  ? isAbsolute(loaded.source)
    ? loaded.source
    : createRequire(join(__dirname, '..', '..', 'package.json')).resolve(loaded.source)
  : null;

export interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a helper script in a fresh node process: a crash there is a result, not our death. */
export function runChild(
  script: string,
  args: string[],
  options: { timeoutMs: number; env?: NodeJS.ProcessEnv; nodeFlags?: string[] },
): ChildRun {
  const start = Date.now();
  const r = spawnSync(process.execPath, [...(options.nodeFlags ?? []), join(__dirname, script), ...args], {
    encoding: 'utf8',
    timeout: options.timeoutMs,
    maxBuffer: 256 << 20,
    env: { ...process.env, ...options.env },
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms: Date.now() - start };
}

/** How a child ended, for assertion messages. */
export function describeExit(run: ChildRun): string {
  const how = run.signal ? `killed by ${run.signal}` : `exit code ${run.status}`;
  return `${how} after ${run.ms} ms; stderr:\n${run.stderr.slice(-4000)}`;
}
