#!/usr/bin/env python3
"""Reproduces the accuracy table of the README and the model cards:
every shipped emotion bundle on FER2013's PublicTest split, through
`fer-edge eval` in both modes (end to end: MTCNN -> alignment -> model;
whole image: the 48x48 face is the crop), and side by side the Python `fer`
package on the same images (its own detector, and its classifier on the
whole image).

  python tools/bench/accuracy.py [--fer-python VENV/bin/python] [--out docs/ACCURACY.md]

Needs a fer-edge binary (target/release/fer-edge, or --bin) and
../shared/data/fer2013/fer2013-publictest.tar.gz (unpacked into a temporary
folder). Writes the Markdown table at the head of --out (keeping its
sections from the first "## " heading on) and the raw JSON beside it.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TAR = os.path.join(REPO, "..", "shared", "data", "fer2013", "fer2013-publictest.tar.gz")


def bundles():
    out = []
    for name in sorted(os.listdir(os.path.join(REPO, "models"))):
        if os.path.exists(os.path.join(REPO, "models", name, "bundle.json")):
            out.append(os.path.join("models", name))
    return out


def fer_edge_eval(binary, bundle, data, whole, backend):
    cmd = [binary, "eval", data, "--model", bundle, "--backend", backend]
    if whole:
        cmd.append("--whole-image")
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return json.loads(p.stdout.splitlines()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "fer-edge"))
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--fer-python", help="python of a venv with fer==25.10.3 + tensorflow-cpu (the peer is skipped without it)")
    ap.add_argument("--peer-json", help="the fer peer's output of an earlier run of fer_accuracy_peer.py (instead of --fer-python)")
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "ACCURACY.md"))
    a = ap.parse_args()
    if not os.path.exists(TAR):
        raise SystemExit(f"{TAR} not found: the FER2013 PublicTest split is needed")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(TAR) as t:
            t.extractall(tmp, filter="data")
        data = os.path.join(tmp, "publictest")
        rows = []
        for b in bundles():
            for whole in (True, False):
                r = fer_edge_eval(a.bin, b, data, whole, a.backend)
                rows.append(r)
                print(json.dumps({k: r[k] for k in ("model", "mode", "accuracy", "macro_f1", "face_found_rate")}), file=sys.stderr)
        peers = []
        if a.fer_python:
            p = subprocess.run([a.fer_python, os.path.join(REPO, "tools", "bench", "fer_accuracy_peer.py"), "--set", data],
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"fer peer failed:\n{p.stderr[-3000:]}")
            peers = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        elif a.peer_json:
            peers = [json.loads(l) for l in open(a.peer_json) if l.startswith("{")]
    classes = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
    lines = [
        "# Accuracy on FER2013 PublicTest",
        "",
        f"Measured {datetime.date.today()} by `python tools/bench/accuracy.py{' --fer-python …' if a.fer_python else (' --peer-json …' if a.peer_json else '')}` "
        f"{'(the `fer` rows from an earlier run of tools/bench/fer_accuracy_peer.py on the same images) ' if a.peer_json else ''}"
        f"with `fer-edge eval` on the {a.backend} engine, on all 3,589 images of FER2013's PublicTest split "
        "(`../shared/data/fer2013/`; models are selected on this split, never trained on it; the PrivateTest split is kept aside). "
        "**Whole image**: the 48×48 face is the crop, resized to the model's input (how FER2013 results are usually quoted). "
        "**End to end**: fer-edge's own chain, MTCNN → eye alignment (thesis §3.1) → model, on the same 48×48 images; "
        "an image where no face is found counts as wrong.",
        "",
        "| model | mode | accuracy | macro-F1 | faces found | accuracy when found | ECE | " + " | ".join(classes) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(classes),
    ]
    for r in rows:
        rec = {c["class"]: c["recall"] for c in r["per_class"]}
        lines.append(
            f"| {r['model']} | {r['mode']} | **{r['accuracy']:.3f}** | {r['macro_f1']:.3f} | {r['face_found_rate']:.3f} | "
            f"{r['accuracy_when_found']:.3f} | {r['ece']:.3f} | " + " | ".join(f"{rec[c]:.2f}" for c in classes) + " |")
    for p in peers:
        rec = {("anger" if k == "angry" else k): v for k, v in p["recall"].items()}
        lines.append(
            f"| {p['peer']} | {p['mode']} | **{p['accuracy']:.3f}** | – | {p['face_found_rate']:.3f} | "
            f"{p['accuracy_when_found']:.3f} | – | " + " | ".join(f"{rec.get(c, 0):.2f}" for c in classes) + " |")
    lines += ["", "Per-class columns are recall. Reproduce one row: `fer-edge eval DIR/publictest --model models/NAME [--whole-image] --report out/`."]
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    # The table replaces the page's head, up to the first "## " heading;
    # what follows it (the training record) is kept.
    rest = ""
    if os.path.exists(a.out):
        with open(a.out) as f:
            old = f.read()
        at = old.find("\n## ")
        if at >= 0:
            rest = old[at:]
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n" + rest)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"fer_edge": rows, "peers": peers}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
