#!/usr/bin/env bash
# batchnorm-core's tests (unit and kernels) under valgrind memcheck, on the stable toolchain:
# an invalid read or write, a use of uninitialised memory or a definite leak fails the run.
# About 15 s. (scripts/asan.sh does the same with AddressSanitizer, and also the addon.)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind-core: valgrind is not installed" >&2; exit 2; }

# The test executables cargo builds, from its JSON messages.
mapfile -t executables < <(
  cargo test -p batchnorm-core --release --no-run --message-format=json 2>/dev/null |
    node -e '
      const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
      for (const m of lines.map((l) => JSON.parse(l))) {
        if (m.reason === "compiler-artifact" && m.executable && m.profile.test) console.log(m.executable);
      }'
)
[ "${#executables[@]}" -gt 0 ] || { echo "valgrind-core: no test executables built" >&2; exit 2; }

for exe in "${executables[@]}"; do
  echo "valgrind: ${exe#"$PWD"/}"
  valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite -q "$exe" --quiet
done
echo "valgrind-core: no memory errors"
