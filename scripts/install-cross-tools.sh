#!/usr/bin/env bash
# Installs what `npm run build:cross` needs on a Linux x64 machine, and nothing it already has
# (a second run takes a few seconds):
#   - the Rust standard libraries of the Linux targets in package.json's napi.targets (rustup);
#   - zig and cargo-zigbuild at the versions scripts/targets.mjs pins (the release workflow
#     uses the same), from PyPI into .tools/cross/ inside the checkout (git-ignored), with
#     `zig` linked into .tools/cross/bin, where build:cross looks first;
#   - readelf (binutils, apt) if missing.
# No C cross compiler is needed: zig links every Linux target.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v readelf >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq binutils
fi

mapfile -t linux_targets < <(node -e "
  const { targets } = await import('./scripts/targets.mjs');
  for (const t of targets()) if (t.zig) console.log(t.target);
" --input-type=module)
installed=$(rustup target list --installed)
missing=()
for target in "${linux_targets[@]}"; do
  grep -qx "$target" <<<"$installed" || missing+=("$target")
done
if ((${#missing[@]})); then rustup target add "${missing[@]}"; fi

zig_version=$(node scripts/targets.mjs tools | sed -n 's/^zig=//p')
zigbuild_version=$(node scripts/targets.mjs tools | sed -n 's/^cargo-zigbuild=//p')
venv=.tools/cross
zig_now() { "$venv/bin/zig" version 2>/dev/null || true; }
zigbuild_now() { "$venv/bin/cargo-zigbuild" --version 2>/dev/null || true; }
if [[ "$(zig_now)" != "$zig_version" || "$(zigbuild_now)" != "cargo-zigbuild $zigbuild_version" ]]; then
  [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "ziglang==$zig_version" "cargo-zigbuild==$zigbuild_version"
  zig=$("$venv/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
  ln -sf "$zig" "$venv/bin/zig"
fi
echo "cross tools in $venv: zig $(zig_now), $(zigbuild_now); rust targets ${linux_targets[*]}"
