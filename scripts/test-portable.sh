#!/usr/bin/env bash
# The paths only non-x86 targets compile (plain stores, never streaming; the fingerprint's scalar
# loop), tested on this x86-64 machine through batchnorm-core's `portable` feature: the core's
# tests, then the vitest suites against an addon built with it (target/portable/, loaded through
# BATCHNORM_NATIVE_PATH). aarch64 binaries cannot run here (docs/contributing.md). Needs
# `npm run build` first (dist/); `.ci/run` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo clippy -p batchnorm-core -p batchnorm-node --all-targets --features batchnorm-core/portable -- -D warnings
cargo test -p batchnorm-core --release --features portable

rm -rf target/portable
npx napi build --platform --release --manifest-path crates/batchnorm-node/Cargo.toml \
  --output-dir target/portable --no-js --dts binding.d.ts --features portable
addon=$(realpath target/portable/batchnorm.*.node)
# The feature took: no non-temporal store (movnt*) or sfence is left in the binary.
if objdump -d "$addon" | grep -qE '\s(movnt|sfence)'; then
  echo "test-portable: $addon still holds non-temporal stores" >&2
  exit 1
fi
BATCHNORM_NATIVE_PATH="$addon" BATCHNORM_BACKEND=native node -e "
  const bn = require('./dist/index.js');
  if (bn.nativeSource !== '$addon') throw new Error('loaded ' + bn.nativeSource);
  console.log('portable addon:', bn.nativeSource);
"
# Every suite of the kernels; not the packaging ones (package, prebuilt), which test other files.
BATCHNORM_REQUIRE_NATIVE=1 BATCHNORM_NATIVE_PATH="$addon" npx vitest run \
  --exclude test/package.test.ts --exclude test/prebuilt.test.ts
