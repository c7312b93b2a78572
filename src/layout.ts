/** A row-major tensor seen as [outer, channels, inner], the channel axis in the middle. */
export interface Layout {
  outer: number;
  channels: number;
  inner: number;
}

/** Folds the axes before `axis` into outer and those after it into inner (axis already in range). */
export function layoutOf(shape: readonly number[], axis: number): Layout {
  const a = axis < 0 ? axis + shape.length : axis;
  let outer = 1;
  for (let i = 0; i < a; i++) outer *= shape[i];
  let inner = 1;
  for (let i = a + 1; i < shape.length; i++) inner *= shape[i];
  return { outer, channels: shape[a], inner };
}
