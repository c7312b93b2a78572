// The elementwise passes every op ends with, mirroring elementwise.rs, in memory order with
// per-channel coefficients computed once: forward y = (x - mean) * scale + beta (the mean
// subtracted first, as the core does: PyTorch's x * scale + (beta - mean * scale) loses
// digits on offset data), backward dx = g * scale + (x - mean) * xScale + offset.
// dst may be src itself (in place). With `relu` the result is clamped at 0 in the same pass
// (`v < 0 ? 0 : v` keeps NaN, like PyTorch); with a `mask` (the forward output of a fused
// ReLU), g = src only where mask > 0, else 0.
//
// The plain loops take many values per step: V8 checks the arrays' types and reloads their
// data pointers after a store to a typed array, once per step of the loop, so longer steps
// pay it less often (measured: 16 values per step run ~10% faster than 8).
import type { Layout } from '../layout';
import type { FloatArray } from '../types';
import { byDtype } from './specialize';
import { MIN_RUN } from './stats';
import { scratch } from './workspace';

/** dst = (g - center[c]) * scale[c] + offset[c] over every (outer, channel) run of `inner`
 *  values. */
function scaleRuns(
  src: FloatArray,
  mask: FloatArray | null,
  dst: FloatArray,
  outer: number,
  channels: number,
  inner: number,
  scale: Float64Array,
  center: Float64Array,
  offset: Float64Array,
  relu: boolean,
): void {
  for (let o = 0, begin = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, begin += inner) {
      const a = scale[c];
      const m = center[c];
      const b = offset[c];
      const end = begin + inner;
      let i = begin;
      if (mask !== null) {
        for (; i < end; i++) dst[i] = ((mask[i] > 0 ? src[i] : 0) - m) * a + b;
      } else if (relu) {
        for (; i < end; i++) {
          const v = (src[i] - m) * a + b;
          dst[i] = v < 0 ? 0 : v;
        }
      } else {
        for (const end16 = end - 15; i < end16; i += 16) {
          dst[i] = (src[i] - m) * a + b;
          dst[i + 1] = (src[i + 1] - m) * a + b;
          dst[i + 2] = (src[i + 2] - m) * a + b;
          dst[i + 3] = (src[i + 3] - m) * a + b;
          dst[i + 4] = (src[i + 4] - m) * a + b;
          dst[i + 5] = (src[i + 5] - m) * a + b;
          dst[i + 6] = (src[i + 6] - m) * a + b;
          dst[i + 7] = (src[i + 7] - m) * a + b;
          dst[i + 8] = (src[i + 8] - m) * a + b;
          dst[i + 9] = (src[i + 9] - m) * a + b;
          dst[i + 10] = (src[i + 10] - m) * a + b;
          dst[i + 11] = (src[i + 11] - m) * a + b;
          dst[i + 12] = (src[i + 12] - m) * a + b;
          dst[i + 13] = (src[i + 13] - m) * a + b;
          dst[i + 14] = (src[i + 14] - m) * a + b;
          dst[i + 15] = (src[i + 15] - m) * a + b;
        }
        for (; i < end; i++) dst[i] = (src[i] - m) * a + b;
      }
    }
  }
}

/** The same over `rows` rows of `width` columns, column j with scale k[3j], center k[3j + 1]
 *  and offset k[3j + 2]: one coefficient array, so one type check less per step than three. */
function scaleColumns(
  src: FloatArray,
  mask: FloatArray | null,
  dst: FloatArray,
  rows: number,
  width: number,
  k: Float64Array,
  relu: boolean,
): void {
  for (let r = 0, base = 0; r < rows; r++, base += width) {
    let j = 0;
    if (mask !== null) {
      for (; j < width; j++) {
        const i = base + j;
        dst[i] = ((mask[i] > 0 ? src[i] : 0) - k[3 * j + 1]) * k[3 * j] + k[3 * j + 2];
      }
    } else if (relu) {
      for (; j < width; j++) {
        const v = (src[base + j] - k[3 * j + 1]) * k[3 * j] + k[3 * j + 2];
        dst[base + j] = v < 0 ? 0 : v;
      }
    } else {
      for (const width16 = width - 15; j < width16; j += 16) {
        const i = base + j;
        const q = 3 * j;
        dst[i] = (src[i] - k[q + 1]) * k[q] + k[q + 2];
        dst[i + 1] = (src[i + 1] - k[q + 4]) * k[q + 3] + k[q + 5];
        dst[i + 2] = (src[i + 2] - k[q + 7]) * k[q + 6] + k[q + 8];
        dst[i + 3] = (src[i + 3] - k[q + 10]) * k[q + 9] + k[q + 11];
        dst[i + 4] = (src[i + 4] - k[q + 13]) * k[q + 12] + k[q + 14];
        dst[i + 5] = (src[i + 5] - k[q + 16]) * k[q + 15] + k[q + 17];
        dst[i + 6] = (src[i + 6] - k[q + 19]) * k[q + 18] + k[q + 20];
        dst[i + 7] = (src[i + 7] - k[q + 22]) * k[q + 21] + k[q + 23];
        dst[i + 8] = (src[i + 8] - k[q + 25]) * k[q + 24] + k[q + 26];
        dst[i + 9] = (src[i + 9] - k[q + 28]) * k[q + 27] + k[q + 29];
        dst[i + 10] = (src[i + 10] - k[q + 31]) * k[q + 30] + k[q + 32];
        dst[i + 11] = (src[i + 11] - k[q + 34]) * k[q + 33] + k[q + 35];
        dst[i + 12] = (src[i + 12] - k[q + 37]) * k[q + 36] + k[q + 38];
        dst[i + 13] = (src[i + 13] - k[q + 40]) * k[q + 39] + k[q + 41];
        dst[i + 14] = (src[i + 14] - k[q + 43]) * k[q + 42] + k[q + 44];
        dst[i + 15] = (src[i + 15] - k[q + 46]) * k[q + 45] + k[q + 47];
      }
      for (; j < width; j++) dst[base + j] = (src[base + j] - k[3 * j + 1]) * k[3 * j] + k[3 * j + 2];
    }
  }
}

/** dx = g * scale[c] + (x - mean[c]) * xScale[c] + offset[c] over every run, as scaleRuns.
 *  Centering x first keeps data with a large offset exact. */
function gradRuns(
  dy: FloatArray,
  x: FloatArray,
  mask: FloatArray | null,
  dx: FloatArray,
  outer: number,
  channels: number,
  inner: number,
  scale: Float64Array,
  mean: Float64Array,
  xScale: Float64Array,
  offset: Float64Array,
): void {
  for (let o = 0, begin = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, begin += inner) {
      const a = scale[c];
      const mu = mean[c];
      const b = xScale[c];
      const k = offset[c];
      const end = begin + inner;
      let i = begin;
      if (mask !== null) {
        for (; i < end; i++) dx[i] = (mask[i] > 0 ? dy[i] : 0) * a + (x[i] - mu) * b + k;
      } else {
        for (const end16 = end - 15; i < end16; i += 16) {
          dx[i] = dy[i] * a + (x[i] - mu) * b + k;
          dx[i + 1] = dy[i + 1] * a + (x[i + 1] - mu) * b + k;
          dx[i + 2] = dy[i + 2] * a + (x[i + 2] - mu) * b + k;
          dx[i + 3] = dy[i + 3] * a + (x[i + 3] - mu) * b + k;
          dx[i + 4] = dy[i + 4] * a + (x[i + 4] - mu) * b + k;
          dx[i + 5] = dy[i + 5] * a + (x[i + 5] - mu) * b + k;
          dx[i + 6] = dy[i + 6] * a + (x[i + 6] - mu) * b + k;
          dx[i + 7] = dy[i + 7] * a + (x[i + 7] - mu) * b + k;
          dx[i + 8] = dy[i + 8] * a + (x[i + 8] - mu) * b + k;
          dx[i + 9] = dy[i + 9] * a + (x[i + 9] - mu) * b + k;
          dx[i + 10] = dy[i + 10] * a + (x[i + 10] - mu) * b + k;
          dx[i + 11] = dy[i + 11] * a + (x[i + 11] - mu) * b + k;
          dx[i + 12] = dy[i + 12] * a + (x[i + 12] - mu) * b + k;
          dx[i + 13] = dy[i + 13] * a + (x[i + 13] - mu) * b + k;
          dx[i + 14] = dy[i + 14] * a + (x[i + 14] - mu) * b + k;
          dx[i + 15] = dy[i + 15] * a + (x[i + 15] - mu) * b + k;
        }
        for (; i < end; i++) dx[i] = dy[i] * a + (x[i] - mu) * b + k;
      }
    }
  }
}

/** The same over rows of `width` columns, column j with scale, mean, xScale and offset at
 *  k[4j] to k[4j + 3]. */
function gradColumns(
  dy: FloatArray,
  x: FloatArray,
  mask: FloatArray | null,
  dx: FloatArray,
  rows: number,
  width: number,
  k: Float64Array,
): void {
  for (let r = 0, base = 0; r < rows; r++, base += width) {
    let j = 0;
    if (mask === null) {
      for (const width16 = width - 15; j < width16; j += 16) {
        const i = base + j;
        const q = 4 * j;
        dx[i] = dy[i] * k[q] + (x[i] - k[q + 1]) * k[q + 2] + k[q + 3];
        dx[i + 1] = dy[i + 1] * k[q + 4] + (x[i + 1] - k[q + 5]) * k[q + 6] + k[q + 7];
        dx[i + 2] = dy[i + 2] * k[q + 8] + (x[i + 2] - k[q + 9]) * k[q + 10] + k[q + 11];
        dx[i + 3] = dy[i + 3] * k[q + 12] + (x[i + 3] - k[q + 13]) * k[q + 14] + k[q + 15];
        dx[i + 4] = dy[i + 4] * k[q + 16] + (x[i + 4] - k[q + 17]) * k[q + 18] + k[q + 19];
        dx[i + 5] = dy[i + 5] * k[q + 20] + (x[i + 5] - k[q + 21]) * k[q + 22] + k[q + 23];
        dx[i + 6] = dy[i + 6] * k[q + 24] + (x[i + 6] - k[q + 25]) * k[q + 26] + k[q + 27];
        dx[i + 7] = dy[i + 7] * k[q + 28] + (x[i + 7] - k[q + 29]) * k[q + 30] + k[q + 31];
        dx[i + 8] = dy[i + 8] * k[q + 32] + (x[i + 8] - k[q + 33]) * k[q + 34] + k[q + 35];
        dx[i + 9] = dy[i + 9] * k[q + 36] + (x[i + 9] - k[q + 37]) * k[q + 38] + k[q + 39];
        dx[i + 10] = dy[i + 10] * k[q + 40] + (x[i + 10] - k[q + 41]) * k[q + 42] + k[q + 43];
        dx[i + 11] = dy[i + 11] * k[q + 44] + (x[i + 11] - k[q + 45]) * k[q + 46] + k[q + 47];
        dx[i + 12] = dy[i + 12] * k[q + 48] + (x[i + 12] - k[q + 49]) * k[q + 50] + k[q + 51];
        dx[i + 13] = dy[i + 13] * k[q + 52] + (x[i + 13] - k[q + 53]) * k[q + 54] + k[q + 55];
        dx[i + 14] = dy[i + 14] * k[q + 56] + (x[i + 14] - k[q + 57]) * k[q + 58] + k[q + 59];
        dx[i + 15] = dy[i + 15] * k[q + 60] + (x[i + 15] - k[q + 61]) * k[q + 62] + k[q + 63];
      }
    }
    for (; j < width; j++) {
      const i = base + j;
      const g = mask === null || mask[i] > 0 ? dy[i] : 0;
      dx[i] = g * k[4 * j] + (x[i] - k[4 * j + 1]) * k[4 * j + 2] + k[4 * j + 3];
    }
  }
}

const scaleRunsFor = byDtype(scaleRuns);
const scaleColumnsFor = byDtype(scaleColumns);
const gradRunsFor = byDtype(gradRuns);
const gradColumnsFor = byDtype(gradColumns);

/** Per-channel coefficients laid out per column of a channels-last row (each channel's
 *  `inner` columns), the coefficients of one column side by side. */
function interleaveColumns(
  channels: number,
  inner: number,
  into: Float64Array,
  ...perChannel: Float64Array[]
): Float64Array {
  const n = perChannel.length;
  for (let c = 0, q = 0; c < channels; c++) {
    for (let j = 0; j < inner; j++) {
      for (let p = 0; p < n; p++, q++) into[q] = perChannel[p][c];
    }
  }
  return into;
}

/** dst = (g - center[c]) * scale[c] + offset[c] over the whole tensor, g as in scaleRuns. */
export function applyScale(
  src: FloatArray,
  mask: FloatArray | null,
  dst: FloatArray,
  layout: Layout,
  scale: Float64Array,
  center: Float64Array,
  offset: Float64Array,
  relu: boolean,
): void {
  // An empty tensor may still have a huge outer size (C = 0): do not loop over it.
  if (dst.length === 0) return;
  const { outer, channels, inner } = layout;
  if (inner >= MIN_RUN) {
    scaleRunsFor(src)(src, mask, dst, outer, channels, inner, scale, center, offset, relu);
    return;
  }
  const width = channels * inner;
  const k = interleaveColumns(channels, inner, scratch(3 * width), scale, center, offset);
  scaleColumnsFor(src)(src, mask, dst, outer, width, k, relu);
}

/** dx = g * scale[c] + (x - mean[c]) * xScale[c] + offset[c] over the whole tensor. */
export function applyGrad(
  dy: FloatArray,
  x: FloatArray,
  mask: FloatArray | null,
  dx: FloatArray,
  layout: Layout,
  scale: Float64Array,
  mean: Float64Array,
  xScale: Float64Array,
  offset: Float64Array,
): void {
  if (dx.length === 0) return;
  const { outer, channels, inner } = layout;
  if (inner >= MIN_RUN) {
    gradRunsFor(dy)(dy, x, mask, dx, outer, channels, inner, scale, mean, xScale, offset);
    return;
  }
  const width = channels * inner;
  const k = interleaveColumns(channels, inner, scratch(4 * width), scale, mean, xScale, offset);
  gradColumnsFor(dy)(dy, x, mask, dx, outer, width, k);
}

/** y = act((x - center[c]) * scale[c] + offset[c] + residual) over the whole tensor: the
 *  fused tail of a ResNet block, in one pass like the native one. */
export function applyScaleResidual(
  x: FloatArray,
  residual: FloatArray,
  y: FloatArray,
  layout: Layout,
  scale: Float64Array,
  center: Float64Array,
  offset: Float64Array,
  relu: boolean,
): void {
  if (y.length === 0) return;
  const { outer, channels, inner } = layout;
  for (let o = 0, begin = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, begin += inner) {
      const a = scale[c];
      const m = center[c];
      const b = offset[c];
      for (let i = begin, end = begin + inner; i < end; i++) {
        const v = (x[i] - m) * a + b + residual[i];
        y[i] = relu && v < 0 ? 0 : v;
      }
    }
  }
}

/** What flows to the residual: dy, or with a fused ReLU dy where its output y was > 0. */
export function residualGrad(dy: FloatArray, y: FloatArray | null, dResidual: FloatArray): void {
  if (y === null) {
    dResidual.set(dy);
    return;
  }
  for (let i = 0; i < dy.length; i++) dResidual[i] = y[i] > 0 ? dy[i] : 0;
}
