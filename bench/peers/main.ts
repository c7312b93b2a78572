// `npm run bench:peers [-- --quick] [-- --filter REGEX] [-- --time MS] [-- --peers PREFIXES]`
// The workloads of `npm run bench` (f32) on batchnorm's two backends beside onnxruntime-node,
// tfjs wasm and tfjs cpu. Each library's answer is checked against batchnorm native's before
// it is timed; the timed calls are sampled in rounds interleaved with a memcpy of the same
// bytes. Writes bench/results/peers.{json,md} (quick or filtered runs: peers-quick.*).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Backend, getNumThreads, js, native } from '../../index';
import { describeMachine } from '../machine';
import { type Budget, type Candidate, measureInterleaved } from '../measure';
import {
  alignedTable,
  formatMs,
  formatRate,
  jsonWithRows,
  loadLine,
  type Machine,
  machineLine,
  markdownColumns,
  round,
} from '../report';
import { elementCount, FULL_SHAPES, OPS, type Op, Problem, type Shape, shapeText } from '../workloads';
import { ortPeer } from './ort';
import { f32, type Outputs, type Peer, type Prepared } from './peer';
import { tfjsPeer } from './tfjs';

/** Compiled to bench/peers/dist/bench/peers/main.js. */
const REPO_ROOT = resolve(__dirname, '..', '..', '..', '..', '..');
const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');
/** A peer's answer passes when max |peer - batchnorm| <= TOLERANCE * max(1, max |batchnorm|). */
const TOLERANCE = 1e-4;
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

export interface PeerRow {
  op: Op;
  shape: string;
  dims: number[];
  axis: number;
  dtype: 'f32';
  library: string;
  how: string;
  threads: number;
  medianMs: number;
  /** (bytes of x + bytes of y) / median time; backward counts x + dy + dx. */
  gbPerS: number;
  /** A memcpy of x's bytes (read + written), sampled in the same rounds. */
  memcpyGbPerS: number;
  /** Median time / batchnorm native's median time on the same workload. */
  timeOverNative: number | null;
  /** Max |output - batchnorm native's| over y (backward: dx); 0 for native itself. */
  maxAbsDiff: number;
  /** The check of every output: max |diff|, and relative to max |batchnorm's| where that exceeds 1. */
  check: string;
  calls: number;
}

export interface Skipped {
  op: Op;
  shape: string;
  library: string;
  why: string;
}

interface PeerResults {
  generatedAt: string;
  quick: boolean;
  machine: Machine & { libraries: string[] };
  rows: PeerRow[];
  skipped: Skipped[];
}

/** batchnorm's own backends, as peers: the reference answer comes from the first. */
function batchnormPeer(backend: Backend): Peer {
  return {
    name: `batchnorm ${backend.name}`,
    threads: backend.name === 'native' ? getNumThreads() : 1,
    describe: `batchnorm ${backend.name}`,
    async prepare(p: Problem, op: Op): Promise<Prepared> {
      const { dims, axis } = p.shape;
      const { gamma, beta } = p;
      return {
        how: { 'fwd-train': 'batchNormTrain', 'fwd-eval': 'batchNormEval', backward: 'batchNormBackward' }[op],
        isAsync: false,
        call: p.call(backend, op),
        async outputs(): Promise<Outputs> {
          if (op === 'fwd-eval') {
            const y = backend.batchNormEval(p.x, dims, {
              axis,
              gamma,
              beta,
              runningMean: p.evalMean,
              runningVar: p.evalVar,
            });
            return { y: f32(y) };
          }
          const trained = backend.batchNormTrain(p.x, dims, { axis, gamma, beta });
          if (op === 'fwd-train') return { y: f32(trained.y) };
          const { dx, dGamma, dBeta } = backend.batchNormBackward(p.dy, p.x, dims, trained, { axis, gamma });
          return { dx: f32(dx), dGamma: f32(dGamma), dBeta: f32(dBeta) };
        },
        dispose() {},
      };
    },
  };
}

/** The largest |a - b| of each output, and whether each is within TOLERANCE. The first output
 *  (y, or dx) gives `maxAbsDiff`; the per-channel sums dGamma and dBeta grow with the count
 *  reduced over, so they are held to the tolerance relative to their size. */
function compare(reference: Outputs, got: Outputs): { maxAbsDiff: number; ok: boolean; detail: string } {
  let maxAbsDiff = Number.NaN;
  let ok = true;
  const parts: string[] = [];
  for (const [key, want] of Object.entries(reference)) {
    const have = got[key];
    if (!have || have.length !== want.length) return { maxAbsDiff: Number.NaN, ok: false, detail: `${key} missing` };
    let diff = 0;
    let scale = 1;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(have[i] - want[i]);
      // NaN compares false: count it as a failure explicitly.
      if (!(d <= diff)) diff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
      scale = Math.max(scale, Math.abs(want[i]));
    }
    if (Number.isNaN(maxAbsDiff)) maxAbsDiff = diff;
    ok &&= diff <= TOLERANCE * scale;
    const relative = scale > 1 ? ` (${(diff / scale).toExponential(1)} of max ${scale.toPrecision(3)})` : '';
    parts.push(`${key} ${diff.toExponential(1)}${relative}`);
  }
  return { maxAbsDiff, ok, detail: parts.join(', ') };
}

function ratio(x: number): string {
  return `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)}x`;
}

function cells(r: PeerRow): string[] {
  return [
    r.op,
    r.shape,
    r.library,
    r.how,
    String(r.threads),
    formatMs(r.medianMs),
    formatRate(r.gbPerS),
    (r.gbPerS / r.memcpyGbPerS).toFixed(2),
    r.timeOverNative === null ? '' : ratio(r.timeOverNative),
    r.maxAbsDiff === 0 ? '0' : r.maxAbsDiff.toExponential(1),
  ];
}

const HEADERS = [
  'op',
  'shape',
  'library',
  'how',
  'threads',
  'median ms',
  'GB/s',
  'x memcpy',
  'time/native',
  'max abs diff y/dx',
];
const WORDS = 4;

function skippedLines(skipped: readonly Skipped[]): string[] {
  return skipped.map((s) => `${s.library} ${s.op} ${s.shape}: ${s.why}`);
}

function toMarkdown(results: PeerResults): string {
  const bullet = (l: string) => `- ${l}`;
  const text = [
    `# batchnorm against peer libraries${results.quick ? ' (quick)' : ''}`,
    '',
    `Machine: ${machineLine(results.machine)}. Run ${results.generatedAt}, ${loadLine(results.machine)}.`,
    '',
    ...results.machine.libraries.map(bullet),
    '',
    'f32. Effective GB/s = (bytes of x + bytes of y) / median time; backward counts x + dy + dx.',
    "`x memcpy` divides that by a one-thread memcpy of x's bytes sampled in the same rounds;",
    "`time/native` is the row's median over batchnorm native's. Every library's answer is checked against",
    "batchnorm native's before it is timed: `max abs diff y/dx` is the largest difference in y (backward: dx);",
    'dGamma and dBeta are checked relative to their size (the JSON `check` field). Only rows that agree to',
    `${TOLERANCE} (times max(1, max |value|)) are timed.`,
    'onnxruntime-node runs through `await session.run` with y written into a preallocated tensor; tfjs runs',
    'on tensors made once up front and does not copy y back to JavaScript.',
    '',
    markdownColumns(HEADERS, results.rows.map(cells), WORDS),
    '',
    ...(results.skipped.length ? ['## Not measured', '', ...skippedLines(results.skipped).map(bullet), ''] : []),
  ].join('\n');
  return `${text.trimEnd()}\n`;
}

function toJson(results: PeerResults): string {
  const { rows, ...rest } = results;
  const rounded = rows.map((r) => ({
    ...r,
    medianMs: round(r.medianMs),
    gbPerS: round(r.gbPerS),
    memcpyGbPerS: round(r.memcpyGbPerS),
    timeOverNative: r.timeOverNative === null ? null : round(r.timeOverNative),
    maxAbsDiff: round(r.maxAbsDiff),
  }));
  return jsonWithRows(rest, rounded);
}

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
