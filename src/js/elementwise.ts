// The one elementwise pass every op ends with, mirroring elementwise.rs: per channel c,
// dst = scale*(src - center) + scaleOther*(other - centerOther) + shift, in memory order.
// Centering first keeps offset data exact. dst may be src itself (in place). With `relu`
// the result is clamped at 0 in the same pass (`v < 0 ? 0 : v` keeps NaN, like PyTorch).
import type { Layout } from '../layout';
import type { FloatArray } from '../types';
import { MIN_RUN } from './stats';

export interface ChannelAffine {
  scale: Float64Array;
  center: Float64Array;
  scaleOther: Float64Array;
  centerOther: Float64Array;
  shift: Float64Array;
  relu: boolean;
}

export function channelAffine(channels: number, relu = false): ChannelAffine {
  return {
    scale: new Float64Array(channels),
    center: new Float64Array(channels),
    scaleOther: new Float64Array(channels),
    centerOther: new Float64Array(channels),
    shift: new Float64Array(channels),
    relu,
  };
}

export function applyChannelAffine(
  src: FloatArray,
  other: FloatArray | null,
  dst: FloatArray,
  layout: Layout,
  k: ChannelAffine,
): void {
  // An empty tensor may still have a huge outer size (C = 0): do not loop over it.
  if (dst.length === 0) return;
  if (layout.inner >= MIN_RUN) applyByRow(src, other, dst, layout, k);
  else applyByColumn(src, other, dst, layout, k);
}

/** Each (outer, channel) row is one run with constant coefficients. */
function applyByRow(src: FloatArray, other: FloatArray | null, dst: FloatArray, l: Layout, k: ChannelAffine): void {
  for (let o = 0; o < l.outer; o++) {
    for (let c = 0; c < l.channels; c++) {
      const start = (o * l.channels + c) * l.inner;
      const end = start + l.inner;
      const scale = k.scale[c];
      const center = k.center[c];
      const shift = k.shift[c];
      if (other === null && k.relu) {
        for (let i = start; i < end; i++) {
          const v = (src[i] - center) * scale + shift;
          dst[i] = v < 0 ? 0 : v;
        }
      } else if (other === null) {
        for (let i = start; i < end; i++) dst[i] = (src[i] - center) * scale + shift;
      } else {
        const scaleOther = k.scaleOther[c];
        const centerOther = k.centerOther[c];
        for (let i = start; i < end; i++) {
          dst[i] = (src[i] - center) * scale + (other[i] - centerOther) * scaleOther + shift;
        }
      }
    }
  }
}

/** Coefficients spread per column of a row (channel of column j is floor(j / inner)). */
function applyByColumn(src: FloatArray, other: FloatArray | null, dst: FloatArray, l: Layout, k: ChannelAffine): void {
  const width = l.channels * l.inner;
  const spread = (v: Float64Array) => {
    const s = new Float64Array(width);
    for (let c = 0; c < l.channels; c++) s.fill(v[c], c * l.inner, (c + 1) * l.inner);
    return s;
  };
  const scale = spread(k.scale);
  const center = spread(k.center);
  const shift = spread(k.shift);
  const scaleOther = spread(k.scaleOther);
  const centerOther = spread(k.centerOther);
  for (let r = 0; r < l.outer; r++) {
    const base = r * width;
    if (other === null && k.relu) {
      for (let j = 0; j < width; j++) {
        const v = (src[base + j] - center[j]) * scale[j] + shift[j];
        dst[base + j] = v < 0 ? 0 : v;
      }
    } else if (other === null) {
      for (let j = 0; j < width; j++) dst[base + j] = (src[base + j] - center[j]) * scale[j] + shift[j];
    } else {
      for (let j = 0; j < width; j++) {
        const i = base + j;
        dst[i] = (src[i] - center[j]) * scale[j] + (other[i] - centerOther[j]) * scaleOther[j] + shift[j];
      }
    }
  }
}
