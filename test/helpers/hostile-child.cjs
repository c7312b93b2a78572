// Hostile calls to the raw binding, run in a child process so that a crash (a signal, an
// abort from a Rust panic, a non-zero exit) is seen by the parent test as a failure instead
// of taking vitest down with it. Usage:
//   node --expose-gc hostile-child.cjs <path of the .node file> <scenario>
// It prints one JSON report on stdout: { results: [{ fn, name, expect, outcome, message, changed }] }.
// `expect` is 'error' (must throw or reject with an Error and write nothing) or 'any'
// (a valid edge case: must return or fail cleanly).
'use strict';
const { OPS, IN_PLACE, DTYPES, fnName, makeCall, snapshotBuffers, changedBuffer, invoke } = require('./raw-ops.cjs');

const [bindingPath, scenario] = process.argv.slice(2);
const binding = require(bindingPath);
const gc = typeof global.gc === 'function' ? global.gc : () => {};

/** A typed array whose buffer has been detached (its memory moved to a clone, then freed). */
function detached(T, length) {
  const a = new T(length);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

/** A length-tracking copy of `a` on a resizable buffer (shrinking the buffer shortens it). */
function resizableCopy(T, a) {
  const rab = new ArrayBuffer(a.byteLength, { maxByteLength: a.byteLength });
  const copy = new T(rab);
  copy.set(a);
  return copy;
}

/** A fixed-length view left out of bounds by shrinking its resizable buffer: length 0. */
function outOfBoundsView(T, length) {
  const rab = new ArrayBuffer(length * T.BYTES_PER_ELEMENT, { maxByteLength: length * T.BYTES_PER_ELEMENT });
  const view = new T(rab, 0, length);
  rab.resize(0);
  return view;
}

/** The element type an array parameter must have in a call of `dtype`. */
function typeOf(p, dtype) {
  return p.kind === 'channel64' || p.kind === 'print' ? Float64Array : DTYPES[dtype];
}

/** Replacements for an array parameter that must all be refused. */
function arraySpoilers(p, original, dtype) {
  const T = typeOf(p, dtype);
  const n = original ? original.length : 0;
  const other = T === Float32Array ? Float64Array : Float32Array;
  const spoilers = [
    [`${p.name} one element too long`, () => new T(n + 1)],
    [`${p.name} of length 0`, () => new T(0)],
    [`${p.name} as ${other.name}`, () => new other(n)],
    [`${p.name} as Int32Array`, () => new Int32Array(n)],
    [`${p.name} as a Uint8Array of the same bytes`, () => new Uint8Array(n * T.BYTES_PER_ELEMENT)],
    [`${p.name} as a BigInt64Array`, () => new BigInt64Array(n)],
    [`${p.name} as a DataView`, () => new DataView(new ArrayBuffer(n * T.BYTES_PER_ELEMENT))],
    [`${p.name} as an ArrayBuffer`, () => new ArrayBuffer(n * T.BYTES_PER_ELEMENT)],
    [`${p.name} as a plain array`, () => Array.from({ length: n }, () => 1)],
    [`${p.name} as an array-like object`, () => ({ length: n, 0: 1 })],
    [`${p.name} as a string`, () => 'Float32Array'],
    [`${p.name} as a number`, () => 0],
    [`${p.name} as true`, () => true],
    [`${p.name} detached`, () => detached(T, n)],
    [`${p.name} out of bounds of a shrunk resizable buffer`, () => outOfBoundsView(T, n)],
  ];
  if (n > 0) spoilers.push([`${p.name} one element too short`, () => new T(n - 1)]);
  if (!p.optional) {
    spoilers.push([`${p.name} null`, () => null], [`${p.name} undefined`, () => undefined]);
  }
  return spoilers;
}

const SHAPE_SPOILERS = [
  ['shape a string', () => '4,3'],
  ['shape a number', () => 12],
  ['shape null', () => null],
  ['shape undefined', () => undefined],
  ['shape an array-like object', () => ({ length: 2, 0: 4, 1: 3 })],
  ['shape a Float64Array', () => new Float64Array([4, 3])],
  ['shape of rank 0', () => []],
  ['shape of rank 1', () => [12]],
  ['shape with a string dim', () => ['4', 3]],
  ['shape with a null dim', () => [4, null]],
  // biome-ignore lint/suspicious/noSparseArray: the hole is the point
  ['shape with a hole', () => [4, , 3]],
  ['shape with NaN', () => [NaN, 3]],
  ['shape with Infinity', () => [Infinity, 3]],
  ['shape with -Infinity', () => [4, -Infinity]],
  ['shape with a negative dim', () => [-4, -3]],
  ['shape with -1', () => [-1, 3, -4]],
  ['shape with a fractional dim', () => [4.5, 3]],
  ['shape with a tiny fraction', () => [4 + 1e-15, 3]],
  ['shape with 2^53', () => [2 ** 53, 3]],
  ['shape with 2^64', () => [2 ** 64, 3]],
  ['shape with 1e308', () => [1e308, 3]],
  ['shape whose product exceeds 2^53', () => [2 ** 27, 3, 2 ** 27]],
  ['shape whose product overflows 2^64', () => [2 ** 32, 3, 2 ** 32]],
  // Products that wrap around to exactly the real length (12) in 32- or 64-bit arithmetic.
  ['shape whose product is 12 modulo 2^32', () => [2 ** 32 + 4, 3]],
  ['shape whose product is 12 modulo 2^64', () => [4 * 274177, 3, 67280421310721]],
  ['shape with a zero dim and a huge one', () => [0, 3, 2 ** 53 - 1]],
  ['shape with extra ones and the wrong size', () => [4, 3, 1, 2]],
  ['shape a Proxy of an array', () => new Proxy([4, 3], {})],
  [
    'shape emptied by a getter while it is read',
    () => {
      const s = [4, 3, 1];
      Object.defineProperty(s, 0, {
        get() {
          s.length = 1;
          return 4;
        },
      });
      return s;
    },
  ],
  [
    'shape with a throwing getter',
    () => {
      const s = [4, 3];
      Object.defineProperty(s, 1, {
        get() {
          throw new Error('getter');
        },
      });
      return s;
    },
  ],
];

const AXIS_SPOILERS = [
  ['axis NaN', NaN],
  ['axis Infinity', Infinity],
  ['axis -Infinity', -Infinity],
  ['axis 0.5', 0.5],
  ['axis = rank', 2],
  ['axis = -rank - 1', -3],
  ['axis 2^31', 2 ** 31],
  ['axis -2^31 - 1', -(2 ** 31) - 1],
  ['axis 2^53', 2 ** 53],
  ['axis 2^64', 2 ** 64],
  ['axis 1e308', 1e308],
  ['axis -1e308', -1e308],
  ['axis a string', '1'],
  ['axis null', null],
  ['axis undefined', undefined],
  ['axis true', true],
];

const SCALAR_SPOILERS = {
  eps: [
    ['eps NaN', NaN],
    ['eps 0', 0],
    ['eps negative', -1e-5],
    ['eps Infinity', Infinity],
    ['eps a string', '1e-5'],
    ['eps null', null],
    ['eps undefined', undefined],
  ],
  momentum: [
    ['momentum NaN', NaN],
    ['momentum negative', -0.1],
    ['momentum above 1', 1.5],
    ['momentum Infinity', Infinity],
    ['momentum a string', '0.1'],
    ['momentum null', null],
  ],
  correction: [
    ['runningVarCorrection 0.5', 0.5],
    ['runningVarCorrection 2', 2],
    ['runningVarCorrection NaN', NaN],
    ['runningVarCorrection a string', '1'],
    ['runningVarCorrection null', null],
  ],
  count: [
    ['count NaN', NaN],
    ['count negative', -4],
    ['count 1 (training needs 2)', 1],
    ['count 0', 0],
    ['count fractional', 4.5],
    ['count Infinity', Infinity],
    ['count 2^64', 2 ** 64],
    ['count a string', '4'],
    ['count null', null],
  ],
  // The valid call's shape is [4, 3]: 3 and 8 do not divide its 4 samples, 2 leaves mean and
  // invStd 3 long where 6 are needed (and given statistics or sums allow only 1), 4 leaves one
  // value per channel to train on.
  groups: [
    ['groups NaN', NaN],
    ['groups 0', 0],
    ['groups negative', -2],
    ['groups fractional', 1.5],
    ['groups Infinity', Infinity],
    ['groups 2^64', 2 ** 64],
    ['groups 3', 3],
    ['groups 8', 8],
    ['groups 2', 2],
    ['groups 4', 4],
    ['groups a string', '2'],
  ],
  flag: [
    ['a string', 'yes'],
    ['a number', 1],
    ['null', null],
    ['undefined', undefined],
    ['an object', {}],
  ],
};

/** Puts `a` and `b` in one buffer, `a` starting 8 bytes into `b`: a partial overlap. */
function overlapping(Ta, na, b) {
  // a starts 8 bytes into b, or inside b's last element when b is shorter (a one-element
  // fingerprint array), aligned for a's type.
  const start = Math.min(8, Math.floor((b.byteLength - 1) / Ta.BYTES_PER_ELEMENT) * Ta.BYTES_PER_ELEMENT);
  const bytes = Math.max(b.byteLength, start + na * Ta.BYTES_PER_ELEMENT);
  const buffer = new ArrayBuffer(bytes);
  const b2 = new b.constructor(buffer, 0, b.length);
  b2.set(b);
  return { a: new Ta(buffer, start, na), b: b2 };
}

/** Every hostile variant of a valid call of `op`/`dtype`: [name, () => spoiled call]. */
function hostileCalls(op, dtype) {
  const params = OPS[op];
  const fresh = () => makeCall(op, dtype, { full: true });
  const replaced = (i, make) => () => {
    const call = fresh();
    call.args[i] = make(call.args[i]);
    return call;
  };
  const cases = [];
  params.forEach((p, i) => {
    const label = (what) => (p.kind === 'flag' ? `${p.name} ${what}` : what);
    if (['data', 'channel', 'channel64', 'print'].includes(p.kind)) {
      const original = fresh().args[i];
      for (const [name, make] of arraySpoilers(p, original, dtype)) cases.push([name, replaced(i, make)]);
    } else if (p.kind === 'shape') {
      for (const [name, make] of SHAPE_SPOILERS) cases.push([name, replaced(i, make)]);
    } else if (p.kind === 'axis') {
      for (const [name, value] of AXIS_SPOILERS) cases.push([name, replaced(i, () => value)]);
    } else {
      for (const [name, value] of SCALAR_SPOILERS[p.kind]) cases.push([label(name), replaced(i, () => value)]);
    }
  });
  // Aliasing: a written array partly over any other array, or exactly over one it may not share.
  params.forEach((w, i) => {
    if (!w.written) return;
    params.forEach((q, j) => {
      if (j === i || !['data', 'channel', 'channel64', 'print'].includes(q.kind)) return;
      cases.push([
        `${w.name} partly over ${q.name}`,
        () => {
          const call = fresh();
          const { a, b } = overlapping(typeOf(w, dtype), call.args[i].length, call.args[j]);
          a.set(call.args[i]);
          call.args[i] = a;
          call.args[j] = b;
          return call;
        },
      ]);
      const sameType = typeOf(w, dtype) === typeOf(q, dtype);
      const allowed = w.name === 'out' && IN_PLACE[op] === q.name;
      if (sameType && !allowed) {
        cases.push([
          `${w.name} the same memory as ${q.name}`,
          () => {
            const call = fresh();
            if (call.args[j].length !== call.args[i].length) return null;
            call.args[i] = call.args[j];
            return call;
          },
        ]);
      }
    });
  });
  // JS that runs while the arguments convert (a getter inside shape) detaches an array that
  // was converted before it: the call must see the array as it is after conversion.
  const shapeIndex = params.findIndex((p) => p.kind === 'shape');
  params.forEach((p, i) => {
    if (!['data', 'channel', 'channel64', 'print'].includes(p.kind)) return;
    cases.push([
      `${p.name} detached by a getter in shape`,
      () => {
        const call = fresh();
        const victim = call.args[i];
        if (!victim) return null;
        const dims = call.args[shapeIndex];
        const trapped = [dims[0]];
        Object.defineProperty(trapped, 1, {
          enumerable: true,
          get() {
            structuredClone(victim.buffer, { transfer: [victim.buffer] });
            gc();
            return dims[1];
          },
        });
        call.args[shapeIndex] = trapped;
        return call;
      },
    ]);
  });
  // The same through a getter in the options object, the last argument: every array has
  // been converted by then.
  params.forEach((p, i) => {
    if (!['data', 'channel', 'channel64', 'print'].includes(p.kind)) return;
    cases.push([
      `${p.name} detached by a getter in options.axis`,
      () => {
        const call = fresh();
        const victim = call.args[i];
        if (!victim) return null;
        call.options = (o) => {
          const axis = o.axis;
          return Object.defineProperty(o, 'axis', {
            enumerable: true,
            get() {
              structuredClone(victim.buffer, { transfer: [victim.buffer] });
              gc();
              return axis;
            },
          });
        };
        return call;
      },
    ]);
  });
  for (const [name, value] of [
    ['options missing', undefined],
    ['options null', null],
    ['options a string', 'axis: 1'],
    ['options an array', [1]],
  ]) {
    cases.push([name, () => ({ ...fresh(), options: () => value })]);
  }
  cases.push([
    'options with a throwing getter',
    () => ({
      ...fresh(),
      options: (o) =>
        Object.defineProperty(o, 'axis', {
          get() {
            throw new Error('getter');
          },
        }),
    }),
  ]);
  // The same with a resizable buffer shrunk instead: x then tracks a shorter length.
  params.forEach((p, i) => {
    if (p.kind !== 'data' || i > shapeIndex) return;
    cases.push([
      `${p.name} shrunk by a getter in shape`,
      () => {
        const call = fresh();
        const tracking = resizableCopy(DTYPES[dtype], call.args[i]);
        call.args[i] = tracking;
        const dims = call.args[shapeIndex];
        const trapped = [dims[0]];
        Object.defineProperty(trapped, 1, {
          enumerable: true,
          get() {
            tracking.buffer.resize(tracking.BYTES_PER_ELEMENT * 4);
            return dims[1];
          },
        });
        call.args[shapeIndex] = trapped;
        return call;
      },
    ]);
  });
  cases.push(['every argument missing', () => ({ ...fresh(), args: [] })]);
  cases.push([
    'the last required argument missing',
    () => {
      // Optional arguments after it (dResidual) go too: napi reads the missing ones as undefined.
      const call = fresh();
      const last = call.params.findLastIndex((p) => !p.optional);
      call.args.length = last;
      return call;
    },
  ]);
  return cases;
}

/** Shapes with a zero somewhere, or one channel, or one value per channel: valid or cleanly refused. */
const EDGE_SHAPES = [
  { shape: [0, 3], axis: 1 },
  { shape: [4, 0], axis: 1 },
  { shape: [0, 0], axis: 1 },
  { shape: [0, 3, 5], axis: -1 },
  { shape: [3, 4, 0], axis: 1 },
  { shape: [1, 0, 5], axis: 1 },
  { shape: [2, 3, 0, 4], axis: -1 },
  { shape: [1, 3], axis: 1 },
  { shape: [1, 3, 1], axis: 1 },
  { shape: [2, 1], axis: 1 },
  { shape: [1, 1, 1, 1, 1, 1, 1, 2], axis: -1 },
  { shape: [2, ...new Array(300).fill(1), 3], axis: -1 },
];

async function runCase(results, fn, name, expect, makeCallFn, async) {
  let call;
  try {
    call = makeCallFn();
  } catch (e) {
    results.push({ fn, name, expect, outcome: 'setup-failed', message: String(e) });
    return;
  }
  if (!call) return;
  const snapshot = snapshotBuffers(call.args);
  const record = { fn, name, expect };
  try {
    await invoke(binding, call, async);
    record.outcome = 'ok';
  } catch (e) {
    record.outcome = e instanceof Error ? 'error' : 'non-error-thrown';
    record.message = e instanceof Error ? e.message : String(e);
  }
  if (record.outcome !== 'ok') record.changed = changedBuffer(snapshot);
  results.push(record);
}

async function matrix() {
  const results = [];
  for (const op of Object.keys(OPS)) {
    for (const dtype of ['f32', 'f64']) {
      for (const async of [false, true]) {
        const fn = fnName(op, dtype, async);
        await runCase(results, fn, 'a valid call (baseline)', 'ok', () => makeCall(op, dtype), async);
        for (const [name, make] of hostileCalls(op, dtype)) await runCase(results, fn, name, 'error', make, async);
        for (const { shape, axis } of EDGE_SHAPES) {
          const name = `edge shape [${shape.length > 12 ? `rank ${shape.length}` : shape.join(', ')}] axis ${axis}`;
          await runCase(results, fn, name, 'any', () => makeCall(op, dtype, { shape, axis }), async);
        }
      }
    }
  }
  return results;
}

/** The getter cases with large arrays: a freed 1 MB block is unmapped (the parent sets
 *  MALLOC_MMAP_THRESHOLD_), and a shrunk resizable buffer gives its pages back, so a use of
 *  the stale pointer faults at once rather than silently reading or corrupting memory. The
 *  victims are the arrays converted before shape (after it, conversion sees them changed). */
async function detachLarge() {
  const results = [];
  const shape = [1 << 16, 4];
  const spoil = {
    detached: (victim) => {
      structuredClone(victim.buffer, { transfer: [victim.buffer] });
      gc();
    },
    shrunk: (victim) => victim.buffer.resize(16),
  };
  for (const op of Object.keys(OPS)) {
    const params = OPS[op];
    const shapeIndex = params.findIndex((p) => p.kind === 'shape');
    for (const dtype of ['f32', 'f64']) {
      for (const async of [false, true]) {
        for (const [i, p] of params.entries()) {
          if (p.kind !== 'data' || i > shapeIndex) continue;
          for (const [how, change] of Object.entries(spoil)) {
            const name = `${p.name} (256K elements) ${how} by a getter in shape`;
            await runCase(
              results,
              fnName(op, dtype, async),
              name,
              'error',
              () => {
                const call = makeCall(op, dtype, { shape, seed: null });
                const T = DTYPES[dtype];
                const victim = how === 'shrunk' ? resizableCopy(T, call.args[i]) : call.args[i];
                call.args[i] = victim;
                const trapped = [shape[0]];
                Object.defineProperty(trapped, 1, {
                  enumerable: true,
                  get() {
                    change(victim);
                    return shape[1];
                  },
                });
                call.args[shapeIndex] = trapped;
                return call;
              },
              async,
            );
            gc();
          }
        }
      }
    }
  }
  return results;
}

const SCENARIOS = { matrix, 'detach-large': detachLarge };

SCENARIOS[scenario]().then(
  (results) => {
    process.stdout.write(JSON.stringify({ results }));
  },
  (e) => {
    process.stderr.write(`scenario ${scenario} failed: ${e?.stack ?? e}\n`);
    process.exitCode = 2;
  },
);
