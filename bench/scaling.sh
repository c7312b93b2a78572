#!/usr/bin/env bash
# Thread scaling of batchnorm-core and of PyTorch on the same workload, one after the other,
# for a machine with python3 + torch and no Node or Rust:
#   bench/scaling.sh [--shape 32,64,56,56 --axis 1 --op train --dtype f32 --threads 1,2,4,8,16 --iters 50]
# The binary is $BATCHNORM_BENCH, else target/release/batchnorm-bench (cargo build --release -p batchnorm-bench);
# the Python is $PYTHON, else python3 (it needs torch).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${BATCHNORM_BENCH:-$here/../target/release/batchnorm-bench}
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(--shape 32,64,56,56 --axis 1 --op train --dtype f32 --threads 1,2,4,8,16 --iters 50)
fi
"$bin" "${args[@]}"
echo
"${PYTHON:-python3}" "$here/torch_scaling.py" "${args[@]}"
