#!/usr/bin/env bash
# AddressSanitizer over the unsafe parts (needs the nightly toolchain and gcc's libasan):
#  1. batchnorm-core's tests built with -Zsanitizer=address (LeakSanitizer included);
#  2. the addon built with -Zsanitizer=address and every vitest suite but memory.test.ts run
#     against it, libasan preloaded into node (children and workers inherit both): the hostile
#     matrix, concurrency, worker threads... An out-of-bounds access or a use after free in
#     the binding or the kernels aborts the run with ASan's report. About 2 minutes.
# memory.test.ts is left out: ASan's quarantine holds freed memory, so RSS grows by design.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
libasan=$(gcc -print-file-name=libasan.so)
[ -e "$libasan" ] || { echo "asan: gcc's libasan.so not found" >&2; exit 2; }
export CARGO_TARGET_DIR=target/asan RUSTFLAGS="-Zsanitizer=address"

echo "asan: batchnorm-core tests"
cargo +nightly test -p batchnorm-core --release --target "$host" --quiet

echo "asan: the addon under the vitest suites"
cargo +nightly build -p batchnorm-node --release --target "$host" --quiet
addon="$CARGO_TARGET_DIR/$host/release/batchnorm_asan.node"
cp "$CARGO_TARGET_DIR/$host/release/libbatchnorm_node.so" "$addon"
npm run --silent build:ts
LD_PRELOAD="$libasan" ASAN_OPTIONS=detect_leaks=0 BATCHNORM_NATIVE_PATH="$PWD/$addon" BATCHNORM_REQUIRE_NATIVE=1 \
  npx vitest run --exclude test/memory.test.ts
echo "asan: no reports"
