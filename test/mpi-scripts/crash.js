// Run under mpirun by test/mpi.test.ts: the last rank throws (uncaught) while the others wait in
// an allReduce it never joins. Its non-zero exit calls MPI_Abort, so mpirun ends every rank
// instead of leaving them waiting.
const { world } = require('../../dist/src/mpi/index.js');

const comm = world();
if (comm.rank === comm.size - 1) {
  setTimeout(() => {
    throw new Error('rank failed on purpose');
  }, 100);
} else {
  comm.allReduce(new Float64Array(1)).then(() => console.log('unexpected: the all-reduce completed'));
}
