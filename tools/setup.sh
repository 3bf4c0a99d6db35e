#!/usr/bin/env bash
# Installs what building and testing fer-edge needs on a fresh Debian/Ubuntu
# machine with a Rust toolchain: system packages only (idempotent).
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The v4l crate generates kernel-header bindings with bindgen (libclang).
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-*.so.* >/dev/null 2>&1 || need+=(libclang-dev)
# Replaying video files: fer-edge pipes them through ffmpeg.
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2; exit 1; }
echo "setup: ok" >&2
