#!/usr/bin/env bash
# Thread scaling of batchnorm-core and of PyTorch on the same workload, one after the other,
# for a machine with python3 + torch and no Node or Rust:
#   bench/scaling.sh [--shape 32,64,56,56 --axis 1 --op train --dtype f32 --threads 1,2,4,8,16 --iters 50]
# The binary is $BATCHNORM_BENCH, else target/release/batchnorm-bench (cargo build --release -p batchnorm-bench);
# the Python is $PYTHON, else python3 (it needs torch). The JSON of each run lands in
# $SCALING_OUT (default: a temporary directory), and the last lines are the README's table
# with issue 3's two targets checked (bench/scaling_summary.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${BATCHNORM_BENCH:-$here/../target/release/batchnorm-bench}
python=${PYTHON:-python3}
out=${SCALING_OUT:-$(mktemp -d)}
mkdir -p "$out"
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(--shape 32,64,56,56 --axis 1 --op train --dtype f32 --threads 1,2,4,8,16 --iters 50)
fi
"$bin" "${args[@]}" --json >"$out/batchnorm.json"
"$python" "$here/torch_scaling.py" "${args[@]}" --json >"$out/torch.json"
# The out= form needs aten::native_batch_norm.out on CPU (not in every torch): optional.
"$python" "$here/torch_scaling.py" "${args[@]}" --out --json >"$out/torch-out.json" || rm -f "$out/torch-out.json"
"$python" "$here/scaling_summary.py" "$out/batchnorm.json" "$out/torch.json" "$out/torch-out.json"
echo "JSON: $out"
