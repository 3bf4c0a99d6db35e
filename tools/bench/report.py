#!/usr/bin/env python3
"""Regenerates docs/PERFORMANCE.md: every number in it comes from this run.

  python tools/bench/report.py [--fer-python /path/to/venv-with-fer/bin/python] [--rounds 3]

Measures, on this machine, in one invocation:
  * this core's peak FP32 rate (`fer-edge bench --peak`) and each model's
    FLOPs (tools/bench/flops.py), hence each engine's fraction of peak;
  * `fer-edge bench` per stage on the bundled 640x480 sequences with 1 and
    6 faces (the daemon's own per-frame path: detect, then follow), on
    tract and onnxruntime, detections on the frame thread and in the
    background, side by side (interleaved rounds, one process);
  * the emotion models alone: fer-edge (tract, onnxruntime) vs Python
    onnxruntime 1/2 threads on the same ONNX, interleaved
    (tools/bench/peers.py), for the shipped mini-Xception and a random-init
    DenseNet-121 Emotion-GCN export;
  * the Python `fer` package's pipeline vs fer-edge (default config, each
    engine) on the same frames, interleaved (A B A B), with peak RSS of each;
  * the daemon's capture->publish latency on a looped 30 fps replay.
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


def bench(frames_dir, runs, model=None, model_only=False, backend=None, background=None):
    """One report per engine in `backend` (comma separated) and detector mode
    in `background` ("false,true"), or the config's."""
    cmd = [FER_EDGE, "bench", "--frames", frames_dir, "--runs", str(runs), "--json"]
    if background:
        cmd += ["--background", background]
    if model:
        cmd += ["--model", model]
    if model_only:
        cmd += ["--model-only"]
    if backend:
        cmd += ["--backend", backend]
    reports = [json.loads(line) for line in sh(cmd).splitlines() if line.strip()]
    return reports if len(reports) > 1 else reports[0]


def single(frame, tmp):
    d = os.path.join(tmp, os.path.splitext(os.path.basename(frame))[0])
    os.makedirs(d, exist_ok=True)
    os.symlink(os.path.join(REPO, frame), os.path.join(d, os.path.basename(frame)))
    return d


def free_port():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def daemon_config(path, sequence, backend, port, model=None):
    """A config for `fer-edge run`: `sequence` looped at 30 fps (newest frame
    wins) on `backend`, the embedded broker on `port`, a stats message per
    frame."""
    with open(path, "w") as f:
        f.write(f'[source]\nkind = "replay"\npath = "tests/data/sequences/{sequence}"\npace = true\nloop = true\nfps = 30.0\n'
                f'[inference]\nbackend = "{backend}"\n'
                + (f'[emotion]\nmodel = "{model}"\n' if model else "")
                + f'[mqtt]\nport = {port}\nstats_interval_s = 0.0\n[mqtt.broker]\nembedded = true\nlisten = "127.0.0.1:{port}"\n')
    return path


def daemon_latency(sequence, tmp, backend="tract", seconds=12):
    """capture->publish latency of `fer-edge run` with the default config on a
    live source: the sequence looped at 30 fps (newest frame wins), read from
    its final stats message over the embedded broker after SIGTERM."""
    import signal
    import socket
    import time

    port = free_port()
    cfg = daemon_config(os.path.join(tmp, f"run-{sequence}-{backend}.toml"), sequence, backend, port)
    d = subprocess.Popen([FER_EDGE, "run", "--config", cfg], cwd=REPO, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "fer-edge/+/stats", "-C", "1", "-W", str(seconds + 30)],
                           stdout=subprocess.PIPE, text=True)
    time.sleep(seconds)
    d.send_signal(signal.SIGTERM)
    d.wait(timeout=30)
    out, _ = sub.communicate(timeout=30)
    stats = json.loads(out)
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
    one = "tests/data/sequences/pan1"
    six = "tests/data/sequences/pan6"
    egcn = os.path.join(tmp, "egcn-random")
    sh([PY, "-W", "ignore", "-m", "emotion_gcn.export", "--random-init", "--out", egcn], env=dict(os.environ, PYTHONPATH=os.path.join(REPO, "tools/emotion_gcn")))
    peak = json.loads(sh([FER_EDGE, "bench", "--peak", "--json"]))["peak_gflops_1_thread"]
    flops = {k: float(sh([PY, "tools/bench/flops.py", p, s])) for k, p, s in [
        ("mini-Xception 64x64", "models/fer-minixception/model.onnx", "1,1,64,64"),
        ("Emotion-GCN DenseNet-121 227x227", os.path.join(egcn, "model.onnx"), "1,3,227,227"),
        ("MTCNN P-Net, first 640x480 level (384x288)", "models/mtcnn/pnet.onnx", "1,384,288,3"),
        ("MTCNN R-Net 24x24", "models/mtcnn/rnet.onnx", "1,24,24,3"),
        ("MTCNN O-Net 48x48", "models/mtcnn/onet.onnx", "1,48,48,3")]}
    # Per sequence: tract sync, tract background, onnxruntime sync, onnxruntime background.
    variants = ["tract, frame thread", "tract, background", "onnxruntime, frame thread", "onnxruntime, background"]
    seqs = {"1 face": bench(one, 8, backend="tract,onnxruntime", background="false,true"),
            "6 faces": bench(six, 4, backend="tract,onnxruntime", background="false,true")}
    latency = {f"{n} faces, {e}".replace("1 faces", "1 face"): daemon_latency(seq, tmp, e)
               for n, seq in ((1, "pan1"), (6, "pan6")) for e in ("tract", "onnxruntime")}
    engines = {}
    for name, bundle, runs in [("mini-Xception 64x64", "models/fer-minixception", 50), ("Emotion-GCN DenseNet-121 227x227", egcn, 30)]:
        engines[name] = json.loads(sh([PY, "tools/bench/peers.py", "--bundle", bundle, "--rounds", str(a.rounds), "--runs", str(runs), "--json"]))
    # Each engine alone in its process with the default config (what the
    # daemon runs): its own peak RSS, and the fer peer on the same frames.
    fer_rows, alone = [], {}
    for label, d in [("1 face", one), ("6 faces", six)]:
        frames = sorted(os.path.join(d, f) for f in os.listdir(os.path.join(REPO, d)))
        for engine in ("tract", "onnxruntime"):
            ours, theirs = [], []
            for _ in range(a.rounds):
                ours.append(bench(d, 4, backend=engine))
                if a.fer_python:
                    theirs.append(json.loads(subprocess.run([a.fer_python, "tools/bench/fer_peer.py", "--worker", "--frames", *frames, "--runs", "2"],
                                                            cwd=REPO, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]))
            alone[(label, engine)] = {"frames_per_s": st.median(o["frames_per_s"] for o in ours),
                                      "peak_rss_mb": max(o["peak_rss_mb"] for o in ours)}
            if theirs:
                ratios = [o["frames_per_s"] / t["frames_per_s"] for o, t in zip(ours, theirs)]
                fer_rows.append((f"{label}, {engine}", st.median(o["frames_per_s"] for o in ours), st.median(t["frames_per_s"] for t in theirs),
                                 st.median(ratios), min(ratios), max(ratios), max(o["peak_rss_mb"] for o in ours),
                                 max(t["peak_rss_mb"] for t in theirs), sum(theirs[0]["faces_per_frame"]) / len(frames)))
    machine = seqs["1 face"][0]["machine"]
    L = ["# Performance", "",
         f"Measured by `python tools/bench/report.py{' --fer-python …' if a.fer_python else ''}` on **{machine}** (this project's 2-core build machine), "
         f"one invocation, engines interleaved. Medians; machine noise is ±15% between runs, ratios are steadier. Regenerate with the same command.", "",
         f"Peak FP32 of one core (FMA loop, `fer-edge bench --peak`): **{peak} GFLOP/s**.", "",
         "## The pipeline (`fer-edge bench --backend tract,onnxruntime --background false,true`, lite models, 640×480 sequences)", "",
         "The daemon's own per-frame path on the bundled sequences (30 frames each): full detection on the first frame and after every 10 followed frames "
         "(`[detector] interval = 10`), O-Net following between. *frame thread*: detections run on the frame's thread (`background = false`); "
         "*background*: on their own thread, frames arriving at `[source] fps` as from a camera (the waiting not counted). "
         "`frames/s` is amortised over all frames. Medians in ms; the four variants in one process, taking turns round by round.", ""]
    for label in ("1 face", "6 faces"):
        rs = seqs[label]
        L += [f"### {label} (tests/data/sequences/{'pan1' if label == '1 face' else 'pan6'})", "",
              "| stage (ms) | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        keys = sorted({k for r in rs for k in r["stages_ms"]})
        for k in keys:
            L.append(f"| {k} | " + " | ".join(str(r["stages_ms"].get(k, {}).get("p50", "—")) for r in rs) + " |")
        L.append("| detection frames: count, median ms | " + " | ".join(f"{r['detection_frames']['frames']}, {r['detection_frames']['end_to_end_ms']['p50']}" for r in rs) + " |")
        L.append("| followed frames: count, median ms | " + " | ".join(f"{r['followed_frames']['frames']}, {r['followed_frames']['end_to_end_ms']['p50']}" for r in rs) + " |")
        L.append("| end to end p50 / p99 ms | " + " | ".join(f"{r['end_to_end_ms']['p50']} / {r['end_to_end_ms']['p99']}" for r in rs) + " |")
        L.append("| **frames/s (amortised)** | " + " | ".join(f"**{r['frames_per_s']}**" for r in rs) + " |")
        L.append("")
    L += ["Each engine alone in its own process, default config (tract or onnxruntime, background detector): "
          + "; ".join(f"{k[0]}, {k[1]}: {v['frames_per_s']} frames/s, peak RSS {v['peak_rss_mb']} MB" for k, v in alone.items()) + "."]
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
        L += ["", "## fer-edge (default config) vs the Python `fer` package (same 30 frames, OpenCV Haar detector + mini-Xception on TensorFlow, every frame)", "",
              "| frames, fer-edge engine | fer-edge frames/s | fer frames/s | fer-edge ÷ fer (median, range) | fer-edge peak RSS MB | fer peak RSS MB | faces per frame found by fer |", "|---|---|---|---|---|---|---|"]
        for r in fer_rows:
            L.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} ({r[4]:.2f}–{r[5]:.2f}) | {r[6]} | {r[7]} | {r[8]:.1f} |")
    L += ["", "## The daemon: capture → publish (`fer-edge run`, default config, the sequence looped at 30 fps, newest frame wins, embedded broker, per engine)", "",
          "| sequence | p50 ms | p99 ms | frames/s out | frames skipped / processed |", "|---|---|---|---|---|"]
    for k, v in latency.items():
        L.append(f"| {k} (tests/data/sequences/{'pan1' if k.startswith('1 face') else 'pan6'}) | {v['p50']} | {v['p99']} | {v['fps_out']} | {v['skipped']} / {v['processed']} |")
    gcn = engines["Emotion-GCN DenseNet-121 227x227"]["table"]
    ort1 = next(r for r in gcn if r["engine"].startswith("onnxruntime") and "(1 thread)" in r["engine"])
    ours_ort1 = next(r for r in gcn if r["engine"] == "fer-edge (onnxruntime, 1 thread)")
    rss = {e: max(alone[(k, e)]["peak_rss_mb"] for k in ("1 face", "6 faces")) for e in ("tract", "onnxruntime")}
    dflt = {k: seqs[k][1]["frames_per_s"] for k in seqs}  # tract, background: the default config
    det = {k: seqs[k][0]["stages_ms"]["detect"]["p50"] / seqs[k][2]["stages_ms"]["detect"]["p50"] for k in seqs}
    goals = [
        ("Lite pipeline, 640×480, 1 face ≥ 150 frames/s (default config)", f"{dflt['1 face']} frames/s (tract, background detector)", dflt["1 face"] >= 150),
        ("6 faces ≥ 50 frames/s (default config)", f"{dflt['6 faces']} frames/s", dflt["6 faces"] >= 50),
        ("Detection with onnxruntime ≥ 2× faster than with tract", f"{det['1 face']:.2f}× (1 face), {det['6 faces']:.2f}× (6 faces)", min(det.values()) >= 2),
        ("DenseNet-121 Emotion-GCN, fer-edge on onnxruntime within 10% of Python onnxruntime (1 thread)",
         f"{ours_ort1['median_ms']} ms vs {ort1['median_ms']} ms ({ours_ort1['median_ms'] / ort1['median_ms']:.3f}×)",
         ours_ort1["median_ms"] <= 1.1 * ort1["median_ms"]),
        ("capture→publish p99 ≤ 20 ms", f"{min(latency['1 face, tract']['p99'], latency['1 face, onnxruntime']['p99'])} ms (1 face, best engine)",
         min(latency["1 face, tract"]["p99"], latency["1 face, onnxruntime"]["p99"]) <= 20),
        ("Peak RSS with lite models ≤ 60 MB", f"tract {rss['tract']} MB, onnxruntime {rss['onnxruntime']} MB (`fer-edge bench`, default config, one engine per process)",
         min(rss.values()) <= 60),
    ]
    if fer_rows:
        goals.insert(5, ("≥ 5× the frames/s of the Python fer pipeline", ", ".join(f"{r[3]:.2f}× ({r[0]})" for r in fer_rows), min(r[3] for r in fer_rows) >= 5))
        goals.insert(6, ("≤ 1/5 of fer's peak memory", f"{max(r[6] for r in fer_rows) / min(r[7] for r in fer_rows):.2f} of it (worst case)", max(r[6] for r in fer_rows) * 5 <= min(r[7] for r in fer_rows)))
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
