"""Train fer-edge's default expression model on FER2013, and export it.

FER2013 (48x48 grey faces, seven expressions, no valence/arousal) in the
ImageFolder layout of `../shared/data/fer2013/` (`training/<class>/*.jpg`,
`publictest/<class>/*.jpg`, classes angry disgust fear happy neutral sad
surprise). Train on `training/` only; the model is selected on `publictest/`
(best epoch), never trained on it.

Backbone (`FerNet`): a compact VGG-style CNN for 48x48 grey input: four
stages of two 3x3 conv + BN + ReLU and a 2x2 max pool (widths w, 2w, 4w, 8w),
global average pool, dropout -> an 8w-d feature x. Two heads on the same
backbone, as the thesis' Table 6.1 compares heads on one backbone:

  --head linear   logits = x Wᵀ + b, W a free 7 x 8w matrix
  --head gcn      Emotion-GCN's classifier generator (thesis §6.3): W is the
                  output of a 2-layer GCN over the label embeddings of the
                  seven expression nodes (the package's default MiniLM
                  vectors), W = Â LeakyReLU(Â Z Θ1) Θ2. The thesis' adjacency
                  has edges only between categorical and dimensional nodes
                  (|Spearman| of expression indicators with valence and
                  arousal); FER2013 has no valence/arousal labels, so the
                  restricted graph has no edges and Â = I: what remains is
                  W generated from the label embeddings by a shared
                  two-layer map (see MODEL_CARD.md for what that does and
                  does not add).

Recipe: SGD (Nesterov, momentum 0.9), one-cycle learning rate, weight decay
5e-4, label smoothing 0.1, batch 128; augmentation on the whole batch as one
random affine per image (flip, rotation ±10°, scale 0.85-1.15, shift ±8%),
brightness/contrast jitter and random erasing. Seeded; a checkpoint per
epoch (`last.pt`, resumable with --resume) and `best.pt` (best PublicTest
accuracy); one JSON line per epoch with train loss and PublicTest accuracy,
also appended to OUT/history.jsonl. Uses CUDA when present.

  python -m emotion_gcn.fer2013 train --data DIR --out runs/fer --head linear --width 16 --epochs 30
  python -m emotion_gcn.fer2013 export --checkpoint runs/fer/best.pt --out models/fer-vgg
  python -m emotion_gcn.fer2013 quantize --bundle models/fer-vgg --data DIR

`quantize` adds an int8 twin to an exported bundle (issue 32): onnxruntime's
static quantization in the QDQ format (per-channel signed int8 weights,
signed int8 activations: onnxruntime's default for QDQ, and what ARM's
dot-product and x86's VNNI instructions take), calibrated on training
images only (a seeded sample of `training/`), never on the split that
selects or scores the model. The twin is `model.int8.onnx` beside the
float model, named with its sha256 under `int8` in bundle.json, with how it
was calibrated and its top-1 agreement with the float model on `publictest/`.
fer-edge runs it where `[emotion] precision` asks for it, or where `auto`
measures it faster on the machine itself.
"""
import argparse
import glob
import importlib.metadata
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import embeddings
from .bundle import sha256_file as sha256, write_bundle
from .labels import NODE_WORDS
from .model import GraphConvolution, gen_adj

# Folder names of the data set, in the order the model's outputs are stored.
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
# fer-edge's canonical names of the same classes (bundle.json "classes"
# accepts either; these are the thesis' words, used for the label embeddings).
CANONICAL = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happy",
             "neutral": "neutral", "sad": "sad", "surprise": "surprise"}
SIZE = 48


def load_split(root):
    """All images of one split as uint8 [N, 48, 48] and labels [N]."""
    from PIL import Image

    xs, ys = [], []
    for ci, c in enumerate(CLASSES):
        files = sorted(glob.glob(os.path.join(root, c, "*.jpg")) + glob.glob(os.path.join(root, c, "*.png")))
        if not files:
            raise SystemExit(f"{root}/{c}: no images; expected the FER2013 ImageFolder layout ({', '.join(CLASSES)})")
        for f in files:
            im = Image.open(f).convert("L")
            if im.size != (SIZE, SIZE):
                im = im.resize((SIZE, SIZE), Image.BILINEAR)
            xs.append(np.asarray(im, dtype=np.uint8))
            ys.append(ci)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.long)


class FerNet(nn.Module):
    def __init__(self, width=16, head="linear", dropout=0.3):
        super().__init__()
        layers, c_in = [], 1
        for i in range(4):
            c = width * 2 ** i
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.dim = c_in
        self.dropout = nn.Dropout(dropout)
        self.head_kind = head
        if head == "linear":
            self.head = nn.Linear(self.dim, len(CLASSES))
        elif head == "gcn":
            z, self.embeddings_source = embeddings.load("default")
            rows = [NODE_WORDS.index(CANONICAL[c]) for c in CLASSES]
            self.register_buffer("embeddings", torch.as_tensor(z[rows], dtype=torch.float32))
            # No categorical-categorical edges in the thesis' graph: Â = I.
            self.register_buffer("A", torch.eye(len(CLASSES)))
            self.gc1 = GraphConvolution(z.shape[1], 256)
            self.gc2 = GraphConvolution(256, self.dim)
            self.bias = nn.Parameter(torch.zeros(len(CLASSES)))
        else:
            raise SystemExit(f"unknown --head {head!r}: use linear or gcn")

    def classifiers(self):
        """(W, b) of the 7-way classifier."""
        if self.head_kind == "linear":
            return self.head.weight, self.head.bias
        adj = gen_adj(self.A)
        h = F.leaky_relu(self.gc1(self.embeddings, adj), 0.2)
        return self.gc2(h, adj), self.bias

    def embed(self, x):
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def forward(self, x):
        w, b = self.classifiers()
        return F.linear(self.dropout(self.embed(x)), w, b)


class Folded(nn.Module):
    """Inference form: input in [-1, 1] -> logits, W and b constants."""

    def __init__(self, net):
        super().__init__()
        self.features = net.features
        with torch.no_grad():
            w, b = net.classifiers()
        self.head = nn.Linear(net.dim, len(CLASSES))
        self.head.weight.data.copy_(w.detach())
        self.head.bias.data.copy_(b.detach())

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def normalise(x_uint8):
    """uint8 [N, 48, 48] -> float [N, 1, 48, 48] in [-1, 1] (bundle mean 0.5, std 0.5)."""
    return (x_uint8.float().unsqueeze(1) / 255.0 - 0.5) / 0.5


def augment(x, gen):
    """One random affine, flip, photometric jitter and erasing per image (x in [-1, 1])."""
    n, dev = x.shape[0], x.device
    u = lambda *s: torch.rand(*s, generator=gen, device="cpu").to(dev)  # noqa: E731
    angle = (u(n) * 2 - 1) * math.radians(10)
    scale = 1 + (u(n) * 2 - 1) * 0.15
    flip = torch.where(u(n) < 0.5, -1.0, 1.0)
    tx, ty = (u(n) * 2 - 1) * 0.08 * 2, (u(n) * 2 - 1) * 0.08 * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = 1 + (u(n, 1, 1, 1) * 2 - 1) * 0.3
    bright = (u(n, 1, 1, 1) * 2 - 1) * 0.3
    x = (x * contrast + bright).clamp(-1, 1)
    # Random erasing: one rectangle of 2-20% of the face in half the images.
    area = u(n) * 0.18 + 0.02
    aspect = torch.exp((u(n) * 2 - 1) * math.log(3))
    h = (torch.sqrt(area * aspect) * SIZE).clamp(1, SIZE).long()
    w = (torch.sqrt(area / aspect) * SIZE).clamp(1, SIZE).long()
    y0 = (u(n) * (SIZE - h + 1).float()).long()
    x0 = (u(n) * (SIZE - w + 1).float()).long()
    ys = torch.arange(SIZE, device=dev).view(1, SIZE, 1)
    xs = torch.arange(SIZE, device=dev).view(1, 1, SIZE)
    box = (ys >= y0.view(n, 1, 1)) & (ys < (y0 + h).view(n, 1, 1)) & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + w).view(n, 1, 1))
    box &= (u(n) < 0.5).view(n, 1, 1)
    return x.masked_fill(box.unsqueeze(1), 0.0)


def class_weights(y, kind):
    """Per-class loss weights against FER2013's imbalance (disgust is 1.5% of
    the training split). `inverse`: f_max / f_c, as the thesis' reference
    code weights its classes (§3.3); `sqrt`: its square root, which raises
    the rare classes' recall at a smaller cost in accuracy; `none`: 1.
    Normalised so that the average sample weighs 1."""
    counts = torch.bincount(y, minlength=len(CLASSES)).float()
    if kind == "none":
        w = torch.ones(len(CLASSES))
    elif kind == "inverse":
        w = counts.max() / counts
    elif kind == "sqrt":
        w = (counts.max() / counts).sqrt()
    else:
        raise SystemExit(f"unknown --class-weights {kind!r}: use none, sqrt or inverse")
    return w * counts.sum() / (w * counts).sum()


class Ensemble(nn.Module):
    """Networks whose class probabilities are averaged: a distillation's
    teachers (one or several). `probabilities(x, T)` is the mean of their
    softmax at temperature T (the distillation target); `forward` is the log
    of the mean at T = 1, so that argmax and softmax read it as logits."""

    def __init__(self, nets):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def probabilities(self, x, temperature=1.0):
        return torch.stack([F.softmax(n(x) / temperature, dim=1) for n in self.nets]).mean(0)

    def forward(self, x):
        return self.probabilities(x).log()


def evaluate(model, x, y, device, batch=512):
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            preds.append(model(normalise(x[i:i + batch]).to(device)).argmax(1).cpu())
    p = torch.cat(preds)
    per_class = {c: float((p[y == i] == i).float().mean()) for i, c in enumerate(CLASSES)}
    return float((p == y).float().mean()), per_class


def train(args):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    cfg = {k: getattr(args, k) for k in ("head", "width", "epochs", "batch", "lr", "weight_decay", "seed", "dropout")}
    if args.class_weights != "none":
        cfg["class_weights"] = args.class_weights
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    t0 = time.time()
    xtr, ytr = load_split(os.path.join(args.data, "training"))
    xte, yte = load_split(os.path.join(args.data, "publictest"))
    print(json.dumps({"loaded": {"training": len(ytr), "publictest": len(yte)}, "seconds": round(time.time() - t0, 1),
                      "device": str(device), "threads": torch.get_num_threads()}), flush=True)
    teacher = None
    if args.teacher:
        # Knowledge distillation (Hinton et al. 2015): the student also
        # matches the teachers' softened class distribution; with several
        # teachers (independently trained networks), their average: an
        # ensemble distilled into the one network that ships.
        nets, recorded = [], []
        for path in args.teacher:
            tk = torch.load(path, map_location=device, weights_only=False)
            tc = tk["config"]
            net = FerNet(tc["width"], tc["head"], tc.get("dropout", 0.3)).to(device)
            net.load_state_dict(tk["model_state_dict"])
            net.eval()
            nets.append(net)
            recorded.append({"sha256": sha256(path), "width": tc["width"], "head": tc["head"],
                             "alpha": args.distill_alpha, "temperature": args.temperature})
            t_acc, _ = evaluate(net, xte, yte, device)
            print(json.dumps({"teacher": recorded[-1], "teacher_publictest_accuracy": round(t_acc, 4)}), flush=True)
        # One teacher keeps the form earlier runs recorded (their resume
        # compares configurations).
        cfg["teacher"] = recorded[0] if len(recorded) == 1 else recorded
        teacher = Ensemble(nets)
        if len(nets) > 1:
            t_acc, _ = evaluate(teacher, xte, yte, device)
            print(json.dumps({"ensemble_publictest_accuracy": round(t_acc, 4)}), flush=True)
    weights = class_weights(ytr, args.class_weights).to(device)
    print(json.dumps({"class_weights": {c: round(float(w), 3) for c, w in zip(CLASSES, weights)}}), flush=True)
    model = FerNet(args.width, args.head, args.dropout).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    steps = math.ceil(len(ytr) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(args.seed)
    start, best = 0, {"accuracy": -1.0}
    last = os.path.join(args.out, "last.pt")
    if args.resume and os.path.exists(last):
        ck = torch.load(last, map_location=device, weights_only=False)
        if ck["config"] != cfg:
            raise SystemExit(f"{last} was trained with {ck['config']}, not {cfg}: use another --out or the same settings")
        model.load_state_dict(ck["model_state_dict"])
        opt.load_state_dict(ck["optimizer_state_dict"])
        sched.load_state_dict(ck["scheduler_state_dict"])
        gen.set_state(ck["generator_state"])
        start, best = ck["epoch"] + 1, ck["best"]
        # The curve may run past the checkpoint (an epoch's row is written
        # before its checkpoint; a copy may be taken between the two): keep
        # the rows the checkpoint has seen, so no epoch is counted twice.
        hist = os.path.join(args.out, "history.jsonl")
        if os.path.exists(hist):
            with open(hist) as f:
                rows = [line for line in f if line.strip() and json.loads(line)["epoch"] <= ck["epoch"]]
            with open(hist, "w") as f:
                f.writelines(rows)
        print(json.dumps({"resumed_from_epoch": ck["epoch"]}), flush=True)
    for epoch in range(start, args.epochs):
        model.train()
        t, cpu = time.time(), time.process_time()
        order = torch.randperm(len(ytr), generator=gen)
        total, seen = 0.0, 0
        for i in range(steps):
            ix = order[i * args.batch:(i + 1) * args.batch]
            x = augment(normalise(xtr[ix]).to(device), gen)
            logits = model(x)
            loss = F.cross_entropy(logits, ytr[ix].to(device), weight=weights, label_smoothing=0.1)
            if teacher is not None:
                with torch.no_grad():
                    soft = teacher.probabilities(x, args.temperature)
                kd = F.kl_div(F.log_softmax(logits / args.temperature, dim=1), soft, reduction="batchmean")
                loss = args.distill_alpha * args.temperature ** 2 * kd + (1 - args.distill_alpha) * loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(ix)
            seen += len(ix)
        acc, per_class = evaluate(model, xte, yte, device)
        row = {"epoch": epoch, "train_loss": round(total / seen, 4), "publictest_accuracy": round(acc, 4),
               "per_class": {k: round(v, 3) for k, v in per_class.items()}, "lr": round(sched.get_last_lr()[0], 5),
               "seconds": round(time.time() - t, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
               "params": params, "head": args.head, "width": args.width}
        print(json.dumps(row), flush=True)
        with open(os.path.join(args.out, "history.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        state = {"epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
                 "scheduler_state_dict": sched.state_dict(), "generator_state": gen.get_state(), "config": cfg,
                 "metrics": row}
        if acc > best["accuracy"]:
            best = {"accuracy": acc, "epoch": epoch}
            # best.pt is read (export, a student's teacher), never resumed:
            # the weights alone, half last.pt's size, so that a run's
            # checkpoints can be kept in the repository (tools/long-train.sh).
            kept = {k: state[k] for k in ("epoch", "model_state_dict", "config", "metrics")}
            kept["best"] = best
            torch.save(kept, os.path.join(args.out, "best.pt.partial"))
            os.replace(os.path.join(args.out, "best.pt.partial"), os.path.join(args.out, "best.pt"))
        state["best"] = best
        torch.save(state, last + ".partial")
        os.replace(last + ".partial", last)
    print(json.dumps({"best": best, "seconds_total": round(time.time() - t0, 1)}), flush=True)


# Valence/arousal anchors of the derived V/A (the same circumplex placement
# as the mini-Xception bundle: Russell 1980, radius 0.8).
VA_ANCHORS = {"neutral": [0.0, 0.0], "happy": [0.739, 0.306], "surprise": [0.306, 0.739],
              "fear": [-0.306, 0.739], "anger": [-0.566, 0.566], "disgust": [-0.739, 0.306],
              "sad": [-0.739, -0.306]}


def export(args):
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = ck["config"]
    net = FerNet(cfg["width"], cfg["head"], cfg["dropout"])
    net.load_state_dict(ck["model_state_dict"])
    net.eval()
    folded = Folded(net).eval()
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    x = torch.zeros(1, 1, SIZE, SIZE)
    torch.onnx.export(folded, x, onnx_path, input_names=["input"], output_names=["expr_logits"], opset_version=17,
                      dynamo=False)
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(onnx_path))
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for i in range(4):
        xi = torch.rand(1, 1, SIZE, SIZE, generator=gen) * 2 - 1
        with torch.no_grad():
            want = net(xi).numpy()
            folded_out = folded(xi).numpy()
        got = sess.run(None, {"input": xi.numpy()})[0]
        worst = max(worst, float(np.abs(got - want).max()), float(np.abs(folded_out - want).max()))
    if worst > 1e-4:
        raise SystemExit(f"ONNX disagrees with PyTorch by {worst} (> 1e-4)")
    digest = sha256(onnx_path)
    name = os.path.basename(os.path.normpath(args.out))
    m = ck["metrics"]
    manifest = {
        "name": name,
        "version": args.version,
        "architecture": f"fernet-w{cfg['width']}-{cfg['head']}",
        "trained": True,
        "source": {
            "package": "fer-edge (trained by tools/emotion_gcn/emotion_gcn/fer2013.py)",
            "package_version": args.version,
            "file": "FER2013 training split (../shared/data/fer2013/fer2013-training.tar.gz)",
            "converter": "python -m emotion_gcn.fer2013 export",
        },
        "license": "MIT OR Apache-2.0 (fer-edge's own weights); trained on FER2013, whose own terms for commercial use are unclear",
        "model_file": "model.onnx",
        "input": {"name": "input", "width": SIZE, "height": SIZE, "color": "gray", "mean": [0.5], "std": [0.5]},
        "outputs": {"expressions": "expr_logits", "expressions_kind": "logits"},
        "classes": CLASSES,
        "va_source": "derived",
        "va_anchors": VA_ANCHORS,
        "va_anchors_source": "Russell (1980), A circumplex model of affect: the same anchors as models/fer-minixception (see its MODEL_CARD.md)",
        "alignment": {"eye_distance": args.eye_distance, "eye_line": args.eye_line},
        "reference": {
            "checkpoint_sha256": sha256(args.checkpoint),
            "epoch": ck["epoch"],
            "training": cfg,
            "publictest_accuracy_pytorch": m["publictest_accuracy"],
            "torch_version": torch.__version__,
            "onnx_version": importlib.metadata.version("onnx"),
            "onnxruntime_version": ort.__version__,
            "onnx_sha256": digest,
            "max_abs_diff_logits_onnxruntime_vs_pytorch": worst,
            "inputs_checked": [f"random-{i}" for i in range(4)],
        },
    }
    write_bundle(args.out, manifest)
    print(json.dumps({"bundle": args.out, "sha256": digest, "max_abs_diff": worst, "epoch": ck["epoch"],
                      "publictest_accuracy": m["publictest_accuracy"]}))


def quantize(args):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    manifest_path = os.path.join(args.bundle, "bundle.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    if manifest.get("input", {}).get("name") != "input" or manifest.get("input", {}).get("color") != "gray":
        raise SystemExit(f"{manifest_path}: not a bundle this exporter wrote (48x48 grey input named 'input')")
    src = os.path.join(args.bundle, manifest["model_file"])
    x, _ = load_split(os.path.join(args.data, "training"))
    gen = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(x), generator=gen)[: args.images]
    calib = normalise(x[pick]).numpy()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.next_ix = 0

        def get_next(self):
            if self.next_ix >= len(calib):
                return None
            self.next_ix += 1
            return {"input": calib[self.next_ix - 1 : self.next_ix]}

    out = os.path.join(args.bundle, "model.int8.onnx")
    pre = out + ".pre"
    try:
        quant_pre_process(src, pre)
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    finally:
        if os.path.exists(pre):
            os.remove(pre)
    # The shape inference above leaves intermediate shapes (value_info) with
    # a batch of 1 in the graph; fer-edge frees the batch axis to read a
    # frame's faces in one call, which a graph that pins them refuses.
    import onnx

    q = onnx.load(out)
    del q.graph.value_info[:]
    onnx.save(q, out)
    # Top-1 agreement with the float model, and both accuracies, on publictest.
    xt, yt = load_split(os.path.join(args.data, "publictest"))
    xt = normalise(xt).numpy()
    labels = {}
    for name, path in (("fp32", src), ("int8", out)):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        labels[name] = np.array([int(sess.run(None, {"input": xt[i : i + 1]})[0].argmax()) for i in range(len(xt))])
    agreement = float((labels["fp32"] == labels["int8"]).mean())
    acc = {k: round(float((v == yt.numpy()).mean()), 4) for k, v in labels.items()}
    if agreement < args.min_agreement:
        os.remove(out)
        raise SystemExit(f"int8 model agrees with the float model on only {agreement:.3f} of publictest "
                         f"(< {args.min_agreement}); not added to the bundle")
    manifest["int8"] = {
        "model_file": "model.int8.onnx",
        "sha256": sha256(out),
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, int8 activations (MinMax)",
        "calibration": f"{len(calib)} FER2013 training images (seed {args.seed}); no publictest image",
        "onnxruntime_version": ort.__version__,
        "publictest_top1_agreement_with_fp32": round(agreement, 4),
        "publictest_accuracy_onnxruntime": acc,
    }
    fields = {k: v for k, v in manifest.items() if k not in ("format", "sha256")}
    write_bundle(args.bundle, fields)
    print(json.dumps({"bundle": args.bundle, "int8": manifest["int8"]}))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m emotion_gcn.fer2013", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on training/, select on publictest/")
    t.add_argument("--data", required=True, help="folder holding training/ and publictest/ (ImageFolder layout)")
    t.add_argument("--out", required=True)
    t.add_argument("--head", choices=["linear", "gcn"], default="linear")
    t.add_argument("--width", type=int, default=16)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--dropout", type=float, default=0.3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    t.add_argument("--class-weights", choices=["none", "sqrt", "inverse"], default="none",
                   help="weight the loss against class imbalance (thesis §3.3)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--teacher", action="append",
                   help="a trained checkpoint (best.pt) to distil from; repeat it to distil an ensemble "
                        "(the teachers' softened distributions averaged)")
    t.add_argument("--distill-alpha", type=float, default=0.7, help="weight of the distillation term")
    t.add_argument("--temperature", type=float, default=4.0, help="softmax temperature of the distillation term")
    e = sub.add_parser("export", help="checkpoint -> fer-edge bundle (ONNX checked against PyTorch)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--version", default="1.0.0")
    e.add_argument("--eye-distance", type=float, default=0.38,
                   help="eye distance as a fraction of the crop width (bundle alignment)")
    e.add_argument("--eye-line", type=float, default=0.40, help="eye height as a fraction of the crop height")
    q = sub.add_parser("quantize", help="add an int8 twin (QDQ, calibrated on training images) to a bundle")
    q.add_argument("--bundle", required=True, help="a bundle written by `export`")
    q.add_argument("--data", required=True, help="folder holding training/ (calibration) and publictest/ (agreement)")
    q.add_argument("--images", type=int, default=512, help="calibration images drawn from training/")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-agreement", type=float, default=0.9,
                   help="refuse a twin whose top-1 agrees with the float model on less of publictest")
    args = ap.parse_args(argv)
    {"train": train, "export": export, "quantize": quantize}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
