// SyncBatchNorm: the BatchNorm layer for data-parallel training, where every worker holds a
// shard of the batch and normalization must use the whole batch's statistics (PyTorch's
// nn.SyncBatchNorm). It is a BatchNorm layer running on a synchronized backend, so train/eval,
// running statistics, affine, activation, gradients and state behave exactly as BatchNorm's.
import {
  BatchNorm,
  type BatchNormOptions,
  type BatchNormState,
  type BatchNormStateInput,
  type ForwardOptions,
  type LayerBackwardOptions,
} from '../layer';
import { backend as selectedBackend } from '../select';
import type { Activation, Backend, Dtype, DtypeArray, FloatArray, TensorArray } from '../types';
import { describe } from '../validate';
import { type AllReduce, checkTimeoutMs } from './all-reduce';
import { StatsShift } from './stats-shift';
import { synchronizedBackend } from './sync-backend';
import { timedAllReduce } from './timed-all-reduce';

/** BatchNorm's options plus the all-reduce that joins the workers. */
export interface SyncBatchNormOptions extends BatchNormOptions {
  /** Elementwise SUM of `buffer` over every worker, resolving to the same values on each (an
   *  MPI/NCCL all-reduce, sharedAllReduce for worker_threads, ...). Called once per training
   *  forward (twice when the batch mean is far from the last one: every worker decides alike)
   *  and once per backward, by every worker in the same order. */
  allReduce: AllReduce;
  /** Longest one allReduce call may take, in ms (default Infinity: no limit). Past it the
   *  forward or backward rejects with an Error and leaves the layer as before the call
   *  (running statistics, numBatchesTracked, gradients untouched); the workers are then out of
   *  step. Without it, an allReduce that never settles leaves the step pending for good, and
   *  Node exits (code 0) once nothing else keeps it alive. */
  timeoutMs?: number;
}

/** Synchronized batch norm (PyTorch's SyncBatchNorm): each worker holds a shard of the batch,
 *  and training statistics and gradients are those of the whole batch, through the given
 *  all-reduce. forward and backward are async; every worker calls them in the same order. */
export class SyncBatchNorm {
  readonly numFeatures: number;
  readonly axis: number;
  readonly eps: number;
  readonly momentum: number | null;
  readonly runningVarCorrection: 0 | 1;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly dtype: Dtype;
  /** The kernels (native or js); the all-reduce wraps them. */
  readonly backend: Backend;
  readonly activation: Activation;
  readonly allReduce: AllReduce;
  /** The limit on one allReduce call, in ms (Infinity: none). */
  readonly timeoutMs: number;

  /** The layer's arrays: the same objects for the layer's life, updated in place. */
  readonly gamma: FloatArray | null;
  readonly beta: FloatArray | null;
  /** Identical on every worker: each update uses the all-reduced statistics of the whole batch. */
  readonly runningMean: FloatArray | null;
  readonly runningVar: FloatArray | null;
  /** The gradients of the whole batch (identical on every worker), summed over backward calls. */
  readonly gammaGrad: FloatArray | null;
  readonly betaGrad: FloatArray | null;

  readonly #layer: BatchNorm;
  readonly #shift = new StatsShift();

  constructor(numFeatures: number, options: SyncBatchNormOptions) {
    if (typeof options !== 'object' || options === null || Array.isArray(options)) {
      throw new TypeError(`SyncBatchNorm: options must be an object with allReduce, got ${describe(options)}`);
    }
    const { allReduce, timeoutMs, ...layerOptions } = options;
    if (typeof allReduce !== 'function') {
      throw new TypeError(
        `SyncBatchNorm: allReduce must be a function (buffer: Float64Array) => Promise<Float64Array>, got ${describe(allReduce)}`,
      );
    }
    if (layerOptions.virtualBatchSize !== undefined && layerOptions.virtualBatchSize !== null) {
      throw new TypeError(
        'SyncBatchNorm: virtualBatchSize is not supported (ghost batches are per worker: use BatchNorm)',
      );
    }
    if (layerOptions.renorm !== undefined && layerOptions.renorm !== null) {
      throw new TypeError('SyncBatchNorm: renorm is not supported yet (its r and d need the all-reduced statistics)');
    }
    const limit = checkTimeoutMs('SyncBatchNorm', timeoutMs);
    const kernels = layerOptions.backend ?? selectedBackend;
    const layer = new BatchNorm(numFeatures, {
      ...layerOptions,
      backend: synchronizedBackend(kernels, timedAllReduce(allReduce, limit), this.#shift),
    });
    this.#layer = layer;
    this.allReduce = allReduce;
    this.timeoutMs = limit;
    this.backend = kernels;
    this.numFeatures = layer.numFeatures;
    this.axis = layer.axis;
    this.eps = layer.eps;
    this.momentum = layer.momentum;
    this.runningVarCorrection = layer.runningVarCorrection;
    this.affine = layer.affine;
    this.trackRunningStats = layer.trackRunningStats;
    this.dtype = layer.dtype;
    this.activation = layer.activation;
    this.gamma = layer.gamma;
    this.beta = layer.beta;
    this.runningMean = layer.runningMean;
    this.runningVar = layer.runningVar;
    this.gammaGrad = layer.gammaGrad;
    this.betaGrad = layer.betaGrad;
  }

  get training(): boolean {
    return this.#layer.training;
  }

  get numBatchesTracked(): number {
    return this.#layer.numBatchesTracked;
  }

  /** Training mode (true) or eval mode (false); returns the layer. */
  train(mode = true): this {
    this.#layer.train(mode);
    return this;
  }

  /** Eval mode: local, with the running statistics. */
  eval(): this {
    return this.train(false);
  }

  /** Normalizes this worker's shard x with the statistics of every worker's shard (training,
   *  or without running statistics: one all-reduce); eval with running statistics is local.
   *  Every worker must call it, in the same mode. */
  forward<A extends TensorArray>(x: A, shape: readonly number[], options?: ForwardOptions): Promise<DtypeArray<A>> {
    return this.#layer.forwardAsync(x, shape, options);
  }

  /** dx of this worker's shard for the last forward; adds the whole batch's dGamma/dBeta to
   *  gammaGrad/betaGrad. One all-reduce; every worker must call it. */
  backward<A extends TensorArray>(dy: A, options?: LayerBackwardOptions): Promise<DtypeArray<A>> {
    return this.#layer.backwardAsync(dy, options);
  }

  /** The same as forward, under BatchNorm's name for the Promise form. */
  forwardAsync<A extends TensorArray>(
    x: A,
    shape: readonly number[],
    options?: ForwardOptions,
  ): Promise<DtypeArray<A>> {
    return this.forward(x, shape, options);
  }

  /** The same as backward, under BatchNorm's name for the Promise form. */
  backwardAsync<A extends TensorArray>(dy: A, options?: LayerBackwardOptions): Promise<DtypeArray<A>> {
    return this.backward(dy, options);
  }

  /** Sets gammaGrad and betaGrad to zero. */
  zeroGrad(): void {
    this.#layer.zeroGrad();
  }

  /** Copies of the parameters and statistics (the same on every worker). */
  stateDict(): BatchNormState {
    return this.#layer.stateDict();
  }

  /** As BatchNorm's; load the same state on every worker so running statistics stay identical. */
  loadStateDict(state: BatchNormStateInput): void {
    this.#layer.loadStateDict(state);
    // The forward moments' shift must agree across workers: derive it from the loaded state.
    this.#shift.reset();
  }
}
