"""AffectNet-format data: CSV rows + an image root, aligned as fer-edge aligns.

Columns: subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks, expression, valence, arousal. Expression codes 0-6 are
fer-edge's seven classes in order; other codes are skipped. Valence/arousal
of -2 mean "not annotated": such rows are skipped too (every model here
trains both heads).
"""
import os

import numpy as np
import torch
from PIL import Image, ImageEnhance

from . import align
from .adjacency import load_annotations

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def to_tensor(rgb_uint8):
    x = (rgb_uint8.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def augment(img, rng):
    """Thesis §3.1 augmentations: flip, brightness, contrast, rotation, hue, saturation."""
    pil = Image.fromarray(img)
    if rng.random() < 0.5:
        pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.8, 1.2))
    pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.8, 1.2))
    pil = ImageEnhance.Color(pil).enhance(rng.uniform(0.8, 1.2))
    pil = pil.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR)
    hsv = np.asarray(pil.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(rng.uniform(-5, 5))) % 256
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


class AffectNetDataset(torch.utils.data.Dataset):
    def __init__(self, csv, image_root, size=227, eye_distance=0.36, eye_line=0.40, train=False, seed=0):
        self.df = load_annotations(csv)
        self.root = image_root
        self.size, self.eye_distance, self.eye_line = size, eye_distance, eye_line
        self.train = train
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.df)

    def __getitem__(self, i):
        row = self.df.iloc[i]
        path = os.path.join(self.root, row["subDirectory_filePath"])
        img = np.asarray(Image.open(path).convert("RGB"))
        left, right = align.parse_affectnet_landmarks(row["facial_landmarks"])
        face = align.align(img, left, right, self.size, self.size, self.eye_distance, self.eye_line)
        if self.train:
            face = augment(face, self.rng)
        va = torch.tensor([float(row["valence"]), float(row["arousal"])], dtype=torch.float32)
        return to_tensor(face), int(row["expression"]), va


def class_weights(expressions, n=7):
    """f_min / f_i: the rarest class weighs 1, frequent ones less (the
    authors' code; the thesis' eq. 3.3.4 prints the ratio upside down)."""
    counts = np.bincount(np.asarray(expressions), minlength=n).astype(np.float64)
    counts[counts == 0] = np.inf  # a class absent from training gets weight 0
    return torch.tensor(counts[np.isfinite(counts)].min() / counts, dtype=torch.float32)


def ccc(pred, gold):
    """Concordance correlation coefficient (thesis eq. 5.2.2)."""
    pm, gm = pred.mean(), gold.mean()
    pv, gv = pred.var(unbiased=False), gold.var(unbiased=False)
    cov = ((pred - pm) * (gold - gm)).mean()
    return 2 * cov / (pv + gv + (pm - gm) ** 2 + 1e-8)
