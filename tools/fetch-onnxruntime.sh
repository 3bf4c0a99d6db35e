#!/usr/bin/env bash
# onnxruntime's C library, from the PyPI onnxruntime wheel (MIT), pinned by
# version and sha256, unpacked where fer-edge looks by default
# (<cache>/onnxruntime/<version>/, see src/infer/onnxruntime.rs), or for
# another architecture under <cache>/onnxruntime-<arch>/<version>/ (the
# arm64 library that tools/test-aarch64.sh runs under qemu). Nothing is
# installed into Python. On a Jetson use JetPack's onnxruntime-gpu instead.
#
#   tools/fetch-onnxruntime.sh [x86_64|aarch64]   -> prints the library's folder
#
# Exit status 3: no wheel for that architecture; 1: the download failed or
# the wheel is not the pinned one.
set -euo pipefail
ORT_VERSION=1.32.0
arch=${1:-$(uname -m)}
cache="${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}"
case "$arch" in
  x86_64) ort_plat=manylinux_2_28_x86_64
          ort_sha=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d ;;
  aarch64) ort_plat=manylinux_2_28_aarch64
           ort_sha=2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c ;;
  *) echo "setup: no onnxruntime wheel for $arch; the onnxruntime engine needs a library of your own" >&2
     exit 3 ;;
esac
if [ "$arch" = "$(uname -m)" ]; then
  ort_dir="$cache/onnxruntime/$ORT_VERSION"
else
  ort_dir="$cache/onnxruntime-$arch/$ORT_VERSION"
fi
if [ ! -f "$ort_dir/libonnxruntime.so.$ORT_VERSION" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "setup: fetching onnxruntime $ORT_VERSION ($ort_plat) from PyPI" >&2
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --implementation cp --platform "$ort_plat" -d "$tmp" "onnxruntime==$ORT_VERSION" >&2
  whl=$(ls "$tmp"/onnxruntime-*.whl)
  if ! echo "$ort_sha  $whl" | sha256sum -c --quiet >/dev/null 2>&1; then
    echo "setup: $whl does not have the pinned sha256 $ort_sha; refusing it" >&2
    exit 1
  fi
  mkdir -p "$ort_dir.partial"
  python3 - "$whl" "$ort_dir.partial" <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("onnxruntime/capi/libonnxruntime") and ".so" in base:
            with z.open(n) as src, open(os.path.join(dest, base), "wb") as out:
                out.write(src.read())
        elif n == "onnxruntime/LICENSE":
            with z.open(n) as src, open(os.path.join(dest, "LICENSE"), "wb") as out:
                out.write(src.read())
PY
  rm -rf "$ort_dir"
  mv "$ort_dir.partial" "$ort_dir"
  echo "setup: onnxruntime $ORT_VERSION in $ort_dir" >&2
fi
echo "$ort_dir"
