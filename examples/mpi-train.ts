// Data-parallel training over MPI of train-mlp.ts's model: Linear(2, 16) -> BatchNorm(16) +
// ReLU (fused) -> Linear(16, 1), logistic loss, plain SGD, two-moons data. Every rank holds a
// shard of every batch (unequal when the batch does not divide); the BatchNorm is a
// SyncBatchNorm over comm.allReduce, so it normalizes with the whole batch's statistics; the
// linear layers' gradients are summed with comm.allReduce; rank 0's initial weights are
// broadcast to every rank. Rank 0 then trains the same model in one process on the whole
// batches and checks that the weights agree to float rounding.
//
//   npm run build && npm run build:mpi
//   mpirun -np 3 node dist/examples/mpi-train.js          (as root: --allow-run-as-root;
//                                                          more ranks than cores: --oversubscribe)
//
// Exit code 0 when every check holds; otherwise non-zero, which ends the whole MPI job.
import { BatchNorm, backend, type FloatArray, SyncBatchNorm } from '../index';
import { world } from '../src/mpi';

const HIDDEN = 16;
const EPOCHS = 30;
const BATCH = 64;
const SAMPLES = 512;
const LEARNING_RATE = 0.5;
/** Largest weight difference from one-process training accepted as float rounding. */
const TOLERANCE = 1e-5;

/** A seeded generator (train-mlp.ts's). */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Two interleaved half circles, label 0 and 1, with noise. */
function twoMoons(n: number, rand: () => number): { x: Float32Array; labels: Float32Array } {
  const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const x = new Float32Array(2 * n);
  const labels = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const t = Math.PI * rand();
    const upper = i % 2 === 0;
    x[2 * i] = (upper ? Math.cos(t) : 1 - Math.cos(t)) + 0.1 * normal();
    x[2 * i + 1] = (upper ? Math.sin(t) : 0.5 - Math.sin(t)) + 0.1 * normal();
    labels[i] = upper ? 0 : 1;
  }
  return { x, labels };
}

/** y = x W^T + b with W [out, in] (nn.Linear), as in train-mlp.ts. */
class Linear {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly weightGrad: Float32Array;
  readonly biasGrad: Float32Array;
  private input: FloatArray = new Float32Array(0);

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rand: () => number,
  ) {
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = Float32Array.from({ length: outFeatures * inFeatures }, () => bound * (2 * rand() - 1));
    this.bias = Float32Array.from({ length: outFeatures }, () => bound * (2 * rand() - 1));
    this.weightGrad = new Float32Array(this.weight.length);
    this.biasGrad = new Float32Array(outFeatures);
  }

  forward(x: FloatArray, rows: number): Float32Array {
    this.input = x;
    const { inFeatures: n, outFeatures: m } = this;
    const y = new Float32Array(rows * m);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < m; o++) {
        let s = this.bias[o];
        for (let i = 0; i < n; i++) s += x[r * n + i] * this.weight[o * n + i];
        y[r * m + o] = s;
      }
    }
    return y;
  }

  /** Accumulates this shard's weight and bias gradients; returns dL/dx. */
  backward(dy: FloatArray, rows: number): Float32Array {
    const { inFeatures: n, outFeatures: m, input } = this;
    const dx = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < m; o++) {
        const g = dy[r * m + o];
        this.biasGrad[o] += g;
        for (let i = 0; i < n; i++) {
          this.weightGrad[o * n + i] += g * input[r * n + i];
          dx[r * n + i] += g * this.weight[o * n + i];
        }
      }
    }
    return dx;
  }
}

/** The layer interface both models use: BatchNorm's (sync) or SyncBatchNorm's (async). */
interface Norm {
  gamma: FloatArray | null;
  beta: FloatArray | null;
  gammaGrad: FloatArray | null;
  betaGrad: FloatArray | null;
  runningMean: FloatArray | null;
  runningVar: FloatArray | null;
  forward(x: FloatArray, shape: number[]): FloatArray | Promise<FloatArray>;
  backward(dy: FloatArray): FloatArray | Promise<FloatArray>;
  zeroGrad(): void;
}

class Mlp {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    readonly bn: Norm,
    rand: () => number,
  ) {
    this.fc1 = new Linear(2, HIDDEN, rand);
    this.fc2 = new Linear(HIDDEN, 1, rand);
  }

  async forward(x: Float32Array, rows: number): Promise<Float32Array> {
    return this.fc2.forward(await this.bn.forward(this.fc1.forward(x, rows), [rows, HIDDEN]), rows);
  }

  async backward(dLogits: Float32Array, rows: number): Promise<void> {
    this.fc1.backward(await this.bn.backward(this.fc2.backward(dLogits, rows)), rows);
  }

  /** Every parameter (the same objects for the model's life). */
  parameters(): Float32Array[] {
    return [this.fc1.weight, this.fc1.bias, this.bn.gamma, this.bn.beta, this.fc2.weight, this.fc2.bias].map(
      (p) => p as Float32Array,
    );
  }

  /** The linear layers' gradients: the ones a data-parallel loop must sum over ranks (the
   *  SyncBatchNorm's gammaGrad and betaGrad already are the whole batch's). */
  linearGradients(): Float32Array[] {
    return [this.fc1.weightGrad, this.fc1.biasGrad, this.fc2.weightGrad, this.fc2.biasGrad];
  }

  step(lr: number): void {
    const grads = [
      this.fc1.weightGrad,
      this.fc1.biasGrad,
      this.bn.gammaGrad as Float32Array,
      this.bn.betaGrad as Float32Array,
      this.fc2.weightGrad,
      this.fc2.biasGrad,
    ];
    this.parameters().forEach((param, k) => {
      for (let i = 0; i < param.length; i++) param[i] -= lr * grads[k][i];
    });
    for (const g of this.linearGradients()) g.fill(0);
    this.bn.zeroGrad();
  }

  /** Parameters and running statistics, flattened (for the comparisons). */
  state(): Float64Array {
    const parts = [...this.parameters(), this.bn.runningMean as Float32Array, this.bn.runningVar as Float32Array];
    const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** This shard's summed logistic loss, and dLoss/dLogits for the mean over `batchRows` rows
 *  (the whole batch's size, so the shards' gradients add up to the whole batch's). */
function logisticLoss(logits: Float32Array, labels: Float32Array, batchRows: number) {
  const dLogits = new Float32Array(logits.length);
  let lossSum = 0;
  for (let i = 0; i < logits.length; i++) {
    const z = logits[i];
    lossSum += Math.max(z, 0) - z * labels[i] + Math.log1p(Math.exp(-Math.abs(z)));
    dLogits[i] = (sigmoid(z) - labels[i]) / batchRows;
  }
  return { lossSum, dLogits };
}

/** Rows [start, end) of the data, in `order`. */
function gather(data: { x: Float32Array; labels: Float32Array }, rows: number[]) {
  const x = new Float32Array(rows.length * 2);
  const labels = new Float32Array(rows.length);
  rows.forEach((r, k) => {
    x.set(data.x.subarray(2 * r, 2 * r + 2), 2 * k);
    labels[k] = data.labels[r];
  });
  return { x, labels };
}

/**
 * Trains `model` for EPOCHS. `shard(batch)` picks this process's rows of each batch;
 * `sum(buffer)` sums over processes (identity in one process). Returns each epoch's mean loss.
 */
async function train(
  model: Mlp,
  data: { x: Float32Array; labels: Float32Array },
  shard: (rows: number[]) => number[],
  sum: <T extends Float32Array | Float64Array>(buffer: T) => Promise<T>,
): Promise<number[]> {
  const shuffle = generator(7); // the same order on every rank
  const order = Array.from({ length: SAMPLES }, (_, i) => i);
  const grads = model.linearGradients();
  const packed = new Float32Array(grads.reduce((n, g) => n + g.length, 0));
  const losses: number[] = [];
  for (let epoch = 1; epoch <= EPOCHS; epoch++) {
    for (let i = SAMPLES - 1; i > 0; i--) {
      const j = Math.floor(shuffle() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    let lossSum = 0;
    for (let start = 0; start < SAMPLES; start += BATCH) {
      const batch = order.slice(start, start + BATCH);
      const { x, labels } = gather(data, shard(batch));
      const rows = labels.length;
      const { lossSum: shardLoss, dLogits } = logisticLoss(await model.forward(x, rows), labels, batch.length);
      await model.backward(dLogits, rows);
      // One all-reduce for every linear gradient: the whole batch's mean-loss gradient.
      let at = 0;
      for (const g of grads) {
        packed.set(g, at);
        at += g.length;
      }
      await sum(packed);
      at = 0;
      for (const g of grads) {
        g.set(packed.subarray(at, at + g.length));
        at += g.length;
      }
      model.step(LEARNING_RATE);
      lossSum += shardLoss;
    }
    losses.push((await sum(new Float64Array([lossSum])))[0] / SAMPLES);
  }
  return losses;
}

function maxDifference(a: Float64Array, b: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

async function main(): Promise<void> {
  const comm = world();
  const { rank, size } = comm;
  const tag = `rank ${rank}/${size}`;
  if (rank === 0)
    console.log(
      `${tag}: ${comm.libraryVersion.split(',')[0]}, thread level ${comm.threadLevel}, backend ${backend.name}`,
    );
  const data = twoMoons(SAMPLES, generator(2024)); // the same data set on every rank

  // Each rank initializes its own weights (seeded by rank), then takes rank 0's.
  const bn = new SyncBatchNorm(HIDDEN, { activation: 'relu', allReduce: comm.allReduce });
  const model = new Mlp(bn, generator(1000 + rank));
  for (const p of model.parameters()) await comm.broadcast(p, 0);

  // Rank r's rows of a batch: a contiguous slice, sizes differing by at most one.
  const shard = (rows: number[]) =>
    rows.slice(Math.floor((rank * rows.length) / size), Math.floor(((rank + 1) * rows.length) / size));
  const losses = await train(model, data, shard, comm.allReduce);
  losses.forEach((loss, e) => {
    if (e === 0 || (e + 1) % 5 === 0)
      console.log(`${tag}: epoch ${String(e + 1).padStart(2)} loss ${loss.toFixed(12)}`);
  });

  // Every rank must hold the same weights: compare with rank 0's.
  const mine = model.state();
  const rank0 = await comm.broadcast(mine.slice(), 0);
  const acrossRanks = maxDifference(mine, rank0);
  console.log(
    `${tag}: final loss ${losses[EPOCHS - 1].toFixed(12)}; max weight difference from rank 0: ${acrossRanks}`,
  );
  let ok = acrossRanks === 0;

  if (rank === 0) {
    // The same model, the same initial weights (rank 0's seed), one process, whole batches.
    const single = new Mlp(new BatchNorm(HIDDEN, { activation: 'relu' }), generator(1000));
    const singleLosses = await train(
      single,
      data,
      (rows) => rows,
      async (buffer) => buffer,
    );
    const diff = maxDifference(mine, single.state());
    const lossDiff = Math.abs(singleLosses[EPOCHS - 1] - losses[EPOCHS - 1]);
    const pass = diff <= TOLERANCE;
    console.log(
      `${tag}: single-process training on the whole batches: final loss ${singleLosses[EPOCHS - 1].toFixed(12)} (difference ${lossDiff.toExponential(2)}); max weight difference ${diff.toExponential(2)} (tolerance ${TOLERANCE}): ${pass ? 'OK' : 'FAILED'}`,
    );
    ok &&= pass;
  }
  // Every rank learns whether rank 0's checks passed, so all exit alike.
  const verdict = await comm.allReduce(new Float64Array([ok ? 0 : 1]));
  if (verdict[0] !== 0) {
    console.error(`${tag}: a check failed`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
