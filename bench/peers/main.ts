// `npm run bench:peers [-- --quick] [-- --filter REGEX] [-- --time MS] [-- --peers PREFIXES]`
// The workloads of `npm run bench` (f32) on batchnorm's two backends beside onnxruntime-node,
// tfjs wasm and tfjs cpu. Each library's answer is checked against batchnorm native's before
// it is timed; the timed calls are sampled in rounds interleaved with a memcpy of the same
// bytes. Writes bench/results/peers.{json,md} (quick or filtered runs: peers-quick.*).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { js, native } from '../../index';
import { describeMachine } from '../machine';
import { type Budget, type Candidate, measureInterleaved } from '../measure';
import { alignedTable, loadLine, machineLine } from '../report';
import { elementCount, FULL_SHAPES, OPS, type Op, Problem, type Shape, shapeText } from '../workloads';
import { batchnormPeer } from './batchnorm';
import { compare } from './check';
import { ortPeer } from './ort';
import type { Outputs, Peer, Prepared } from './peer';
import {
  cells,
  HEADERS,
  type PeerResults,
  type PeerRow,
  type Skipped,
  skippedLines,
  toJson,
  toMarkdown,
  WORDS,
} from './report';
import { tfjsPeer } from './tfjs';

/** Compiled to bench/peers/dist/bench/peers/main.js. */
const REPO_ROOT = resolve(__dirname, '..', '..', '..', '..', '..');
const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');
/** tfjs cpu runs every op as a separate pass in plain JavaScript: the big shapes would take
 *  minutes per workload, so it is measured up to this many elements. */
const TFJS_CPU_MAX_ELEMENTS = 1 << 21;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    filter: { type: 'string' },
    time: { type: 'string' },
    peers: { type: 'string' },
    name: { type: 'string' },
  },
});
const quick = args.quick ?? false;
const filter = args.filter ? new RegExp(args.filter) : null;
const name = args.name ?? (quick || filter ? 'peers-quick' : 'peers');
/** `--peers onnxruntime,tfjs-wasm`: the libraries whose names start with one of these. */
const wanted = (peer: string) => !args.peers || args.peers.split(',').some((w) => peer.startsWith(w));
const budget: Budget = quick
  ? { timeMs: Number(args.time ?? 20), minSamples: 3, warmupSamples: 1, rounds: 1 }
  : { timeMs: Number(args.time ?? 300), minSamples: 6, warmupSamples: 1, rounds: 3 };
const shapes = quick ? FULL_SHAPES.filter((s) => elementCount(s) <= 1 << 20) : FULL_SHAPES;
/** Every library on one workload: prepare, check against the reference, time the ones that agree. */
async function measureWorkload(
  p: Problem,
  op: Op,
  peers: readonly Peer[],
): Promise<{ rows: PeerRow[]; skipped: Skipped[] }> {
  const shape = shapeText(p.shape);
  const skipped: Skipped[] = [];
  const ready: { peer: Peer; run: Prepared; maxAbsDiff: number; check: string }[] = [];
  let reference: Outputs | null = null;
  for (const peer of peers) {
    const skip = (why: string) => skipped.push({ op, shape, library: peer.name, why });
    if (peer.name === 'tfjs-cpu' && elementCount(p.shape) > TFJS_CPU_MAX_ELEMENTS) {
      skip(`not run above ${TFJS_CPU_MAX_ELEMENTS} elements (plain JavaScript, one pass per op: minutes per workload)`);
      continue;
    }
    let run: Prepared | { unsupported: string } | null;
    try {
      run = await peer.prepare(p, op);
    } catch (error) {
      skip(`failed to prepare: ${(error as Error).message.split('\n')[0]}`);
      continue;
    }
    if (run === null) continue;
    if ('unsupported' in run) {
      skip(run.unsupported);
      continue;
    }
    try {
      const got = await run.outputs();
      reference ??= got;
      const check = compare(reference, got);
      console.log(`  check ${peer.name.padEnd(16)} ${check.ok ? 'ok  ' : 'FAIL'} max |diff| ${check.detail}`);
      if (!check.ok) {
        skip(`answer differs from batchnorm native's (${check.detail}): not timed`);
        run.dispose();
        continue;
      }
      ready.push({ peer, run, maxAbsDiff: check.maxAbsDiff, check: check.detail });
    } catch (error) {
      skip(`failed: ${(error as Error).message.split('\n')[0]}`);
      run.dispose();
    }
  }
  const candidates: Candidate[] = [
    { name: 'memcpy', call: p.memcpy() },
    ...ready.map(({ peer, run }) => ({ name: peer.name, call: run.call, isAsync: run.isAsync })),
  ];
  const [copy, ...timed] = await measureInterleaved(candidates, budget);
  for (const { run } of ready) run.dispose();
  const memcpyGbPerS = (2 * p.bytesPerArray) / (copy.medianMs * 1e6);
  const nativeMs = ready[0]?.peer.name === 'batchnorm native' ? timed[0].medianMs : null;
  const rows = timed.map((m, i) => ({
    op,
    shape,
    dims: [...p.shape.dims],
    axis: p.shape.axis,
    dtype: 'f32' as const,
    library: ready[i].peer.name,
    how: ready[i].run.how,
    threads: ready[i].peer.threads,
    medianMs: m.medianMs,
    gbPerS: p.bytesMoved(op) / (m.medianMs * 1e6),
    memcpyGbPerS,
    timeOverNative: nativeMs === null ? null : m.medianMs / nativeMs,
    maxAbsDiff: ready[i].maxAbsDiff,
    check: ready[i].check,
    calls: m.samples * m.callsPerSample,
  }));
  return { rows, skipped };
}

async function main(): Promise<void> {
  const machine = describeMachine(REPO_ROOT);
  const peers: Peer[] = (native ? [native, js] : [js]).map(batchnormPeer);
  for (const form of ['op', 'graph'] as const) {
    const peer = ortPeer(cpus().length, form);
    if (wanted(peer.name)) peers.push(peer);
  }
  for (const backend of ['wasm', 'cpu'] as const) {
    if (wanted(`tfjs-${backend}`)) peers.push(await tfjsPeer(backend));
  }
  const libraries = peers.map((p) => p.describe);
  console.log(`batchnorm bench:peers${quick ? ' --quick' : ''}: ${machineLine(machine)}`);
  for (const l of libraries) console.log(`  ${l}`);
  if (!native) console.log('native backend missing: run `npm run build` first; js is the reference.');

  const rows: PeerRow[] = [];
  const skipped: Skipped[] = [];
  for (const shape of shapes as readonly Shape[]) {
    const ops = OPS.filter((op) => !filter || filter.test(`${op} ${shapeText(shape)} f32`));
    if (!ops.length) continue;
    const problem = new Problem(shape, 'f32');
    for (const op of ops) {
      console.log(`${op} ${shapeText(shape)} f32`);
      const done = await measureWorkload(problem, op, peers);
      rows.push(...done.rows);
      skipped.push(...done.skipped);
    }
  }
  machine.loadAverage.end = loadavg()[0];

  const results: PeerResults = {
    generatedAt: new Date().toISOString(),
    quick,
    machine: { ...machine, libraries },
    rows,
    skipped,
  };
  console.log(`\n${alignedTable(HEADERS, rows.map(cells), WORDS)}\n`);
  if (skipped.length) console.log(`not measured:\n  ${skippedLines(skipped).join('\n  ')}`);
  console.log(loadLine(machine));
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${name}.json`), toJson(results));
  writeFileSync(join(RESULTS_DIR, `${name}.md`), toMarkdown(results));
  console.log(`\nwrote bench/results/${name}.{json,md} (${rows.length} rows)`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
