#!/usr/bin/env python3
"""The Python `fer` package's accuracy on a labelled ImageFolder set, the two
ways a user would run it:

  detector     FER().detect_emotions(image): its own OpenCV Haar detector,
               then its mini-Xception; an image with no face counts as wrong
               (as `fer-edge eval` counts it end to end)
  whole-image  the whole image given as the face rectangle
               (detect_emotions(image, face_rectangles=[(0, 0, w, h)])),
               through fer's own padding and resizing

Prints one JSON object per mode: accuracy, face_found_rate,
accuracy_when_found, per-class recall, images. Run with the python of a venv
holding the package (tools/bench/accuracy.py --fer-python does):

  pip install fer==25.10.3 tensorflow-cpu opencv-python-headless "setuptools<81"
  python tools/bench/fer_accuracy_peer.py --set /tmp/publictest
"""
import argparse
import json
import os
import sys

# fer's names -> fer-edge's folder labels.
FER_TO_OURS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
               "sad": "sad", "surprise": "surprise", "neutral": "neutral"}


def samples(root):
    for label in sorted(os.listdir(root)):
        d = os.path.join(root, label)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                yield label, os.path.join(d, f)


def top(face):
    e = face["emotions"]
    return FER_TO_OURS[max(e, key=e.get)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", required=True, help="ImageFolder root (<label>/*.jpg)")
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import cv2
    from fer.fer import FER

    det = FER()
    stats = {m: {"n": 0, "correct": 0, "found": 0, "per_class": {}} for m in ("detector", "whole-image")}
    for i, (label, path) in enumerate(samples(a.set)):
        if a.limit and i >= a.limit:
            break
        img = cv2.imread(path)
        if img is None:
            print(f"unreadable: {path}", file=sys.stderr)
            continue
        h, w = img.shape[:2]
        for mode, faces in (("detector", det.detect_emotions(img)),
                            ("whole-image", det.detect_emotions(img, face_rectangles=[(0, 0, w, h)]))):
            s = stats[mode]
            s["n"] += 1
            pc = s["per_class"].setdefault(label, [0, 0])
            pc[1] += 1
            if faces:
                s["found"] += 1
                biggest = max(faces, key=lambda f: f["box"][2] * f["box"][3])
                if top(biggest) == label:
                    s["correct"] += 1
                    pc[0] += 1
    import fer

    for mode, s in stats.items():
        n = max(s["n"], 1)
        print(json.dumps({
            "peer": f"fer {getattr(fer, '__version__', '25.10.3')} (Python, TensorFlow)",
            "mode": mode, "images": s["n"], "accuracy": s["correct"] / n, "face_found_rate": s["found"] / n,
            "accuracy_when_found": s["correct"] / max(s["found"], 1),
            "recall": {k: v[0] / v[1] for k, v in sorted(s["per_class"].items())},
        }))


if __name__ == "__main__":
    main()
