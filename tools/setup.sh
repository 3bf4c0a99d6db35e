#!/usr/bin/env bash
# Installs what building and testing fer-edge needs on a fresh Debian/Ubuntu
# machine with a Rust toolchain: system packages, and the onnxruntime
# library for the `onnxruntime` engine (idempotent).
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
# pip fetches the onnxruntime wheel below.
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The privacy tests watch which files the daemon creates with strace.
command -v strace >/dev/null 2>&1 || need+=(strace)
# The colour test gives the daemon a terminal with util-linux `script`.
command -v script >/dev/null 2>&1 || need+=(bsdutils)
# TLS fault tests make their certificates with openssl.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The GStreamer source (cargo feature `gstreamer`): headers to build it,
# the plugins its pipelines use (RTSP, decoders, conversion), and for its
# tests a local RTSP camera: GStreamer's RTSP server through python3-gi.
pkg-config --exists gstreamer-app-1.0 gstreamer-video-1.0 2>/dev/null \
  || need+=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev)
gst-inspect-1.0 rtspsrc >/dev/null 2>&1 || need+=(gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-rtsp)
gst-inspect-1.0 jpegparse >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-bad)
gst-inspect-1.0 avdec_h264 >/dev/null 2>&1 || need+=(gstreamer1.0-libav)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' >/dev/null 2>&1 \
  || need+=(python3-gi gir1.2-gst-rtsp-server-1.0)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2; exit 1; }

# onnxruntime: the C library shipped inside PyPI's onnxruntime wheel (MIT),
# pinned and checked, unpacked where fer-edge looks by default
# (<cache>/onnxruntime/<version>/, see src/infer/onnxruntime.rs). Nothing is
# installed into Python. On a Jetson use JetPack's onnxruntime-gpu instead.
ORT_VERSION=1.32.0
case "$(uname -m)" in
  x86_64) ort_plat=manylinux_2_28_x86_64
          ort_sha=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d ;;
  aarch64) ort_plat=manylinux_2_28_aarch64
           ort_sha=2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c ;;
  *) ort_plat="" ;;
esac
ort_dir="${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}/onnxruntime/$ORT_VERSION"
if [ -z "$ort_plat" ]; then
  echo "setup: no onnxruntime wheel for $(uname -m); the onnxruntime engine needs a library of your own" >&2
elif [ ! -f "$ort_dir/libonnxruntime.so.$ORT_VERSION" ]; then
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
# The clients' side of the tests, in one venv: a second MQTT client
# (paho-mqtt, pure Python) so MQTT 3.1.1 and MQTT 5 are checked with a
# client that is not mosquitto's; Eclipse Cyclone DDS (the DDS of many ROS 2
# installations; its wheel carries the C library) to subscribe to the ROS 2
# output and to play a ROS 2 camera (with Pillow to turn JPEG frames into
# raw images); and the Python client package in clients/python with its tests.
mqtt_venv="${FER_EDGE_CACHE:-$HOME/.cache/fer-edge}/mqtt-venv"
[ -x "$mqtt_venv/bin/python" ] || python3 -m venv "$mqtt_venv" >&2
if ! "$mqtt_venv/bin/python" -c 'import paho.mqtt, cyclonedds, pytest, jsonschema, PIL' 2>/dev/null; then
  "$mqtt_venv/bin/pip" install -q paho-mqtt==2.1.0 cyclonedds==11.0.1 pytest jsonschema pillow==13.0.0 >&2
fi
"$mqtt_venv/bin/pip" install -q --no-deps -e clients/python >&2
echo "setup: ok" >&2
