// The elementwise passes every op ends with, mirroring elementwise.rs, in memory order with
// per-channel coefficients computed once (PyTorch's form): forward y = x * scale + offset
// (offset = beta - mean * scale), backward dx = g * scale + (x - mean) * xScale + offset.
// dst may be src itself (in place). With `relu` the result is clamped at 0 in the same pass
// (`v < 0 ? 0 : v` keeps NaN, like PyTorch); with a `mask` (the forward output of a fused
// ReLU), g = src only where mask > 0, else 0.
//
// The plain loops take several values per step: V8 checks the arrays' types again after a
// store to a typed array, once per step of the loop, so longer steps pay it less often.
import type { Layout } from '../layout';
import type { FloatArray } from '../types';
import { byDtype } from './specialize';
import { MIN_RUN, spreadColumns } from './stats';
import { scratch } from './workspace';

/** dst = g * scale[c] + offset[c] over every (outer, channel) run of `inner` values. */
function scaleRuns(
  src: FloatArray,
  mask: FloatArray | null,
  dst: FloatArray,
  outer: number,
  channels: number,
  inner: number,
  scale: Float64Array,
  offset: Float64Array,
  relu: boolean,
): void {
  for (let o = 0, begin = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++, begin += inner) {
      const a = scale[c];
      const b = offset[c];
      const end = begin + inner;
      let i = begin;
      if (mask !== null) {
        for (; i < end; i++) dst[i] = (mask[i] > 0 ? src[i] : 0) * a + b;
      } else if (relu) {
        for (; i < end; i++) {
          const v = src[i] * a + b;
          dst[i] = v < 0 ? 0 : v;
        }
      } else {
        for (const end8 = end - 7; i < end8; i += 8) {
          dst[i] = src[i] * a + b;
          dst[i + 1] = src[i + 1] * a + b;
          dst[i + 2] = src[i + 2] * a + b;
          dst[i + 3] = src[i + 3] * a + b;
          dst[i + 4] = src[i + 4] * a + b;
          dst[i + 5] = src[i + 5] * a + b;
          dst[i + 6] = src[i + 6] * a + b;
          dst[i + 7] = src[i + 7] * a + b;
        }
        for (; i < end; i++) dst[i] = src[i] * a + b;
      }
    }
  }
}

/** The same over `rows` rows of `width` columns, column j with scale[j] and offset[j]. */
function scaleColumns(
  src: FloatArray,
  mask: FloatArray | null,
  dst: FloatArray,
  rows: number,
  width: number,
  scale: Float64Array,
  offset: Float64Array,
  relu: boolean,
): void {
  for (let r = 0, base = 0; r < rows; r++, base += width) {
    let j = 0;
    if (mask !== null) {
      for (; j < width; j++) {
        const i = base + j;
        dst[i] = (mask[i] > 0 ? src[i] : 0) * scale[j] + offset[j];
      }
    } else if (relu) {
      for (; j < width; j++) {
        const v = src[base + j] * scale[j] + offset[j];
        dst[base + j] = v < 0 ? 0 : v;
      }
    } else {
      for (const width8 = width - 7; j < width8; j += 8) {
        const i = base + j;
        dst[i] = src[i] * scale[j] + offset[j];
        dst[i + 1] = src[i + 1] * scale[j + 1] + offset[j + 1];
        dst[i + 2] = src[i + 2] * scale[j + 2] + offset[j + 2];
        dst[i + 3] = src[i + 3] * scale[j + 3] + offset[j + 3];
        dst[i + 4] = src[i + 4] * scale[j + 4] + offset[j + 4];
        dst[i + 5] = src[i + 5] * scale[j + 5] + offset[j + 5];
        dst[i + 6] = src[i + 6] * scale[j + 6] + offset[j + 6];
        dst[i + 7] = src[i + 7] * scale[j + 7] + offset[j + 7];
      }
      for (; j < width; j++) dst[base + j] = src[base + j] * scale[j] + offset[j];
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
        for (const end4 = end - 3; i < end4; i += 4) {
          dx[i] = dy[i] * a + (x[i] - mu) * b + k;
          dx[i + 1] = dy[i + 1] * a + (x[i + 1] - mu) * b + k;
          dx[i + 2] = dy[i + 2] * a + (x[i + 2] - mu) * b + k;
          dx[i + 3] = dy[i + 3] * a + (x[i + 3] - mu) * b + k;
        }
        for (; i < end; i++) dx[i] = dy[i] * a + (x[i] - mu) * b + k;
      }
    }
  }
}

/** The same over rows of `width` columns, column j with its own coefficients. */
function gradColumns(
  dy: FloatArray,
  x: FloatArray,
  mask: FloatArray | null,
  dx: FloatArray,
  rows: number,
  width: number,
  scale: Float64Array,
  mean: Float64Array,
  xScale: Float64Array,
  offset: Float64Array,
): void {
  let r = 0;
  if (mask === null) {
    // Eight rows per step: each column's four coefficients are loaded once per eight values.
    for (; r + 8 <= rows; r += 8) {
      const r0 = r * width;
      const r1 = r0 + width;
      const r2 = r1 + width;
      const r3 = r2 + width;
      const r4 = r3 + width;
      const r5 = r4 + width;
      const r6 = r5 + width;
      const r7 = r6 + width;
      for (let j = 0; j < width; j++) {
        const a = scale[j];
        const mu = mean[j];
        const b = xScale[j];
        const k = offset[j];
        dx[r0 + j] = dy[r0 + j] * a + (x[r0 + j] - mu) * b + k;
        dx[r1 + j] = dy[r1 + j] * a + (x[r1 + j] - mu) * b + k;
        dx[r2 + j] = dy[r2 + j] * a + (x[r2 + j] - mu) * b + k;
        dx[r3 + j] = dy[r3 + j] * a + (x[r3 + j] - mu) * b + k;
        dx[r4 + j] = dy[r4 + j] * a + (x[r4 + j] - mu) * b + k;
        dx[r5 + j] = dy[r5 + j] * a + (x[r5 + j] - mu) * b + k;
        dx[r6 + j] = dy[r6 + j] * a + (x[r6 + j] - mu) * b + k;
        dx[r7 + j] = dy[r7 + j] * a + (x[r7 + j] - mu) * b + k;
      }
    }
  }
  for (let base = r * width; r < rows; r++, base += width) {
    for (let j = 0; j < width; j++) {
      const i = base + j;
      const g = mask === null || mask[i] > 0 ? dy[i] : 0;
      dx[i] = g * scale[j] + (x[i] - mean[j]) * xScale[j] + offset[j];
    }
  }
}

const scaleRunsFor = byDtype(scaleRuns);
const scaleColumnsFor = byDtype(scaleColumns);
const gradRunsFor = byDtype(gradRuns);
const gradColumnsFor = byDtype(gradColumns);

/** dst = g * scale[c] + offset[c] over the whole tensor, g as in scaleRuns. */
export function applyScale(
  src: FloatArray,
  mask: FloatArray | null,
  dst: FloatArray,
  layout: Layout,
  scale: Float64Array,
  offset: Float64Array,
  relu: boolean,
): void {
  // An empty tensor may still have a huge outer size (C = 0): do not loop over it.
  if (dst.length === 0) return;
  const { outer, channels, inner } = layout;
  if (inner >= MIN_RUN) {
    scaleRunsFor(src)(src, mask, dst, outer, channels, inner, scale, offset, relu);
    return;
  }
  const width = channels * inner;
  const columnScale = inner === 1 ? scale : spreadColumns(scale, channels, inner, scratch(width));
  const columnOffset = inner === 1 ? offset : spreadColumns(offset, channels, inner, scratch(width));
  scaleColumnsFor(src)(src, mask, dst, outer, width, columnScale, columnOffset, relu);
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
  const spread = (perChannel: Float64Array) =>
    inner === 1 ? perChannel : spreadColumns(perChannel, channels, inner, scratch(width));
  gradColumnsFor(dy)(dy, x, mask, dx, outer, width, spread(scale), spread(mean), spread(xScale), spread(offset));
}
