import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def fer_edge_bin():
    env = os.environ.get("FER_EDGE_BIN")
    if env:
        return env
    for p in ("target/debug/fer-edge", "target/release/fer-edge"):
        full = os.path.join(REPO, p)
        if os.path.exists(full):
            return full
    return None


@pytest.fixture(scope="session")
def fer_edge():
    b = fer_edge_bin()
    if b is None:
        pytest.skip("fer-edge binary not built: run `cargo build` or set FER_EDGE_BIN (.ci/run does)")
    return b


def write_affectnet_sample(folder, n=14, seed=0):
    """A tiny AffectNet-format dataset: real photo crops with synthetic labels.

    Images are crops of the scikit-image astronaut photo (tests/data), each
    with 68 landmark points whose eyes sit at known places, and labels that
    cycle through the seven classes with matching valence/arousal.
    """
    rng = np.random.default_rng(seed)
    photo = np.asarray(Image.open(os.path.join(REPO, "tests/data/astronaut.png")).convert("RGB"))
    os.makedirs(os.path.join(folder, "imgs"), exist_ok=True)
    rows = []
    anchors = [(0, 0), (0.74, 0.31), (-0.74, -0.31), (0.31, 0.74), (-0.31, 0.74), (-0.74, 0.31), (-0.57, 0.57)]
    for i in range(n):
        dx, dy = rng.integers(-20, 20, 2)
        crop = photo[40 + dy:200 + dy, 150 + dx:310 + dx]
        name = f"imgs/{i:03d}.png"
        Image.fromarray(crop).save(os.path.join(folder, name))
        # Eyes of the astronaut in the crop's coordinates (measured by fer-edge's MTCNN).
        le, re = np.array([204 - 150 - dx, 101 - 40 - dy]), np.array([246 - 150 - dx, 103 - 40 - dy])
        pts = np.zeros((68, 2))
        pts[:] = (le + re) / 2 + [0, 30]
        pts[36:42] = le + rng.normal(0, 1, (6, 2))
        pts[42:48] = re + rng.normal(0, 1, (6, 2))
        k = i % 7
        v, a = anchors[k]
        rows.append([name, 0, 0, crop.shape[1], crop.shape[0], ";".join(f"{x:.2f}" for x in pts.reshape(-1)), k,
                     round(v + rng.normal(0, 0.05), 3), round(a + rng.normal(0, 0.05), 3)])
    rows.append(["imgs/000.png", 0, 0, 1, 1, "", 7, 0.1, 0.1])  # contempt: skipped
    rows.append(["imgs/001.png", 0, 0, 1, 1, "", 1, -2, -2])  # unannotated VA: skipped
    import csv

    path = os.path.join(folder, "train.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                    "expression", "valence", "arousal"])
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("affectnet")
    return write_affectnet_sample(str(folder)), str(folder)


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory):
    from emotion_gcn import export

    out = str(tmp_path_factory.mktemp("bundle") / "egcn")
    model, meta = export.random_init(None, 0.1, 0.7, "densenet121")
    export.export(model, meta, out, "emotion-gcn-untrained", "0.1.0")
    return out, model


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit=60.0):
    t0 = time.time()
    while time.time() - t0 < limit:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def have(cmd):
    return shutil.which(cmd) is not None


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)
