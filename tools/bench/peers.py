#!/usr/bin/env python3
"""fer-edge's emotion-model latency next to onnxruntime's on the same ONNX.

Interleaved in one invocation (fer-edge on tract, fer-edge on onnxruntime
with 1 and 2 threads, Python onnxruntime 1 and 2 threads, then again, ROUNDS
times) so machine noise hits every engine alike; reports each engine's
median of per-round medians and the per-round ratio to fer-edge on tract
with its spread. fer-edge is measured by its own `fer-edge bench
--model-only --backend B` (batch 1, on a real aligned face crop); Python
onnxruntime runs the bundle's ONNX on the same crop, preprocessed the same
way. fer-edge's onnxruntime engine loads the library tools/setup.sh
unpacked (the same version as the Python wheel).

Usage:
  python tools/bench/peers.py --bundle models/fer-minixception [--rounds 5 --runs 30] [--fer-edge target/release/fer-edge]
"""
import argparse
import json
import os
import platform
import statistics as st
import subprocess
import sys
import tempfile
import time

# Official onnxruntime wheels send usage telemetry and keep a device id under
# ~/.cache/Microsoft unless this is set before they load (fer-edge sets it too).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np
import onnxruntime as ort
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def crop_input(bundle, manifest):
    """The same aligned crop fer-edge benches on: the astronaut's face."""
    sys.path.insert(0, os.path.join(REPO, "tools", "emotion_gcn"))
    from emotion_gcn import align

    img = np.asarray(Image.open(os.path.join(REPO, "tests/data/frames640/one_face.png")).convert("RGB"))
    inp = manifest["input"]
    eyes = ((271.5, 94.5), (311.1, 97.1))  # fer-edge's MTCNN eyes on this frame
    crop = align.align(img, *eyes, inp["width"], inp["height"], manifest["alignment"]["eye_distance"], manifest["alignment"]["eye_line"])
    x = crop.astype(np.float32) / 255.0
    if inp["color"] == "gray":
        x = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
    x = (x - np.array(inp["mean"], np.float32)) / np.array(inp["std"], np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def ort_median(sess, name, x, runs):
    for _ in range(3):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        t.append((time.perf_counter() - t0) * 1000)
    return st.median(t)


def fer_edge_median(binary, bundle, runs, backend="tract", threads=1):
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as cfg:
        cfg.write(f"[inference]\nthreads = {threads}\n")
    try:
        out = subprocess.run([binary, "bench", "--model-only", "--model", bundle, "--runs", str(runs), "--json",
                              "--backend", backend, "--config", cfg.name],
                             cwd=REPO, capture_output=True, text=True, check=True)
    finally:
        os.unlink(cfg.name)
    rep = json.loads(out.stdout)
    return rep["per_face_ms"]["emotion"]["p50"], rep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--fer-edge", default=os.path.join(REPO, "target/release/fer-edge"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    manifest = json.load(open(os.path.join(a.bundle, "bundle.json")))
    onnx_path = os.path.join(a.bundle, manifest["model_file"])
    x = crop_input(a.bundle, manifest)
    sessions = {}
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sessions[f"onnxruntime {ort.__version__} ({threads} thread{'s' if threads > 1 else ''})"] = ort.InferenceSession(
            onnx_path, so, providers=["CPUExecutionProvider"])
    name = manifest["input"]["name"]
    ours = {"fer-edge (tract, 1 thread)": ("tract", 1),
            "fer-edge (onnxruntime, 1 thread)": ("onnxruntime", 1),
            "fer-edge (onnxruntime, 2 threads)": ("onnxruntime", 2)}
    rounds = {k: [] for k in ours} | {k: [] for k in sessions}
    for _ in range(a.rounds):
        for k, (backend, threads) in ours.items():
            m, rep = fer_edge_median(a.fer_edge, a.bundle, a.runs, backend, threads)
            rounds[k].append(m)
        for k, s in sessions.items():
            rounds[k].append(ort_median(s, name, x, a.runs))
    base = rounds["fer-edge (tract, 1 thread)"]
    table = []
    for k, v in rounds.items():
        ratios = [b / o for b, o in zip(base, v)]
        table.append({"engine": k, "median_ms": round(st.median(v), 3), "min_ms": round(min(v), 3), "max_ms": round(max(v), 3),
                      "fer_edge_over_engine": round(st.median(ratios), 3), "ratio_min": round(min(ratios), 3),
                      "ratio_max": round(max(ratios), 3)})
    result = {"bundle": manifest["name"] + "@" + manifest["version"], "input": f'{manifest["input"]["width"]}x{manifest["input"]["height"]}',
              "machine": rep["machine"], "python": platform.python_version(), "rounds": a.rounds, "runs_per_round": a.runs,
              "table": table}
    if a.json:
        print(json.dumps(result))
        return
    print(f"{result['bundle']} ({result['input']}), batch 1, {a.rounds} interleaved rounds x {a.runs} runs, {result['machine']}")
    print(f"| engine | median of round medians (ms) | range (ms) | fer-edge time / engine time (median, range) |")
    print("|---|---|---|---|")
    for r in table:
        print(f"| {r['engine']} | {r['median_ms']} | {r['min_ms']}–{r['max_ms']} | {r['fer_edge_over_engine']} ({r['ratio_min']}–{r['ratio_max']}) |")


if __name__ == "__main__":
    main()
