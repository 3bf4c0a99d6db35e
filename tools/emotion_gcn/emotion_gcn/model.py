"""Emotion-GCN (thesis §6.3) and the Table 6.1 baselines, in PyTorch.

Backbone: torchvision DenseNet-121 `features` (no ReLU after them, as in the
authors' code) on a 227x227 RGB face -> 1024x7x7 -> MaxPool2d(7) -> x (1024).
GCN: label embeddings Z (9 x d) -> Â (Z Θ1) -> LeakyReLU(0.2) -> Â (· Θ2)
-> W (9 x 1024), graph convolution without bias. Logits = x W[0:7]^T,
VA = x W[7:9]^T. At inference W is a constant, so the exported model is the
backbone plus a folded 1024 -> 9 linear head (`FoldedEmotionGCN`).

Module and parameter names follow the authors' checkpoints (`features.*`,
`gc1.weight`, `gc2.weight`, `A`), so their state dicts load directly.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .labels import N_EXPR, N_NODES


def densenet121_features():
    import torchvision

    return torchvision.models.densenet121(weights=None).features


class TinyFeatures(nn.Sequential):
    """A small stand-in backbone for smoke tests: 1024 channels at 7x7 from 227x227."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 16, 7, stride=4, padding=3), nn.ReLU(),
            nn.Conv2d(16, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 1024, 3, stride=2, padding=1),  # 227 -> 57 -> 29 -> 15
            nn.MaxPool2d(2),  # -> 7x7, as DenseNet-121's features at 227
        )


def make_features(name):
    if name == "densenet121":
        return densenet121_features()
    if name == "tiny":
        return TinyFeatures()
    raise ValueError(f"unknown backbone {name!r}: use densenet121 or tiny")


class GraphConvolution(nn.Module):
    """Â (H Θ), without bias (the authors' layer)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        stdv = 1.0 / d_out ** 0.5
        nn.init.uniform_(self.weight, -stdv, stdv)

    def forward(self, h, adj):
        return adj @ (h @ self.weight)


def gen_adj(a):
    """D^-1/2 A^T D^-1/2 with D the row sums of A (authors' gen_adj)."""
    d = torch.diag(a.sum(1).pow(-0.5))
    return (a @ d).t() @ d


class EmotionGCN(nn.Module):
    def __init__(self, embeddings, reweighted_adjacency, backbone="densenet121"):
        super().__init__()
        emb = torch.as_tensor(embeddings, dtype=torch.float32)
        if emb.dim() == 3:  # authors' files may carry a leading batch dimension
            emb = emb[0]
        if emb.shape[0] != N_NODES:
            raise ValueError(f"embeddings have {emb.shape[0]} rows; Emotion-GCN needs {N_NODES}")
        self.features = make_features(backbone)
        self.pooling = nn.MaxPool2d(7, 7)
        self.gc1 = GraphConvolution(emb.shape[1], 512)
        self.gc2 = GraphConvolution(512, 1024)
        self.register_buffer("embeddings", emb)
        # The re-weighted adjacency A'' is kept as `A`, like the authors'
        # checkpoints; the propagation matrix is derived from it.
        self.A = nn.Parameter(torch.as_tensor(reweighted_adjacency, dtype=torch.float32), requires_grad=False)

    def classifiers(self):
        """W (9 x 1024): rows 0-6 classify expressions, rows 7-8 regress V and A."""
        adj = gen_adj(self.A).detach()
        h = F.leaky_relu(self.gc1(self.embeddings, adj), 0.2)
        return self.gc2(h, adj)

    def embed(self, x):
        return self.pooling(self.features(x)).flatten(1)

    def forward(self, x):
        out = self.embed(x) @ self.classifiers().t()
        return out[:, :N_EXPR], out[:, N_EXPR:]


class MultiTask(nn.Module):
    """Table 6.1 baseline: shared features, independent 7-way and VA heads."""

    def __init__(self, backbone="densenet121"):
        super().__init__()
        self.features = make_features(backbone)
        self.pooling = nn.MaxPool2d(7, 7)
        self.head = nn.Linear(1024, N_NODES, bias=False)

    def forward(self, x):
        out = self.head(self.pooling(self.features(x)).flatten(1))
        return out[:, :N_EXPR], out[:, N_EXPR:]


class SingleTask(nn.Module):
    """Table 6.1 baseline: expressions only (VA output is zeros, not trained)."""

    def __init__(self, backbone="densenet121"):
        super().__init__()
        self.features = make_features(backbone)
        self.pooling = nn.MaxPool2d(7, 7)
        self.head = nn.Linear(1024, N_EXPR)

    def forward(self, x):
        logits = self.head(self.pooling(self.features(x)).flatten(1))
        return logits, torch.zeros(x.shape[0], 2, dtype=x.dtype, device=x.device)


class FoldedEmotionGCN(nn.Module):
    """Inference form: backbone + max pool + constant W as a 1024 -> 9 linear head."""

    def __init__(self, gcn: EmotionGCN):
        super().__init__()
        self.features = gcn.features
        self.pooling = gcn.pooling
        with torch.no_grad():
            w = gcn.classifiers().detach().clone()
        self.head = nn.Linear(1024, N_NODES, bias=False)
        self.head.weight.data.copy_(w)

    def forward(self, x):
        out = self.head(self.pooling(self.features(x)).flatten(1))
        return out[:, :N_EXPR], out[:, N_EXPR:]
