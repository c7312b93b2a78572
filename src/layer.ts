// The BatchNorm layer: parameters, running statistics and gradients around the functional
// API, with PyTorch's nn.BatchNorm semantics (train/eval, momentum or cumulative average,
// affine, trackRunningStats) and its state_dict names.

import { checkRenorm, type RenormOptions, renormBackend } from './renorm-backend';
import { backend as selectedBackend } from './select';
import { floatDtype, plainView, type TensorKind, tensorKind } from './typed-arrays';
import type {
  Activation,
  Backend,
  BackwardOptions,
  Dtype,
  DtypeArray,
  FloatArray,
  SavedStats,
  TensorArray,
} from './types';
import {
  checkActivation,
  checkAxis,
  checkEps,
  checkFlag,
  checkKeys,
  checkMomentum,
  checkVarCorrection,
  checkVirtualBatchSize,
  describe,
  fromFunction,
  overlaps,
  validateStats,
} from './validate';

/** The layer's settings (defaults as PyTorch's): checked when the layer is made. */
export interface BatchNormOptions {
  /** The channel axis of the inputs; negative counts from the end. Default 1. */
  axis?: number;
  /** Added to the variance before the square root. Finite, > 0. Default 1e-5. */
  eps?: number;
  /** Weight of each batch in the running statistics, in [0, 1]. null = cumulative moving
   *  average (factor 1 / numBatchesTracked), as PyTorch's momentum=None. Default 0.1. */
  momentum?: number | null;
  /** Bessel's correction of the batch variance entering runningVar: 1 (default, PyTorch's
   *  unbiased) or 0 (biased, as Keras, TensorFlow and ONNX keep it). Not in the state dict. */
  runningVarCorrection?: 0 | 1;
  /** Ghost batch normalization (Keras `virtual_batch_size`): in training, each group of this
   *  many consecutive samples along axis 0 is normalized with its own statistics; the batch
   *  must be a multiple of it. Default null (the whole batch). */
  virtualBatchSize?: number | null;
  /** Batch Renormalization (Ioffe 2017; Keras `renorm`): training steps correct the batch
   *  statistics towards the running ones by r and d, clipped to rMax / dMax (see
   *  renorm-backend.ts). Needs trackRunningStats. Default null (plain batch norm). */
  renorm?: RenormOptions | null;
  /** Learnable gamma (ones) and beta (zeros). Default true. */
  affine?: boolean;
  /** Keep runningMean (zeros) / runningVar (ones) and use them in eval mode. Default true. */
  trackRunningStats?: boolean;
  /** The dtype of every input and output. 'float32' (default) and 'float64' are also the
   *  parameters' and statistics'; 'bfloat16' and 'float16' tensors are Uint16Arrays of bits
   *  (float16: or Float16Arrays) with float32 parameters, statistics and state dicts. */
  dtype?: Dtype;
  /** Which implementation runs the kernels. Default: the selected backend. */
  backend?: Backend;
  /** 'relu': the layer computes max(0, BN(x)) in one pass (conv -> BN -> ReLU). Default 'none'. */
  activation?: Activation;
}

/** A layer's state under its own names; every array is a copy. */
export interface BatchNormState {
  gamma?: FloatArray;
  beta?: FloatArray;
  runningMean?: FloatArray;
  runningVar?: FloatArray;
  numBatchesTracked: number;
}

/** What loadStateDict reads: our names or PyTorch's (state_dict of nn.BatchNorm*d); arrays
 *  of the layer's dtype or plain arrays of numbers (e.g. parsed JSON). */
export interface BatchNormStateInput {
  gamma?: FloatArray | readonly number[];
  beta?: FloatArray | readonly number[];
  runningMean?: FloatArray | readonly number[];
  runningVar?: FloatArray | readonly number[];
  numBatchesTracked?: number;
  weight?: FloatArray | readonly number[];
  bias?: FloatArray | readonly number[];
  running_mean?: FloatArray | readonly number[];
  running_var?: FloatArray | readonly number[];
  num_batches_tracked?: number;
}

type ArrayName = 'gamma' | 'beta' | 'runningMean' | 'runningVar';

/** Each state entry under our name and PyTorch's. */
const STATE_NAMES: ReadonlyArray<[ArrayName | 'numBatchesTracked', string]> = [
  ['gamma', 'weight'],
  ['beta', 'bias'],
  ['runningMean', 'running_mean'],
  ['runningVar', 'running_var'],
  ['numBatchesTracked', 'num_batches_tracked'],
];

/** The arrays a layer of each dtype takes as x (see tensorKind), and the name its error gives. */
const INPUT_KINDS: Readonly<Record<Dtype, readonly TensorKind[]>> = {
  float32: ['float32'],
  float64: ['float64'],
  bfloat16: ['uint16'],
  float16: ['uint16', 'float16array'],
};
const INPUT_NAMES: Readonly<Record<Dtype, string>> = {
  float32: 'Float32Array',
  float64: 'Float64Array',
  bfloat16: 'Uint16Array',
  float16: 'Uint16Array',
};

const OPTION_NAMES = new Set([
  'axis',
  'eps',
  'momentum',
  'runningVarCorrection',
  'virtualBatchSize',
  'renorm',
  'affine',
  'trackRunningStats',
  'dtype',
  'backend',
  'activation',
]);

/** What backward needs from the forward it differentiates. */
interface ForwardCache {
  /** The caller's input itself (no copy, as PyTorch saves a reference), with its length and
   *  fingerprint at forward time: backward refuses an input changed since. */
  x: TensorArray;
  xLength: number;
  xFingerprint: number;
  shape: number[];
  saved: SavedStats;
  /** true: normalized with batch statistics (training-form backward); false: frozen. */
  batchStats: boolean;
  /** gamma as the forward used it, so an update between forward and backward cannot skew dx. */
  gamma: FloatArray | null;
  /** The output returned to the caller, with a fused ReLU (the mask of where dy flows), and
   *  its fingerprint: a caller may change it in place, which backward must notice. */
  y: TensorArray | null;
  yFingerprint: number;
  /** The forward added a residual: backward also gives what flows to it. */
  residual: boolean;
}

/** One forward, prepared: which statistics it uses and what it will save. */
interface ForwardPlan {
  x: TensorArray;
  shape: number[];
  batchStats: boolean;
  updatesRunning: boolean;
  /** Frozen statistics for backward (eval with running statistics), taken before the call. */
  frozen: SavedStats | null;
  residual: TensorArray | null;
  out: TensorArray | null;
}

/** What a forward call takes besides x and its shape. */
export interface ForwardOptions {
  /** Added before the activation in the same pass: activation(BN(x) + residual), the tail of
   *  a ResNet block. x's dtype and length. backward then sets residualGrad. */
  residual?: TensorArray | null;
  /** Where y goes (x's dtype and length, not x's memory) instead of a new array: a loop that
   *  reuses one runs at the kernel's speed, with no output memory to reclaim. The caller owns
   *  it; with a fused ReLU it is the mask backward reads, so it must not change before then. */
  out?: TensorArray | null;
}

/** What a backward call takes besides dy. */
export interface LayerBackwardOptions {
  /** Where dx goes (x's dtype and length) instead of a new array; dy itself is allowed
   *  (dx then overwrites dy, after residualGrad is written). */
  out?: TensorArray | null;
}

/** Batch normalization as a layer, as PyTorch's BatchNorm1d/2d/3d: learnable gamma and beta,
 *  running statistics for inference, forward/backward (and their Async forms) on one
 *  backend, gradients accumulated until zeroGrad(), PyTorch state dicts. */
export class BatchNorm {
  readonly numFeatures: number;
  readonly axis: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly runningVarCorrection: 0 | 1;
  readonly virtualBatchSize: number | null;
  readonly renorm: RenormOptions | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly dtype: Dtype;
  readonly backend: Backend;
  /** What the layer calls: the backend, or with renorm its renormalizing form. */
  readonly #kernels: Backend;
  readonly activation: Activation;

  /** Learnable scale (length numFeatures); null without affine. Updated in place by training code. */
  readonly gamma: FloatArray | null;
  /** Learnable shift; null without affine. */
  readonly beta: FloatArray | null;
  /** Running statistics, updated in place by training forwards; null without trackRunningStats. */
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
  /** Sum of dGamma / dBeta over backward() calls since the last zeroGrad(); null without affine. */
  readonly gammaGrad: FloatArray | null;
  readonly betaGrad: FloatArray | null;

  #training = true;
  #numBatchesTracked = 0;
  #cache: ForwardCache | null = null;
  #residualGrad: TensorArray | null = null;
  /** The async call in flight: its arrays must not be touched until it settles. */
  #busy: string | null = null;

  constructor(numFeatures: number, options: BatchNormOptions = {}) {
    if (typeof numFeatures !== 'number' || !Number.isSafeInteger(numFeatures)) {
      throw new TypeError(`BatchNorm: numFeatures must be an integer, got ${describe(numFeatures)}`);
    }
    if (numFeatures < 1) throw new RangeError(`BatchNorm: numFeatures must be >= 1, got ${numFeatures}`);
    const o = checkLayerOptions(options);
    this.numFeatures = numFeatures;
    this.axis = o.axis;
    this.eps = o.eps;
    this.momentum = o.momentum;
    this.runningVarCorrection = o.runningVarCorrection;
    this.virtualBatchSize = o.virtualBatchSize;
    this.renorm = o.renorm;
    this.#kernels = kernelsFor(o);
    this.affine = o.affine;
    this.trackRunningStats = o.trackRunningStats;
    this.dtype = o.dtype;
    this.backend = o.backend;
    this.activation = o.activation;
    const filled = (value: number) => this.#newArray(numFeatures).fill(value);
    this.gamma = o.affine ? filled(1) : null;
    this.beta = o.affine ? filled(0) : null;
    this.gammaGrad = o.affine ? filled(0) : null;
    this.betaGrad = o.affine ? filled(0) : null;
    this.runningMean = o.trackRunningStats ? filled(0) : null;
    this.runningVar = o.trackRunningStats ? filled(1) : null;
  }

  /** true in training mode (the start), false after eval(). */
  get training(): boolean {
    return this.#training;
  }

  /** What the last backward() sent to the residual of its forward (null when that forward
   *  had none): dy, or with a fused ReLU dy where the output was > 0. */
  get residualGrad(): TensorArray | null {
    return this.#residualGrad;
  }

  /** Training forwards that updated the running statistics (PyTorch's num_batches_tracked). */
  get numBatchesTracked(): number {
    return this.#numBatchesTracked;
  }

  /** Training mode (true, the start) or eval mode (false); returns the layer. */
  train(mode = true): this {
    if (typeof mode !== 'boolean')
      throw new TypeError(`BatchNorm.train: mode must be a boolean, got ${describe(mode)}`);
    this.#training = mode;
    return this;
  }

  /** Eval mode: forward normalizes with the running statistics (when tracked). */
  eval(): this {
    return this.train(false);
  }

  /** Normalizes x (its dtype is the layer's; shape[axis] = numFeatures) and remembers what
   *  backward needs. Training: batch statistics, and the running update when tracked. */
  forward<A extends TensorArray>(input: A, shape: readonly number[], options?: ForwardOptions): DtypeArray<A> {
    this.#checkIdle('forward');
    // One type for every dtype inside; the result has x's (the backend's checks make it so).
    const x: TensorArray = input;
    const plan = this.#planForward(x, shape, options);
    if (!plan.batchStats) {
      const y = this.#kernels.batchNormEval(x, plan.shape, this.#evalOptions(plan));
      return this.#finishForward(
        plan,
        y,
        plan.frozen as SavedStats,
        this.#fingerprints(x, y, undefined),
      ) as DtypeArray<A>;
    }
    const r = this.#kernels.batchNormTrain(x, plan.shape, this.#trainOptions(plan));
    return this.#finishForward(plan, r.y, r, this.#fingerprints(x, r.y, r.fingerprint)) as DtypeArray<A>;
  }

  /** forward off the JS thread (native backend). Do not modify x, or use the layer, until it settles. */
  async forwardAsync<A extends TensorArray>(
    input: A,
    shape: readonly number[],
    options?: ForwardOptions,
  ): Promise<DtypeArray<A>> {
    this.#checkIdle('forwardAsync');
    const x: TensorArray = input;
    const plan = this.#planForward(x, shape, options);
    this.#busy = 'forwardAsync';
    try {
      if (!plan.batchStats) {
        const y = await this.#kernels.batchNormEvalAsync(x, plan.shape, this.#evalOptions(plan));
        const prints = await this.#fingerprintsAsync(x, y, undefined);
        return this.#finishForward(plan, y, plan.frozen as SavedStats, prints) as DtypeArray<A>;
      }
      const r = await this.#kernels.batchNormTrainAsync(x, plan.shape, this.#trainOptions(plan));
      const prints = await this.#fingerprintsAsync(x, r.y, r.fingerprint);
      return this.#finishForward(plan, r.y, r, prints) as DtypeArray<A>;
    } finally {
      this.#busy = null;
    }
  }

  /** dx for the last forward; adds dGamma/dBeta to gammaGrad/betaGrad. May be called again
   *  for the same forward (each call accumulates again). */
  backward<A extends TensorArray>(grad: A, options?: LayerBackwardOptions): DtypeArray<A> {
    this.#checkIdle('backward');
    const dy: TensorArray = grad;
    const out = checkBackwardOptions('backward', options);
    const cache = this.#lastForward('backward');
    this.#checkLength('backward', cache);
    const r = this.#kernels.batchNormBackward(dy, cache.x, cache.shape, cache.saved, this.#backwardOptions(cache, out));
    this.#checkUnchanged('backward', cache, this.#fingerprints(cache.x, cache.y, r.fingerprint));
    this.#accumulate(r.dGamma, r.dBeta);
    this.#residualGrad = r.dResidual ?? null;
    return r.dx as DtypeArray<A>;
  }

  /** backward off the JS thread (native backend). Do not modify dy, or use the layer, until it settles. */
  async backwardAsync<A extends TensorArray>(grad: A, options?: LayerBackwardOptions): Promise<DtypeArray<A>> {
    this.#checkIdle('backwardAsync');
    const dy: TensorArray = grad;
    const out = checkBackwardOptions('backwardAsync', options);
    const cache = this.#lastForward('backwardAsync');
    this.#busy = 'backwardAsync';
    try {
      this.#checkLength('backwardAsync', cache);
      const r = await this.#kernels.batchNormBackwardAsync(
        dy,
        cache.x,
        cache.shape,
        cache.saved,
        this.#backwardOptions(cache, out),
      );
      this.#checkUnchanged('backwardAsync', cache, await this.#fingerprintsAsync(cache.x, cache.y, r.fingerprint));
      this.#accumulate(r.dGamma, r.dBeta);
      this.#residualGrad = r.dResidual ?? null;
      return r.dx as DtypeArray<A>;
    } finally {
      this.#busy = null;
    }
  }

  /** Sets gammaGrad and betaGrad to zero (backward adds to them). */
  zeroGrad(): void {
    this.#checkIdle('zeroGrad');
    this.gammaGrad?.fill(0);
    this.betaGrad?.fill(0);
  }

  /** Copies of the parameters and statistics this layer has (see loadStateDict for PyTorch names). */
  stateDict(): BatchNormState {
    this.#checkIdle('stateDict');
    const state: BatchNormState = { numBatchesTracked: this.#numBatchesTracked };
    for (const name of ['gamma', 'beta', 'runningMean', 'runningVar'] as const) {
      const a = this[name];
      if (a) state[name] = a.slice();
    }
    return state;
  }

  /** Copies a state into this layer's arrays (they stay the same objects). Accepts our names
   *  and PyTorch's; every array this layer has must be given, nothing else may be.
   *  numBatchesTracked may be left out (0, as PyTorch reads old checkpoints). Throws and
   *  changes nothing when anything is wrong. */
  loadStateDict(state: BatchNormStateInput): void {
    this.#checkIdle('loadStateDict');
    const { arrays, numBatchesTracked } = this.#checkState(state);
    for (const [name, values] of arrays) (this[name] as FloatArray).set(values);
    this.#numBatchesTracked = numBatchesTracked;
  }

  /** A parameter or statistics array: float64 for a float64 layer, else float32. */
  #newArray(length: number): FloatArray {
    return this.dtype === 'float64' ? new Float64Array(length) : new Float32Array(length);
  }

  /** The dtype of the layer's parameters and statistics. */
  get #paramDtype(): 'float32' | 'float64' {
    return this.dtype === 'float64' ? 'float64' : 'float32';
  }

  #checkIdle(method: string): void {
    if (this.#busy) {
      throw new Error(`BatchNorm.${method}: ${this.#busy} is still running on this layer; await it first`);
    }
  }

  /** Fingerprints of the input (the kernel's, taken in its sweep, when it gave one) and, with
   *  a fused ReLU, of the output (0 without one). */
  #fingerprints(x: TensorArray, y: TensorArray | null, fromKernel: number | undefined): [number, number] {
    const withMask = this.activation === 'relu' && y !== null;
    return [fromKernel ?? this.#kernels.fingerprint(x), withMask ? this.#kernels.fingerprint(y) : 0];
  }

  async #fingerprintsAsync(
    x: TensorArray,
    y: TensorArray | null,
    fromKernel: number | undefined,
  ): Promise<[number, number]> {
    const withMask = this.activation === 'relu' && y !== null;
    return [
      fromKernel ?? (await this.#kernels.fingerprintAsync(x)),
      withMask ? await this.#kernels.fingerprintAsync(y) : 0,
    ];
  }

  static readonly #HINT = 'backward needs it as forward saw it: pass forward a copy if the array is reused';

  /** An input shrunk or detached since forward fails before any kernel runs on it. */
  #checkLength(method: string, cache: ForwardCache): void {
    if (cache.x.length !== cache.xLength) {
      throw new Error(`BatchNorm.${method}: x was modified after forward; ${BatchNorm.#HINT}`);
    }
  }

  /** Backward differentiates the forward's input (and ReLU output) as they were: a caller
   *  that changed either since would get wrong gradients silently, so it gets an error, and
   *  the results computed from the changed arrays are dropped before anything accumulates. */
  #checkUnchanged(method: string, cache: ForwardCache, [x, y]: [number, number]): void {
    if (x !== cache.xFingerprint) {
      throw new Error(`BatchNorm.${method}: x was modified after forward; ${BatchNorm.#HINT}`);
    }
    if (cache.y && y !== cache.yFingerprint) {
      throw new Error(
        `BatchNorm.${method}: the output of forward was modified (it is the ReLU mask); ${BatchNorm.#HINT}`,
      );
    }
  }

  #lastForward(method: string): ForwardCache {
    if (!this.#cache) {
      throw new Error(`BatchNorm.${method}: there is no forward pass to differentiate; call forward(x, shape) first`);
    }
    return this.#cache;
  }

  /** The checks only the layer can make (dtype, channel count); the backend checks the rest. */
  #planForward(x: TensorArray, shape: readonly number[], options: unknown): ForwardPlan {
    const { residual, out } = checkForwardOptions(options);
    const kind = tensorKind(x);
    if (kind === null || !INPUT_KINDS[this.dtype].includes(kind)) {
      throw new TypeError(
        `x must be a ${INPUT_NAMES[this.dtype]} (the layer's dtype '${this.dtype}'), got ${describe(x)}`,
      );
    }
    const { shape: dims, layout } = validateStats(x, shape, { axis: this.axis, dtype: this.dtype });
    if (layout.channels !== this.numFeatures) {
      throw new RangeError(
        `x has ${layout.channels} channels (shape [${dims.join(', ')}], axis ${this.axis}) but the layer has numFeatures ${this.numFeatures}`,
      );
    }
    // The kernels accept out exactly over x (in place), but backward needs x as it was.
    if (out !== null && tensorKind(out) !== null && overlaps(out, x)) {
      throw new RangeError(`BatchNorm.forward: out must not share memory with x; backward needs x as forward saw it`);
    }
    // PyTorch: batch statistics in training mode, and always when no running statistics exist.
    const batchStats = this.#training || !this.trackRunningStats;
    return {
      x,
      shape: dims,
      batchStats,
      updatesRunning: this.#training && this.trackRunningStats,
      frozen: batchStats ? null : this.#frozenStats(),
      residual,
      out,
    };
  }

  #frozenStats(): SavedStats {
    const mean = (this.runningMean as FloatArray).slice();
    const invStd = this.#newArray(this.numFeatures);
    const runningVar = this.runningVar as FloatArray;
    for (let c = 0; c < invStd.length; c++) invStd[c] = 1 / Math.sqrt(runningVar[c] + this.eps);
    return { mean, invStd };
  }

  /** What every forward passes: the layer's settings and this call's residual and out. */
  #normOptions(plan: ForwardPlan) {
    return {
      axis: this.axis,
      dtype: this.dtype,
      eps: this.eps,
      gamma: this.gamma,
      beta: this.beta,
      activation: this.activation,
      residual: plan.residual,
      ...(plan.out === null ? {} : { out: plan.out }),
    };
  }

  #trainOptions(plan: ForwardPlan) {
    // x's fingerprint from the statistics sweep: backward checks x against it.
    const base = {
      ...this.#normOptions(plan),
      fingerprint: true,
      ...(this.virtualBatchSize === null ? {} : { virtualBatchSize: this.virtualBatchSize }),
    };
    if (!plan.updatesRunning) return base;
    // PyTorch counts the batch first, so the cumulative factor of the n-th batch is 1/n.
    const momentum = this.momentum ?? 1 / (this.#numBatchesTracked + 1);
    return {
      ...base,
      runningMean: this.runningMean as FloatArray,
      runningVar: this.runningVar as FloatArray,
      momentum,
      runningVarCorrection: this.runningVarCorrection,
    };
  }

  #evalOptions(plan: ForwardPlan) {
    return {
      ...this.#normOptions(plan),
      runningMean: this.runningMean as FloatArray,
      runningVar: this.runningVar as FloatArray,
    };
  }

  /** After a successful call: count the batch and keep what backward needs. */
  #finishForward(
    plan: ForwardPlan,
    y: TensorArray,
    stats: SavedStats,
    [xPrint, yPrint]: [number, number],
  ): TensorArray {
    if (plan.updatesRunning) this.#numBatchesTracked++;
    const previous = this.#cache;
    this.#cache = {
      x: plan.x,
      xLength: plan.x.length,
      xFingerprint: xPrint,
      shape: plan.shape,
      saved: { mean: stats.mean, invStd: stats.invStd },
      batchStats: plan.batchStats,
      gamma: this.gamma ? copyInto(previous?.gamma ?? undefined, this.gamma) : null,
      y: this.activation === 'relu' ? y : null,
      yFingerprint: yPrint,
      residual: plan.residual !== null,
    };
    return y;
  }

  #backwardOptions(cache: ForwardCache, out: TensorArray | null): BackwardOptions {
    const options: BackwardOptions = {
      axis: this.axis,
      dtype: this.dtype,
      gamma: cache.gamma,
      training: cache.batchStats,
      fingerprint: true,
    };
    // Frozen statistics are one set for the whole batch; batch statistics were per group.
    if (cache.batchStats && this.virtualBatchSize !== null) options.virtualBatchSize = this.virtualBatchSize;
    if (out !== null) options.out = out;
    if (cache.y) {
      options.activation = 'relu';
      options.y = cache.y;
    }
    if (cache.residual) options.residual = true;
    return options;
  }

  #accumulate(dGamma: FloatArray, dBeta: FloatArray): void {
    if (!this.gammaGrad || !this.betaGrad) return;
    for (let c = 0; c < this.numFeatures; c++) {
      this.gammaGrad[c] += dGamma[c];
      this.betaGrad[c] += dBeta[c];
    }
  }

  /** The state read once into private copies and checked there, so a getter that answers
   *  differently on a second read, or throws late, cannot leave the layer half-loaded. */
  #checkState(state: unknown): {
    arrays: Array<[ArrayName, FloatArray]>;
    numBatchesTracked: number;
  } {
    if (typeof state !== 'object' || state === null || Array.isArray(state)) {
      throw new TypeError(`loadStateDict: state must be an object, got ${describe(state)}`);
    }
    const s = state as Record<string, unknown>;
    const known = new Set(STATE_NAMES.flat());
    const given = new Map<string, unknown>();
    for (const key of Object.keys(s)) {
      if (!known.has(key)) {
        throw new TypeError(
          `loadStateDict: unexpected key ${JSON.stringify(key)} (expected ${STATE_NAMES.map(([a, b]) => `${a}/${b}`).join(', ')})`,
        );
      }
      const value = s[key];
      if (value !== undefined) given.set(key, value);
    }
    const arrays: Array<[ArrayName, FloatArray]> = [];
    let numBatchesTracked = 0;
    for (const [ours, torchName] of STATE_NAMES) {
      if (given.has(ours) && given.has(torchName)) {
        throw new TypeError(`loadStateDict: both ${ours} and ${torchName} given; they name the same entry`);
      }
      const key = given.has(ours) ? ours : torchName;
      const value = given.get(key);
      if (ours === 'numBatchesTracked') {
        if (value !== undefined) numBatchesTracked = checkBatchCount(key, value);
        continue;
      }
      const has = this[ours] !== null;
      if (value === undefined) {
        if (has) throw new TypeError(`loadStateDict: missing ${ours} (or ${torchName}): this layer has it`);
        continue;
      }
      if (!has) {
        const why = ours === 'gamma' || ours === 'beta' ? 'affine: false' : 'trackRunningStats: false';
        throw new TypeError(`loadStateDict: unexpected key ${JSON.stringify(key)}: this layer has no ${ours} (${why})`);
      }
      arrays.push([ours, this.#copyStateArray(key, value)]);
    }
    return { arrays, numBatchesTracked };
  }

  /** A private copy of one state array: a float array of the layer's dtype (any realm), or
   *  an array of numbers without holes, each element read once. */
  #copyStateArray(key: string, value: unknown): FloatArray {
    const expected = this.#paramDtype === 'float32' ? 'Float32Array' : 'Float64Array';
    const dtype = floatDtype(value);
    let copy: FloatArray;
    if (dtype !== null) {
      if (dtype !== this.#paramDtype) {
        const whose = this.dtype === this.#paramDtype ? 'dtype' : 'parameters, for dtype';
        throw new TypeError(
          `loadStateDict: ${key} must be a ${expected} (the layer's ${whose} '${this.dtype}') or an array of numbers, got ${describe(value)}`,
        );
      }
      copy = plainView(value as FloatArray, dtype).slice();
    } else {
      if (!Array.isArray(value)) {
        throw new TypeError(
          `loadStateDict: ${key} must be a ${expected} or an array of numbers, got ${describe(value)}`,
        );
      }
      // The length is checked before anything is allocated: a sparse array can claim 2^32 - 1.
      const length = value.length;
      if (length !== this.numFeatures) {
        throw new RangeError(`loadStateDict: ${key} must have length ${this.numFeatures} (numFeatures), got ${length}`);
      }
      copy = this.#newArray(length);
      for (let i = 0; i < length; i++) {
        const v = value[i];
        if (typeof v !== 'number') {
          const what = i in value ? describe(v) : 'a hole';
          throw new TypeError(`loadStateDict: ${key}[${i}] must be a number, got ${what}`);
        }
        copy[i] = v;
      }
    }
    if (copy.length !== this.numFeatures) {
      throw new RangeError(
        `loadStateDict: ${key} must have length ${this.numFeatures} (numFeatures), got ${copy.length}`,
      );
    }
    return copy;
  }
}

/** src copied into `buffer` when it fits (no allocation per step), else into a new array. */
function copyInto(buffer: FloatArray | undefined, src: FloatArray): FloatArray {
  if (buffer && buffer.length === src.length && buffer.constructor === src.constructor) {
    buffer.set(src);
    return buffer;
  }
  return src.slice();
}

/** The keys a call's options object may have; its arrays are checked by the backend. */
function checkCallOptions(method: string, options: unknown, keys: readonly string[]): Record<string, unknown> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`BatchNorm.${method}: options must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!keys.includes(key)) {
      throw new TypeError(`BatchNorm.${method}: unknown option ${JSON.stringify(key)} (expected ${keys.join(' or ')})`);
    }
  }
  return options as Record<string, unknown>;
}

/** forward's options: `residual` and `out` (checked with x by the backend). */
function checkForwardOptions(options: unknown): { residual: TensorArray | null; out: TensorArray | null } {
  const o = checkCallOptions('forward', options, ['residual', 'out']) as ForwardOptions;
  return { residual: o.residual ?? null, out: o.out ?? null };
}

/** backward's options: `out` (checked with dy by the backend). */
function checkBackwardOptions(method: string, options: unknown): TensorArray | null {
  const o = checkCallOptions(method, options, ['out']) as LayerBackwardOptions;
  return o.out ?? null;
}

function checkBatchCount(key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
    throw new TypeError(`loadStateDict: ${key} must be an integer, got ${describe(v)}`);
  }
  if (v < 0) throw new RangeError(`loadStateDict: ${key} must be >= 0, got ${v}`);
  return v;
}

interface LayerSettings {
  axis: number;
  eps: number;
  momentum: number | null;
  runningVarCorrection: 0 | 1;
  virtualBatchSize: number | null;
  renorm: RenormOptions | null;
  affine: boolean;
  trackRunningStats: boolean;
  dtype: Dtype;
  backend: Backend;
  activation: Activation;
}

/** The layer's options, checked with the functions' own checks (validate.ts); every
 *  message starts with `BatchNorm: `. */
function checkLayerOptions(options: unknown): LayerSettings {
  try {
    return layerSettings(options);
  } catch (e) {
    throw fromFunction('BatchNorm', e);
  }
}

function layerSettings(options: unknown): LayerSettings {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  checkKeys(o, OPTION_NAMES);
  // Only undefined means "the default": null is a value (momentum: null is meaningful).
  const option = (name: string, fallback: unknown): unknown => (o[name] === undefined ? fallback : o[name]);
  const axis = checkAxis(o.axis);
  const eps = checkEps(o.eps);
  const momentum = o.momentum === null ? null : checkMomentum(o.momentum, true);
  const correction = checkVarCorrection(o.runningVarCorrection) as 0 | 1;
  const virtualBatchSize = checkVirtualBatchSize(o.virtualBatchSize);
  const renorm = checkRenorm(o.renorm);
  const flag = (name: string, fallback: boolean): boolean => checkFlag(name, option(name, fallback));
  const dtype = option('dtype', 'float32');
  if (dtype !== 'float32' && dtype !== 'float64' && dtype !== 'bfloat16' && dtype !== 'float16') {
    throw new TypeError(`dtype must be 'float32', 'float64', 'bfloat16' or 'float16', got ${describe(dtype)}`);
  }
  const backend = option('backend', selectedBackend);
  if (typeof backend !== 'object' || backend === null || typeof (backend as Backend).batchNormTrain !== 'function') {
    throw new TypeError(`backend must be a Backend (js, native or backend), got ${describe(backend)}`);
  }
  const activation: Activation = checkActivation(o.activation) ? 'relu' : 'none';
  return {
    axis,
    eps,
    momentum,
    runningVarCorrection: correction,
    virtualBatchSize,
    renorm,
    affine: flag('affine', true),
    trackRunningStats: flag('trackRunningStats', true),
    dtype,
    backend: backend as Backend,
    activation,
  };
}

/** What a layer calls: its backend, or the renormalizing form of it. */
function kernelsFor(o: LayerSettings): Backend {
  if (o.renorm !== null) {
    if (!o.trackRunningStats) {
      throw new TypeError('BatchNorm: renorm needs trackRunningStats: it corrects towards the running statistics');
    }
    if (o.virtualBatchSize !== null) throw new TypeError('BatchNorm: renorm and virtualBatchSize cannot be combined');
    return renormBackend(o.backend, o.renorm);
  }
  return o.backend;
}
