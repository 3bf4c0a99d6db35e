#!/usr/bin/env python3
"""Equal work, side by side: fer-edge against the Python `fer` package on the
same frames, every face read on every frame (`--expression-rate 0`, what
`fer` does) with the default 5 Hz reading beside it, labelled; and the
daemon's peak memory with one engine (issue 32).

  python tools/bench/equal_work.py --fer-edge after=target/release/fer-edge \\
      [--fer-edge before=/tmp/fer-edge-before] [--fer-python VENV/bin/python] \\
      [--rounds 5] [--daemon-seconds 60] > equal-work.md

Per sequence (tests/data/sequences/pan1: one face, pan6: six) and round, in
turn: each fer-edge binary (`fer-edge bench --backend onnxruntime,tract
--expression-rate 0,5`, its engines interleaved inside it), then the `fer`
peer (tools/bench/fer_peer.py, one process). Medians over rounds; the ratio
to `fer` is taken per round (same minute of the machine), then its median.
`coverage` is the share of the faces a full detection finds that the engine
read on the timed frames: a frame rate only counts with the faces read.

--daemon-seconds: `fer-edge run` on pan6 (looped, paced at 30 fps, the
embedded broker) for that long per engine, one process each, peak RSS
(VmHWM) read before SIGTERM: the memory a single-engine daemon holds.
"""
import argparse
import json
import os
import signal
import statistics as st
import subprocess
import sys
import tempfile
import time

from report import REPO, daemon_config, free_port  # tools/bench/report.py, beside this file
SEQUENCES = [("1 face", "tests/data/sequences/pan1"), ("6 faces", "tests/data/sequences/pan6")]


def fer_edge_bench(binary, frames, runs, model):
    cmd = [binary, "bench", "--frames", frames, "--runs", str(runs), "--json",
           "--backend", "onnxruntime,tract", "--expression-rate", "0,5"]
    if model:
        cmd += ["--model", model]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def fer_peer(python, frames, runs):
    files = sorted(os.path.join(frames, f) for f in os.listdir(os.path.join(REPO, frames)))
    out = subprocess.run([python, "tools/bench/fer_peer.py", "--worker", "--frames", *files, "--runs", str(runs)],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def daemon_peak_rss(binary, engine, seconds, model, tmp):
    """Peak RSS (MB) of `fer-edge run` on pan6 with one engine, and frames processed."""
    cfg = daemon_config(os.path.join(tmp, f"daemon-{engine}.toml"), "pan6", engine, free_port(), model)
    d = subprocess.Popen([binary, "run", "--config", cfg], cwd=REPO, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, FER_EDGE_LOG="warn"))
    try:
        time.sleep(seconds)
        with open(f"/proc/{d.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        hwm = int(fields["VmHWM"].split()[0]) / 1024
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=60)
    return round(hwm, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer-edge", action="append", required=True, metavar="LABEL=BINARY",
                    help="a fer-edge binary to time, with its label (repeat to compare builds)")
    ap.add_argument("--fer-python", help="python of a venv with fer==25.10.3 + tensorflow-cpu (the peer is left out without it)")
    ap.add_argument("--model", help="emotion bundle for fer-edge (default: the config's, models/fernet-w32)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=4, help="passes over the sequence per fer-edge bench")
    ap.add_argument("--fer-runs", type=int, default=2, help="passes over the sequence per fer peer run")
    ap.add_argument("--daemon-seconds", type=float, default=0, help="also the single-engine daemon's peak RSS (0: not)")
    ap.add_argument("--json", help="also write every measurement to this file")
    a = ap.parse_args()
    builds = [tuple(s.split("=", 1)) for s in a.fer_edge]
    rows, raw = {}, {"rounds": []}
    for label, frames in SEQUENCES:
        for r in range(a.rounds):
            peer = fer_peer(a.fer_python, frames, a.fer_runs) if a.fer_python else None
            for name, binary in builds:
                for rep in fer_edge_bench(binary, frames, a.runs, a.model):
                    key = (label, name, rep["backend"], rep["expression_rate_hz"])
                    row = rows.setdefault(key, {"fps": [], "coverage": [], "rss": [], "ratio": []})
                    row["fps"].append(rep["frames_per_s"])
                    row["coverage"].append(rep["coverage"])
                    row["rss"].append(rep["peak_rss_mb"])
                    if peer:
                        row["ratio"].append(rep["frames_per_s"] / peer["frames_per_s"])
            if peer:
                row = rows.setdefault((label, "Python fer 25.10.3", "TensorFlow", None),
                                      {"fps": [], "coverage": [], "rss": [], "ratio": [], "faces": []})
                row["fps"].append(peer["frames_per_s"])
                row["rss"].append(peer["peak_rss_mb"])
                row["faces"].append(st.mean(peer["faces_per_frame"]))
            raw["rounds"].append({"sequence": label, "round": r, "peer": peer})
            print(f"equal_work: {label} round {r + 1}/{a.rounds} done", file=sys.stderr)
    print(f"{a.rounds} rounds, medians (range); `fer-edge bench --runs {a.runs}` per round, engines interleaved in it; "
          f"the `fer` peer {a.fer_runs} passes per round.\n")
    print("| frames | build | engine | reading | frames/s | coverage | × fer (per-round median) | bench peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for (label, name, engine, rate), row in rows.items():
        reading = "—" if rate is None else ("every face, every frame" if rate == 0 else f"default {rate:g} Hz")
        fps = f"{st.median(row['fps']):.1f} ({min(row['fps']):.1f}–{max(row['fps']):.1f})"
        cov = f"{st.median(row['coverage']):.2f}" if row["coverage"] else \
            f"{st.median(row['faces']):.1f} faces/frame found"
        ratio = f"{st.median(row['ratio']):.2f}× ({min(row['ratio']):.2f}–{max(row['ratio']):.2f})" if row["ratio"] else "—"
        print(f"| {label} | {name} | {engine} | {reading} | {fps} | {cov} | {ratio} | {max(row['rss']):.0f} |")
    if a.daemon_seconds:
        tmp = tempfile.mkdtemp()
        print(f"\nSingle-engine daemon, `fer-edge run` on pan6 (six faces) looped at 30 fps, {a.daemon_seconds:g} s, "
              "embedded broker, peak RSS (VmHWM):\n")
        print("| build | engine | peak RSS MB |")
        print("|---|---|---|")
        for name, binary in builds:
            for engine in ("onnxruntime", "tract"):
                mb = daemon_peak_rss(binary, engine, a.daemon_seconds, a.model, tmp)
                raw.setdefault("daemon", []).append({"build": name, "engine": engine, "peak_rss_mb": mb})
                print(f"| {name} | {engine} | {mb} |")
    if a.json:
        raw["rows"] = [{"sequence": k[0], "build": k[1], "engine": k[2], "rate_hz": k[3], **v} for k, v in rows.items()]
        with open(a.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
