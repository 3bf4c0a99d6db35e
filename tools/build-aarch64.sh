#!/usr/bin/env bash
# Cross-compiles fer-edge's release binary for Jetson boards (aarch64) on an
# x86-64 Debian machine, linked against glibc 2.31 so that it starts on
# JetPack 5 (Ubuntu 20.04, glibc 2.31) and JetPack 6 (Ubuntu 22.04, 2.35).
#
#   tools/build-aarch64.sh [--tests]      -> prints the binary's path
#
# Tools, all from registries this project reaches (nothing is downloaded at
# build time by cargo): Debian's rustc-web with the arm64 standard library
# (rustup cannot fetch one here), zig from PyPI's `ziglang` as the linker and
# C compiler (it targets an exact glibc version), cargo-zigbuild from
# crates.io, and qemu-user-static for tools/test-aarch64.sh. --tests also
# builds the library's unit tests (release profile) for running under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}"
target=aarch64-unknown-linux-gnu
glibc=2.31
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

need=()
dpkg --print-foreign-architectures | grep -qx arm64 || { $SUDO dpkg --add-architecture arm64; }
[ -x /usr/bin/rustc ] && /usr/bin/rustc --print target-list >/dev/null 2>&1 && \
  [ -d /usr/lib/rustlib/$target ] || need+=(rustc-web cargo-web libstd-rust-web-dev:arm64)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
# bindgen (the v4l crate) reads the arm64 kernel headers.
[ -d /usr/include/aarch64-linux-gnu/asm ] || need+=(linux-libc-dev:arm64)
command -v readelf >/dev/null 2>&1 || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "build-aarch64: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

zigvenv="$cache/zig-venv"
if [ ! -x "$zigvenv/bin/python" ] || ! "$zigvenv/bin/python" -c 'import ziglang' 2>/dev/null; then
  python3 -m venv "$zigvenv" >&2
  "$zigvenv/bin/pip" install -q ziglang==0.17.1 >&2
fi
zig="$("$zigvenv/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
tools="$cache/cargo-tools"
if [ ! -x "$tools/bin/cargo-zigbuild" ]; then
  cargo install -q --locked cargo-zigbuild --version 0.24.1 --root "$tools" >&2
fi

export PATH="$tools/bin:$PATH"
export RUSTC=/usr/bin/rustc              # Debian's, which has the arm64 std
export CARGO_ZIGBUILD_ZIG_PATH="$zig"
export CARGO_TARGET_DIR="${FER_EDGE_AARCH64_TARGET:-$cache/target-aarch64}"
# bindgen: look at the arm64 headers, not the host's (libv4l-rs#113).
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=$target -I/usr/include/aarch64-linux-gnu"
args=(zigbuild --release --locked --target "$target.$glibc")
cargo "${args[@]}" >&2
if [ "${1:-}" = "--tests" ]; then
  # Only the library's unit-test harness: the integration tests start the
  # binary as a child process, which needs binfmt_misc to emulate.
  cargo-zigbuild test --no-run --release --locked --lib --target "$target.$glibc" 2>&1 \
    | tee /dev/stderr | sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))$/\1/p' \
    > "$CARGO_TARGET_DIR/aarch64-unit-tests.path"
  [ -s "$CARGO_TARGET_DIR/aarch64-unit-tests.path" ] || { echo "build-aarch64: no unit-test binary reported" >&2; exit 1; }
fi
bin="$CARGO_TARGET_DIR/$target/release/fer-edge"
bash tools/check-glibc.sh "$bin" "$glibc" >&2
echo "$bin"
