// batchnorm/mpi under real `mpirun` (Open MPI): the scripts in test/mpi-scripts/ run on 1, 2
// and 3 ranks and print one JSON line per rank, checked here. Needs `npm run build` and
// `npm run build:mpi` (CI runs both); without the MPI addon or mpirun the suite skips with the
// reason, unless BATCHNORM_REQUIRE_MPI=1 (set by .ci/run), which turns the skip into a failure.
// The error thrown without the addon is tested whatever is installed.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const addon = join(root, 'native-mpi', 'batchnorm_mpi.node');
const scripts = join(root, 'test', 'mpi-scripts');

function mpirunVersion(): string | null {
  const child = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
  return child.status === 0 ? child.stdout.split('\n')[0] : null;
}

const version = mpirunVersion();
const missing = [
  existsSync(addon) ? null : `${addon} is not built (npm run build:mpi)`,
  version !== null ? null : 'mpirun is not on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev)',
  existsSync(join(root, 'dist', 'index.js')) ? null : 'dist/ is not built (npm run build)',
].filter((reason) => reason !== null);
const skipReason = missing.join('; ');
const requireMpi = process.env.BATCHNORM_REQUIRE_MPI === '1';
if (missing.length > 0) console.warn(`test/mpi.test.ts: MPI tests skipped: ${skipReason}`);

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  /** What each rank reported (test/mpi-scripts/report.js), by rank. */
  ranks: Record<string, unknown>[];
}

/** `mpirun -np <np> node <script> ...args`, as root where needed, more ranks than cores allowed. */
function mpirun(np: number, script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Run {
  const asRoot = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
  const out = mkdtempSync(join(tmpdir(), 'batchnorm-mpi-'));
  try {
    const child = spawnSync(
      'mpirun',
      [...asRoot, '--oversubscribe', '-np', String(np), process.execPath, script, ...args],
      // Under vitest's 60 s test timeout, which cannot fire while spawnSync blocks: a hang fails
      // the test (mpirun is killed, and ends its ranks) instead of stalling the suite.
      { cwd: root, encoding: 'utf8', timeout: 50_000, env: { ...process.env, ...env, BATCHNORM_MPI_TEST_OUT: out } },
    );
    const ranks: Record<string, unknown>[] = [];
    for (const file of readdirSync(out)) {
      const parsed = JSON.parse(readFileSync(join(out, file), 'utf8'));
      ranks[parsed.rank] = parsed;
    }
    return { status: child.status, stdout: child.stdout, stderr: child.stderr, ranks };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

function mustRun(np: number, script: string, args: string[] = [], env?: NodeJS.ProcessEnv): Record<string, unknown>[] {
  const run = mpirun(np, join(scripts, script), args, env);
  if (run.status !== 0) throw new Error(`mpirun -np ${np} ${script} exited with ${run.status}:\n${run.stderr}`);
  expect(run.ranks.filter(Boolean)).toHaveLength(np);
  return run.ranks;
}

describe('batchnorm/mpi without the MPI addon', () => {
  const withoutAddon = (source: string, type: 'commonjs' | 'module') =>
    spawnSync(process.execPath, [`--input-type=${type}`, '-e', source], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, BATCHNORM_MPI_PATH: join(root, 'no-such-dir', 'batchnorm_mpi.node') },
    });

  it.skipIf(!existsSync(join(root, 'dist', 'index.js')))(
    'require and import throw an Error saying how to build it; the main package still loads',
    () => {
      const cjs = withoutAddon(
        `const bn = require('batchnorm');
         let message = null;
         try { require('batchnorm/mpi'); } catch (e) { message = e.message; }
         console.log(JSON.stringify({ message, layer: typeof bn.SyncBatchNorm }));`,
        'commonjs',
      );
      expect(cjs.status, cjs.stderr).toBe(0);
      const esm = withoutAddon(
        `let message = null;
         try { await import('batchnorm/mpi'); } catch (e) { message = e.message; }
         const bn = await import('batchnorm');
         console.log(JSON.stringify({ message, layer: typeof bn.SyncBatchNorm }));`,
        'module',
      );
      expect(esm.status, esm.stderr).toBe(0);
      for (const child of [cjs, esm]) {
        const { message, layer } = JSON.parse(child.stdout);
        expect(layer).toBe('function');
        expect(message).toMatch(/^batchnorm\/mpi: the MPI addon is not built \(.*no-such-dir.* does not exist\)/);
        expect(message).toContain('npm run build:mpi');
        expect(message).toContain('openmpi-bin libopenmpi-dev libclang-dev');
        expect(message).toContain('docs/mpi.md');
      }
    },
  );
});

describe.skipIf(missing.length > 0 && !requireMpi)(
  `batchnorm/mpi under mpirun${missing.length > 0 ? ` (SKIPPED: ${skipReason})` : ` (${version})`}`,
  () => {
    it('the MPI tests can run (BATCHNORM_REQUIRE_MPI=1 makes a skip fail)', () => {
      expect(missing, 'BATCHNORM_REQUIRE_MPI=1, but the MPI tests cannot run').toEqual([]);
    });

    it('esm/mpi.mjs exports the CommonJS names and shares its module instance', () => {
      const child = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { createRequire } from 'node:module';
           import * as esm from 'batchnorm/mpi';
           const cjs = createRequire(import.meta.url)('batchnorm/mpi');
           console.log(JSON.stringify({ esm: Object.keys(esm), cjs: Object.keys(cjs), same: esm.default === cjs && esm.world === cjs.world }));`,
        ],
        { cwd: root, encoding: 'utf8' },
      );
      expect(child.status, child.stderr).toBe(0);
      const { esm, cjs, same } = JSON.parse(child.stdout);
      expect(esm.filter((name: string) => name !== 'default').sort(), 'update esm/mpi.mjs').toEqual([...cjs].sort());
      expect(same).toBe(true);
    });

    it.each([1, 2, 3])('-np %i: allReduce, allReduceSync, broadcast and barrier', (np) => {
      const ranks = mustRun(np, 'collectives.js');
      const triangle = (np * (np + 1)) / 2; // sum over ranks of (rank + 1)
      for (const [rank, out] of ranks.entries()) {
        const r = out as {
          size: number;
          threadLevel: string;
          offThread: boolean;
          allReduce: Record<string, { same: boolean; values: number[]; syncValues: number[] }>;
          view: number[];
          shared: number[];
          unbound: number[];
          concurrent: number[];
          broadcast: { root: number; f64: number[]; f32: number[] }[];
          barrierWaitedMs: number;
        };
        expect(r.size).toBe(np);
        expect(['serialized', 'multiple']).toContain(r.threadLevel);
        expect(r.offThread).toBe(true);
        for (const n of [0, 1, 7, 1001]) {
          const expected = Array.from({ length: n }, (_, i) => triangle * ((i % 7) - 3));
          for (const type of ['Float32Array', 'Float64Array']) {
            const got = r.allReduce[`${type}:${n}`];
            expect(got.same, `${type}:${n} resolves to its buffer`).toBe(true);
            expect(got.values).toEqual(expected);
            expect(got.syncValues).toEqual(expected);
          }
        }
        expect(r.view).toEqual([...Array(3).fill(rank + 1), ...Array(4).fill(triangle), ...Array(3).fill(rank + 1)]);
        expect(r.shared).toEqual(Array(4).fill(triangle));
        expect(r.unbound).toEqual([(np * (np - 1)) / 2]);
        expect(r.concurrent).toEqual([1, 2, 3].map((k) => k * triangle));
        expect(r.broadcast).toEqual(
          Array.from({ length: np }, (_, root) => ({
            root,
            f64: Array(5).fill(root * 10 + 1),
            f32: Array(3).fill(root * 10 + 2),
          })),
        );
        // Rank 0 arrived 300 ms late: every rank waited for it.
        if (np > 1 && rank > 0) expect(r.barrierWaitedMs).toBeGreaterThanOrEqual(250);
      }
    });

    it.each([2, 3])('-np %i: mismatched calls throw on every rank, and the ranks stay in step', (np) => {
      const ranks = mustRun(np, 'errors.js') as Record<string, string | number[]>[];
      const last = np - 1;
      const invalid = (rank: number) =>
        `Error: batchnorm/mpi: allReduce: rank ${rank} called it with an invalid argument (that rank throws the reason); nothing was communicated`;
      for (const [rank, r] of ranks.entries()) {
        expect(r.lengths).toBe(
          `Error: batchnorm/mpi: allReduce: the buffers' lengths differ between ranks (3 to ${2 + np} elements); nothing was communicated`,
        );
        expect(r.lengthsSync).toBe(
          "Error: batchnorm/mpi: allReduce: the buffers' lengths differ between ranks (4 to 5 elements); nothing was communicated",
        );
        expect(r.dtypes).toBe(
          "Error: batchnorm/mpi: allReduce: the buffers' dtypes differ between ranks (Float32Array on some, Float64Array on others); nothing was communicated",
        );
        expect(r.notTyped).toBe(
          rank === 0
            ? 'TypeError: batchnorm/mpi: allReduce: buffer must be a Float32Array or Float64Array, got [1, 2, 3]'
            : invalid(0),
        );
        expect(r.int32).toBe(
          rank === last
            ? 'TypeError: batchnorm/mpi: allReduce: buffer must be a Float32Array or Float64Array, got Int32Array'
            : invalid(last),
        );
        expect(r.badRootEverywhere).toBe(
          `RangeError: batchnorm/mpi: broadcast: root must be an integer rank in [0, ${last}], got ${np}`,
        );
        expect(r.badRootOne).toBe(
          rank === 0
            ? `RangeError: batchnorm/mpi: broadcast: root must be an integer rank in [0, ${last}], got -1`
            : invalid(0).replace('allReduce', 'broadcast'),
        );
        expect(r.fractionalRoot).toBe(
          `RangeError: batchnorm/mpi: broadcastSync: root must be an integer rank in [0, ${last}], got 0.5`,
        );
        expect(r.rootsDiffer).toBe(
          'Error: batchnorm/mpi: broadcast: the roots differ between ranks (0 to 1); nothing was communicated',
        );
        expect(r.opsDiffer).toBe(
          'Error: batchnorm/mpi: the ranks called different collectives at this step (allReduce on some, barrier on others); every rank must call the same ones in the same order',
        );
        expect(r.syncWhileAsync).toMatch(
          /^Error: batchnorm\/mpi: allReduceSync: this rank still has 1 async collective/,
        );
        expect(r.after).toEqual([(np * (np + 1)) / 2]);
      }
    });

    it('-np 2: a large allReduce runs off the JS thread: the event loop ticks while it waits', () => {
      const [waiting, late] = mustRun(2, 'event-loop.js') as { ticks: number; ms: number; correct: boolean }[];
      expect(waiting.correct && late.correct).toBe(true);
      // Rank 0 waited ~500 ms for rank 1; a 10 ms interval ticked throughout.
      expect(waiting.ms).toBeGreaterThanOrEqual(400);
      expect(waiting.ticks).toBeGreaterThanOrEqual(10);
    });

    it('-np 3: a rank that dies while the others wait aborts the job (no hang)', () => {
      const start = Date.now();
      const run = mpirun(3, join(scripts, 'crash.js'));
      expect(run.status).not.toBe(0);
      expect(run.stdout).not.toContain('unexpected');
      // The error that ended rank 2 is printed before MPI_Abort ends the job.
      expect(`${run.stdout}${run.stderr}`).toContain('Error: rank failed on purpose');
      expect(Date.now() - start).toBeLessThan(60_000);
    });

    const backends = ['js', ...(existsSync(join(root, 'native', 'batchnorm.linux-x64-gnu.node')) ? ['native'] : [])];
    describe.each(backends)('SyncBatchNorm over comm.allReduce (%s backend)', (backend) => {
      it.each([
        [1, 'float64'],
        [2, 'float64'],
        [3, 'float64'],
        [3, 'float32'],
      ])('-np %i, %s: equals one BatchNorm on the whole batch (shards of unequal sizes, one empty)', (np, dtype) => {
        type Part = { diff: Record<string, number>; numBatchesTracked: number[]; runningVar: number[] };
        const ranks = mustRun(np, 'sync-batchnorm.js', [dtype], { BATCHNORM_BACKEND: backend }) as {
          rows: number;
          backend: string;
          nchw: Part;
          nhwc: Part;
        }[];
        const tolerance = dtype === 'float64' ? 1e-12 : 1e-5;
        for (const r of ranks) {
          expect(r.backend).toBe(backend);
          for (const part of [r.nchw, r.nhwc]) {
            for (const [key, value] of Object.entries(part.diff)) expect(value, key).toBeLessThanOrEqual(tolerance);
            expect(part.numBatchesTracked).toEqual([3, 3]);
          }
          // Bit-identical running statistics on every rank.
          expect(r.nchw.runningVar).toEqual(ranks[0].nchw.runningVar);
          expect(r.nhwc.runningVar).toEqual(ranks[0].nhwc.runningVar);
        }
        if (np > 1) expect(ranks[1].rows).toBe(0);
      });
    });

    it('examples/mpi-train.js at -np 3: the same loss on every rank, the weights of one-process training', () => {
      const run = mpirun(3, join(root, 'dist', 'examples', 'mpi-train.js'));
      expect(run.status, run.stderr).toBe(0);
      const finals = [
        ...run.stdout.matchAll(/^rank (\d)\/3: final loss (\S+); max weight difference from rank 0: (\S+)$/gm),
      ];
      expect(finals.map((m) => m[1]).sort()).toEqual(['0', '1', '2']);
      expect(new Set(finals.map((m) => m[2])).size).toBe(1);
      expect(finals.map((m) => Number(m[3]))).toEqual([0, 0, 0]);
      for (const epoch of [' 1', ' 5', '10', '30']) {
        const losses = [...run.stdout.matchAll(new RegExp(`^rank \\d/3: epoch ${epoch} loss (\\S+)$`, 'gm'))];
        expect(losses).toHaveLength(3);
        expect(new Set(losses.map((m) => m[1])).size).toBe(1);
      }
      const check = run.stdout.match(/max weight difference (\S+) \(tolerance (\S+)\): OK$/m);
      expect(check, run.stdout).not.toBeNull();
      expect(Number(check![1])).toBeLessThanOrEqual(Number(check![2]));
    });
  },
);
