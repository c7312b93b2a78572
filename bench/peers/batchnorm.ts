// batchnorm's own two backends, as peers of `npm run bench:peers`: native gives the reference
// answer every other library is checked against.
import { type Backend, getNumThreads } from '../../index';
import type { Op, Problem } from '../workloads';
import { f32, type Outputs, type Peer, type Prepared } from './peer';

/** batchnorm's own backends, as peers: the reference answer comes from the first. */
export function batchnormPeer(backend: Backend): Peer {
  return {
    name: `batchnorm ${backend.name}`,
    threads: backend.name === 'native' ? getNumThreads() : 1,
    describe: `batchnorm ${backend.name}`,
    async prepare(p: Problem, op: Op): Promise<Prepared> {
      const { dims, axis } = p.shape;
      const { gamma, beta } = p;
      return {
        how: { 'fwd-train': 'batchNormTrain', 'fwd-eval': 'batchNormEval', backward: 'batchNormBackward' }[op],
        isAsync: false,
        call: p.call(backend, op),
        async outputs(): Promise<Outputs> {
          if (op === 'fwd-eval') {
            const y = backend.batchNormEval(p.x, dims, {
              axis,
              gamma,
              beta,
              runningMean: p.evalMean,
              runningVar: p.evalVar,
            });
            return { y: f32(y) };
          }
          const trained = backend.batchNormTrain(p.x, dims, { axis, gamma, beta });
          if (op === 'fwd-train') return { y: f32(trained.y) };
          const { dx, dGamma, dBeta } = backend.batchNormBackward(p.dy, p.x, dims, trained, { axis, gamma });
          return { dx: f32(dx), dGamma: f32(dGamma), dBeta: f32(dBeta) };
        },
        dispose() {},
      };
    },
  };
}
