// The ESM entry of batchnorm/mpi: the CommonJS build, loaded through require (one module
// instance, one MPI initialization, whichever way it is loaded). Throws, as require does, when
// the MPI addon is not built: see docs/mpi.md. (require, not `import ... from`: Node 20 reports
// an error thrown by a statically imported CommonJS module as uncaught even when the dynamic
// import() that loaded it is caught.)
import { createRequire } from 'node:module';

const mpi = createRequire(import.meta.url)('../dist/src/mpi/index.js');

export const { world } = mpi;

export default mpi;
