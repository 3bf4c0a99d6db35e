"""The FER2013 trainer and exporter (emotion_gcn.fer2013) on real FER2013
faces: the 98-image sample committed in tests/data/fer2013-sample (14 per
class), copied as both the training and the publictest split."""
import json
import os
import shutil

import pytest
import torch

from conftest import REPO, run
from emotion_gcn import fer2013

SAMPLE = os.path.join(REPO, "tests", "data", "fer2013-sample")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fer2013")
    for split in ("training", "publictest"):
        shutil.copytree(SAMPLE, root / split)
    return str(root)


def train(data, out, *extra):
    fer2013.main(["train", "--data", data, "--out", str(out), "--width", "4", "--batch", "32", "--threads", "1", *extra])
    with open(os.path.join(out, "history.jsonl")) as f:
        return [json.loads(l) for l in f]


def test_the_sample_loads_as_seven_classes_of_48x48_grey_faces():
    x, y = fer2013.load_split(SAMPLE)
    assert x.shape == (98, 48, 48) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [14] * 7
    assert 40 < float(x.float().mean()) < 220  # real faces, not blank images


def test_gcn_head_generates_one_classifier_per_expression_from_the_label_embeddings():
    net = fer2013.FerNet(width=4, head="gcn")
    w, b = net.classifiers()
    assert w.shape == (7, net.dim) and b.shape == (7,)
    # FER2013 has no valence/arousal: the restricted graph has no edges.
    assert torch.equal(net.A, torch.eye(7))
    # W is generated: changing an embedding row changes that class's classifier only.
    with torch.no_grad():
        net.embeddings[3] += 1.0
    w2, _ = net.classifiers()
    changed = (w2 - w).abs().sum(1) > 0
    assert changed.tolist() == [i == 3 for i in range(7)]


def test_class_weights_raise_the_rare_classes_and_keep_the_mean_sample_weight_at_one():
    # FER2013 training counts, in CLASSES order (angry, disgust, fear, happy, neutral, sad, surprise).
    counts = [3995, 436, 4097, 7215, 4965, 4830, 3171]
    y = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(counts)])
    for kind in ("sqrt", "inverse"):
        w = fer2013.class_weights(y, kind)
        assert abs(float((w[y]).mean()) - 1.0) < 1e-5, kind
        assert int(w.argmax()) == fer2013.CLASSES.index("disgust")
        assert int(w.argmin()) == fer2013.CLASSES.index("happy")
    sq, inv = fer2013.class_weights(y, "sqrt"), fer2013.class_weights(y, "inverse")
    assert float(sq.max() / sq.min()) == pytest.approx(float(inv.max() / inv.min()) ** 0.5, rel=1e-5)
    assert torch.equal(fer2013.class_weights(y, "none"), torch.ones(7))


def test_augmentation_keeps_shape_and_range_and_changes_the_faces():
    x, _ = fer2013.load_split(SAMPLE)
    x = fer2013.normalise(x[:16])
    a = fer2013.augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and float(a.min()) >= -1 and float(a.max()) <= 1
    assert float((a - x).abs().mean()) > 0.05


def test_training_is_seeded_resumable_and_exports_a_bundle_fer_edge_scores(data, tmp_path, fer_edge):
    out = tmp_path / "run"
    hist = train(data, out, "--epochs", "2", "--seed", "3")
    assert [h["epoch"] for h in hist] == [0, 1]
    assert all(0 <= h["publictest_accuracy"] <= 1 for h in hist)
    # Same seed, same first epoch.
    again = train(data, tmp_path / "again", "--epochs", "2", "--seed", "3")
    assert again[0]["train_loss"] == hist[0]["train_loss"]
    # Resuming a finished run trains nothing more; other settings are refused.
    assert len(train(data, out, "--epochs", "2", "--seed", "3", "--resume")) == 2
    # A copy taken between an epoch's curve row and its checkpoint (as
    # tools/long-train.sh sync may) resumes without counting that epoch twice.
    with open(out / "history.jsonl", "a") as f:
        f.write(json.dumps({**hist[-1], "epoch": 2}) + "\n")
    train(data, out, "--epochs", "2", "--seed", "3", "--resume")
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    # last.pt resumes (optimizer state); best.pt is the weights alone, smaller.
    last = torch.load(out / "last.pt", weights_only=False)
    best_ck = torch.load(out / "best.pt", weights_only=False)
    assert "optimizer_state_dict" in last and "optimizer_state_dict" not in best_ck
    assert set(best_ck) >= {"model_state_dict", "config", "metrics", "best", "epoch"}
    with pytest.raises(SystemExit, match="was trained with"):
        train(data, out, "--epochs", "3", "--seed", "3", "--resume")
    bundle = tmp_path / "bundle"
    fer2013.main(["export", "--checkpoint", str(out / "best.pt"), "--out", str(bundle)])
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["input"] == {"name": "input", "width": 48, "height": 48, "color": "gray", "mean": [0.5], "std": [0.5]}
    assert manifest["reference"]["max_abs_diff_logits_onnxruntime_vs_pytorch"] <= 1e-4
    assert manifest["va_source"] == "derived"
    # fer-edge loads it and scores the sample with it, whole image.
    res = run([fer_edge, "eval", SAMPLE, "--whole-image", "--model", str(bundle)], cwd=REPO)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.splitlines()[0])
    assert r["images"] == 98 and r["model"] == "bundle"
    # The same accuracy PyTorch measured on the same images (publictest = the sample).
    best = max(hist, key=lambda h: h["publictest_accuracy"])
    assert abs(r["accuracy"] - best["publictest_accuracy"]) < 0.011, (r["accuracy"], best)


def test_a_student_distils_from_a_teacher_checkpoint_and_records_which(data, tmp_path):
    teacher = tmp_path / "teacher"
    train(data, teacher, "--epochs", "2")
    plain = train(data, tmp_path / "plain", "--epochs", "1")
    kd = train(data, tmp_path / "kd", "--epochs", "1", "--teacher", str(teacher / "best.pt"),
               "--distill-alpha", "1.0", "--temperature", "4")
    # Same seed and data: only the loss differs (the teacher's softened
    # distribution, not the labels, is what the student is trained on).
    assert kd[0]["train_loss"] != plain[0]["train_loss"]
    ck = torch.load(tmp_path / "kd" / "last.pt", weights_only=False)
    assert ck["config"]["teacher"] == {"sha256": fer2013.sha256(str(teacher / "best.pt")), "width": 4,
                                       "head": "linear", "alpha": 1.0, "temperature": 4.0}
    # A resumed run must keep its teacher.
    with pytest.raises(SystemExit):
        train(data, tmp_path / "kd", "--epochs", "2", "--resume")


def test_a_student_distils_from_an_ensemble_of_teachers_and_records_each(data, tmp_path):
    for seed in ("0", "1"):
        train(data, tmp_path / f"t{seed}", "--epochs", "1", "--seed", seed)
    paths = [str(tmp_path / f"t{seed}" / "best.pt") for seed in ("0", "1")]
    one = train(data, tmp_path / "one", "--epochs", "1", "--teacher", paths[0], "--distill-alpha", "1.0")
    two = train(data, tmp_path / "two", "--epochs", "1", "--teacher", paths[0], "--teacher", paths[1],
                "--distill-alpha", "1.0")
    # The second teacher changes the target the student is trained on.
    assert two[0]["train_loss"] != one[0]["train_loss"]
    ck = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    assert [t["sha256"] for t in ck["config"]["teacher"]] == [fer2013.sha256(p) for p in paths]
    # Resuming with one teacher fewer is refused.
    with pytest.raises(SystemExit):
        train(data, tmp_path / "two", "--epochs", "2", "--resume", "--teacher", paths[0], "--distill-alpha", "1.0")


def test_an_ensemble_averages_its_networks_probabilities():
    torch.manual_seed(0)
    nets = [fer2013.FerNet(width=4, head="linear").eval() for _ in range(2)]
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        got = fer2013.Ensemble(nets)(x).exp()
        want = (torch.softmax(nets[0](x), 1) + torch.softmax(nets[1](x), 1)) / 2
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(3), atol=1e-6)


def test_quantize_adds_an_int8_twin_fer_edge_runs_and_refuses_a_poor_one(data, tmp_path, fer_edge):
    out = tmp_path / "run"
    train(data, out, "--epochs", "1")
    bundle = tmp_path / "bundle"
    fer2013.main(["export", "--checkpoint", str(out / "best.pt"), "--out", str(bundle)])
    before = json.loads((bundle / "bundle.json").read_text())
    # A twin that agrees with the float model on less than asked is not added.
    with pytest.raises(SystemExit, match="agrees with the float model"):
        fer2013.main(["quantize", "--bundle", str(bundle), "--data", data, "--images", "32", "--min-agreement", "1.01"])
    assert not (bundle / "model.int8.onnx").exists()
    assert json.loads((bundle / "bundle.json").read_text()) == before
    fer2013.main(["quantize", "--bundle", str(bundle), "--data", data, "--images", "32", "--min-agreement", "0"])
    m = json.loads((bundle / "bundle.json").read_text())
    q = m["int8"]
    assert q["model_file"] == "model.int8.onnx"
    assert q["sha256"] == fer2013.sha256(str(bundle / "model.int8.onnx"))
    assert "32 FER2013 training images" in q["calibration"]
    assert 0 <= q["publictest_top1_agreement_with_fp32"] <= 1
    # The float model and the rest of the manifest are untouched.
    assert {k: v for k, v in m.items() if k != "int8"} == before
    # fer-edge loads the twin and says it ran it.
    res = run([fer_edge, "eval", SAMPLE, "--whole-image", "--model", str(bundle), "--precision", "fp32,int8"], cwd=REPO)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["precision"] for r in rows] == ["fp32", "int8"]
    assert rows[1]["model_sha256"] == q["sha256"] and rows[0]["model_sha256"] == m["sha256"]
    assert all(r["images"] == 98 for r in rows)
