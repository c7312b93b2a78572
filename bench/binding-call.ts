// `npm run bench:call`: what one crossing into the addon costs, on a tiny [2,4] f32 tensor
// where the kernel itself is a few nanoseconds: the public call with the js short-cut off
// (BATCHNORM_NATIVE_MIN_ELEMENTS=0, so every call crosses), the addon's own train function
// called directly with its arguments ready (the crossing alone), and the js kernel for scale.
// Median of 9 interleaved samples of thousands of calls each, in microseconds.
process.env.BATCHNORM_NATIVE_MIN_ELEMENTS = '0';

import { js, native } from '../index';
import { loadBinding } from '../src/native';
import type { Backend } from '../src/types';
import { type Candidate, measureInterleaved } from './measure';

function calls(b: Backend): Candidate[] {
  const shape = [2, 4];
  const x = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const dy = new Float32Array([0.5, -1, 2, 0, 1, 1, -2, 3]);
  const out = new Float32Array(8);
  const dx = new Float32Array(8);
  const gamma = new Float32Array([1, 2, 3, 4]);
  const beta = new Float32Array(4);
  const runningMean = new Float32Array(4);
  const runningVar = new Float32Array(4).fill(1);
  const mean = new Float32Array(4);
  const invStd = new Float32Array(4);
  const { mean: m, invStd: s } = b.batchNormTrain(x, shape, { out, gamma, beta });
  mean.set(m);
  invStd.set(s);
  const saved = { mean, invStd };
  return [
    {
      name: `${b.name} train`,
      call: () => void b.batchNormTrain(x, shape, { out, gamma, beta, runningMean, runningVar }),
    },
    {
      name: `${b.name} eval`,
      call: () => void b.batchNormEval(x, shape, { out, gamma, beta, runningMean, runningVar }),
    },
    { name: `${b.name} backward`, call: () => void b.batchNormBackward(dy, x, shape, saved, { out: dx, gamma }) },
  ];
}

/** The addon's f32 train with every argument prepared: what the binding alone costs. */
function bindingTrain(): Candidate {
  const { binding } = loadBinding();
  if (!binding) throw new Error('bench:call measures the addon, which did not load');
  const x = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const c = () => new Float32Array(4);
  const [gamma, beta, mean, invStd, runningMean, runningVar] = [c(), c(), c(), c(), c(), c()];
  const out = new Float32Array(8);
  const train = binding.trainF32 as unknown as (...args: unknown[]) => void;
  return {
    name: 'binding trainF32',
    call: () =>
      train(x, [2, 4], gamma, beta, runningMean, runningVar, undefined, out, mean, invStd, undefined, {
        axis: 1,
        eps: 1e-5,
        momentum: 0.1,
        runningVarCorrection: 1,
        relu: false,
      }),
  };
}

async function main(): Promise<void> {
  if (!native) throw new Error('bench:call measures the addon, which did not load');
  const candidates = [bindingTrain(), ...calls(native), ...calls(js)];
  const results = await measureInterleaved(candidates, { timeMs: 300, minSamples: 9, warmupSamples: 2, rounds: 3 });
  console.log('one call on [2,4] f32 with out, median (µs):');
  for (const [i, c] of candidates.entries())
    console.log(`  ${c.name.padEnd(18)} ${(results[i].medianMs * 1e3).toFixed(3)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
