"""Export an Emotion-GCN model to a fer-edge bundle.

Sources:
  --checkpoint runs/egcn/best.pt          a checkpoint written by emotion_gcn.train
  --authors-checkpoint ckpt.pth --authors-embeddings emb.pth
                                          the authors' public layout: a torch.save
                                          dict whose model_state_dict holds
                                          features.* (DenseNet-121), gc1.weight
                                          (300x512), gc2.weight (512x1024) and the
                                          re-weighted adjacency A (9x9); embeddings
                                          a torch-saved 9x300 tensor (maybe 1x9x300)
  --random-init                           DenseNet-121 with random weights, for
                                          latency work; marked untrained

Writes OUT/model.onnx (input `input` [1,3,227,227] RGB ImageNet-normalised;
outputs `expr_logits` [1,7] and `va` [1,2]; W folded into a 1024->9 head),
OUT/gcn.json (graph, adjacency matrices, W) and OUT/bundle.json. The ONNX
outputs are checked against the PyTorch forward (max abs diff <= 1e-4 on
random inputs, recorded in the manifest).

Usage: python -m emotion_gcn.export --checkpoint best.pt --out models/emotion-gcn
"""
import argparse
import importlib.metadata
import json
import os
import sys

import numpy as np
import torch

from . import adjacency as adj
from . import embeddings
from .bundle import write_bundle
from .labels import EXPRESSIONS, NODES
from .model import EmotionGCN, FoldedEmotionGCN, MultiTask, gen_adj

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def self_loops_graph(tau, p):
    """Without annotations: every node only sees itself."""
    eye = np.eye(9)
    return {"nodes": NODES, "tau": tau, "p": p, "samples": 0, "correlation": eye.tolist(), "adjacency": eye.tolist(),
            "binary": eye.tolist(), "reweighted": eye.tolist(), "propagation": eye.tolist()}


def from_our_checkpoint(path):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ck.get("config") or {}
    kind = cfg.get("model", "emotion-gcn")
    if kind == "emotion-gcn":
        graph = cfg["graph"]
        z, source = embeddings.load(cfg.get("embeddings", "default"))
        model = EmotionGCN(z, np.array(graph["reweighted"]), cfg.get("backbone", "densenet121"))
    elif kind == "multi-task":
        model, graph, source = MultiTask(cfg.get("backbone", "densenet121")), None, None
    else:
        raise SystemExit(f"{path}: a {kind} model has no valence/arousal head to export; export emotion-gcn or multi-task")
    model.load_state_dict(ck["model_state_dict"])
    meta = {"kind": kind, "trained": True, "graph": graph, "embeddings": source,
            "file": os.path.basename(path), "epoch": ck.get("epoch"), "metrics": (ck.get("metrics") or [None])[-1],
            "eye_distance": cfg.get("eye_distance", 0.36), "eye_line": cfg.get("eye_line", 0.40)}
    return model, meta


def from_authors_checkpoint(path, emb_path, tau, p):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    sd = ck.get("model_state_dict", ck) if isinstance(ck, dict) else ck
    need = ["gc1.weight", "gc2.weight", "A"]
    missing = [k for k in need if k not in sd] + ([] if any(k.startswith("features.") for k in sd) else ["features.*"])
    if missing:
        raise SystemExit(f"{path}: not the authors' Emotion-GCN layout, missing {missing}")
    z, _ = embeddings.load(emb_path)
    if z.shape != (9, sd["gc1.weight"].shape[0]):
        raise SystemExit(f"{emb_path}: embeddings are {z.shape}, gc1.weight expects 9 x {sd['gc1.weight'].shape[0]}")
    a = sd["A"].detach().cpu().numpy()
    model = EmotionGCN(z, a, "densenet121")
    state = {k: v for k, v in sd.items() if k.startswith(("features.", "gc1.", "gc2.")) or k == "A"}
    model.load_state_dict(state | {"embeddings": torch.as_tensor(z)}, strict=True)
    graph = {"nodes": NODES, "tau": tau, "p": p, "samples": None, "reweighted": a.tolist(),
             "propagation": gen_adj(torch.as_tensor(a, dtype=torch.float32)).numpy().tolist(),
             "note": "A taken from the authors' checkpoint; correlation/binary not recoverable"}
    meta = {"kind": "emotion-gcn", "trained": True, "graph": graph,
            "embeddings": f"authors' embeddings file {os.path.basename(emb_path)}",
            "file": os.path.basename(path), "epoch": ck.get("epoch") if isinstance(ck, dict) else None,
            "metrics": None, "eye_distance": 0.36, "eye_line": 0.40}
    return model, meta


def random_init(csv, tau, p, backbone):
    torch.manual_seed(0)
    graph = adj.from_csv(csv, tau, p) if csv else self_loops_graph(tau, p)
    z, source = embeddings.load("default")
    model = EmotionGCN(z, np.array(graph["reweighted"]), backbone)
    meta = {"kind": "emotion-gcn", "trained": False, "graph": graph, "embeddings": source, "file": None,
            "epoch": None, "metrics": None, "eye_distance": 0.36, "eye_line": 0.40}
    return model, meta


def export(model, meta, out, name, version):
    import onnx
    import onnxruntime as ort

    model.eval()
    folded = FoldedEmotionGCN(model) if isinstance(model, EmotionGCN) else model
    folded.eval()
    os.makedirs(out, exist_ok=True)
    onnx_path = os.path.join(out, "model.onnx")
    x = torch.randn(1, 3, 227, 227)
    kwargs = dict(input_names=["input"], output_names=["expr_logits", "va"], opset_version=17)
    try:
        torch.onnx.export(folded, (x,), onnx_path, dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(folded, (x,), onnx_path, **kwargs)
    onnx.checker.check_model(onnx.load(onnx_path))
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    max_diff = 0.0
    with torch.no_grad():
        for _ in range(3):
            xi = torch.randn(1, 3, 227, 227, generator=gen)
            ref = model(xi)
            got = sess.run(None, {"input": xi.numpy()})
            for r, g in zip(ref, got):
                max_diff = max(max_diff, float(np.abs(r.numpy() - g).max()))
    if max_diff > 1e-4:
        raise SystemExit(f"ONNX export differs from PyTorch by {max_diff} > 1e-4")
    gcn_file = None
    if isinstance(model, EmotionGCN):
        with torch.no_grad():
            w = model.classifiers().numpy()
        gcn = {"nodes": NODES, "graph": meta["graph"], "embeddings": meta["embeddings"],
               "W": [[round(float(v), 7) for v in row] for row in w]}
        gcn_file = "gcn.json"
        with open(os.path.join(out, gcn_file), "w") as f:
            json.dump(gcn, f)
            f.write("\n")
    trained = meta["trained"]
    manifest = {
        "name": name,
        "version": version,
        "architecture": meta["kind"],
        "trained": trained,
        "source": {"package": None, "package_version": None, "file": meta["file"],
                   "converter": "tools/emotion_gcn (python -m emotion_gcn.export)"},
        "license": ("MIT OR Apache-2.0 (random weights, no training data)" if not trained else
                    "weights inherit the terms of their training data (AffectNet: research use only); code MIT OR Apache-2.0"),
        "model_file": "model.onnx",
        "input": {"name": "input", "width": 227, "height": 227, "color": "rgb", "mean": MEAN, "std": STD},
        "outputs": {"expressions": "expr_logits", "expressions_kind": "logits", "va": "va"},
        "classes": EXPRESSIONS,
        "va_source": "model",
        "alignment": {"eye_distance": meta["eye_distance"], "eye_line": meta["eye_line"]},
        "reference": {"runtime": f"onnxruntime {ort.__version__}", "torch": torch.__version__,
                      "max_abs_diff_onnx_vs_pytorch": max_diff, "epoch": meta["epoch"], "metrics": meta["metrics"]},
        "gcn": {"file": gcn_file, "tau": meta["graph"]["tau"] if meta["graph"] else None,
                "p": meta["graph"]["p"] if meta["graph"] else None} if gcn_file else None,
    }
    manifest = write_bundle(out, manifest)
    print(json.dumps({"bundle": out, "sha256": manifest["sha256"], "max_abs_diff_onnx_vs_pytorch": max_diff, "trained": trained}))
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint")
    src.add_argument("--authors-checkpoint")
    src.add_argument("--random-init", action="store_true")
    ap.add_argument("--authors-embeddings", help="the authors' torch-saved 9x300 embeddings (with --authors-checkpoint)")
    ap.add_argument("--csv", help="--random-init: annotations to build the graph from (else self-loops only)")
    ap.add_argument("--backbone", default="densenet121", choices=["densenet121", "tiny"])
    ap.add_argument("--tau", type=float, default=0.1)
    ap.add_argument("--p", type=float, default=0.7)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="emotion-gcn")
    ap.add_argument("--version", default="0.1.0")
    a = ap.parse_args(argv)
    if a.checkpoint:
        model, meta = from_our_checkpoint(a.checkpoint)
    elif a.authors_checkpoint:
        if not a.authors_embeddings:
            sys.exit("--authors-checkpoint needs --authors-embeddings")
        model, meta = from_authors_checkpoint(a.authors_checkpoint, a.authors_embeddings, a.tau, a.p)
    else:
        model, meta = random_init(a.csv, a.tau, a.p, a.backbone)
        if a.name == "emotion-gcn":
            a.name = "emotion-gcn-untrained"
    export(model, meta, a.out, a.name, importlib.metadata.version("emotion-gcn") if a.version == "0.1.0" else a.version)


if __name__ == "__main__":
    main()
