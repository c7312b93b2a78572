// What every script here ends with: this rank's results as JSON, into
// $BATCHNORM_MPI_TEST_OUT/rank-<rank>.json when test/mpi.test.ts sets it (mpirun may interleave
// long lines of different ranks on stdout), else on stdout.
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');

module.exports = function report(out) {
  const dir = process.env.BATCHNORM_MPI_TEST_OUT;
  if (dir) writeFileSync(join(dir, `rank-${out.rank}.json`), JSON.stringify(out));
  else console.log(JSON.stringify(out));
};
