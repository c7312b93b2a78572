// The raw binding's ops described once (parameter order and kind), so a test, a child
// process or a worker thread can build a valid call to any of the 28 array functions and
// then spoil one argument at a time. Plain CommonJS so child processes and workers can
// load it with nothing but `node`.
'use strict';

const { generator } = require('./random.cjs');

/** One parameter: `data` has one value per element, `channel` one per channel in the
 *  op's dtype, `channel64` one per channel as Float64Array, `print` one Float64Array element;
 *  `written` arrays are outputs. */
function param(name, kind, { optional = false, written = false } = {}) {
  return { name, kind, optional, written };
}

const x = param('x', 'data');
const dy = param('dy', 'data');
const gamma = param('gamma', 'channel', { optional: true });
const beta = param('beta', 'channel', { optional: true });
const residual = param('residual', 'data', { optional: true });
const dResidual = param('dResidual', 'data', { optional: true, written: true });
/** One f64 element: x's fingerprint as the kernel read it. */
const xFingerprint = param('xFingerprint', 'print', { optional: true, written: true });

/** The shape: an array, positional (second, after x or dy and x). */
const shape = param('shape', 'shape');
/** The scalars and flags: fields of the options object, the binding's last argument. */
const axis = param('axis', 'axis');
const eps = param('eps', 'eps');
const relu = param('relu', 'flag');
const momentum = param('momentum', 'momentum');
const correction = param('runningVarCorrection', 'correction');
const training = param('training', 'flag');
/** Ghost batches: the groups the batch is cut into (absent: 1). */
const groups = param('groups', 'groups', { optional: true });
/** The count of given statistics (options.stats.count) or sums (options.sums.count). */
const statsCount = { ...param('count', 'count'), field: 'stats' };
const sumsCount = { ...param('count', 'count'), field: 'sums' };

/** The kinds that travel in the options object rather than positionally. */
const OPTION_KINDS = new Set(['axis', 'eps', 'momentum', 'correction', 'count', 'flag', 'groups']);

/** Parameter lists: the positional arguments in the binding's order (native/binding.d.ts),
 *  then the options object's fields; `bindingArgs` turns a list into the binding's arguments. */
const OPS = {
  train: [
    x,
    shape,
    gamma,
    beta,
    param('runningMean', 'channel', { optional: true, written: true }),
    param('runningVar', 'channel', { optional: true, written: true }),
    residual,
    param('out', 'data', { written: true }),
    param('mean', 'channel', { written: true }),
    param('invStd', 'channel', { written: true }),
    xFingerprint,
    axis,
    eps,
    momentum,
    correction,
    relu,
    groups,
  ],
  trainWithStats: [
    x,
    shape,
    gamma,
    beta,
    param('runningMean', 'channel', { optional: true, written: true }),
    param('runningVar', 'channel', { optional: true, written: true }),
    residual,
    param('statsMean', 'channel64'),
    param('statsM2', 'channel64'),
    param('out', 'data', { written: true }),
    param('mean', 'channel', { written: true }),
    param('invStd', 'channel', { written: true }),
    xFingerprint,
    axis,
    eps,
    momentum,
    correction,
    relu,
    statsCount,
    groups,
  ],
  eval: [
    x,
    shape,
    gamma,
    beta,
    param('runningMean', 'channel'),
    param('runningVar', 'channel'),
    residual,
    param('out', 'data', { written: true }),
    axis,
    eps,
    relu,
  ],
  backward: [
    dy,
    x,
    shape,
    gamma,
    param('mean', 'channel'),
    param('invStd', 'channel'),
    param('y', 'data', { optional: true }),
    param('out', 'data', { written: true }),
    param('dGamma', 'channel', { written: true }),
    param('dBeta', 'channel', { written: true }),
    dResidual,
    xFingerprint,
    axis,
    training,
    groups,
  ],
  backwardWithSums: [
    dy,
    x,
    shape,
    gamma,
    param('mean', 'channel'),
    param('invStd', 'channel'),
    param('y', 'data', { optional: true }),
    param('sumDy', 'channel64'),
    param('sumDyXhat', 'channel64'),
    param('out', 'data', { written: true }),
    param('dGamma', 'channel', { written: true }),
    param('dBeta', 'channel', { written: true }),
    dResidual,
    xFingerprint,
    axis,
    training,
    sumsCount,
    groups,
  ],
  moments: [x, shape, param('mean', 'channel64', { written: true }), param('m2', 'channel64', { written: true }), axis],
  gradSums: [
    dy,
    x,
    shape,
    param('mean', 'channel'),
    param('invStd', 'channel'),
    param('y', 'data', { optional: true }),
    param('sumDy', 'channel64', { written: true }),
    param('sumDyXhat', 'channel64', { written: true }),
    axis,
  ],
};

/** The binding's arguments for a call: its arrays and shape positionally (a missing one as
 *  undefined), then one options object of its scalars and flags. A call whose list was
 *  emptied passes no arguments at all; `call.options(o)` may change or replace the object. */
function bindingArgs(call) {
  if (call.args.length === 0) return [];
  const positional = [];
  const options = {};
  call.params.forEach((p, i) => {
    const value = i < call.args.length ? call.args[i] : undefined;
    if (!OPTION_KINDS.has(p.kind)) positional.push(value);
    else if (i >= call.args.length) return;
    else if (p.field) options[p.field] = { count: value };
    else options[p.name] = value;
  });
  return [...positional, call.options ? call.options(options) : options];
}

/** The one overlap each op allows: its output exactly over its elementwise source. */
const IN_PLACE = { train: 'x', trainWithStats: 'x', eval: 'x', backward: 'dy', backwardWithSums: 'dy' };

const DTYPES = { f32: Float32Array, f64: Float64Array };

/** The binding's function name, e.g. trainF32Async. */
function fnName(op, dtype, async) {
  return `${op}${dtype === 'f32' ? 'F32' : 'F64'}${async ? 'Async' : ''}`;
}

/** Channels and values per channel of a shape seen along `axis`. */
function layoutOf(dims, axisValue) {
  const a = axisValue < 0 ? axisValue + dims.length : axisValue;
  const size = dims.reduce((p, d) => p * d, 1);
  const channels = dims[a];
  return { size, channels, perChannel: channels === 0 ? 0 : size / channels };
}

/**
 * A valid call: `{ op, dtype, params, args }` with `args` in the binding's order.
 * Inputs are seeded random data; outputs are filled with a sentinel so a test can tell
 * whether anything was written. `full` also gives the optional arrays (y for backward
 * comes with relu semantics: a ReLU output, mostly positive). `seed: null` fills the
 * inputs with constants instead (fast, for huge calls whose values do not matter).
 */
function makeCall(
  op,
  dtype,
  { shape: dims = [4, 3], axis: axisValue = 1, seed = 1, full = true, sentinel = -7.25 } = {},
) {
  const T = DTYPES[dtype];
  const random = seed === null ? () => 0.75 : generator(seed);
  const { size, channels, perChannel } = layoutOf(dims, axisValue);
  const fill = (Ctor, n, f) => {
    const a = new Ctor(n);
    if (seed === null) return a.fill(f(0));
    for (let i = 0; i < n; i++) a[i] = f(i);
    return a;
  };
  const args = OPS[op].map((p) => {
    switch (p.kind) {
      case 'shape':
        return dims.slice();
      case 'axis':
        return axisValue;
      case 'eps':
        return 1e-5;
      case 'momentum':
        return 0.1;
      case 'correction':
        return 1;
      case 'flag':
        return p.name === 'training';
      case 'count':
        return perChannel;
      case 'groups':
        return 1;
      case 'data':
        if (p.optional && !full) return null;
        if (p.written) return new T(size).fill(sentinel);
        if (p.name === 'y') return fill(T, size, () => random() - 0.25);
        return fill(T, size, () => random() * 4 - 2);
      case 'channel':
        if (p.written && p.name !== 'runningMean' && p.name !== 'runningVar') return new T(channels).fill(sentinel);
        if (p.optional && !full) return null;
        if (p.name === 'invStd' || p.name === 'runningVar') return fill(T, channels, () => 0.5 + random());
        return fill(T, channels, () => random() - 0.5);
      case 'print':
        return full ? new Float64Array(1).fill(sentinel) : null;
      case 'channel64':
        if (p.written) return new Float64Array(channels).fill(sentinel);
        if (p.name === 'statsM2') return fill(Float64Array, channels, () => perChannel * (0.5 + random()));
        return fill(Float64Array, channels, () => random() - 0.5);
      default:
        throw new Error(`unknown parameter kind ${p.kind}`);
    }
  });
  return { op, dtype, params: OPS[op], args };
}

/** The bytes of a buffer, or null once it is detached (the tests detach some on purpose). */
function bytesOf(buffer) {
  try {
    return new Uint8Array(buffer);
  } catch {
    return null;
  }
}

/** Copies of every typed array's whole underlying buffer (views of one buffer share a copy). */
function snapshotBuffers(args) {
  const seen = new Map();
  for (const a of args) {
    if (!ArrayBuffer.isView(a) || seen.has(a.buffer)) continue;
    const bytes = bytesOf(a.buffer);
    if (bytes) seen.set(a.buffer, bytes.slice());
  }
  return seen;
}

/** How the first buffer that differs from its snapshot changed, or null. Buffers detached
 *  since (by the test itself) are skipped: their memory is no longer the caller's; resizable
 *  buffers the test shrank are compared over what is left of them. */
function changedBuffer(snapshot) {
  for (const [buffer, before] of snapshot) {
    const now = bytesOf(buffer);
    if (!now) continue;
    const shrunkByTest = buffer.resizable && now.length < before.length;
    if (now.length !== before.length && !shrunkByTest) {
      return `a buffer changed length ${before.length} -> ${now.length}`;
    }
    for (let i = 0; i < now.length; i++) {
      if (now[i] !== before[i]) return `a buffer changed at byte ${i} of ${now.length}`;
    }
  }
  return null;
}

/** The outputs a call wrote, copied (for comparing two runs of the same call). */
function outputsOf(call) {
  const result = {};
  call.params.forEach((p, i) => {
    if (p.written && call.args[i]) result[p.name] = Array.from(call.args[i]);
  });
  return result;
}

/** Runs a call sync or Async against `binding`; always returns a promise. */
function invoke(binding, call, async) {
  return new Promise((resolve) => resolve(binding[fnName(call.op, call.dtype, async)](...bindingArgs(call))));
}

module.exports = {
  OPS,
  IN_PLACE,
  DTYPES,
  fnName,
  layoutOf,
  makeCall,
  bindingArgs,
  snapshotBuffers,
  changedBuffer,
  outputsOf,
  invoke,
};
