// The 16-bit formats, bfloat16 and float16 (IEEE binary16), as Uint16Array bit patterns.
// Widening to float32 is exact; narrowing rounds to nearest even, keeps subnormals and gives
// NaN as PyTorch's scalar conversions do (bfloat16 0x7FC0; float16 0x7E00 with the sign),
// bit for bit what the native kernels store (crates/batchnorm-core/src/half.rs).

/** The 16-bit formats a Uint16Array may hold. */
export type HalfDtype = 'bfloat16' | 'float16';

/** The dtype itself when it is a 16-bit format, else null. */
export function halfDtypeOf(dtype: string): HalfDtype | null {
  return dtype === 'bfloat16' || dtype === 'float16' ? dtype : null;
}

/** float16's value of each bit pattern, made once on first use (256 KiB). */
let float16Values: Float32Array | null = null;

function float16Table(): Float32Array {
  if (float16Values) return float16Values;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = float16Value(h);
  float16Values = table;
  return table;
}

/** float16's value of one bit pattern, by the format's definition. */
function float16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Writes the float32 value of each 16-bit pattern of `bits` into `into` (same length) and
 *  returns it. */
export function widenHalf(bits: Uint16Array, dtype: HalfDtype, into: Float32Array): Float32Array {
  const n = bits.length;
  if (dtype === 'bfloat16') {
    // bfloat16 is the high half of a float32.
    const words = new Uint32Array(into.buffer, into.byteOffset, n);
    for (let i = 0; i < n; i++) words[i] = bits[i] << 16;
    return into;
  }
  const table = float16Table();
  for (let i = 0; i < n; i++) into[i] = table[bits[i]];
  return into;
}

/** The bfloat16 bits of a float32 given by its bits. */
function bfloat16Bits(w: number): number {
  if ((w & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  // Adding 0x7FFF plus the kept half's lowest bit rounds half to even.
  return ((w + 0x7fff + ((w >>> 16) & 1)) >>> 16) & 0xffff;
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/** `v` rounded to the nearest integer, ties to even. */
function roundHalfEven(v: number): number {
  const floor = Math.floor(v);
  const rest = v - floor;
  if (rest !== 0.5) return rest < 0.5 ? floor : floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** The float16 bits of a float32 given by its bits. */
function float16Bits(w: number): number {
  const sign = (w >>> 16) & 0x8000;
  const magnitude = w & 0x7fffffff;
  if (magnitude >= 0x47800000) {
    // 65536 and up (after rounding, infinity), infinity, NaN.
    return sign | (magnitude > 0x7f800000 ? 0x7e00 : 0x7c00);
  }
  if (magnitude < 0x38800000) {
    // A subnormal result: the value in units of 2^-24 (exact in a double), rounded.
    scratchBits[0] = magnitude;
    return sign | roundHalfEven(scratch[0] * 2 ** 24);
  }
  // Rebias the exponent, then round the 13 dropped bits half to even (a carry raises the
  // exponent, up to infinity, as it should).
  const rebiased = magnitude - 0x38000000;
  return sign | ((rebiased + 0xfff + ((rebiased >>> 13) & 1)) >>> 13);
}

/** Rounds each float32 of `values` to the 16-bit format into `into` (same length) and returns it. */
export function narrowToHalf(values: Float32Array, dtype: HalfDtype, into: Uint16Array): Uint16Array {
  const n = values.length;
  const words = new Uint32Array(values.buffer, values.byteOffset, n);
  if (dtype === 'bfloat16') {
    for (let i = 0; i < n; i++) into[i] = bfloat16Bits(words[i]);
  } else {
    for (let i = 0; i < n; i++) into[i] = float16Bits(words[i]);
  }
  return into;
}

/** The 16-bit pattern of a number: rounded to float32 first, then to the format (as the
 *  kernels round their results). */
export function halfBitsOf(value: number, dtype: HalfDtype): number {
  scratch[0] = value;
  const w = scratchBits[0];
  return dtype === 'bfloat16' ? bfloat16Bits(w) : float16Bits(w);
}

/** The value of one 16-bit pattern. */
export function halfValueOf(bits: number, dtype: HalfDtype): number {
  if (dtype === 'float16') return float16Value(bits & 0xffff);
  scratchBits[0] = (bits & 0xffff) << 16;
  return scratch[0];
}

/** Units in the last place between two patterns of one 16-bit format: ±0 are 0 apart, two
 *  NaNs 0, a NaN and a number Infinity. */
export function ulpDistanceHalf(a: number, b: number, dtype: HalfDtype): number {
  const nan = (h: number) => (dtype === 'bfloat16' ? (h & 0x7fff) > 0x7f80 : (h & 0x7fff) > 0x7c00);
  if (nan(a) || nan(b)) return nan(a) && nan(b) ? 0 : Number.POSITIVE_INFINITY;
  // Sign-magnitude to an ordered integer line.
  const ordered = (h: number) => (h & 0x8000 ? -(h & 0x7fff) : h & 0x7fff);
  return Math.abs(ordered(a) - ordered(b));
}
