// A position-sensitive checksum of an array's bits, mirroring fingerprint.rs (the same
// number on both backends): sum of word(x[i]) * (2i + 1) mod 2^32, where word is the f32
// bits, the 16 bits of a bfloat16 / float16, or the f64 bits' low half xor their high half rotated left by 13. The odd weight
// makes any change to one f32 element change the sum. Typed-array views are little-endian
// on every platform Node supports for this package.
import type { TensorArray } from '../types';

export function fingerprint(x: TensorArray): number {
  let sum = 0;
  let weight = 1;
  if (x instanceof Uint16Array) {
    // bfloat16 / float16: the word is the 16 bits.
    for (let i = 0; i < x.length; i++) {
      sum = (sum + Math.imul(x[i], weight)) | 0;
      weight = (weight + 2) | 0;
    }
    return sum >>> 0;
  }
  if (x instanceof Float32Array) {
    const words = new Uint32Array(x.buffer, x.byteOffset, x.length);
    for (let i = 0; i < words.length; i++) {
      sum = (sum + Math.imul(words[i], weight)) | 0;
      weight = (weight + 2) | 0;
    }
    return sum >>> 0;
  }
  const halves = new Uint32Array(x.buffer, x.byteOffset, 2 * x.length);
  for (let i = 0; i < halves.length; i += 2) {
    const high = halves[i + 1];
    const word = halves[i] ^ ((high << 13) | (high >>> 19));
    sum = (sum + Math.imul(word, weight)) | 0;
    weight = (weight + 2) | 0;
  }
  return sum >>> 0;
}
