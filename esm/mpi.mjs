// The ESM entry of batchnorm/mpi: the CommonJS build re-exported (one module instance, one
// MPI initialization, whichever way it is loaded). Throws, as require does, when the MPI addon
// is not built: see docs/mpi.md.
import mpi from '../dist/src/mpi/index.js';

export const { world } = mpi;

export default mpi;
