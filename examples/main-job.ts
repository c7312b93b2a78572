// `npm start`: normalize a realistic NHWC activation batch [32, 56, 56, 64] on both backends,
// print per-channel statistics, the largest difference between backends and the time of each.
import { type Backend, type FloatArray, js, native, nativeLoadError } from '../index';

const shape = [32, 56, 56, 64];
const channels = shape[3];
const size = shape.reduce((a, b) => a * b, 1);

/** Deterministic activations: channel c has mean c/8 - 4 and std 0.5 + c/32. */
function makeBatch(): Float32Array {
  const x = new Float32Array(size);
  let seed = 12345;
  for (let i = 0; i < size; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const c = i % channels;
    const u = seed / 2 ** 32 - 0.5;
    x[i] = c / 8 - 4 + (0.5 + c / 32) * u * Math.sqrt(12);
  }
  return x;
}

/** Per-channel mean and biased variance of a channels-last tensor. */
function channelStats(y: FloatArray): { mean: number[]; variance: number[] } {
  const sum = new Float64Array(channels);
  const sq = new Float64Array(channels);
  for (let i = 0; i < y.length; i++) sum[i % channels] += y[i];
  const m = y.length / channels;
  const mean = Array.from(sum, (s) => s / m);
  for (let i = 0; i < y.length; i++) sq[i % channels] += (y[i] - mean[i % channels]) ** 2;
  return { mean, variance: Array.from(sq, (s) => s / m) };
}

function timeMedian(run: () => void, repeats: number): number {
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    run();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const x = makeBatch();
const gamma = Float32Array.from({ length: channels }, (_, c) => 1 + c / 64);
const beta = Float32Array.from({ length: channels }, (_, c) => c / 128);
console.log(`batchnorm main job: training-mode batch norm of NHWC [${shape.join(', ')}] float32 (axis -1)`);
const inputStats = channelStats(x);

const backends: Backend[] = native ? [native, js] : [js];
if (!native) console.log(`native backend unavailable: ${nativeLoadError?.message}`);
const outputs = new Map<string, FloatArray>();
const times = new Map<string, number>();
for (const b of backends) {
  const out = new Float32Array(size);
  const opts = {
    axis: -1,
    gamma,
    beta,
    out,
    runningMean: new Float32Array(channels),
    runningVar: new Float32Array(channels).fill(1),
  };
  b.batchNormTrain(x, shape, opts); // warm-up (JIT, page faults of `out`)
  times.set(
    b.name,
    timeMedian(() => b.batchNormTrain(x, shape, opts), b.name === 'native' ? 15 : 5),
  );
  outputs.set(b.name, out);
}

const reference = outputs.get(backends[0].name) as FloatArray;
const outputStats = channelStats(reference);
console.log('\nchannel   input mean   input var   output mean   output var   (expected: beta, ~gamma^2)');
for (const c of [0, 1, 2, 31, 62, 63]) {
  const row = [inputStats.mean[c], inputStats.variance[c], outputStats.mean[c], outputStats.variance[c]];
  console.log(
    `${String(c).padStart(7)} ${row.map((v) => v.toFixed(5).padStart(12)).join(' ')}   (${beta[c].toFixed(5)}, ${(gamma[c] ** 2).toFixed(5)})`,
  );
}

if (native) {
  const a = outputs.get('native') as FloatArray;
  const b = outputs.get('js') as FloatArray;
  let maxDiff = 0;
  for (let i = 0; i < size; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  console.log(`\nmax |native - js| over ${size} outputs: ${maxDiff.toExponential(2)}`);
}
const mb = (size * 4 * 2) / 1e6;
console.log('\nbackend   median ms   effective GB/s (x read + y written)');
for (const [name, ms] of times) {
  console.log(`${name.padEnd(8)} ${ms.toFixed(2).padStart(10)} ${(mb / ms).toFixed(2).padStart(10)}`);
}
if (native) {
  console.log(
    `native is ${((times.get('js') as number) / (times.get('native') as number)).toFixed(1)}x faster than js`,
  );
}
