// src/half.ts against PyTorch's float32 -> bfloat16/float16 rounding, bit for bit
// (test/fixtures/half-conversions.json, made by test/fixtures/make_half_conversions.py), and
// the widening of all 65536 patterns against each format's definition. Where the input is a
// NaN only NaN-ness is compared: torch 2.15's CPU kernels give bfloat16 NaN as 0xFFFF and
// keep float16 NaN payloads and signs, where src/half.ts gives 0x7FC0 and 0x7E00 | sign.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type HalfDtype, halfBitsOf, halfValueOf, narrowToHalf, ulpDistanceHalf, widenHalf } from '../src/half';

interface Format {
  midpointCount: number;
  midpoints: string;
  midDown: string;
  mid: string;
  midUp: string;
  inputCount: number;
  inputs: string;
  outputs: string;
}

const fixture = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'half-conversions.json'), 'utf8')) as {
  formats: Record<HalfDtype, Format>;
};

function u32(b64: string, count: number): Uint32Array {
  const buf = Buffer.from(b64, 'base64');
  expect(buf.length).toBe(count * 4);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = buf.readUInt32LE(i * 4);
  return out;
}
function u16(b64: string, count: number): Uint16Array {
  const buf = Buffer.from(b64, 'base64');
  expect(buf.length).toBe(count * 2);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = buf.readUInt16LE(i * 2);
  return out;
}

const isNan16 = (h: number, dtype: HalfDtype) => (h & 0x7fff) > (dtype === 'bfloat16' ? 0x7f80 : 0x7c00);
const isNan32 = (w: number) => (w & 0x7fffffff) > 0x7f800000;
const hex = (v: number, digits: number) => `0x${v.toString(16).padStart(digits, '0')}`;

/** The format's value of one pattern, written out from the definition (not src/half.ts). */
function definition(h: number, dtype: HalfDtype): number {
  const sign = h & 0x8000 ? -1 : 1;
  if (dtype === 'bfloat16') {
    const e = (h >> 7) & 0xff;
    const f = h & 0x7f;
    if (e === 255) return f === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
    return e === 0 ? sign * f * 2 ** -133 : sign * (1 + f / 128) * 2 ** (e - 127);
  }
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 31) return f === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return e === 0 ? sign * f * 2 ** -24 : sign * (1 + f / 1024) * 2 ** (e - 15);
}

/** narrowToHalf and halfBitsOf of float32 inputs given by bits, against torch's bits. */
function checkNarrow(dtype: HalfDtype, words: Uint32Array, expected: Uint16Array, label: string) {
  const values = new Float32Array(words.buffer.slice(0));
  const got = narrowToHalf(values, dtype, new Uint16Array(words.length));
  let bad = 0;
  let first = '';
  let nans = 0;
  for (let i = 0; i < words.length; i++) {
    const e = expected[i];
    const one = halfBitsOf(values[i], dtype);
    let ok: boolean;
    if (isNan32(words[i])) {
      nans++;
      ok = isNan16(e, dtype) && isNan16(got[i], dtype) && isNan16(one, dtype);
    } else {
      ok = got[i] === e && one === e;
    }
    if (!ok) {
      if (bad === 0) {
        first = `${hex(words[i], 8)}: torch ${hex(e, 4)}, narrowToHalf ${hex(got[i], 4)}, halfBitsOf ${hex(one, 4)}`;
      }
      bad++;
    }
  }
  if (bad > 0)
    throw new Error(`${label}: ${bad}/${words.length} differ from torch (${nans} NaN inputs); first ${first}`);
}

describe.each(['bfloat16', 'float16'] as const)('%s conversions', (dtype) => {
  const f = fixture.formats[dtype];

  it('every midpoint between adjacent finite values and its float32 neighbours round as torch rounds them', () => {
    const mids = u32(f.midpoints, f.midpointCount);
    expect(mids.length).toBe(dtype === 'bfloat16' ? 0x7f80 : 0x7c00);
    for (const [key, delta] of [
      ['midDown', -1],
      ['mid', 0],
      ['midUp', 1],
    ] as const) {
      const expected = u16(f[key], f.midpointCount);
      const pos = mids.map((w) => w + delta);
      checkNarrow(dtype, pos, expected, `${dtype} ${key}`);
      const neg = pos.map((w) => (w | 0x80000000) >>> 0);
      checkNarrow(
        dtype,
        neg,
        expected.map((h) => h | 0x8000),
        `${dtype} ${key} (negated)`,
      );
    }
  });

  it('boundaries, zeros, infinities, NaNs and 20000 random float32 patterns round as torch rounds them', () => {
    const inputs = u32(f.inputs, f.inputCount);
    const outputs = u16(f.outputs, f.inputCount);
    expect(inputs.length).toBeGreaterThan(20_000);
    checkNarrow(dtype, inputs, outputs, `${dtype} inputs`);
  });

  it('halfBitsOf rounds a double to float32 first', () => {
    if (dtype === 'float16') {
      expect(halfBitsOf(65519.99, dtype)).toBe(0x7bff);
      expect(halfBitsOf(65520, dtype)).toBe(0x7c00);
      expect(halfBitsOf(-65520, dtype)).toBe(0xfc00);
      // 2^-25 is a tie to 0; 2^-25 plus a double's ulp is lost in float32 too: still 0.
      expect(halfBitsOf(2 ** -25 + 2 ** -80, dtype)).toBe(0);
      expect(halfBitsOf(2 ** -25 + 2 ** -40, dtype)).toBe(1);
    } else {
      // 1 + 2^-8 is a tie (to 1); a double just above it rounds to float32 1 + 2^-8 first.
      expect(halfBitsOf(1 + 2 ** -8, dtype)).toBe(0x3f80);
      expect(halfBitsOf(1 + 2 ** -8 + 2 ** -40, dtype)).toBe(0x3f80);
      expect(halfBitsOf(1 + 2 ** -8 + 2 ** -20, dtype)).toBe(0x3f81);
      expect(halfBitsOf(3.4e38, dtype)).toBe(0x7f80);
    }
    expect(halfBitsOf(-0, dtype)).toBe(0x8000);
    expect(isNan16(halfBitsOf(Number.NaN, dtype), dtype)).toBe(true);
  });

  it('widenHalf of all 65536 patterns is the format definition; NaN stays NaN; narrowing it back is exact', () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const wide = widenHalf(bits, dtype, new Float32Array(65536));
    let bad = 0;
    for (let h = 0; h < 65536; h++) {
      const d = definition(h, dtype);
      const ok = Number.isNaN(d) ? Number.isNaN(wide[h]) : Object.is(wide[h], d) && Object.is(halfValueOf(h, dtype), d);
      if (!ok) bad++;
    }
    expect(bad).toBe(0);
    const back = narrowToHalf(wide, dtype, new Uint16Array(65536));
    for (let h = 0; h < 65536; h++) {
      if (isNan16(h, dtype)) expect(isNan16(back[h], dtype)).toBe(true);
      else if (back[h] !== h) throw new Error(`${hex(h, 4)} narrows back to ${hex(back[h], 4)}`);
    }
    // widening into a view at an offset
    const into = new Float32Array(9);
    widenHalf(bits.subarray(1000, 1008), dtype, into.subarray(1));
    expect(Array.from(into.subarray(1))).toEqual(Array.from(wide.subarray(1000, 1008)));
  });

  it('ulpDistanceHalf: adjacent 1, ±0 0, across zero the sum of magnitudes, NaN', () => {
    const one = dtype === 'bfloat16' ? 0x3f80 : 0x3c00;
    const inf = dtype === 'bfloat16' ? 0x7f80 : 0x7c00;
    const nan = dtype === 'bfloat16' ? 0x7fc0 : 0x7e00;
    expect(ulpDistanceHalf(one, one + 1, dtype)).toBe(1);
    expect(ulpDistanceHalf(one + 1, one, dtype)).toBe(1);
    expect(ulpDistanceHalf(one | 0x8000, (one + 1) | 0x8000, dtype)).toBe(1);
    expect(ulpDistanceHalf(0, 0x8000, dtype)).toBe(0);
    expect(ulpDistanceHalf(0, 1, dtype)).toBe(1);
    expect(ulpDistanceHalf(0x8001, 1, dtype)).toBe(2);
    expect(ulpDistanceHalf(0x8003, 5, dtype)).toBe(8);
    expect(ulpDistanceHalf(one | 0x8000, one, dtype)).toBe(2 * one);
    expect(ulpDistanceHalf(inf - 1, inf, dtype)).toBe(1);
    expect(ulpDistanceHalf(nan, nan | 0x8000, dtype)).toBe(0);
    expect(ulpDistanceHalf(nan, one, dtype)).toBe(Number.POSITIVE_INFINITY);
    expect(ulpDistanceHalf(inf, nan, dtype)).toBe(Number.POSITIVE_INFINITY);
  });
});
