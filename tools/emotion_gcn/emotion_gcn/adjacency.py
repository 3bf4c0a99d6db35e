"""Emotion-GCN's graph from training annotations (thesis eq. 6.3.2-6.3.5).

c_ij  Spearman rank correlation (Pearson correlation of average ranks, as
      scipy/pandas compute it) between the one-hot indicator of expression i
      and the valence (or arousal) values.
A     |c_ij| between a categorical and a dimensional node, 1 on the
      diagonal, 0 elsewhere.
A'    1 where A >= tau (binarised).
A''   off-diagonal p * A'_ij / sum_{j != i} A'_ij, diagonal 1 - p.
      A node with no neighbour at or above tau keeps a self-loop of 1 (it
      cannot spread weight p over nobody; this keeps every row summing to 1).
A^    D^-1/2 A''^T D^-1/2, D = diag(row sums of A''), as in the authors'
      ML-GCN-style gen_adj.

Usage: python -m emotion_gcn.adjacency --csv FILE --tau 0.1 --p 0.7
"""
import argparse
import json
import sys

import numpy as np

from .labels import N_EXPR, N_NODES, NODES

AFFECTNET_COLUMNS = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal"]


def load_annotations(path):
    """Rows with expression 0..6 and annotated valence/arousal (-2 = missing)."""
    import pandas as pd

    df = pd.read_csv(path)
    missing = [c for c in ("expression", "valence", "arousal") if c not in df.columns]
    if missing:
        raise SystemExit(f"{path}: missing column(s) {missing}; expected AffectNet columns {AFFECTNET_COLUMNS}")
    df = df[df["expression"].isin(range(N_EXPR))]
    df = df[(df["valence"] != -2) & (df["arousal"] != -2)]
    if len(df) == 0:
        raise SystemExit(f"{path}: no row has expression 0-6 with annotated valence and arousal")
    return df.reset_index(drop=True)


def rank_average(x):
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def spearman(a, b):
    """Pearson correlation of average ranks; 0 when either side is constant."""
    ra, rb = rank_average(a), rank_average(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def correlation(expression, valence, arousal):
    """Signed Spearman correlation between all nine variables (9x9)."""
    cols = [(np.asarray(expression) == k).astype(float) for k in range(N_EXPR)]
    cols += [np.asarray(valence, float), np.asarray(arousal, float)]
    c = np.eye(N_NODES)
    for i in range(N_NODES):
        for j in range(i + 1, N_NODES):
            c[i, j] = c[j, i] = spearman(cols[i], cols[j])
    return c


def adjacency(c):
    """|c| between categorical and dimensional nodes, 1 on the diagonal."""
    a = np.eye(N_NODES)
    for i in range(N_EXPR):
        for j in range(N_EXPR, N_NODES):
            a[i, j] = a[j, i] = abs(c[i, j])
    return a


def binarise(a, tau):
    return (a >= tau).astype(float)


def reweight(b, p):
    out = np.zeros_like(b)
    for i in range(b.shape[0]):
        off = b[i].copy()
        off[i] = 0.0
        s = off.sum()
        if s == 0:
            out[i, i] = 1.0
        else:
            out[i] = p * off / s
            out[i, i] = 1.0 - p
    return out


def propagation(a):
    d = np.power(a.sum(1), -0.5)
    d = np.diag(d)
    return d @ a.T @ d


def build(expression, valence, arousal, tau=0.1, p=0.7):
    c = correlation(expression, valence, arousal)
    a = adjacency(c)
    b = binarise(a, tau)
    r = reweight(b, p)
    return {"nodes": NODES, "tau": tau, "p": p, "samples": int(len(expression)),
            "correlation": c.tolist(), "adjacency": a.tolist(), "binary": b.tolist(),
            "reweighted": r.tolist(), "propagation": propagation(r).tolist()}


def from_csv(path, tau=0.1, p=0.7):
    df = load_annotations(path)
    return build(df["expression"].to_numpy(), df["valence"].to_numpy(), df["arousal"].to_numpy(), tau, p)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", required=True, help="AffectNet-format annotation CSV")
    ap.add_argument("--tau", type=float, default=0.1, help="binarisation threshold (thesis: 0.1)")
    ap.add_argument("--p", type=float, default=0.7, help="re-weighting (thesis: 0.7; the authors' code: 0.5)")
    args = ap.parse_args(argv)
    if not 0 <= args.p <= 1:
        sys.exit("--p must be in [0, 1]")
    json.dump(from_csv(args.csv, args.tau, args.p), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
