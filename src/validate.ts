// The one place arguments are checked. Both backends call it before any work, so a bad
// call throws the same class and message everywhere and nothing has been written yet.
import { halfDtypeOf } from './half';
import { type Layout, layoutOf } from './layout';
import {
  floatDtype,
  isShared,
  isShrinkable,
  plainFloatArray,
  plainTensorView,
  plainView,
  sharesSharedMemory,
  type TensorKind,
  tensorKind,
} from './typed-arrays';
import type { ChannelStats, Dtype, FloatArray, GradSums, SavedStats, TensorArray } from './types';

export const DEFAULT_AXIS = 1;
export const DEFAULT_EPS = 1e-5;
export const DEFAULT_MOMENTUM = 0.1;

/** What every plan says of its tensors: their element type, and whether x came as a
 *  Float16Array (then the outputs the call makes are Float16Arrays too). */
export interface TensorsOf {
  dtype: Dtype;
  float16Array: boolean;
}

export interface TrainPlan extends TensorsOf {
  x: TensorArray;
  shape: number[];
  axis: number;
  layout: Layout;
  eps: number;
  gamma: FloatArray | null;
  beta: FloatArray | null;
  runningMean: FloatArray | null;
  runningVar: FloatArray | null;
  momentum: number;
  /** 1: the running variance takes the unbiased batch variance (PyTorch); 0: the biased one. */
  runningVarCorrection: number;
  /** Added to the normalized value before the activation (a ResNet block's `+ z`). */
  residual: TensorArray | null;
  relu: boolean;
  out: TensorArray | null;
  /** Also give x's fingerprint as the step read it. */
  fingerprint: boolean;
  /** Ghost batches (`virtualBatchSize`): the groups of samples normalized each on its own,
   *  1 for the whole batch. The saved statistics are groups × C, group-major. */
  groups: number;
}

/** A training step that normalizes with statistics the caller merged. */
export interface TrainWithStatsPlan extends TrainPlan {
  stats: ChannelStats;
}

export interface StatsPlan extends TensorsOf {
  x: TensorArray;
  shape: number[];
  axis: number;
  layout: Layout;
}

export interface EvalPlan extends TensorsOf {
  x: TensorArray;
  shape: number[];
  axis: number;
  layout: Layout;
  eps: number;
  gamma: FloatArray | null;
  beta: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  residual: TensorArray | null;
  relu: boolean;
  out: TensorArray | null;
}

export interface BackwardPlan extends TensorsOf {
  dy: TensorArray;
  x: TensorArray;
  shape: number[];
  axis: number;
  layout: Layout;
  gamma: FloatArray | null;
  mean: FloatArray;
  invStd: FloatArray;
  training: boolean;
  /** The forward output when a ReLU was fused: dy only flows where it is > 0. */
  y: TensorArray | null;
  out: TensorArray | null;
  /** The forward pass added a residual: also give what flows to it. */
  residual: boolean;
  outResidual: TensorArray | null;
  /** Also give x's fingerprint as the backward read it. */
  fingerprint: boolean;
  /** Frozen statistics only: also give dMean and dVar, the gradients of the given statistics. */
  statsGrad: boolean;
  /** Ghost batches: the groups the forward normalized each on its own (1: the whole batch). */
  groups: number;
}

export interface BackwardWithSumsPlan extends BackwardPlan {
  sums: GradSums;
}

/** A plan whose tensors are float32 / float64 arrays: what the js kernels compute on (a
 *  16-bit call reaches them widened to float32, see js/widened.ts). */
export type FloatPlan<P> = {
  [K in keyof P]: P[K] extends TensorArray ? FloatArray : P[K] extends TensorArray | null ? FloatArray | null : P[K];
};

/** A real Float32Array / Float64Array, of any realm (see typed-arrays.ts). */
export function isFloatArray(v: unknown): v is FloatArray {
  return floatDtype(v) !== null;
}

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return v.length <= 8 ? `[${v.map(describe).join(', ')}]` : `an array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}...` : v);
  if (typeof v === 'object') {
    const name = (v as object).constructor?.name;
    // An object given a typed array's prototype is not one: say so rather than echo its name.
    if (typeof name === 'string' && name.endsWith('Array')) return `an object posing as ${name} (not a typed array)`;
    return name ?? 'an object';
  }
  return typeof v;
}

function dtypeName(dtype: Dtype): string {
  return dtype === 'float32' ? 'Float32Array' : 'Float64Array';
}

/** The first tensor of a call (x, or dy), as a plain view of this realm (what every later
 *  check and kernel reads; a Float16Array becomes a Uint16Array of its bits), and its kind. */
interface Data {
  array: TensorArray;
  kind: TensorKind;
}

function checkData(name: string, v: unknown): Data {
  const kind = tensorKind(v);
  if (kind === null) {
    throw new TypeError(
      `${name} must be a Float32Array, Float64Array or Uint16Array (bfloat16 or float16 bits, with dtype), got ${describe(v)}`,
    );
  }
  return { array: plainTensorView(v, kind), kind };
}

const DTYPES: ReadonlySet<unknown> = new Set(['float32', 'float64', 'bfloat16', 'float16']);

/** The call's dtype: the `dtype` option, which a Uint16Array needs and which must match any
 *  other array; a Float16Array is float16. */
function checkDtype(option: unknown, data: Data, name: string): TensorsOf {
  if (option !== undefined && !DTYPES.has(option)) {
    throw new TypeError(`dtype must be 'float32', 'float64', 'bfloat16' or 'float16', got ${describe(option)}`);
  }
  const { kind } = data;
  if (kind === 'uint16') {
    if (option === 'bfloat16' || option === 'float16') return { dtype: option, float16Array: false };
    throw new TypeError(
      `${name} is a Uint16Array: give dtype 'bfloat16' or 'float16' (the format of its bits), got ${describe(option)}`,
    );
  }
  const own: Dtype = kind === 'float16array' ? 'float16' : kind;
  if (option !== undefined && option !== own) {
    throw new TypeError(`dtype ${describe(option)} does not match ${name}, a ${arrayName(kind)} (dtype '${own}')`);
  }
  return { dtype: own, float16Array: kind === 'float16array' };
}

function arrayName(kind: TensorKind): string {
  return { float32: 'Float32Array', float64: 'Float64Array', uint16: 'Uint16Array', float16array: 'Float16Array' }[
    kind
  ];
}

/** A tensor of the call's dtype (all tensors of one call share it: a Uint16Array, or for
 *  float16 a Float16Array, when x is 16-bit), as a plain view. */
function checkSameDtype(name: string, v: unknown, t: TensorsOf, likeName: string): TensorArray {
  if (halfDtypeOf(t.dtype) !== null) {
    const kind = tensorKind(v);
    if (kind === 'uint16' || (kind === 'float16array' && t.dtype === 'float16')) return plainTensorView(v, kind);
    const what = t.dtype === 'float16' ? 'Uint16Array or Float16Array' : 'Uint16Array';
    throw new TypeError(`${name} must be a ${what} like ${likeName} (${t.dtype} bits), got ${describe(v)}`);
  }
  const a = plainFloatArray(v);
  if (a === null || a instanceof Float32Array !== (t.dtype === 'float32')) {
    throw new TypeError(`${name} must be a ${dtypeName(t.dtype)} like ${likeName}, got ${describe(v)}`);
  }
  return a;
}

/** A per-channel parameter or statistic: x's dtype for float32 and float64, Float32Array for
 *  the 16-bit formats (PyTorch's mixed precision). */
function checkParamDtype(name: string, v: unknown, t: TensorsOf): FloatArray {
  const a = plainFloatArray(v);
  if (halfDtypeOf(t.dtype) !== null) {
    if (a === null || !(a instanceof Float32Array)) {
      throw new TypeError(
        `${name} must be a Float32Array (the parameters and statistics of ${t.dtype} tensors are float32), got ${describe(v)}`,
      );
    }
    return a;
  }
  if (a === null || a instanceof Float32Array !== (t.dtype === 'float32')) {
    throw new TypeError(`${name} must be a ${dtypeName(t.dtype)} like x, got ${describe(v)}`);
  }
  return a;
}

function checkLength(name: string, a: TensorArray, expected: number, what: string): void {
  if (a.length !== expected) {
    throw new RangeError(`${name} must have length ${expected} (${what}), got ${a.length}`);
  }
}

const NO_OPTIONS: Record<string, unknown> = Object.freeze({});

/** The option names each kind of call takes. */
const NORM_KEYS = ['axis', 'dtype', 'eps', 'gamma', 'beta', 'activation', 'residual'];
/** A shard of a synchronized batch, or a step with given statistics: one set for the batch. */
const SHARD_TRAIN_KEYS = new Set([
  ...NORM_KEYS,
  'runningMean',
  'runningVar',
  'momentum',
  'runningVarCorrection',
  'out',
  'fingerprint',
]);
const TRAIN_KEYS = new Set([...SHARD_TRAIN_KEYS, 'virtualBatchSize']);
const EVAL_KEYS = new Set([...NORM_KEYS, 'runningMean', 'runningVar', 'out']);
const SHARD_BACKWARD_KEYS = new Set([
  'axis',
  'dtype',
  'gamma',
  'training',
  'out',
  'activation',
  'y',
  'residual',
  'outResidual',
  'fingerprint',
  'statsGrad',
]);
const BACKWARD_KEYS = new Set([...SHARD_BACKWARD_KEYS, 'virtualBatchSize']);
const STATS_KEYS = new Set(['axis', 'dtype']);

/** Other libraries' names for our options (PyTorch, Keras/TensorFlow, ONNX). */
const PEER_NAMES: Readonly<Record<string, string>> = {
  weight: 'gamma',
  scale: 'gamma',
  bias: 'beta',
  offset: 'beta',
  center: 'beta',
  running_mean: 'runningMean',
  moving_mean: 'runningMean',
  mean: 'runningMean',
  running_var: 'runningVar',
  moving_variance: 'runningVar',
  var: 'runningVar',
  variance: 'runningVar',
  epsilon: 'eps',
  variance_epsilon: 'eps',
};

/** `e` with its message naming the function the caller called first
 *  (`batchNormEval: runningMean must be a Float32Array …`), so one vocabulary of checks serves every
 *  function; anything but a TypeError or RangeError, or one already named, passes as it is. */
export function fromFunction(fn: string, e: unknown): unknown {
  if (!(e instanceof TypeError || e instanceof RangeError) || e.message.startsWith(`${fn}: `)) return e;
  const Named = e instanceof TypeError ? TypeError : RangeError;
  return new Named(`${fn}: ${e.message}`);
}

/** An unknown key is a typo or another library's name: running with a default instead would
 *  give silently wrong results. */
export function checkKeys(o: Record<string, unknown>, allowed: ReadonlySet<string>): void {
  for (const key in o) {
    if (allowed.has(key) || !Object.hasOwn(o, key)) continue;
    const peer = PEER_NAMES[key];
    const hint =
      peer && allowed.has(peer) ? `another library's name: use ${peer}` : `expected one of ${[...allowed].join(', ')}`;
    throw new TypeError(`unknown option ${JSON.stringify(key)} (${hint})`);
  }
}

function checkOptions(options: unknown, required: boolean, allowed: ReadonlySet<string>): Record<string, unknown> {
  if (options === undefined || options === null) {
    if (required) throw new TypeError(`options must be an object, got ${describe(options)}`);
    return NO_OPTIONS;
  }
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  checkKeys(o, allowed);
  return o;
}

interface ShapeCheck {
  shape: number[];
  axis: number;
  layout: Layout;
}

/** A shape's entries, each read once into a copy (a getter cannot answer differently later),
 *  or null unless it is an array of non-negative safe integers. An index loop, not `every`:
 *  `every` skips the holes of a sparse array like [2, , 3]. */
export function readDims(shape: unknown): number[] | null {
  if (!Array.isArray(shape)) return null;
  const dims: number[] = [];
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (!Number.isSafeInteger(d) || (d as number) < 0) return null;
    dims.push(d as number);
  }
  return dims;
}

/** Shape, axis and x.length together: returns the [outer, C, inner] view. */
function checkShape(x: TensorArray, xName: string, shape: unknown, axisOption: unknown): ShapeCheck {
  const dims = readDims(shape);
  if (dims === null) {
    throw new TypeError(`shape must be an array of non-negative integers, got ${describe(shape)}`);
  }
  let size = 1;
  for (const d of dims) size *= d;
  if (dims.length < 2) {
    throw new RangeError(`shape must have rank >= 2, got rank ${dims.length}`);
  }
  const axis = checkAxis(axisOption);
  if (axis < -dims.length || axis >= dims.length) {
    throw new RangeError(
      `axis must be in [${-dims.length}, ${dims.length - 1}] for a rank-${dims.length} shape, got ${axis}`,
    );
  }
  if (size !== x.length) {
    throw new RangeError(`shape [${dims.join(', ')}] has ${size} elements but ${xName} has length ${x.length}`);
  }
  return { shape: dims, axis, layout: layoutOf(dims, axis) };
}

/** The channel axis option (its range is checked against a shape). */
export function checkAxis(v: unknown): number {
  const axis = v === undefined ? DEFAULT_AXIS : v;
  if (typeof axis !== 'number' || !Number.isInteger(axis)) {
    throw new TypeError(`axis must be an integer, got ${describe(axis)}`);
  }
  return axis;
}

export function checkEps(v: unknown): number {
  const eps = v === undefined ? DEFAULT_EPS : v;
  if (typeof eps !== 'number') throw new TypeError(`eps must be a number, got ${describe(eps)}`);
  if (!Number.isFinite(eps) || eps <= 0) throw new RangeError(`eps must be a finite number > 0, got ${eps}`);
  return eps;
}

/** `orNull`: the layer's momentum, where null means a cumulative moving average. */
export function checkMomentum(v: unknown, orNull = false): number {
  const momentum = v === undefined ? DEFAULT_MOMENTUM : v;
  const alternative = orNull ? ' or null' : '';
  if (typeof momentum !== 'number') {
    throw new TypeError(`momentum must be a number${alternative}, got ${describe(momentum)}`);
  }
  if (!(momentum >= 0 && momentum <= 1)) {
    throw new RangeError(`momentum must be in [0, 1]${alternative}, got ${momentum}`);
  }
  return momentum;
}

/** Bessel's correction of the batch variance the running one takes, as torch.var's. */
export function checkVarCorrection(v: unknown): number {
  const correction = v === undefined ? 1 : v;
  if (typeof correction !== 'number') {
    throw new TypeError(`runningVarCorrection must be a number (0 or 1), got ${describe(correction)}`);
  }
  if (correction !== 0 && correction !== 1) {
    throw new RangeError(
      `runningVarCorrection must be 0 (biased, as Keras) or 1 (unbiased, as PyTorch), got ${correction}`,
    );
  }
  return correction;
}

export function checkActivation(v: unknown): boolean {
  if (v === undefined || v === 'none') return false;
  if (v === 'relu') return true;
  throw new RangeError(`activation must be 'relu' or 'none', got ${describe(v)}`);
}

/** A per-channel float64 buffer of merged statistics or sums. */
function checkFloat64Channels(name: string, v: unknown, channels: number): Float64Array {
  if (floatDtype(v) !== 'float64') throw new TypeError(`${name} must be a Float64Array, got ${describe(v)}`);
  const a = plainView(v as Float64Array, 'float64') as Float64Array;
  if (a.length !== channels) {
    throw new RangeError(`${name} must have length ${channels} (the number of channels), got ${a.length}`);
  }
  return a;
}

function checkCount(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new TypeError(`${name} must be a non-negative integer, got ${describe(v)}`);
  }
  return v;
}

function checkObject(name: string, v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null) throw new TypeError(`${name} must be an object ${what}, got ${describe(v)}`);
  return v as Record<string, unknown>;
}

function checkChannelArray(name: string, v: unknown, t: TensorsOf, channels: number): FloatArray {
  const a = checkParamDtype(name, v, t);
  checkLength(name, a, channels, 'the number of channels');
  return a;
}

function optionalChannelArray(name: string, v: unknown, t: TensorsOf, channels: number): FloatArray | null {
  return v === undefined || v === null ? null : checkChannelArray(name, v, t, channels);
}

function checkOut(v: unknown, x: TensorArray, t: TensorsOf): TensorArray | null {
  if (v === undefined || v === null) return null;
  const out = checkSameDtype('out', v, t, 'x');
  checkLength('out', out, x.length, 'the length of x');
  return out;
}

/** A tensor-sized array of x's dtype that the call only reads (the residual z). */
function optionalTensor(name: string, v: unknown, x: TensorArray, t: TensorsOf): TensorArray | null {
  if (v === undefined || v === null) return null;
  const a = checkSameDtype(name, v, t, 'x');
  checkLength(name, a, x.length, 'the length of x');
  return a;
}

export function checkFlag(name: string, v: unknown): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${describe(v)}`);
  return v;
}

/** Training needs two values per channel for a variance (in each group of a ghost batch),
 *  except a batch of none (m = 0), which gives an empty output as in PyTorch (see
 *  isEmptyBatch in backend.ts). */
function checkCountPerChannel(layout: Layout, shape: number[], axis: number, ghost: Ghost): void {
  const m = (ghost.groups === 0 ? 0 : layout.outer / ghost.groups) * layout.inner;
  if (m !== 1) return;
  const where = ghost.k === null ? '' : ` in each group of virtualBatchSize ${ghost.k}`;
  throw new RangeError(
    `x must have more than 1 value per channel${where} when training, got ${m} (shape [${shape.join(', ')}], axis ${axis})`,
  );
}

/** Ghost batches: k samples per group (null: the whole batch is one), and the groups. */
interface Ghost {
  k: number | null;
  groups: number;
}

const WHOLE_BATCH: Ghost = Object.freeze({ k: null, groups: 1 });

/** `virtualBatchSize: k` (Keras's `virtual_batch_size`): groups of k consecutive samples
 *  along axis 0, so the batch must be a multiple of k and the channels on another axis. */
export function checkVirtualBatchSize(v: unknown): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw new TypeError(`virtualBatchSize must be an integer or null, got ${describe(v)}`);
  }
  if (v < 1) throw new RangeError(`virtualBatchSize must be >= 1, got ${v}`);
  return v;
}

function checkGhost(v: unknown, s: ShapeCheck): Ghost {
  const k = checkVirtualBatchSize(v);
  if (k === null) return WHOLE_BATCH;
  if ((s.axis < 0 ? s.axis + s.shape.length : s.axis) === 0) {
    throw new RangeError(
      `virtualBatchSize groups samples along axis 0, so the channels must be on another axis, got axis ${s.axis}`,
    );
  }
  const n = s.shape[0];
  if (n % k !== 0) throw new RangeError(`x has a batch of ${n} samples, not a multiple of virtualBatchSize ${k}`);
  return { k, groups: n / k };
}

/** The saved statistics of a backward: one set per channel, or per group and channel. */
function checkSaved(name: string, v: unknown, t: TensorsOf, channels: number, ghost: Ghost): FloatArray {
  if (ghost.k === null) return checkChannelArray(name, v, t, channels);
  const a = checkParamDtype(name, v, t);
  const what = `${ghost.groups} groups of virtualBatchSize ${ghost.k} × ${channels} channels`;
  checkLength(name, a, ghost.groups * channels, what);
  return a;
}

/** Whether two arrays' memory is one block: the same buffer object, or two clones of one
 *  SharedArrayBuffer (structuredClone, postMessage), probed through `written`. */
function sameBlock(written: TensorArray, other: TensorArray): boolean {
  if (written.buffer === other.buffer) return true;
  return isShared(written.buffer) && isShared(other.buffer) && sharesSharedMemory(written, other.buffer);
}

/** Whether two arrays share any byte of memory (SharedArrayBuffer clones included).
 *  `written` is an array the call writes (the probe in sameBlock may flip and restore it). */
export function overlaps(written: TensorArray, other: TensorArray): boolean {
  if (written.byteLength === 0 || other.byteLength === 0 || !sameBlock(written, other)) return false;
  const a = written;
  const b = other;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

function sameMemory(a: TensorArray, b: TensorArray): boolean {
  return a.byteOffset === b.byteOffset && a.length === b.length;
}

type Named = [string, TensorArray | null];

/** Arrays that are written must not overlap any other array of the call, except `out`
 *  exactly over its source (the documented in-place case). Mirrors the native check. */
function checkNoAliasing(arrays: Named[], written: ReadonlySet<string>, inPlace: [string, string]): void {
  for (let i = 0; i < arrays.length; i++) {
    const [na, a] = arrays[i];
    if (!a) continue;
    for (let j = i + 1; j < arrays.length; j++) {
      const [nb, b] = arrays[j];
      if (!b || !(written.has(na) || written.has(nb))) continue;
      if (!(written.has(na) ? overlaps(a, b) : overlaps(b, a))) continue;
      const isInPlacePair = (na === inPlace[0] && nb === inPlace[1]) || (na === inPlace[1] && nb === inPlace[0]);
      if (isInPlacePair && sameMemory(a, b)) continue;
      throw new RangeError(`${nb} must not share memory with ${na}`);
    }
  }
}

function bufferOf(a: TensorArray | null): ArrayBufferLike | null {
  return a === null ? null : a.buffer;
}

/** Whether `other` may be the memory of `written`, a SharedArrayBuffer: the same object, or
 *  another shared one (two SharedArrayBuffer objects can be clones of one block, which
 *  checkNoAliasing probes). */
function mayShareShared(written: ArrayBufferLike, other: ArrayBufferLike | null): boolean {
  return other === written || (other !== null && isShared(other));
}

/** Whether the buffer of a written array may also be one of the others': only then can two
 *  arrays overlap, and checkNoAliasing (which names them) runs. Buffers, each read once
 *  (the getter costs ~20 ns), positionally, so the common call allocates nothing. */
function sharesBuffer(
  written: ArrayBufferLike | null,
  a: ArrayBufferLike | null,
  b: ArrayBufferLike | null,
  c: ArrayBufferLike | null,
  d: ArrayBufferLike | null,
  e: ArrayBufferLike | null,
  f: ArrayBufferLike | null,
): boolean {
  if (written === null) return false;
  if (!isShared(written)) {
    return a === written || b === written || c === written || d === written || e === written || f === written;
  }
  return (
    mayShareShared(written, a) ||
    mayShareShared(written, b) ||
    mayShareShared(written, c) ||
    mayShareShared(written, d) ||
    mayShareShared(written, e) ||
    mayShareShared(written, f)
  );
}

/** Whether a train call's written arrays (out, runningMean, runningVar) may overlap another. */
function trainMayAlias(
  x: TensorArray,
  out: TensorArray | null,
  gamma: FloatArray | null,
  beta: FloatArray | null,
  runningMean: FloatArray | null,
  runningVar: FloatArray | null,
  residual: TensorArray | null,
): boolean {
  if (out === null && runningMean === null && runningVar === null) return false;
  const bx = x.buffer;
  const bo = bufferOf(out);
  const bg = bufferOf(gamma);
  const bb = bufferOf(beta);
  const bm = bufferOf(runningMean);
  const bv = bufferOf(runningVar);
  const bz = bufferOf(residual);
  return (
    sharesBuffer(bo, bx, bg, bb, bm, bv, bz) ||
    sharesBuffer(bm, bx, bo, bg, bb, bv, bz) ||
    sharesBuffer(bv, bx, bo, bg, bb, bm, bz)
  );
}

const TRAIN_WRITES = new Set(['out', 'runningMean', 'runningVar']);
const EVAL_WRITES = new Set(['out']);
const BACKWARD_WRITES = new Set(['out', 'outResidual']);

/** A shard of a synchronized batch (`shard`) may hold a single value per channel: only the
 *  merged count has to allow training, and that is checked with the merged statistics. */
export function validateTrain(x: unknown, shape: unknown, options: unknown, shard = false): TrainPlan {
  const data = checkData('x', x);
  const xs = data.array;
  const o = checkOptions(options, false, shard ? SHARD_TRAIN_KEYS : TRAIN_KEYS);
  const t = checkDtype(o.dtype, data, 'x');
  const s = checkShape(xs, 'x', shape, o.axis);
  const eps = checkEps(o.eps);
  const gamma = optionalChannelArray('gamma', o.gamma, t, s.layout.channels);
  const beta = optionalChannelArray('beta', o.beta, t, s.layout.channels);
  const hasMean = o.runningMean !== undefined && o.runningMean !== null;
  const hasVar = o.runningVar !== undefined && o.runningVar !== null;
  if (hasMean !== hasVar) {
    throw new RangeError(
      `runningMean and runningVar must be given together, got only ${hasMean ? 'runningMean' : 'runningVar'}`,
    );
  }
  const runningMean = hasMean ? checkChannelArray('runningMean', o.runningMean, t, s.layout.channels) : null;
  const runningVar = hasVar ? checkChannelArray('runningVar', o.runningVar, t, s.layout.channels) : null;
  const momentum = checkMomentum(o.momentum);
  const residual = optionalTensor('residual', o.residual, xs, t);
  const relu = checkActivation(o.activation);
  const out = checkOut(o.out, xs, t);
  const ghost = checkGhost(o.virtualBatchSize, s);
  if (!shard) checkCountPerChannel(s.layout, s.shape, s.axis, ghost);
  if (trainMayAlias(xs, out, gamma, beta, runningMean, runningVar, residual)) {
    checkNoAliasing(
      [
        ['x', xs],
        ['out', out],
        ['gamma', gamma],
        ['beta', beta],
        ['runningMean', runningMean],
        ['runningVar', runningVar],
        ['residual', residual],
      ],
      TRAIN_WRITES,
      ['x', 'out'],
    );
  }
  return {
    x: xs,
    dtype: t.dtype,
    float16Array: t.float16Array,
    shape: s.shape,
    axis: s.axis,
    layout: s.layout,
    eps,
    gamma,
    beta,
    runningMean,
    runningVar,
    momentum,
    runningVarCorrection: checkVarCorrection(o.runningVarCorrection),
    residual,
    relu,
    out,
    fingerprint: checkFlag('fingerprint', o.fingerprint),
    groups: ghost.groups,
  };
}

export function validateEval(x: unknown, shape: unknown, options: unknown): EvalPlan {
  const data = checkData('x', x);
  const xs = data.array;
  const o = checkOptions(options, true, EVAL_KEYS);
  const t = checkDtype(o.dtype, data, 'x');
  const s = checkShape(xs, 'x', shape, o.axis);
  const eps = checkEps(o.eps);
  const gamma = optionalChannelArray('gamma', o.gamma, t, s.layout.channels);
  const beta = optionalChannelArray('beta', o.beta, t, s.layout.channels);
  const runningMean = checkChannelArray('runningMean', o.runningMean, t, s.layout.channels);
  const runningVar = checkChannelArray('runningVar', o.runningVar, t, s.layout.channels);
  const residual = optionalTensor('residual', o.residual, xs, t);
  const relu = checkActivation(o.activation);
  const out = checkOut(o.out, xs, t);
  if (
    out !== null &&
    sharesBuffer(
      out.buffer,
      xs.buffer,
      bufferOf(gamma),
      bufferOf(beta),
      runningMean.buffer,
      runningVar.buffer,
      bufferOf(residual),
    )
  ) {
    checkNoAliasing(
      [
        ['x', xs],
        ['out', out],
        ['gamma', gamma],
        ['beta', beta],
        ['runningMean', runningMean],
        ['runningVar', runningVar],
        ['residual', residual],
      ],
      EVAL_WRITES,
      ['x', 'out'],
    );
  }
  return {
    x: xs,
    dtype: t.dtype,
    float16Array: t.float16Array,
    shape: s.shape,
    axis: s.axis,
    layout: s.layout,
    eps,
    gamma,
    beta,
    runningMean,
    runningVar,
    residual,
    relu,
    out,
  };
}

/** `residual: true` on a backward call, and where dResidual goes. */
function checkResidualGrad(
  o: Record<string, unknown>,
  x: TensorArray,
  t: TensorsOf,
): { residual: boolean; outResidual: TensorArray | null } {
  const residual = o.residual === undefined ? false : o.residual;
  if (typeof residual !== 'boolean') {
    throw new TypeError(`residual must be a boolean (true: also return dResidual), got ${describe(residual)}`);
  }
  if (o.outResidual === undefined || o.outResidual === null) return { residual, outResidual: null };
  if (!residual) throw new TypeError('outResidual is only written with residual: true');
  const outResidual = checkSameDtype('outResidual', o.outResidual, t, 'x');
  checkLength('outResidual', outResidual, x.length, 'the length of x');
  return { residual, outResidual };
}

export function validateBackward(
  dy: unknown,
  x: unknown,
  shape: unknown,
  saved: unknown,
  options: unknown,
  shard = false,
): BackwardPlan {
  const data = checkData('dy', dy);
  const dys = data.array;
  const o = checkOptions(options, false, shard ? SHARD_BACKWARD_KEYS : BACKWARD_KEYS);
  const t = checkDtype(o.dtype, data, 'dy');
  const xs = checkSameDtype('x', x, t, 'dy');
  const s = checkShape(xs, 'x', shape, o.axis);
  checkLength('dy', dys, xs.length, 'the length of x');
  if (typeof saved !== 'object' || saved === null) {
    throw new TypeError(`saved must be an object { mean, invStd }, got ${describe(saved)}`);
  }
  const training = o.training === undefined ? true : o.training;
  if (typeof training !== 'boolean') {
    throw new TypeError(`training must be a boolean, got ${describe(training)}`);
  }
  const ghost = checkGhost(o.virtualBatchSize, s);
  if (ghost.k !== null && !training) {
    throw new TypeError(
      'virtualBatchSize needs training: true (frozen statistics are one set for the whole batch: leave it out)',
    );
  }
  const { mean, invStd } = saved as Partial<SavedStats>;
  const savedMean = checkSaved('saved.mean', mean, t, s.layout.channels, ghost);
  const savedInvStd = checkSaved('saved.invStd', invStd, t, s.layout.channels, ghost);
  const gamma = optionalChannelArray('gamma', o.gamma, t, s.layout.channels);
  const statsGrad = checkFlag('statsGrad', o.statsGrad);
  if (statsGrad && training) {
    throw new TypeError(
      'statsGrad needs training: false (the gradients of given, frozen statistics; batch statistics are a function of x)',
    );
  }
  const relu = checkActivation(o.activation);
  let y: TensorArray | null = null;
  if (relu) {
    if (o.y === undefined || o.y === null) {
      throw new TypeError(`y (the forward output) is required with activation 'relu', got ${describe(o.y)}`);
    }
    y = checkSameDtype('y', o.y, t, 'x');
    checkLength('y', y, xs.length, 'the length of x');
  }
  const out = checkOut(o.out, xs, t);
  const { residual, outResidual } = checkResidualGrad(o, xs, t);
  if (training && !shard) checkCountPerChannel(s.layout, s.shape, s.axis, ghost);
  if (
    outResidual !== null ||
    (out !== null &&
      sharesBuffer(
        out.buffer,
        dys.buffer,
        xs.buffer,
        bufferOf(gamma),
        savedMean.buffer,
        savedInvStd.buffer,
        bufferOf(y),
      ))
  ) {
    checkNoAliasing(
      [
        ['dy', dys],
        ['out', out],
        ['x', xs],
        ['gamma', gamma],
        ['saved.mean', savedMean],
        ['saved.invStd', savedInvStd],
        ['y', y],
        ['outResidual', outResidual],
      ],
      BACKWARD_WRITES,
      ['dy', 'out'],
    );
  }
  return {
    dy: dys,
    x: xs,
    dtype: t.dtype,
    float16Array: t.float16Array,
    shape: s.shape,
    axis: s.axis,
    layout: s.layout,
    gamma,
    mean: savedMean,
    invStd: savedInvStd,
    training,
    y,
    out,
    residual,
    outResidual,
    fingerprint: checkFlag('fingerprint', o.fingerprint),
    statsGrad,
    groups: ghost.groups,
  };
}

export function validateStats(x: unknown, shape: unknown, options: unknown): StatsPlan {
  const data = checkData('x', x);
  const o = checkOptions(options, false, STATS_KEYS);
  const t = checkDtype(o.dtype, data, 'x');
  const s = checkShape(data.array, 'x', shape, o.axis);
  return {
    x: data.array,
    dtype: t.dtype,
    float16Array: t.float16Array,
    shape: s.shape,
    axis: s.axis,
    layout: s.layout,
  };
}

/** Merged statistics: the count must allow training (>= 2 values per channel). */
function checkStats(v: unknown, channels: number): ChannelStats {
  const o = checkObject('stats', v, '{ count, mean, m2 }');
  const count = checkCount('stats.count', o.count);
  if (count < 2) throw new RangeError(`stats.count must be >= 2 (values per channel when training), got ${count}`);
  return {
    count,
    mean: checkFloat64Channels('stats.mean', o.mean, channels),
    m2: checkFloat64Channels('stats.m2', o.m2, channels),
  };
}

export function validateTrainWithStats(
  x: unknown,
  shape: unknown,
  stats: unknown,
  options: unknown,
): TrainWithStatsPlan {
  // The local shard may hold a single value per channel: only the merged count matters.
  const plan = validateTrain(x, shape, options, true);
  const checkedStats = checkStats(stats, plan.layout.channels);
  return { ...plan, stats: checkedStats };
}

function checkSums(v: unknown, channels: number): GradSums {
  const o = checkObject('sums', v, '{ count, sumDy, sumDyXhat }');
  return {
    count: checkCount('sums.count', o.count),
    sumDy: checkFloat64Channels('sums.sumDy', o.sumDy, channels),
    sumDyXhat: checkFloat64Channels('sums.sumDyXhat', o.sumDyXhat, channels),
  };
}

export function validateBackwardWithSums(
  dy: unknown,
  x: unknown,
  shape: unknown,
  saved: unknown,
  sums: unknown,
  options: unknown,
): BackwardWithSumsPlan {
  const plan = validateBackward(dy, x, shape, saved, options, true);
  const checkedSums = checkSums(sums, plan.layout.channels);
  if (plan.training && checkedSums.count < 2) {
    throw new RangeError(`sums.count must be >= 2 (values per channel when training), got ${checkedSums.count}`);
  }
  return { ...plan, sums: checkedSums };
}

export function validateBackwardSums(
  dy: unknown,
  x: unknown,
  shape: unknown,
  saved: unknown,
  options: unknown,
): BackwardPlan {
  const plan = validateBackward(dy, x, shape, saved, options, true);
  if (plan.outResidual !== null) throw new TypeError('outResidual is not written by the backward sums (no dx pass)');
  if (plan.statsGrad) throw new TypeError('statsGrad is given by batchNormBackward, not by the backward sums');
  return plan;
}

/** fingerprint's one argument. */
export function validateFingerprint(x: unknown): { x: TensorArray } {
  return { x: checkData('x', x).array };
}

/** The names a plan's arrays have in the call (the plan shortens saved.mean / saved.invStd). */
const PLAN_ARRAY_NAMES: Readonly<Record<string, string>> = { mean: 'saved.mean', invStd: 'saved.invStd' };

/** An Async call reads and writes its arrays off the JS thread after returning, and Node-API
 *  cannot pin a resizable ArrayBuffer: shrinking one meanwhile would leave the work on memory
 *  that is gone. So every array of an Async call must be over a fixed-length buffer. */
export function checkFixedLength(plan: object): void {
  for (const [key, value] of Object.entries(plan)) {
    const inner = key === 'stats' || key === 'sums' ? Object.entries(value as object) : [['', value]];
    for (const [innerKey, v] of inner as Array<[string, unknown]>) {
      if (!ArrayBuffer.isView(v) || !isShrinkable(v.buffer)) continue;
      const name = innerKey ? `${key}.${innerKey}` : (PLAN_ARRAY_NAMES[key] ?? key);
      throw new TypeError(
        `${name} is over a resizable ArrayBuffer, which an Async call cannot use (the buffer could shrink under the work off the JS thread): use the sync form, or copy it into a fixed-length array`,
      );
    }
  }
}
