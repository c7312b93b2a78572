// batchnorm/mpi: MPI_COMM_WORLD for Node, over the MPI installed on the machine (built from
// source: npm run build:mpi). A thin layer over crates/batchnorm-mpi: argument checks, one
// collective at a time per process in call order (an internal queue), and MPI's lifetime
// (initialized by the first world(), finalized at exit). Every collective first agrees on a
// small header across ranks, so mismatched calls fail with the same error on every rank.
// Guide: docs/mpi.md.
import { inspect } from 'node:util';
import { describe } from '../validate';
import { loadMpiBinding } from './load';

// Throws here, at require/import time, when the addon is not built (with how to build it).
const binding = loadMpiBinding();

/** What MPI's collectives here carry: a sum in float32 or float64. */
export type MpiBuffer = Float32Array | Float64Array;

/** The thread level MPI provided (MPI_THREAD_*); batchnorm/mpi asks for "serialized". */
export type ThreadLevel = 'single' | 'funneled' | 'serialized' | 'multiple';

/** MPI_COMM_WORLD. Every method is a plain function (no `this`): `comm.allReduce` can be passed
 *  on as it is, e.g. `new SyncBatchNorm(C, { allReduce: comm.allReduce })`. */
export interface Communicator {
  /** This process's rank, 0 <= rank < size. */
  readonly rank: number;
  /** The number of processes in the job. */
  readonly size: number;
  readonly threadLevel: ThreadLevel;
  /** Whether the Async forms run off the JS thread (thread level serialized or multiple). */
  readonly offThread: boolean;
  /** MPI_Get_library_version, e.g. "Open MPI v4.1.4, ...". */
  readonly libraryVersion: string;
  /** MPI_Get_processor_name: the host this rank runs on. */
  readonly processorName: string;
  /** In-place elementwise sum of `buffer` over every rank (MPI_Allreduce, MPI_SUM), run on a
   *  libuv worker thread; resolves to `buffer` itself. Do not touch `buffer` until it settles. */
  allReduce<T extends MpiBuffer>(buffer: T): Promise<T>;
  /** The same, blocking the JS thread. */
  allReduceSync<T extends MpiBuffer>(buffer: T): T;
  /** Overwrites `buffer` on every rank with root's (MPI_Bcast); resolves to `buffer`. */
  broadcast<T extends MpiBuffer>(buffer: T, root?: number): Promise<T>;
  broadcastSync<T extends MpiBuffer>(buffer: T, root?: number): T;
  /** Resolves once every rank has called it (MPI_Barrier). */
  barrier(): Promise<void>;
  barrierSync(): void;
}

// The operation codes of the addon's header.
const ALL_REDUCE = 1;
const BROADCAST = 2;
const BARRIER = 3;

/** One call's arguments as the addon takes them, or the error of this rank's invalid ones. */
interface Checked {
  f32: Float32Array | null;
  f64: Float64Array | null;
  root: number;
  error: Error | null;
}

const NO_BUFFER: Checked = { f32: null, f64: null, root: 0, error: null };

/** How long a rank exiting with an error waits before MPI_Abort. */
const ABORT_GRACE_MS = 250;

let communicator: Communicator | null = null;

/** MPI_COMM_WORLD. The first call initializes MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED
 *  requested) and arranges for MPI_Finalize at exit (MPI_Abort when the process exits with a
 *  non-zero code, so the other ranks do not wait for it); later calls return the same object. */
export function world(): Communicator {
  if (communicator === null) communicator = createWorld();
  return communicator;
}

function createWorld(): Communicator {
  const info = binding.init();
  const { rank, size } = info;
  const threadLevel = info.threadLevel as ThreadLevel;
  // Serialized is enough: the queue below runs one collective at a time, so MPI is never
  // entered from two threads at once, only from different ones (the JS thread and a libuv
  // worker). Below it, only the thread that initialized MPI may call it: the JS thread.
  const offThread = threadLevel === 'serialized' || threadLevel === 'multiple';
  // Node prints an uncaught error after the 'exit' listeners, which MPI_Abort never returns
  // from: keep it, to print it first.
  let fatal: { error: unknown } | null = null;
  process.on('uncaughtExceptionMonitor', (error) => {
    fatal = { error };
  });
  process.on('exit', (code) => {
    if (code === 0) {
      binding.finalize();
      return;
    }
    if (fatal !== null) process.stderr.write(`${inspect(fatal.error)}\n`);
    // MPI_Abort makes the runtime kill every rank at once; give mpirun a moment first to
    // forward what this rank just wrote.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ABORT_GRACE_MS);
    binding.abort(code);
  });

  // The end of this rank's last queued collective: each new one starts after it, so the
  // collectives reach MPI in call order, the order every rank must use.
  let tail: Promise<unknown> = Promise.resolve();
  let inFlight = 0;

  function enqueue<R>(op: () => Promise<R>): Promise<R> {
    inFlight++;
    const run = tail.then(op).finally(() => {
      inFlight--;
    });
    tail = run.catch(() => undefined);
    return run;
  }

  function mustBeIdle(name: string): void {
    if (inFlight > 0) {
      throw new Error(
        `batchnorm/mpi: ${name}: this rank still has ${inFlight} async collective(s) in flight; await them first (a blocking call cannot wait its turn, and every rank must run its collectives in the same order)`,
      );
    }
  }

  /** The buffer arguments, or the error this rank throws once the header has told every other
   *  rank that it failed (so they fail too instead of waiting for it). */
  function check(name: string, buffer: unknown, root?: unknown): Checked {
    let error: Error | null = null;
    let checkedRoot = 0;
    if (!(buffer instanceof Float32Array) && !(buffer instanceof Float64Array)) {
      error = new TypeError(
        `batchnorm/mpi: ${name}: buffer must be a Float32Array or Float64Array, got ${describe(buffer)}`,
      );
    } else if (
      root !== undefined &&
      (!Number.isSafeInteger(root) || (root as number) < 0 || (root as number) >= size)
    ) {
      error = new RangeError(
        `batchnorm/mpi: ${name}: root must be an integer rank in [0, ${size - 1}], got ${describe(root)}`,
      );
    } else if (root !== undefined) {
      checkedRoot = root as number;
    }
    if (error !== null) return { f32: null, f64: null, root: 0, error };
    return {
      f32: buffer instanceof Float32Array ? buffer : null,
      f64: buffer instanceof Float64Array ? buffer : null,
      root: checkedRoot,
      error: null,
    };
  }

  function runSync(op: number, args: Checked): void {
    binding.collective(op, args.error !== null, args.root, args.f32, args.f64);
  }

  async function runAsync(op: number, args: Checked): Promise<void> {
    if (offThread) await binding.collectiveAsync(op, args.error !== null, args.root, args.f32, args.f64);
    else runSync(op, args);
  }

  /** Runs the header (and, if every rank's arguments agree, the collective); a rank whose own
   *  arguments were invalid throws its own error, the others the addon's. */
  function finish(args: Checked, run: () => void): void {
    try {
      run();
    } catch (e) {
      throw args.error ?? e;
    }
    if (args.error !== null) throw args.error; // not reached: the header fails on every rank
  }

  /** finish for the Async forms: the collective has started; resolves to `result`. */
  async function settle<R>(args: Checked, running: Promise<void>, result: R): Promise<R> {
    try {
      await running;
    } catch (e) {
      throw args.error ?? e;
    }
    if (args.error !== null) throw args.error;
    return result;
  }

  const comm: Communicator = {
    rank,
    size,
    threadLevel,
    offThread,
    libraryVersion: info.libraryVersion,
    processorName: info.processorName,

    allReduce<T extends MpiBuffer>(buffer: T): Promise<T> {
      const args = check('allReduce', buffer);
      return enqueue(() => settle(args, runAsync(ALL_REDUCE, args), buffer));
    },
    allReduceSync<T extends MpiBuffer>(buffer: T): T {
      mustBeIdle('allReduceSync');
      const args = check('allReduceSync', buffer);
      finish(args, () => runSync(ALL_REDUCE, args));
      return buffer;
    },
    broadcast<T extends MpiBuffer>(buffer: T, root = 0): Promise<T> {
      const args = check('broadcast', buffer, root);
      return enqueue(() => settle(args, runAsync(BROADCAST, args), buffer));
    },
    broadcastSync<T extends MpiBuffer>(buffer: T, root = 0): T {
      mustBeIdle('broadcastSync');
      const args = check('broadcastSync', buffer, root);
      finish(args, () => runSync(BROADCAST, args));
      return buffer;
    },
    barrier(): Promise<void> {
      return enqueue(() => runAsync(BARRIER, NO_BUFFER));
    },
    barrierSync(): void {
      mustBeIdle('barrierSync');
      runSync(BARRIER, NO_BUFFER);
    },
  };
  return Object.freeze(comm);
}
