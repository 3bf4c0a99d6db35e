#!/usr/bin/env python3
"""The pipeline a user would pick instead of fer-edge: the Python `fer`
package (OpenCV face detector + the same mini-Xception, on TensorFlow).

Worker mode (what report.py calls, one process per measurement so peak RSS
is the pipeline's own):
  python tools/bench/fer_peer.py --worker --frames tests/data/frames640/one_face.png --runs 20
prints {"frames_per_s", "median_ms", "peak_rss_mb", "faces_per_frame"}.
Needs: pip install fer==25.10.3 tensorflow-cpu opencv-python-headless
"""
import argparse
import json
import resource
import statistics as st
import time


def worker(frames, runs):
    import cv2
    from fer.fer import FER

    det = FER()
    imgs = [cv2.imread(f) for f in frames]
    faces = [len(det.detect_emotions(im)) for im in imgs]  # warm-up
    times = []
    t0 = time.perf_counter()
    for _ in range(runs):
        for im in imgs:
            t = time.perf_counter()
            det.detect_emotions(im)
            times.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames_per_s": round(len(times) / wall, 2), "median_ms": round(st.median(times), 3),
            "peak_rss_mb": round(rss_mb, 1), "faces_per_frame": faces}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true", required=True)
    ap.add_argument("--frames", nargs="+", required=True)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    print(json.dumps(worker(a.frames, a.runs)))
