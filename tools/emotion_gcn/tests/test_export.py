import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, free_port, have, run, wait_port
from emotion_gcn import align, export
from emotion_gcn.data import to_tensor
from emotion_gcn.model import EmotionGCN

ASTRONAUT_EYES = ((203.9, 101.3), (246.4, 103.2))  # as fer-edge's MTCNN finds them


def aligned_crop(tmp_path, size=227):
    img = np.asarray(Image.open(os.path.join(REPO, "tests/data/astronaut.png")).convert("RGB"))
    crop = align.align(img, *ASTRONAUT_EYES, size, size, 0.36, 0.40)
    p = str(tmp_path / "crop.png")
    Image.fromarray(crop).save(p)
    return p


def fer_edge_outputs(fer_edge, bundle, crop, backend="tract"):
    res = run([fer_edge, "model", "run", bundle, "--aligned", crop, "--backend", backend], cwd=REPO)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def torch_outputs(model, crop):
    x = to_tensor(np.asarray(Image.open(crop).convert("RGB")))[None]
    with torch.no_grad():
        logits, va = model.eval()(x)
    return logits[0].numpy(), va[0].numpy()


def assert_same(fer, model, crop, backend="tract"):
    logits, va = torch_outputs(model, crop)
    got_l = np.array(fer["outputs"]["expr_logits"])
    got_va = np.array(fer["outputs"]["va"])
    diff = max(np.abs(got_l - logits).max(), np.abs(got_va - va).max())
    print(f"max abs diff fer-edge ({backend}) vs PyTorch:", diff)
    assert diff <= 1e-4, diff
    return diff


@pytest.mark.parametrize("backend", ["tract", "onnxruntime"])
def test_a_random_init_densenet_bundle_matches_pytorch_in_fer_edge(fer_edge, random_bundle, tmp_path, backend):
    bundle, model = random_bundle
    m = json.load(open(os.path.join(bundle, "bundle.json")))
    assert m["trained"] is False and m["architecture"] == "emotion-gcn" and m["va_source"] == "model"
    assert m["reference"]["max_abs_diff_onnx_vs_pytorch"] <= 1e-4
    crop = aligned_crop(tmp_path)
    assert_same(fer_edge_outputs(fer_edge, bundle, crop, backend), model, crop, backend)


def test_model_inspect_shows_the_graph_and_classifier_similarity(fer_edge, random_bundle):
    bundle, _ = random_bundle
    res = run([fer_edge, "model", "inspect", bundle], cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "UNTRAINED" in res.stdout and "cosine similarity" in res.stdout and "propagation" in res.stdout
    assert "valence" in res.stdout and "arousal" in res.stdout


def test_the_bundle_runs_in_analyze_with_model_va_and_a_loud_untrained_warning(fer_edge, random_bundle):
    bundle, _ = random_bundle
    res = run([fer_edge, "analyze", "--model", bundle, "tests/data/astronaut.png"], cwd=REPO)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert len(rep["faces"]) == 1 and rep["faces"][0]["va_source"] == "model"
    assert "UNTRAINED" in res.stderr


@pytest.mark.skipif(not have("mosquitto_sub"), reason="mosquitto-clients not installed (tools/setup.sh)")
def test_the_bundle_runs_in_the_daemon(fer_edge, random_bundle, tmp_path):
    bundle, _ = random_bundle
    port = free_port()
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
[source]
kind = "replay"
path = "{REPO}/tests/data/sequences/pan1"
pace = false
[emotion]
model = "{bundle}"
[mqtt]
device_id = "gcn"
[mqtt.broker]
listen = "127.0.0.1:{port}"
""")
    d = subprocess.Popen([fer_edge, "run", "--config", str(cfg)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_port(port), "embedded broker up"
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-v", "-t", "fer-edge/#"],
                               stdout=subprocess.PIPE, text=True)
        rc = d.wait(timeout=600)
        time.sleep(0.5)
        sub.terminate()
        out = sub.communicate(timeout=10)[0]
    finally:
        if d.poll() is None:
            d.kill()
    assert rc == 0, d.stderr.read()
    expr = [json.loads(l.split(" ", 1)[1]) for l in out.splitlines() if "/expression " in l]
    assert expr and all(e["va_source"] == "model" and e["model"].startswith("emotion-gcn-untrained") for e in expr)


def test_a_checkpoint_in_the_authors_layout_converts_and_matches(fer_edge, tmp_path):
    torch.manual_seed(3)
    z = torch.randn(1, 9, 300)  # their embeddings file carries a batch dimension
    a = np.full((9, 9), 0.0)
    a[:7, 7:] = 0.35
    a[7:, :7] = 0.7 / 7
    np.fill_diagonal(a, 0.3)
    ours = EmotionGCN(z[0].numpy(), a, "densenet121")
    sd = {k: v for k, v in ours.state_dict().items() if k != "embeddings"}
    ck = tmp_path / "authors.pth"
    torch.save({"epoch": 12, "model_state_dict": sd, "optimizer_state_dict": {}}, ck)
    emb = tmp_path / "embeddings.pth"
    torch.save(z, emb)
    out = str(tmp_path / "bundle")
    res = run([sys.executable, "-m", "emotion_gcn.export", "--authors-checkpoint", str(ck), "--authors-embeddings", str(emb), "--out", out])
    assert res.returncode == 0, res.stderr
    m = json.load(open(os.path.join(out, "bundle.json")))
    assert m["trained"] is True and m["source"]["file"] == "authors.pth"
    crop = aligned_crop(tmp_path)
    assert_same(fer_edge_outputs(fer_edge, out, crop), ours, crop)


def test_a_checkpoint_of_our_trainer_exports_and_matches(fer_edge, sample_dataset, tmp_path):
    from test_train import train

    out = str(tmp_path / "run")
    train(sample_dataset, out, "emotion-gcn", steps=2)
    bundle = str(tmp_path / "bundle")
    res = run([sys.executable, "-m", "emotion_gcn.export", "--checkpoint", os.path.join(out, "best.pt"), "--out", bundle])
    assert res.returncode == 0, res.stderr
    model, _ = export.from_our_checkpoint(os.path.join(out, "best.pt"))
    crop = aligned_crop(tmp_path)
    assert_same(fer_edge_outputs(fer_edge, bundle, crop), model, crop)


def test_python_alignment_matches_fer_edge_pixel_for_pixel(fer_edge, tmp_path):
    out = str(tmp_path / "rust.png")
    (l, r) = ASTRONAUT_EYES
    res = run([fer_edge, "model", "align", "--image", "tests/data/astronaut.png", "--left", f"{l[0]},{l[1]}",
               "--right", f"{r[0]},{r[1]}", "--size", "227", "--out", out], cwd=REPO)
    assert res.returncode == 0, res.stderr
    rust = np.asarray(Image.open(out).convert("RGB")).astype(int)
    py = np.asarray(Image.open(aligned_crop(tmp_path)).convert("RGB")).astype(int)
    diff = np.abs(rust - py)
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
