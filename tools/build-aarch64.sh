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

# GStreamer (the `gstreamer` feature: RTSP/IP cameras and Jetson CSI
# cameras through nvarguscamerasrc): link against Debian's arm64 libraries,
# unpacked into a sysroot of their own rather than installed (multiarch -dev
# packages would displace the host's). The binary uses GStreamer 1.16's API
# only (gstreamer-rs feature v1_16) and names the libraries by soname, so it
# runs on JetPack 5 (1.16) and 6 (1.20). The -dev packages of the private
# requirements are there for their .pc files; the runtime libraries let
# tools/test-aarch64.sh start the binaries under qemu (LD_LIBRARY_PATH).
sysroot="$cache/sysroot-arm64"
gst_debs=(libgstreamer1.0-0 libgstreamer1.0-dev libgstreamer-plugins-base1.0-0
  libgstreamer-plugins-base1.0-dev libglib2.0-0 libglib2.0-dev libpcre2-dev libffi-dev
  libdw-dev libunwind-dev libelf-dev zlib1g-dev liblzma-dev liborc-0.4-dev libmount-dev
  libblkid-dev libselinux1-dev libsepol-dev
  libpcre2-8-0 libffi8 libunwind8 libdw1 libelf1 zlib1g liblzma5 liborc-0.4-0 libmount1
  libblkid1 libselinux1 libzstd1 libbz2-1.0)
if [ ! -f "$sysroot/.complete" ]; then
  echo "build-aarch64: unpacking arm64 GStreamer into $sysroot" >&2
  $SUDO apt-get update -qq
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download "${gst_debs[@]/%/:arm64}" >/dev/null 2>&1) \
    || { echo "build-aarch64: apt-get download of the arm64 GStreamer packages failed" >&2; exit 1; }
  rm -rf "$sysroot"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$sysroot"; done
  rm -rf "$debs"
  touch "$sysroot/.complete"
fi
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_SYSROOT_DIR="$sysroot"
export PKG_CONFIG_LIBDIR="$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig"
# Debian 12's libraries reference newer glibc symbols than the 2.31 the
# binary is linked for: those are the libraries' own business at run time
# (the board's copies match its glibc), so the linker must not check them.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=-Wl,--allow-shlib-undefined"

export PATH="$tools/bin:$PATH"
export RUSTC=/usr/bin/rustc              # Debian's, which has the arm64 std
export CARGO_ZIGBUILD_ZIG_PATH="$zig"
export CARGO_TARGET_DIR="${FER_EDGE_AARCH64_TARGET:-$cache/target-aarch64}"
# bindgen: look at the arm64 headers, not the host's (libv4l-rs#113).
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=$target -I/usr/include/aarch64-linux-gnu"
args=(zigbuild --release --locked --features gstreamer --target "$target.$glibc")
cargo "${args[@]}" >&2
if [ "${1:-}" = "--tests" ]; then
  # Only the library's unit-test harness: the integration tests start the
  # binary as a child process, which needs binfmt_misc to emulate.
  cargo-zigbuild test --no-run --release --locked --features gstreamer --lib --target "$target.$glibc" 2>&1 \
    | tee /dev/stderr | sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))$/\1/p' \
    > "$CARGO_TARGET_DIR/aarch64-unit-tests.path"
  [ -s "$CARGO_TARGET_DIR/aarch64-unit-tests.path" ] || { echo "build-aarch64: no unit-test binary reported" >&2; exit 1; }
fi
bin="$CARGO_TARGET_DIR/$target/release/fer-edge"
bash tools/check-glibc.sh "$bin" "$glibc" >&2
echo "$bin"
