// A small training loop with the BatchNorm layer: Linear(2, 16) -> BatchNorm(16) + ReLU (fused)
// -> Linear(16, 1), logistic loss, plain SGD, on a synthetic two-moons data set. Trains in
// train mode (batch statistics), evaluates in eval mode (running statistics), saves the whole
// model as JSON under PyTorch's state_dict names, reloads it, and folds the BatchNorm into
// the first linear layer for inference.
//
//   node dist/examples/train-mlp.js [state.json]     train, then save the state there
//   node dist/examples/train-mlp.js --from state.json  load a state (e.g. from PyTorch), evaluate
//
// The JSON is what examples/torch_checkpoint.py reads and writes: keys of
// nn.Sequential(Linear(2, 16), BatchNorm1d(16), ReLU(), Linear(16, 1)).state_dict(),
// each tensor as a flat row-major list of numbers.
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchNorm, backend, type FloatArray, foldBatchNorm } from '../index';

const HIDDEN = 16;
const EPOCHS = 30;
const BATCH = 64;
const LEARNING_RATE = 0.5;
/** Inputs whose predictions both this example and torch_checkpoint.py print, to compare. */
const PROBES = [0, 0, 1, 0.5, -1, 0.5, 0.5, -0.3, 2, 1];

/** A seeded generator, so every run trains the same model. */
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
const rand = generator(2024);
const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());

/** Two interleaved half circles, label 0 and 1, with noise: not linearly separable. */
function twoMoons(n: number): { x: Float32Array; labels: Float32Array } {
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

/** y = x W^T + b with W [out, in], as PyTorch's nn.Linear (so its state loads as is). */
class Linear {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly weightGrad: Float32Array;
  readonly biasGrad: Float32Array;
  private input: FloatArray = new Float32Array(0);

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {
    const bound = 1 / Math.sqrt(inFeatures); // PyTorch's default initialization range
    this.weight = Float32Array.from({ length: outFeatures * inFeatures }, () => bound * (2 * rand() - 1));
    this.bias = Float32Array.from({ length: outFeatures }, () => bound * (2 * rand() - 1));
    this.weightGrad = new Float32Array(this.weight.length);
    this.biasGrad = new Float32Array(outFeatures);
  }

  forward(x: FloatArray, rows: number): Float32Array {
    this.input = x;
    return affine(x, rows, this.weight, this.bias, this.inFeatures, this.outFeatures);
  }

  /** Accumulates the weight and bias gradients; returns dL/dx. */
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

function affine(x: FloatArray, rows: number, weight: FloatArray, bias: FloatArray, n: number, m: number) {
  const y = new Float32Array(rows * m);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < m; o++) {
      let s = bias[o];
      for (let i = 0; i < n; i++) s += x[r * n + i] * weight[o * n + i];
      y[r * m + o] = s;
    }
  }
  return y;
}

class Mlp {
  readonly fc1 = new Linear(2, HIDDEN);
  // The ReLU is fused into the normalization pass; backward masks with the layer's saved output.
  readonly bn = new BatchNorm(HIDDEN, { activation: 'relu' });
  readonly fc2 = new Linear(HIDDEN, 1);

  /** Logits, one per row. */
  forward(x: Float32Array, rows: number): Float32Array {
    const h = this.bn.forward(this.fc1.forward(x, rows), [rows, HIDDEN]);
    return this.fc2.forward(h, rows);
  }

  backward(dLogits: Float32Array, rows: number): void {
    this.fc1.backward(this.bn.backward(this.fc2.backward(dLogits, rows)), rows);
  }

  /** Plain SGD on every parameter, then clears the gradients. */
  step(lr: number): void {
    const pairs: Array<[Float32Array, Float32Array]> = [
      [this.fc1.weight, this.fc1.weightGrad],
      [this.fc1.bias, this.fc1.biasGrad],
      [this.bn.gamma as Float32Array, this.bn.gammaGrad as Float32Array],
      [this.bn.beta as Float32Array, this.bn.betaGrad as Float32Array],
      [this.fc2.weight, this.fc2.weightGrad],
      [this.fc2.bias, this.fc2.biasGrad],
    ];
    for (const [param, grad] of pairs) {
      for (let i = 0; i < param.length; i++) param[i] -= lr * grad[i];
      grad.fill(0);
    }
    this.bn.zeroGrad();
  }

  /** The whole model's state under nn.Sequential's names, as JSON-ready plain arrays. */
  stateDict(): Record<string, number[] | number> {
    const bn = this.bn.stateDict();
    return {
      '0.weight': Array.from(this.fc1.weight),
      '0.bias': Array.from(this.fc1.bias),
      '1.weight': Array.from(bn.gamma ?? []),
      '1.bias': Array.from(bn.beta ?? []),
      '1.running_mean': Array.from(bn.runningMean ?? []),
      '1.running_var': Array.from(bn.runningVar ?? []),
      '1.num_batches_tracked': bn.numBatchesTracked,
      '3.weight': Array.from(this.fc2.weight),
      '3.bias': Array.from(this.fc2.bias),
    };
  }

  loadStateDict(state: Record<string, number[] | number>): void {
    const list = (key: string): number[] => {
      const v = state[key];
      if (!Array.isArray(v)) throw new TypeError(`state: ${key} must be a list of numbers`);
      return v;
    };
    // BatchNorm reads PyTorch's names itself and validates before changing anything.
    this.bn.loadStateDict({
      weight: list('1.weight'),
      bias: list('1.bias'),
      running_mean: list('1.running_mean'),
      running_var: list('1.running_var'),
      num_batches_tracked: state['1.num_batches_tracked'] as number,
    });
    for (const [key, target] of [
      ['0.weight', this.fc1.weight],
      ['0.bias', this.fc1.bias],
      ['3.weight', this.fc2.weight],
      ['3.bias', this.fc2.bias],
    ] as const) {
      const values = list(key);
      if (values.length !== target.length) throw new RangeError(`state: ${key} must have ${target.length} values`);
      target.set(values);
    }
  }
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** Mean logistic loss and its gradient with respect to the logits. */
function logisticLoss(logits: Float32Array, labels: Float32Array): { loss: number; dLogits: Float32Array } {
  const dLogits = new Float32Array(logits.length);
  let loss = 0;
  for (let i = 0; i < logits.length; i++) {
    const z = logits[i];
    loss += Math.max(z, 0) - z * labels[i] + Math.log1p(Math.exp(-Math.abs(z))); // stable softplus(z) - t z
    dLogits[i] = (sigmoid(z) - labels[i]) / logits.length;
  }
  return { loss: loss / logits.length, dLogits };
}

function evaluate(model: Mlp, data: { x: Float32Array; labels: Float32Array }) {
  const logits = model.forward(data.x, data.labels.length);
  let correct = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > 0 === data.labels[i] > 0.5) correct++;
  return { loss: logisticLoss(logits, data.labels).loss, accuracy: correct / logits.length };
}

function probe(model: Mlp): number[] {
  return Array.from(model.forward(Float32Array.from(PROBES), PROBES.length / 2), sigmoid);
}

function train(model: Mlp, data: { x: Float32Array; labels: Float32Array }): void {
  const n = data.labels.length;
  const order = Array.from({ length: n }, (_, i) => i);
  model.bn.train();
  for (let epoch = 1; epoch <= EPOCHS; epoch++) {
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    let lossSum = 0;
    for (let start = 0; start < n; start += BATCH) {
      const rows = order.slice(start, start + BATCH);
      const x = new Float32Array(rows.length * 2);
      const labels = new Float32Array(rows.length);
      rows.forEach((r, k) => {
        x.set(data.x.subarray(2 * r, 2 * r + 2), 2 * k);
        labels[k] = data.labels[r];
      });
      const { loss, dLogits } = logisticLoss(model.forward(x, rows.length), labels);
      model.backward(dLogits, rows.length);
      model.step(LEARNING_RATE);
      lossSum += loss * rows.length;
    }
    if (epoch === 1 || epoch % 5 === 0)
      console.log(`epoch ${String(epoch).padStart(2)}  train loss ${(lossSum / n).toFixed(4)}`);
  }
}

function main(): void {
  const args = process.argv.slice(2);
  console.log(`backend: ${backend.name}`);
  const test = twoMoons(1000);
  const model = new Mlp();

  if (args[0] === '--from') {
    let state: unknown;
    try {
      state = JSON.parse(readFileSync(args[1] ?? '', 'utf8'));
    } catch (e) {
      console.error(
        `train-mlp --from: cannot read a JSON state from ${JSON.stringify(args[1] ?? '')}: ${(e as Error).message}`,
      );
      process.exitCode = 2;
      return;
    }
    model.loadStateDict(state as Parameters<Mlp['loadStateDict']>[0]);
    model.bn.eval();
    const r = evaluate(model, test);
    console.log(`loaded ${args[1]}: test loss ${r.loss.toFixed(4)}, accuracy ${(100 * r.accuracy).toFixed(1)}%`);
    console.log(
      `probe predictions: ${probe(model)
        .map((p) => p.toFixed(6))
        .join(' ')}`,
    );
    return;
  }

  const data = twoMoons(512);
  model.bn.eval();
  console.log(`untrained: test loss ${evaluate(model, test).loss.toFixed(4)}`);
  train(model, data);

  // Eval mode: the running statistics replace the batch's, so predictions depend on one row only.
  model.bn.eval();
  const result = evaluate(model, test);
  console.log(`eval mode: test loss ${result.loss.toFixed(4)}, accuracy ${(100 * result.accuracy).toFixed(1)}%`);
  console.log(
    `running stats after ${model.bn.numBatchesTracked} batches; mean[0..3] ${Array.from(model.bn.runningMean!.subarray(0, 3), (v) => v.toFixed(3)).join(' ')}`,
  );

  const path = args[0] ?? join(tmpdir(), 'batchnorm-mlp-state.json');
  writeFileSync(path, JSON.stringify(model.stateDict()));
  const restored = new Mlp();
  restored.loadStateDict(JSON.parse(readFileSync(path, 'utf8')));
  restored.bn.eval();
  const same = evaluate(restored, test);
  console.log(
    `saved ${path}; reloaded model: test loss ${same.loss.toFixed(4)} (identical: ${same.loss === result.loss})`,
  );

  // Inference without the BatchNorm: fold it into fc1 (the ReLU stays, now a separate step).
  const folded = foldBatchNorm({ weight: model.fc1.weight, bias: model.fc1.bias }, model.bn);
  const rows = test.labels.length;
  const hidden = affine(test.x, rows, folded.weight, folded.bias, 2, HIDDEN).map((v) => Math.max(0, v));
  const foldedLogits = model.fc2.forward(hidden, rows);
  const reference = model.forward(test.x, rows);
  let worst = 0;
  for (let i = 0; i < rows; i++) worst = Math.max(worst, Math.abs(foldedLogits[i] - reference[i]));
  console.log(`folded BatchNorm into fc1: largest logit difference ${worst.toExponential(2)}`);
  console.log(
    `probe predictions: ${probe(model)
      .map((p) => p.toFixed(6))
      .join(' ')}`,
  );
}

main();
