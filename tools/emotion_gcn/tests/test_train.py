import json
import os
import subprocess
import sys

import torch

from emotion_gcn.data import class_weights


def test_class_weights_make_the_rarest_class_weigh_most():
    w = class_weights([1, 1, 1, 1, 2, 2, 0])
    assert torch.isclose(w[0], torch.tensor(1.0)) and torch.isclose(w[1], torch.tensor(0.25))
    assert w[3] == 0  # absent from training


def train(sample_dataset, out, model, steps=4):
    csv, root = sample_dataset
    cmd = [sys.executable, "-m", "emotion_gcn.train", "--train-csv", csv, "--val-csv", csv, "--images", root,
           "--out", out, "--model", model, "--backbone", "tiny", "--epochs", "2", "--batch-size", "4",
           "--max-steps", str(steps), "--cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return [json.loads(l) for l in res.stdout.splitlines() if l.startswith("{")]


def test_a_smoke_training_run_reports_metrics_and_saves_checkpoints(sample_dataset, tmp_path):
    out = str(tmp_path / "run")
    metrics = train(sample_dataset, out, "emotion-gcn", steps=6)
    assert metrics, "at least one epoch reported"
    m = metrics[-1]
    for k in ("accuracy", "ccc_valence", "ccc_arousal", "train_loss"):
        assert k in m
    assert m["samples"] == 14  # contempt and unannotated rows skipped
    assert m["train_loss"] == m["train_loss"] and m["train_loss"] > 0  # finite, positive
    ck = torch.load(os.path.join(out, "best.pt"), map_location="cpu", weights_only=False)
    assert {"epoch", "model_state_dict", "optimizer_state_dict"} <= set(ck)
    assert "gc1.weight" in ck["model_state_dict"] and "A" in ck["model_state_dict"]
    assert ck["config"]["graph"]["nodes"][7:] == ["valence", "arousal"]


def test_the_table_6_1_baselines_train_too(sample_dataset, tmp_path):
    for model in ("multi-task", "single-task"):
        assert train(sample_dataset, str(tmp_path / model), model, steps=2)
