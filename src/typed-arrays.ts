// What kind of array a value is, decided by the engine rather than by `instanceof` or
// prototype getters, which a subclass, an object with a borrowed prototype or an array from
// another realm (vm, a worker's clone) can fool. Also where two arrays' memory really lies.
import { types } from 'node:util';
import type { FloatArray, TensorArray } from './types';

export type FloatDtype = 'float32' | 'float64';

/** What a tensor argument is, as the engine sees it: a Uint16Array of 16-bit bits and a
 *  Float16Array (where the runtime has one) apart from the float arrays. */
export type TensorKind = FloatDtype | 'uint16' | 'float16array';

const TypedArrayPrototype = Object.getPrototypeOf(Float32Array.prototype) as object;
const getter = (proto: object, name: string | symbol) =>
  Object.getOwnPropertyDescriptor(proto, name)?.get as (this: unknown) => unknown;
/** The engine's own type name of a typed array of any realm (whatever its prototype now
 *  says), undefined for anything else; a builtin, so cheaper than a call into node:util. */
const typedArrayTag = getter(TypedArrayPrototype, Symbol.toStringTag) as (this: unknown) => string | undefined;

/** 'float32' / 'float64' for a real Float32Array / Float64Array of any realm, else null. */
export function floatDtype(v: unknown): FloatDtype | null {
  const tag = typedArrayTag.call(v);
  if (tag === 'Float32Array') return 'float32';
  if (tag === 'Float64Array') return 'float64';
  return null;
}
/** The kind of a real tensor array of any realm (see floatDtype), else null. */
export function tensorKind(v: unknown): TensorKind | null {
  const tag = typedArrayTag.call(v);
  if (tag === 'Float32Array') return 'float32';
  if (tag === 'Float64Array') return 'float64';
  if (tag === 'Uint16Array') return 'uint16';
  if (tag === 'Float16Array') return 'float16array';
  return null;
}

const bufferOf = getter(TypedArrayPrototype, 'buffer') as (this: unknown) => ArrayBufferLike;
const byteOffsetOf = getter(TypedArrayPrototype, 'byteOffset') as (this: unknown) => number;
const lengthOf = getter(TypedArrayPrototype, 'length') as (this: unknown) => number;
const resizableOf = getter(ArrayBuffer.prototype, 'resizable') as ((this: unknown) => boolean) | undefined;

/** A Float32Array / Float64Array of this realm over exactly the memory of `v`, a real one
 *  (see floatDtype). `v` itself when it is already plain; otherwise (a subclass, another
 *  realm's array) a fresh view built from the engine's own buffer, offset and length, so no
 *  overridden getter or method of `v` is ever called by the checks or the kernels. */
export function plainView(v: FloatArray, dtype: FloatDtype): FloatArray {
  const proto = Object.getPrototypeOf(v);
  if (proto === (dtype === 'float32' ? Float32Array.prototype : Float64Array.prototype)) return v;
  const buffer = bufferOf.call(v);
  const offset = byteOffsetOf.call(v);
  const length = lengthOf.call(v);
  return dtype === 'float32' ? new Float32Array(buffer, offset, length) : new Float64Array(buffer, offset, length);
}

/** `v` as a plain Float32Array / Float64Array of this realm (see plainView), or null when it
 *  is not a real one: the one engine check and the view in one step, for the hot path. */
export function plainFloatArray(v: unknown): FloatArray | null {
  const tag = typedArrayTag.call(v);
  if (tag === 'Float32Array') {
    return Object.getPrototypeOf(v) === Float32Array.prototype
      ? (v as Float32Array)
      : plainView(v as Float32Array, 'float32');
  }
  if (tag === 'Float64Array') {
    return Object.getPrototypeOf(v) === Float64Array.prototype
      ? (v as Float64Array)
      : plainView(v as Float64Array, 'float64');
  }
  return null;
}

/** `v` (of `kind`, see tensorKind) as a plain array of this realm over exactly its memory: a
 *  Float16Array as a Uint16Array of its bits, which is what every check and kernel reads. */
export function plainTensorView(v: unknown, kind: TensorKind): TensorArray {
  if (kind === 'float32' || kind === 'float64') return plainView(v as FloatArray, kind);
  if (kind === 'uint16' && Object.getPrototypeOf(v) === Uint16Array.prototype) return v as Uint16Array;
  return new Uint16Array(bufferOf.call(v), byteOffsetOf.call(v), lengthOf.call(v));
}

/** A resizable, non-shared ArrayBuffer: it can shrink under a call that runs off the JS
 *  thread (a growable SharedArrayBuffer can only grow, which moves nothing). */
export function isShrinkable(buffer: ArrayBufferLike): boolean {
  return resizableOf !== undefined && !types.isSharedArrayBuffer(buffer) && resizableOf.call(buffer) === true;
}

export function isShared(buffer: ArrayBufferLike): boolean {
  // instanceof first: the common ArrayBuffer of this realm answers without a native call.
  return !(buffer instanceof ArrayBuffer) && types.isSharedArrayBuffer(buffer);
}

/** Whether `other`, a SharedArrayBuffer object distinct from written's, maps the same memory
 *  as written's buffer. Clones of a SharedArrayBuffer (structuredClone, postMessage) map a
 *  whole block at the same offsets, so flipping one byte of `written` (an array the call
 *  writes anyway) shows through `other` at the same offset exactly when they share it. The
 *  byte is flipped back before returning. */
export function sharesSharedMemory(written: TensorArray, other: ArrayBufferLike): boolean {
  const offset = written.byteOffset;
  if (written.byteLength === 0 || offset >= other.byteLength) return false;
  const mine = new Uint8Array(written.buffer, offset, 1);
  const theirs = new Uint8Array(other, offset, 1);
  const before = Atomics.load(theirs, 0);
  Atomics.xor(mine, 0, 0xff);
  const after = Atomics.load(theirs, 0);
  Atomics.xor(mine, 0, 0xff);
  return after === (before ^ 0xff);
}
