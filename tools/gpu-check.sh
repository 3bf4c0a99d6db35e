#!/usr/bin/env bash
# The GPU check of the `cuda` engine (tract's CUDA runtime), for a machine
# with an NVIDIA GPU, its driver and CUDA 13 libraries, and no TensorRT or
# onnxruntime-gpu (our lent GPU machines). It builds nothing: bring a binary
# built here with `cargo build --release --features cuda`.
#
#   tools/gpu-check.sh [FER_EDGE_BIN] [EMOTION_GCN_BUNDLE]
#
# Runs the shipped lite models (MTCNN P-Net/R-Net/O-Net, mini-Xception) and,
# when given, a random-init DenseNet-121 Emotion-GCN bundle (made by
# `python -m emotion_gcn.export --random-init`) through `cuda` and through
# `tract` on the CPU with the same real inputs; checks agreement (max |Δ|
# <= 1e-3); times batch 1 (median of 100 interleaved runs after warm-up);
# records where the nodes ran (tract-cuda leaves some ops on the CPU). Writes
# one JSON file, ${OUT:-out}/gpu-check.json. Exit 0: all agree; 3: some model
# failed or disagreed on cuda (the JSON says which and why); 1: no check ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/release/fer-edge}
egcn=${2:-}
outdir=${OUT:-out}
mkdir -p "$outdir"

# CUDA user-space libraries (cudart, NVRTC, cuBLAS, cuDNN) from PyTorch's
# NVIDIA wheels when the loader path has none of its own.
if nv=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null); then
  for d in "$nv"/*/lib; do LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
  export LD_LIBRARY_PATH
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$outdir/gpu.txt" 2>&1 || true
"$bin" --version

bundles=(--bundle models/fernet-w32 --bundle models/fernet-w16 --bundle models/fernet-w24 --bundle models/fer-minixception)
[ -n "$egcn" ] && bundles+=(--bundle "$egcn")
FER_EDGE_LOG=${FER_EDGE_LOG:-warn} "$bin" model compare --engines tract,cuda "${bundles[@]}" \
  --runs 100 --json > "$outdir/gpu-check.json"

python3 - "$outdir/gpu-check.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = 0
print(f"gpu: {r['gpu']}  machine: {r['machine']}")
for m in r["models"]:
    for e in m["engines"]:
        if e["error"]:
            bad += 1
            print(f"{m['model']:40} {e['engine']:6} FAILED: {e['error']}")
            continue
        d = e["max_abs_diff"]
        ok = d is not None and d <= 1e-3
        bad += 0 if ok else 1
        print(f"{m['model']:40} {e['engine']:6} median {e['latency_ms']['p50']:8.3f} ms  "
              f"max|d| {d:.2e} {'ok' if ok else 'DISAGREES'}  {e['placement']}")
sys.exit(3 if bad else 0)
PY
