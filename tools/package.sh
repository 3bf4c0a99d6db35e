#!/usr/bin/env bash
# Builds the fer-edge .deb packages into target/deb/:
#   fer-edge_<version>-1_amd64.deb  (this machine's release build)
#   fer-edge_<version>-1_arm64.deb  (tools/build-aarch64.sh: Jetson, glibc >= 2.31)
#
#   tools/package.sh [--amd64-only]
#
# Contents (Cargo.toml [package.metadata.deb]): /usr/bin/fer-edge, the unit in
# /usr/lib/systemd/system (installed, not enabled, not started), the config in
# /etc/fer-edge/fer-edge.toml (a conffile), models with their cards and
# licences in /usr/share/fer-edge/models, the GPU drop-in and the MQTT schema
# in /usr/share/fer-edge, README, performance notes and the SBOM (SPDX) in
# /usr/share/doc.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}"
tools="$cache/cargo-tools"
export PATH="$tools/bin:$PATH"
out=target/deb
mkdir -p "$out"
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install -q --locked cargo-deb --version 3.8.0 --root "$tools" >&2
fi
command -v dpkg-shlibdeps >/dev/null 2>&1 || {
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dpkg-dev >/dev/null
}

# With the GStreamer source (RTSP/IP and CSI cameras); dpkg-shlibdeps then
# adds its libraries to Depends.
cargo build --release --locked --features gstreamer >&2
# The SBOM of the crates in this build goes into the package's doc folder.
bash tools/supply-chain.sh sbom
cargo deb --no-build --locked --output "$out" >&2

if [ "${1:-}" != "--amd64-only" ]; then
  # zig's linker already strips the release binary, and the host's strip
  # cannot read aarch64 files.
  bash tools/build-aarch64.sh >/dev/null
  CARGO_TARGET_DIR="${FER_EDGE_AARCH64_TARGET:-$cache/target-aarch64}" \
    cargo deb --no-build --no-strip --locked --variant jetson --target aarch64-unknown-linux-gnu --output "$out" >&2
fi
ls -l "$out"/*.deb
