// An allReduce that gives up after timeoutMs. A collective that never settles would leave the
// layer busy for good, and once nothing else is pending Node exits (code 0) mid-training; the
// timer keeps the process alive until the call rejects with an error that says why.
import type { AllReduce } from './all-reduce';

export function timedAllReduce(allReduce: AllReduce, timeoutMs: number): AllReduce {
  if (timeoutMs === Number.POSITIVE_INFINITY) return allReduce;
  return (buffer) => {
    const call = Promise.resolve(allReduce(buffer));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // A late rejection of the abandoned call must not surface as an unhandled rejection.
        call.catch(() => {});
        reject(
          new Error(
            `SyncBatchNorm: allReduce did not settle within ${timeoutMs} ms (a worker failed, exited or ` +
              'is not calling, or the transport hangs). This step changed nothing on this layer, but the ' +
              'workers are out of step: restart the group (and its transport) before training on',
          ),
        );
      }, timeoutMs);
    });
    return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
  };
}
