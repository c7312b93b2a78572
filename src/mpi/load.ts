// Loading the MPI addon (crates/batchnorm-mpi), which is never prebuilt: `npm run build:mpi`
// compiles it against the MPI installed on the machine into native-mpi/batchnorm_mpi.node.
// BATCHNORM_MPI_PATH names another file. Without it, loading throws an Error saying how to build.
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { envPath } from '../env';
import { packageRoot } from '../native';

/** What src/mpi/index.ts calls; crates/batchnorm-mpi/src/lib.rs implements it. */
export interface MpiBinding {
  bindingInterface(): number;
  init(): {
    rank: number;
    size: number;
    threadLevel: string;
    libraryVersion: string;
    processorName: string;
  };
  finalize(): boolean;
  abort(code: number): void;
  collective(op: number, invalid: boolean, root: number, f32?: Float32Array | null, f64?: Float64Array | null): void;
  collectiveAsync(
    op: number,
    invalid: boolean,
    root: number,
    f32?: Float32Array | null,
    f64?: Float64Array | null,
  ): Promise<unknown>;
}

/** The calling convention this wrapper speaks (the addon's bindingInterface()). */
const BINDING_INTERFACE = 1;

export const HOW_TO_BUILD =
  'The MPI addon is built from source against the MPI on this machine, never prebuilt: install ' +
  "MPI's development files (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev libclang-dev pkg-config), " +
  'then run `npm run build:mpi` in a clone of the batchnorm repository (it needs Rust), or point ' +
  'BATCHNORM_MPI_PATH at a built batchnorm_mpi.node. See docs/mpi.md.';

/** The addon's path: BATCHNORM_MPI_PATH (relative to the working directory) or native-mpi/. */
export function mpiAddonPath(): string {
  const path = envPath('BATCHNORM_MPI_PATH');
  return path === null ? join(packageRoot(), 'native-mpi', 'batchnorm_mpi.node') : resolve(path);
}

export function loadMpiBinding(): MpiBinding {
  const path = mpiAddonPath();
  if (!existsSync(path)) {
    throw new Error(`batchnorm/mpi: the MPI addon is not built (${path} does not exist). ${HOW_TO_BUILD}`);
  }
  const module = { exports: {} as unknown };
  try {
    // RTLD_GLOBAL: Open MPI loads its components as plugins that look up libmpi's symbols
    // globally; an addon loaded with local symbols (Node's default) can leave them unresolved.
    const flags =
      process.platform === 'win32' ? undefined : constants.dlopen.RTLD_NOW | (constants.dlopen.RTLD_GLOBAL ?? 0);
    process.dlopen(module, path, flags);
  } catch (e) {
    throw new Error(
      `batchnorm/mpi: cannot load the MPI addon ${path}: ${(e as Error).message}. Rebuild it against this machine's MPI. ${HOW_TO_BUILD}`,
      { cause: e },
    );
  }
  const binding = module.exports as Partial<MpiBinding>;
  const version = typeof binding.bindingInterface === 'function' ? binding.bindingInterface() : undefined;
  if (version !== BINDING_INTERFACE) {
    throw new Error(
      `batchnorm/mpi: ${path} is not this version's MPI addon (binding interface ${String(version)}, needs ${BINDING_INTERFACE}); rebuild it with \`npm run build:mpi\`.`,
    );
  }
  return binding as MpiBinding;
}
