// Turns a set of kernels into a Backend: validate -> allocate outputs -> kernel. Both
// backends are built here, so they differ only in the kernels they call.
import type { Backend, BackwardResult, FloatArray, TrainResult } from './types';
import {
  type BackwardPlan,
  type EvalPlan,
  type TrainPlan,
  validateBackward,
  validateEval,
  validateTrain,
} from './validate';

/** What a backend provides: kernels that write into arrays allocated for them. */
export interface Kernels {
  readonly name: Backend['name'];
  train(plan: TrainPlan, y: FloatArray, mean: FloatArray, invStd: FloatArray): void;
  trainAsync(plan: TrainPlan, y: FloatArray, mean: FloatArray, invStd: FloatArray): Promise<void>;
  evaluate(plan: EvalPlan, y: FloatArray): void;
  evaluateAsync(plan: EvalPlan, y: FloatArray): Promise<void>;
  backward(plan: BackwardPlan, dx: FloatArray, dGamma: FloatArray, dBeta: FloatArray): void;
  backwardAsync(plan: BackwardPlan, dx: FloatArray, dGamma: FloatArray, dBeta: FloatArray): Promise<void>;
}

/** A new zero-filled array of `like`'s dtype. */
export function allocLike(like: FloatArray, length: number): FloatArray {
  return like instanceof Float32Array ? new Float32Array(length) : new Float64Array(length);
}

function trainOutputs(plan: TrainPlan): TrainResult {
  const c = plan.layout.channels;
  return { y: plan.out ?? allocLike(plan.x, plan.x.length), mean: allocLike(plan.x, c), invStd: allocLike(plan.x, c) };
}

function backwardOutputs(plan: BackwardPlan): BackwardResult {
  const c = plan.layout.channels;
  return { dx: plan.out ?? allocLike(plan.x, plan.x.length), dGamma: allocLike(plan.x, c), dBeta: allocLike(plan.x, c) };
}

export function createBackend(k: Kernels): Backend {
  return Object.freeze({
    name: k.name,
    batchNormTrain(x, shape, options) {
      const plan = validateTrain(x, shape, options);
      const r = trainOutputs(plan);
      k.train(plan, r.y, r.mean, r.invStd);
      return r;
    },
    async batchNormTrainAsync(x, shape, options) {
      const plan = validateTrain(x, shape, options);
      const r = trainOutputs(plan);
      await k.trainAsync(plan, r.y, r.mean, r.invStd);
      return r;
    },
    batchNormEval(x, shape, options) {
      const plan = validateEval(x, shape, options);
      const y = plan.out ?? allocLike(plan.x, plan.x.length);
      k.evaluate(plan, y);
      return y;
    },
    async batchNormEvalAsync(x, shape, options) {
      const plan = validateEval(x, shape, options);
      const y = plan.out ?? allocLike(plan.x, plan.x.length);
      await k.evaluateAsync(plan, y);
      return y;
    },
    batchNormBackward(dy, x, shape, saved, options) {
      const plan = validateBackward(dy, x, shape, saved, options);
      const r = backwardOutputs(plan);
      k.backward(plan, r.dx, r.dGamma, r.dBeta);
      return r;
    },
    async batchNormBackwardAsync(dy, x, shape, saved, options) {
      const plan = validateBackward(dy, x, shape, saved, options);
      const r = backwardOutputs(plan);
      await k.backwardAsync(plan, r.dx, r.dGamma, r.dBeta);
      return r;
    },
  } satisfies Backend);
}
