// A BatchNorm whose channel count comes from its first input, as PyTorch's LazyBatchNorm*d:
// the options are checked now, the parameters created at the first forward (or at a
// loadStateDict, from the lengths of its arrays). From then on it is that BatchNorm.
import {
  BatchNorm,
  type BatchNormOptions,
  type BatchNormState,
  type BatchNormStateInput,
  type ForwardOptions,
  type LayerBackwardOptions,
} from './layer';
import type { Activation, Backend, Dtype, DtypeArray, FloatArray, TensorArray } from './types';
import { describe, validateStats } from './validate';

/** The state entries whose length is the channel count, under both naming schemes. */
const CHANNEL_ENTRIES = ['gamma', 'weight', 'beta', 'bias', 'runningMean', 'running_mean', 'runningVar', 'running_var'];

/** A BatchNorm whose channel count comes from its first input (or a state dict), as
 *  PyTorch's LazyBatchNorm*d: options are checked at once, the parameters made then; from
 *  there every call goes to that BatchNorm (`layer`). */
export class LazyBatchNorm {
  readonly #options: BatchNormOptions;
  /** The settings every BatchNorm made from these options has (checked by making one). */
  readonly #settings: BatchNorm;
  #layer: BatchNorm | null = null;
  #training = true;

  constructor(options: BatchNormOptions = {}) {
    // A one-channel layer checks the options with BatchNorm's own messages, and holds the
    // resolved settings (axis, eps, dtype, backend, ...) until the real one exists.
    this.#settings = new BatchNorm(1, options);
    this.#options = { ...options };
  }

  /** The BatchNorm this became, or null before its first input. */
  get layer(): BatchNorm | null {
    return this.#layer;
  }

  /** null until the first input (or loadStateDict) fixes it. */
  get numFeatures(): number | null {
    return this.#layer?.numFeatures ?? null;
  }

  get axis(): number {
    return this.#settings.axis;
  }
  get eps(): number {
    return this.#settings.eps;
  }
  get momentum(): number | null {
    return this.#settings.momentum;
  }
  get runningVarCorrection(): 0 | 1 {
    return this.#settings.runningVarCorrection;
  }
  get affine(): boolean {
    return this.#settings.affine;
  }
  get trackRunningStats(): boolean {
    return this.#settings.trackRunningStats;
  }
  get dtype(): Dtype {
    return this.#settings.dtype;
  }
  get backend(): Backend {
    return this.#settings.backend;
  }
  get activation(): Activation {
    return this.#settings.activation;
  }

  /** The layer's arrays once it exists; null before (and where the options leave them out). */
  get gamma(): FloatArray | null {
    return this.#layer?.gamma ?? null;
  }
  get beta(): FloatArray | null {
    return this.#layer?.beta ?? null;
  }
  get runningMean(): FloatArray | null {
    return this.#layer?.runningMean ?? null;
  }
  get runningVar(): FloatArray | null {
    return this.#layer?.runningVar ?? null;
  }
  get gammaGrad(): FloatArray | null {
    return this.#layer?.gammaGrad ?? null;
  }
  get betaGrad(): FloatArray | null {
    return this.#layer?.betaGrad ?? null;
  }
  get residualGrad(): TensorArray | null {
    return this.#layer?.residualGrad ?? null;
  }
  get numBatchesTracked(): number {
    return this.#layer?.numBatchesTracked ?? 0;
  }
  get training(): boolean {
    return this.#layer?.training ?? this.#training;
  }

  /** Training mode (true) or eval mode (false), kept for the layer made later; returns this. */
  train(mode = true): this {
    if (typeof mode !== 'boolean') {
      throw new TypeError(`LazyBatchNorm.train: mode must be a boolean, got ${describe(mode)}`);
    }
    this.#training = mode;
    this.#layer?.train(mode);
    return this;
  }

  /** Eval mode. */
  eval(): this {
    return this.train(false);
  }

  /** BatchNorm.forward; the first call makes the layer with C = shape[axis]. */
  forward<A extends TensorArray>(x: A, shape: readonly number[], options?: ForwardOptions): DtypeArray<A> {
    return this.#materialize(x, shape).forward(x, shape, options);
  }

  /** BatchNorm.forwardAsync; the first call makes the layer with C = shape[axis]. */
  forwardAsync<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    options?: ForwardOptions,
  ): Promise<DtypeArray<A>> {
    try {
      return this.#materialize(x, shape).forwardAsync(x, shape, options);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** BatchNorm.backward of the layer made by the first forward. */
  backward<A extends TensorArray>(dy: A, options?: LayerBackwardOptions): DtypeArray<A> {
    return this.#existing('backward').backward(dy, options);
  }

  /** BatchNorm.backwardAsync of the layer made by the first forward. */
  backwardAsync<A extends TensorArray>(dy: A, options?: LayerBackwardOptions): Promise<DtypeArray<A>> {
    try {
      return this.#existing('backwardAsync').backwardAsync(dy, options);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** BatchNorm.zeroGrad (nothing to do before the first input). */
  zeroGrad(): void {
    this.#layer?.zeroGrad();
  }

  /** The layer's state; before the first input there is none but the count. */
  stateDict(): BatchNormState {
    return this.#layer ? this.#layer.stateDict() : { numBatchesTracked: 0 };
  }

  /** Before the first input, the arrays' length fixes the channel count (as PyTorch's lazy
   *  modules take their shapes from a checkpoint); a state that fails leaves it unfixed. */
  loadStateDict(state: BatchNormStateInput): void {
    if (this.#layer) {
      this.#layer.loadStateDict(state);
      return;
    }
    const layer = this.#create(channelsOf(state));
    layer.loadStateDict(state);
    this.#layer = layer;
  }

  #materialize(x: TensorArray, shape: readonly number[]): BatchNorm {
    if (this.#layer) return this.#layer;
    // The same checks, and so the same errors, as the layer's own forward.
    const { layout } = validateStats(x, shape, { axis: this.axis });
    this.#layer = this.#create(layout.channels);
    return this.#layer;
  }

  #create(channels: number): BatchNorm {
    return new BatchNorm(channels, this.#options).train(this.#training);
  }

  #existing(method: string): BatchNorm {
    if (this.#layer) return this.#layer;
    throw new Error(`LazyBatchNorm.${method}: there is no forward pass to differentiate; call forward(x, shape) first`);
  }
}

/** The channel count a state's arrays give (the layer then checks they all agree). */
function channelsOf(state: unknown): number {
  if (typeof state === 'object' && state !== null && !Array.isArray(state)) {
    const s = state as Record<string, unknown>;
    for (const key of CHANNEL_ENTRIES) {
      const length = (s[key] as { length?: unknown } | undefined)?.length;
      if (typeof length === 'number' && Number.isSafeInteger(length) && length >= 1) return length;
    }
  }
  throw new TypeError(
    'LazyBatchNorm.loadStateDict: the state has no array to take the channel count from (gamma, beta, runningMean or runningVar, or their PyTorch names)',
  );
}
