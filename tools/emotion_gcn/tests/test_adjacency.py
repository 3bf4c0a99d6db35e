import json
import math
import os
import subprocess
import sys

import numpy as np
from scipy.stats import spearmanr

from emotion_gcn import adjacency
from emotion_gcn.labels import NODES

HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
ROWS = [
    ("a.jpg", 1, 0.8, 0.3),   # happy
    ("b.jpg", 1, 0.6, 0.1),   # happy
    ("c.jpg", 2, -0.7, -0.2), # sad
    ("d.jpg", 0, 0.0, 0.0),   # neutral
    ("e.jpg", 7, 0.5, 0.5),   # contempt: skipped
    ("f.jpg", 3, -2, -2),     # valence/arousal not annotated: skipped
]


def write_csv(tmp_path):
    p = tmp_path / "ann.csv"
    p.write_text(HEADER + "".join(f"{f},0,0,10,10,,{e},{v},{a}\n" for f, e, v, a in ROWS))
    return str(p)


def test_spearman_values_match_a_hand_computation(tmp_path):
    g = adjacency.from_csv(write_csv(tmp_path), tau=0.1, p=0.7)
    c = np.array(g["correlation"])
    V, A = 7, 8
    # Ranks (average ties) of valence [0.8, 0.6, -0.7, 0.0] are [4, 3, 1, 2].
    # happy = [1,1,0,0] -> ranks [3.5,3.5,1.5,1.5]: r = 4 / (2 * sqrt(5)).
    assert math.isclose(c[1, V], 2 / math.sqrt(5), rel_tol=1e-9)
    # neutral = [0,0,0,1]: r = -1 / sqrt(15); sad = [0,0,1,0]: r = -3 / sqrt(15).
    assert math.isclose(c[0, V], -1 / math.sqrt(15), rel_tol=1e-9)
    assert math.isclose(c[2, V], -3 / math.sqrt(15), rel_tol=1e-9)
    # Arousal has the same ranks as valence here.
    assert math.isclose(c[1, A], 2 / math.sqrt(5), rel_tol=1e-9)
    # Classes absent from the data have constant indicators: correlation 0.
    assert c[3, V] == 0 and c[6, A] == 0
    # The same numbers as scipy's Spearman.
    v = np.array([0.8, 0.6, -0.7, 0.0])
    assert math.isclose(c[2, V], spearmanr([0, 0, 1, 0], v).statistic, rel_tol=1e-9)
    assert g["samples"] == 4


def test_binary_reweighted_and_propagation_follow_eq_6_3_3_to_6_3_5(tmp_path):
    g = adjacency.from_csv(write_csv(tmp_path), tau=0.1, p=0.7)
    a, b, r, prop = (np.array(g[k]) for k in ("adjacency", "binary", "reweighted", "propagation"))
    # Only categorical-dimensional pairs (and the diagonal) are non-zero.
    assert a[1, 2] == 0 and a[7, 8] == 0 and np.allclose(np.diag(a), 1)
    assert math.isclose(a[2, 7], 3 / math.sqrt(15))
    # tau = 0.1: happy, sad, neutral connect to V and A; absent classes do not.
    assert b[1, 7] == b[1, 8] == b[0, 7] == b[2, 8] == 1 and b[3, 7] == 0
    # Happy: two neighbours share p = 0.7, self 1 - p.
    assert np.allclose(r[1, [1, 7, 8]], [0.3, 0.35, 0.35])
    # Valence: three neighbours (neutral, happy, sad).
    assert np.allclose(r[7, [0, 1, 2, 7]], [0.7 / 3, 0.7 / 3, 0.7 / 3, 0.3])
    # A node without neighbours keeps a self-loop of 1.
    assert r[3, 3] == 1 and r[3].sum() == 1
    # Rows sum to 1, so D = I and the propagation is A''^T.
    assert np.allclose(r.sum(1), 1)
    assert np.allclose(prop, r.T)


def test_a_higher_tau_cuts_weak_edges(tmp_path):
    g = adjacency.from_csv(write_csv(tmp_path), tau=0.5, p=0.5)
    b = np.array(g["binary"])
    assert b[0, 7] == 0 and b[1, 7] == 1  # |-0.258| < 0.5 <= 0.894
    r = np.array(g["reweighted"])
    assert np.allclose(r[1, [1, 7, 8]], [0.5, 0.25, 0.25])


def test_the_command_prints_the_documented_json(tmp_path):
    out = subprocess.run([sys.executable, "-m", "emotion_gcn.adjacency", "--csv", write_csv(tmp_path), "--tau", "0.1", "--p", "0.7"],
                         capture_output=True, text=True, check=True)
    g = json.loads(out.stdout)
    assert g["nodes"] == NODES
    for k in ("correlation", "binary", "reweighted", "propagation"):
        assert np.array(g[k]).shape == (9, 9)


def test_a_csv_without_the_label_columns_is_refused_with_their_names(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,2\n")
    out = subprocess.run([sys.executable, "-m", "emotion_gcn.adjacency", "--csv", str(p)], capture_output=True, text=True)
    assert out.returncode != 0 and "expression" in out.stderr
