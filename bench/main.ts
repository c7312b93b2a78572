// `npm run bench [-- --quick] [-- --threads N] [-- --filter REGEX] [-- --time MS] [-- --step-only]`
// Every op x shape x dtype on both backends, with outputs preallocated and reused, beside a
// memcpy of the same bytes, sampled in interleaved rounds; then the training step as training
// code calls it (bench/step.ts); writes bench/results/NAME.{json,md,svg} and NAME-step.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Presets, SingleBar } from 'cli-progress';
import { type Backend, js, native, setNumThreads } from '../index';
import { toSvg } from './chart';
import { describeMachine } from './machine';
import { type Budget, measureInterleaved } from './measure';
import {
  checkTargets,
  loadLine,
  machineLine,
  memcpyLines,
  overheadLines,
  type Results,
  type Row,
  targetLines,
  textTable,
  toJson,
  toMarkdown,
} from './report';
import { measureSteps, stepMarkdown } from './step';
import {
  type DType,
  FRESH_OUTPUT_SHAPE,
  FULL_SHAPES,
  OPS,
  type Op,
  Problem,
  QUICK_SHAPES,
  type Shape,
  shapeText,
} from './workloads';

const REPO_ROOT = resolve(__dirname, '..', '..');
const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    threads: { type: 'string' },
    filter: { type: 'string' },
    time: { type: 'string' },
    name: { type: 'string' },
    'step-only': { type: 'boolean', default: false },
  },
});

const quick = args.quick ?? false;
const filter = args.filter ? new RegExp(args.filter) : null;
// Full unfiltered runs are the ones worth keeping; the rest go to quick.* (git-ignored).
const name = args.name ?? (quick || filter ? 'quick' : 'latest');
const budget: Budget = quick
  ? { timeMs: Number(args.time ?? 20), minSamples: 3, warmupSamples: 1, rounds: 1 }
  : { timeMs: Number(args.time ?? 300), minSamples: 9, warmupSamples: 2, rounds: 3 };
if (args.threads) setNumThreads(Number(args.threads));

const shapes = quick ? QUICK_SHAPES : FULL_SHAPES;
const dtypes: readonly DType[] = ['f32', 'f64', 'bf16', 'f16'];
/** The 16-bit dtypes on the two big conv layouts (and every quick shape): the js fallback
 *  widens them, seconds per call on the rest. */
const halfShapes = new Set<Shape>(quick ? shapes : FULL_SHAPES.slice(0, 2));
const backends: Backend[] = native ? [native, js] : [js];

interface Task {
  label: string;
  run: (p: Problem) => Promise<Row[]>;
}

/** Tasks on one shape and dtype: their arrays are made once, and dropped after the group. */
interface Group {
  shape: Shape;
  dtype: DType;
  tasks: Task[];
}

/** One task per op (and output mode): every backend and the memcpy, interleaved. */
function plan(): Group[] {
  const groups: Group[] = [];
  for (const shape of shapes) {
    for (const dtype of dtypes) {
      if ((dtype === 'bf16' || dtype === 'f16') && !halfShapes.has(shape)) continue;
      const wanted = (op: string) => !filter || filter.test(`${op} ${shapeText(shape)} ${dtype}`);
      const tasks: Task[] = [];
      const add = (op: Op, output: Row['output']) =>
        tasks.push({
          label: `${op} ${shapeText(shape)} ${dtype}${output === 'fresh' ? ' fresh' : ''}`,
          run: async (p) => {
            const candidates = [
              { name: 'memcpy', call: p.memcpy() },
              ...backends.map((b) => ({ name: b.name, call: p.call(b, op, output === 'out') })),
            ];
            const [copy, ...timed] = await measureInterleaved(candidates, budget);
            const memcpyGbPerS = (2 * p.bytesPerArray) / (copy.medianMs * 1e6);
            return timed.map((m, i) => ({
              op,
              shape: shapeText(shape),
              dims: [...shape.dims],
              axis: shape.axis,
              dtype,
              backend: backends[i].name,
              output,
              medianMs: m.medianMs,
              gbPerS: p.bytesMoved(op) / (m.medianMs * 1e6),
              memcpyGbPerS,
              fractionOfMemcpy: Number.NaN,
              nativeOverJs: null,
              calls: m.samples * m.callsPerSample,
            }));
          },
        });
      for (const op of OPS.filter(wanted)) {
        add(op, 'out');
        if (!quick && shape === FRESH_OUTPUT_SHAPE && dtype === 'f32' && op === 'fwd-train') add(op, 'fresh');
      }
      if (tasks.length) groups.push({ shape, dtype, tasks });
    }
  }
  return groups;
}

/** Fills in the columns that compare rows: fraction of memcpy, native/js. */
function compare(rows: Row[]): void {
  const key = (r: Row) => `${r.shape} ${r.dtype}`;
  for (const r of rows) {
    r.fractionOfMemcpy = r.gbPerS / r.memcpyGbPerS;
    if (r.backend !== 'native') continue;
    const jsRow = rows.find((o) => o.backend === 'js' && o.op === r.op && key(o) === key(r) && o.output === r.output);
    if (jsRow) r.nativeOverJs = jsRow.medianMs / r.medianMs;
  }
}

/** The training-step section: native only (the js fallback would take minutes per step). */
async function runSteps(): Promise<void> {
  if (!native) {
    console.log('training step: native backend missing, skipped');
    return;
  }
  console.log('\ntraining step (f32, native, every step yields to the event loop):');
  const markdown = stepMarkdown(await measureSteps(native, quick));
  console.log(markdown);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${name}-step.md`), `${machineLine(describeMachine(REPO_ROOT))}\n\n${markdown}\n`);
  console.log(`wrote bench/results/${name}-step.md`);
}

async function main(): Promise<void> {
  const machine = describeMachine(REPO_ROOT);
  if (args['step-only']) {
    console.log(`batchnorm bench --step-only: ${machineLine(machine)}`);
    await runSteps();
    return;
  }
  console.log(`batchnorm bench${quick ? ' --quick' : ''}: ${machineLine(machine)}`);
  if (!native) console.log('native backend missing: run `npm run build` first; measuring js only.');
  if (machine.loadAverage.start > 0.5) {
    console.log(`load average ${machine.loadAverage.start.toFixed(2)}: other work is running, expect noisy numbers.`);
  }

  const groups = plan();
  const total = groups.reduce((n, g) => n + g.tasks.length, 0);
  const bar = process.stdout.isTTY
    ? new SingleBar({ format: ' {bar} {value}/{total} {task}', hideCursor: true }, Presets.shades_classic)
    : null;
  bar?.start(total, 0, { task: '' });
  const rows: Row[] = [];
  for (const group of groups) {
    const problem = new Problem(group.shape, group.dtype);
    for (const task of group.tasks) {
      bar?.update({ task: task.label });
      rows.push(...(await task.run(problem)));
      bar?.increment();
    }
  }
  bar?.stop();
  machine.loadAverage.end = loadavg()[0];
  compare(rows);

  const results: Results = {
    generatedAt: new Date().toISOString(),
    quick,
    machine,
    rows,
    targets: checkTargets(rows),
  };
  console.log(`\n${textTable(rows)}\n`);
  console.log(`memcpy (TypedArray.prototype.set, bytes read + written):\n  ${memcpyLines(rows).join('\n  ')}`);
  console.log(`per-call overhead, [2,4] f32:\n  ${overheadLines(rows).join('\n  ')}`);
  console.log(`issue 3 targets (f32, reused output):\n  ${targetLines(results.targets).join('\n  ')}`);
  console.log(loadLine(machine));

  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${name}.json`), toJson(results));
  writeFileSync(join(RESULTS_DIR, `${name}.md`), toMarkdown(results));
  writeFileSync(join(RESULTS_DIR, `${name}.svg`), toSvg(results));
  console.log(`\nwrote bench/results/${name}.{json,md,svg} (${rows.length} rows)`);
  await runSteps();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
