// Very wide rows of channels (issue 13, item 13): past 32768 columns the native elementwise
// pass spreads each task's own columns instead of the whole row's (which, at [2, 8388608],
// was a fresh ~340 MB per call). Native against js on shapes whose tasks straddle row ends
// and cut a channel's columns, every op, with a residual and the fused ReLU.
import { describe, expect, it } from 'vitest';
import { js, native } from '../index';
import { maxAbsDiff } from './helpers/compare';
import { generator } from './helpers/random.cjs';

const SHAPES: Array<[number[], number]> = [
  [[3, 40001], -1],
  [[2, 5000, 7], 1],
];

describe.skipIf(!native)('very wide rows: native and js agree', () => {
  const nb = native as NonNullable<typeof native>;
  it.each(SHAPES)('%j axis %i', (shape, axis) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const c = shape.at(axis) as number;
    const rand = generator(41);
    const fill = (len: number, lo: number, span: number) =>
      Float32Array.from({ length: len }, () => lo + span * rand());
    const x = fill(n, -1, 2);
    const z = fill(n, -1, 2);
    const dy = fill(n, -1, 2);
    const gamma = fill(c, 0.5, 1);
    const beta = fill(c, -0.5, 1);
    const options = { axis, gamma, beta, residual: z, activation: 'relu' as const };
    const a = js.batchNormTrain(x, shape, options);
    const b = nb.batchNormTrain(x, shape, options);
    expect(maxAbsDiff(a.y, b.y)).toBeLessThan(1e-5);
    expect(maxAbsDiff(a.invStd, b.invStd)).toBeLessThan(1e-4);
    const stats = { runningMean: fill(c, -0.1, 0.2), runningVar: fill(c, 0.5, 1) };
    const ea = js.batchNormEval(x, shape, { ...options, ...stats });
    const eb = nb.batchNormEval(x, shape, { ...options, ...stats });
    expect(maxAbsDiff(ea, eb)).toBeLessThan(1e-5);
    const backward = { axis, gamma, activation: 'relu' as const, y: a.y, residual: true };
    const ga = js.batchNormBackward(dy, x, shape, a, backward);
    const gb = nb.batchNormBackward(dy, x, shape, a, backward);
    expect(maxAbsDiff(ga.dx, gb.dx)).toBeLessThan(1e-4);
    expect(maxAbsDiff(ga.dResidual as Float32Array, gb.dResidual as Float32Array)).toBe(0);
    expect(maxAbsDiff(ga.dGamma, gb.dGamma)).toBeLessThan(1e-4);
  });
});
