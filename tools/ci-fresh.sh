#!/usr/bin/env bash
# Proves that CI passes on a new machine: clones the committed HEAD into an
# empty folder and runs `bash .ci/run` there with every cache a warm machine
# would reuse pointed at empty folders: HOME (so ~/.cache/fer-edge, pip's
# cache and the tools' venvs), CARGO_HOME (the crates.io registry and
# downloaded crates), CARGO_TARGET_DIR and FER_EDGE_CACHE. Only the Rust
# toolchain (RUSTUP_HOME) and Debian's packages are the machine's own.
#
#   tools/ci-fresh.sh [--keep DIR]
#
# Prints the wall time and .ci/run's exit code, and keeps the log in
# DIR/ci.log (DIR defaults to a new temporary folder, removed on success
# unless --keep is given). Run it once per change that touches .ci/run,
# tools/setup*.sh, dependencies or packaging: a warm machine hides a missing
# download or install step (issue 18: `cargo deny --offline`).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=""
if [ "${1:-}" = "--keep" ]; then
  keep="${2:?--keep needs a folder}"
  mkdir -p "$keep"
  [ -z "$(ls -A "$keep")" ] || { echo "ci-fresh: $keep is not empty; give an empty or new folder" >&2; exit 2; }
fi
root="${keep:-$(mktemp -d /tmp/ci-fresh.XXXXXX)}"
root=$(cd "$root" && pwd)
[ -n "$(git status --porcelain --untracked-files=no)" ] &&
  echo "ci-fresh: uncommitted changes are not tested (the clone takes HEAD $(git rev-parse --short HEAD))" >&2
git clone -q . "$root/src"
mkdir -p "$root/home" "$root/cargo-home"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
echo "ci-fresh: HEAD $(git rev-parse --short HEAD) in $root/src, log $root/ci.log" >&2
start=$(date +%s)
set +e
(
  cd "$root/src"
  env -u CARGO_TARGET_DIR -u FER_EDGE_CACHE -u FER_EDGE_VENV -u PIP_CACHE_DIR \
    HOME="$root/home" CARGO_HOME="$root/cargo-home" RUSTUP_HOME="$rustup_home" \
    CI=true \
    bash .ci/run </dev/null
) >"$root/ci.log" 2>&1
rc=$?
set -e
secs=$(( $(date +%s) - start ))
printf 'ci-fresh: .ci/run exited %d after %dm%02ds on %d cores (log: %s)\n' \
  "$rc" $((secs / 60)) $((secs % 60)) "$(nproc)" "$root/ci.log" >&2
tail -n 5 "$root/ci.log" >&2
if [ "$rc" -eq 0 ] && [ -z "$keep" ]; then
  cp "$root/ci.log" "/tmp/ci-fresh-last.log"
  rm -rf "$root"
  echo "ci-fresh: log kept as /tmp/ci-fresh-last.log" >&2
fi
exit "$rc"
