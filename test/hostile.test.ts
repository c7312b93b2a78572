// Hostile input against the raw native binding itself, not the validating wrapper: every
// argument of all 28 array functions (7 ops x f32/f64 x sync/Async) spoiled one at a time
// (wrong lengths, dtypes and kinds, detached and out-of-bounds buffers, partial aliasing,
// non-array and overflowing shapes, NaN/Infinity/negative/fractional dims, huge axes, bad
// scalars, missing arguments, a getter inside shape that detaches or shrinks an array that
// was already converted).
// Each must throw or reject with an Error and leave every byte of every buffer as it was.
// They run in a child process, so a crash is reported as a failure instead of killing vitest.
// Then, in process: arrays that are unusual but valid (views at odd offsets inside guard
// bands, SharedArrayBuffer memory, in-place through a second view, read-only arrays that
// share memory, subclasses) give exactly the results of plain arrays and write nothing else.
import { beforeAll, describe, expect, it } from 'vitest';
import { binding, bindingPath, describeExit, runChild } from './helpers/binding';
import {
  DTYPES,
  type DType,
  fnName,
  IN_PLACE,
  invoke,
  makeCall,
  OPS,
  type OpName,
  outputsOf,
  type RawCall,
} from './helpers/raw-ops.cjs';

const OP_NAMES = Object.keys(OPS) as OpName[];
const DTYPE_NAMES: DType[] = ['f32', 'f64'];
const MODES = [
  { async: false, label: 'sync' },
  { async: true, label: 'Async' },
];

interface CaseResult {
  fn: string;
  name: string;
  expect: 'ok' | 'error' | 'any';
  outcome: string;
  message?: string;
  changed?: string | null;
}

/** Runs a scenario of hostile-child.cjs; the child's own death fails the test with its stderr. */
function runScenario(scenario: string, env: NodeJS.ProcessEnv = {}): CaseResult[] {
  const run = runChild('hostile-child.cjs', [bindingPath!, scenario], {
    timeoutMs: 60_000,
    nodeFlags: ['--expose-gc'],
    env,
  });
  expect(run.signal, describeExit(run)).toBeNull();
  expect(run.status, describeExit(run)).toBe(0);
  return (JSON.parse(run.stdout) as { results: CaseResult[] }).results;
}

/** The cases that did not end as expected, one line each. */
function failures(results: CaseResult[]): string[] {
  return results
    .filter((r) => {
      if (r.expect === 'ok') return r.outcome !== 'ok';
      if (r.expect === 'any') return r.outcome !== 'ok' && r.outcome !== 'error';
      return r.outcome !== 'error' || Boolean(r.changed);
    })
    .map(
      (r) =>
        `${r.fn} / ${r.name}: ${r.outcome}${r.message ? ` (${r.message})` : ''}${r.changed ? `; ${r.changed}` : ''}`,
    );
}

describe.skipIf(!binding)('raw binding: hostile arguments, in a child process', () => {
  let results: CaseResult[] = [];

  beforeAll(() => {
    results = runScenario('matrix');
  });

  it('the child survived every call and ran the whole matrix', () => {
    // 28 functions, each with a baseline, hundreds of spoiled calls and the edge shapes.
    expect(new Set(results.map((r) => r.fn)).size).toBe(28);
    expect(results.length).toBeGreaterThan(5000);
  });

  it('every unspoiled baseline call succeeds (so a refusal below is the spoiling, not the setup)', () => {
    const baselines = results.filter((r) => r.expect === 'ok');
    expect(baselines).toHaveLength(28);
    expect(failures(baselines)).toEqual([]);
  });

  for (const op of OP_NAMES) {
    it(`${op}: every spoiled argument gives a clean Error and writes nothing (f32/f64, sync/Async)`, () => {
      const fns = new Set(DTYPE_NAMES.flatMap((d) => MODES.map((m) => fnName(op, d, m.async))));
      const mine = results.filter((r) => fns.has(r.fn) && r.expect === 'error');
      expect(mine.length).toBeGreaterThan(100);
      expect(failures(mine)).toEqual([]);
    });
  }

  it('shapes with zeros, one value per channel or rank 302 return or fail cleanly (no panic)', () => {
    const edges = results.filter((r) => r.expect === 'any');
    expect(edges.length).toBe(28 * 12);
    expect(failures(edges)).toEqual([]);
    // Training on [0, 3] has no values per channel: a clean refusal, not a division by zero.
    const emptyTrain = edges.find((r) => r.fn === 'trainF32' && r.name.startsWith('edge shape [0, 3] '));
    expect(emptyTrain?.message).toMatch(/more than 1 value per channel/);
  });

  it('stats and sums counts must be non-negative integers (NaN would poison the running stats)', () => {
    const counts = results.filter((r) => /^count (NaN|Infinity|fractional|2\^64)/.test(r.name));
    expect(counts).toHaveLength(4 * 8);
    for (const r of counts) expect(r.message).toMatch(/count must be a non-negative integer/);
  });

  it('an array detached or shrunk by a getter inside shape is read again, not used stale', () => {
    // Without MALLOC_MMAP_THRESHOLD_, glibc may recycle the freed 1 MB blocks silently; with
    // it every such block is unmapped on free, so a use after free faults at once (as does
    // reading pages a shrunk resizable buffer gave back).
    const large = runScenario('detach-large', { MALLOC_MMAP_THRESHOLD_: '65536' });
    expect(large).toHaveLength(80);
    expect(failures(large)).toEqual([]);
    for (const r of large) expect(r.message).toMatch(/^(x|dy) must have length \d+, got (0|2|4)$/);
  });
});

type TypedArray = Float32Array | Float64Array;
interface TypedArrayCtor {
  new (length: number): TypedArray;
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
}
const ctorOf = (a: TypedArray) => a.constructor as TypedArrayCtor;

/** The call with every typed array replaced by `place(original)` (same values). */
function relocated(call: RawCall, place: (a: TypedArray) => TypedArray): RawCall {
  const args = call.args.map((a) => (a instanceof Float32Array || a instanceof Float64Array ? place(a) : a));
  return { ...call, args };
}

const GUARD = 123.5;
const PAD = 3; // elements: an odd offset, and 3 guard values after the view

/** Views at an odd element offset into a buffer whose other elements are a guard value. */
function guardedPlacement() {
  const buffers: { whole: TypedArray; from: number; to: number }[] = [];
  const place = (a: TypedArray): TypedArray => {
    const T = ctorOf(a);
    const whole = new T(a.length + 2 * PAD).fill(GUARD);
    const view = new T(whole.buffer, PAD * T.BYTES_PER_ELEMENT, a.length);
    view.set(a);
    buffers.push({ whole, from: PAD, to: PAD + a.length });
    return view;
  };
  /** Guard elements that were written, as `[index, value]` pairs. */
  const damaged = () =>
    buffers.flatMap(({ whole, from, to }) =>
      Array.from(whole)
        .map((v, i) => [i, v])
        .filter(([i, v]) => (i < from || i >= to) && v !== GUARD),
    );
  return { place, damaged };
}

function sharedPlacement(a: TypedArray): TypedArray {
  const T = ctorOf(a);
  const view = new T(new SharedArrayBuffer(a.byteLength));
  view.set(a);
  return view;
}

const SHAPES = [
  { shape: [5, 3, 7], axis: 1 },
  { shape: [4, 5, 6], axis: -1 },
  // above the 2^15-element cut-off, so the rayon pool works on these views
  { shape: [8, 16, 301], axis: 1 },
];

describe.skipIf(!binding)('raw binding: unusual but valid arrays give the plain-array results', () => {
  for (const { shape, axis } of SHAPES) {
    for (const mode of MODES) {
      const where = `[${shape.join(', ')}] axis ${axis}, ${mode.label}`;

      it(`views at odd offsets inside guard bands: same results, guards untouched (${where})`, async () => {
        for (const op of OP_NAMES) {
          for (const dtype of DTYPE_NAMES) {
            const plain = makeCall(op, dtype, { shape, axis, seed: 7 });
            const { place, damaged } = guardedPlacement();
            const moved = relocated(makeCall(op, dtype, { shape, axis, seed: 7 }), place);
            await invoke(binding, plain, false);
            await invoke(binding, moved, mode.async);
            expect(outputsOf(moved), `${op} ${dtype}`).toEqual(outputsOf(plain));
            expect(damaged(), `${op} ${dtype}`).toEqual([]);
          }
        }
      });

      it(`SharedArrayBuffer-backed arrays: same results (${where})`, async () => {
        for (const op of OP_NAMES) {
          for (const dtype of DTYPE_NAMES) {
            const plain = makeCall(op, dtype, { shape, axis, seed: 11 });
            const shared = relocated(makeCall(op, dtype, { shape, axis, seed: 11 }), sharedPlacement);
            expect(shared.args[0]).toBeInstanceOf(DTYPES[dtype]);
            await invoke(binding, plain, false);
            await invoke(binding, shared, mode.async);
            expect(outputsOf(shared), `${op} ${dtype}`).toEqual(outputsOf(plain));
          }
        }
      });
    }
  }

  for (const mode of MODES) {
    it(`out over its source through a second view of the same memory is the in-place case (${mode.label})`, async () => {
      for (const op of OP_NAMES) {
        const source = IN_PLACE[op];
        if (!source) continue;
        for (const dtype of DTYPE_NAMES) {
          const plain = makeCall(op, dtype, { shape: [6, 4, 5], seed: 3 });
          await invoke(binding, plain, false);
          const inPlace = makeCall(op, dtype, { shape: [6, 4, 5], seed: 3 });
          const s = inPlace.params.findIndex((p) => p.name === source);
          const o = inPlace.params.findIndex((p) => p.name === 'out');
          const src = inPlace.args[s] as TypedArray;
          inPlace.args[o] = new (ctorOf(src))(src.buffer, src.byteOffset, src.length);
          await invoke(binding, inPlace, mode.async);
          expect(outputsOf(inPlace), `${op} ${dtype}`).toEqual(outputsOf(plain));
        }
      }
    });

    it(`arrays that are only read may share memory (gamma = beta, mean = invStd) (${mode.label})`, async () => {
      const pairs: [OpName, string, string][] = [
        ['train', 'gamma', 'beta'],
        ['eval', 'runningMean', 'runningVar'],
        ['backward', 'mean', 'invStd'],
        ['gradSums', 'mean', 'invStd'],
      ];
      for (const [op, first, second] of pairs) {
        for (const dtype of DTYPE_NAMES) {
          const copies = makeCall(op, dtype, { shape: [5, 3], seed: 5 });
          const shared = makeCall(op, dtype, { shape: [5, 3], seed: 5 });
          const i = copies.params.findIndex((p) => p.name === first);
          const j = copies.params.findIndex((p) => p.name === second);
          // Positive values, so the pair is valid both as scales and as variances.
          (copies.args[i] as TypedArray).fill(0.75);
          (copies.args[j] as TypedArray).fill(0.75);
          shared.args[i] = (shared.args[i] as TypedArray).fill(0.75);
          shared.args[j] = shared.args[i];
          await invoke(binding, copies, false);
          await invoke(binding, shared, mode.async);
          expect(outputsOf(shared), `${op} ${dtype}`).toEqual(outputsOf(copies));
        }
      }
    });
  }

  it('typed array subclasses are their base type', async () => {
    class Tensor32 extends Float32Array {}
    const plain = makeCall('train', 'f32', { shape: [5, 3], seed: 9 });
    const sub = relocated(makeCall('train', 'f32', { shape: [5, 3], seed: 9 }), (a) =>
      a instanceof Float32Array ? Tensor32.from(a) : a,
    );
    await invoke(binding, plain, false);
    await invoke(binding, sub, true);
    expect(outputsOf(sub)).toEqual(outputsOf(plain));
  });
});

describe.skipIf(!binding)('raw binding: a refused Async call leaves running stats and out untouched', () => {
  // In process, for the errors only the binding can see (the wrapper never lets them through).
  const spoilers: [string, (call: RawCall) => void][] = [
    [
      'out partly over x',
      (call) => {
        const x = call.args[0] as Float32Array;
        const buffer = new Float32Array(x.length + 2);
        buffer.set(x);
        call.args[0] = buffer.subarray(0, x.length);
        call.args[call.params.findIndex((p) => p.name === 'out')] = buffer.subarray(2).fill(-7.25);
      },
    ],
    [
      'runningVar the same memory as mean',
      (call) => {
        call.args[call.params.findIndex((p) => p.name === 'runningVar')] =
          call.args[call.params.findIndex((p) => p.name === 'mean')];
      },
    ],
    [
      'stats count NaN',
      (call) => {
        call.args[call.params.findIndex((p) => p.name === 'count')] = Number.NaN;
      },
    ],
    [
      'a shape whose product is the length modulo 2^32',
      (call) => {
        call.args[call.params.findIndex((p) => p.name === 'shape')] = [2 ** 32 + 4, 3];
      },
    ],
  ];
  for (const [name, spoil] of spoilers) {
    it(name, async () => {
      const call = makeCall('trainWithStats', 'f32', { shape: [4, 3], seed: 2 });
      spoil(call);
      const running = ['runningMean', 'runningVar', 'out'].map(
        (n) => call.args[call.params.findIndex((p) => p.name === n)] as Float32Array,
      );
      const before = running.map((a) => Array.from(a));
      await expect(invoke(binding, call, true)).rejects.toThrow(Error);
      expect(running.map((a) => Array.from(a))).toEqual(before);
    });
  }
});
