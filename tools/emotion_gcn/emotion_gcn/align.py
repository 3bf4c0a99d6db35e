"""Face alignment from eye centres, identical to fer-edge's `src/align.rs`.

Thesis §3.1: angle = atan((r_y - l_y) / (r_x - l_x)), scale =
desired_distance / |r - l|, one similarity transform placing the eye
midpoint at (width/2, eye_line * height), bilinear sampling, edge pixels
repeated outside the image. Training and inference must frame faces the
same way, so this mirrors the Rust code line for line (`tests/` checks it
against `fer-edge model align`).

AffectNet landmarks are 68 points "x1;y1;x2;y2;..."; the eyes are points
37-42 and 43-48 (1-based), averaged per eye.
"""
import math

import numpy as np


def eyes_from_68(landmarks):
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got {pts.shape[0]}")
    a, b = pts[36:42].mean(0), pts[42:48].mean(0)
    # "left" is the eye on the left of the image.
    return (a, b) if a[0] <= b[0] else (b, a)


def parse_affectnet_landmarks(text):
    vals = [float(v) for v in str(text).split(";") if v.strip()]
    return eyes_from_68(vals)


def eye_transform(left, right, width, height, eye_distance, eye_line):
    """(a, b, tx, ty): x' = a x + b y + tx, y' = -b x + a y + ty."""
    dx, dy = right[0] - left[0], right[1] - left[1]
    dist = math.hypot(dx, dy)
    if not dist >= 1.0:
        raise ValueError(f"eye centres are {dist:.2f} px apart; at least 1 px is needed")
    angle = math.atan2(dy, dx)
    scale = eye_distance * width / dist
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    cx, cy = (left[0] + right[0]) / 2, (left[1] + right[1]) / 2
    ax, ay = width / 2, eye_line * height
    return a, b, ax - (a * cx + b * cy), ay - (-b * cx + a * cy)


def warp(img, m, width, height):
    """Bilinear inverse warp of an HxWx3 uint8 image, edges repeated."""
    a, b, tx, ty = m
    det = a * a + b * b
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = u - tx, v - ty
    sx = (a * x - b * y) / det
    sy = (b * x + a * y) / det
    h, w = img.shape[:2]
    sx = np.clip(sx, 0, w - 1)
    sy = np.clip(sy, 0, h - 1)
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(int), y0.astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    src = img.astype(np.float64)
    top = src[y0, x0] + (src[y0, x1] - src[y0, x0]) * fx
    bot = src[y1, x0] + (src[y1, x1] - src[y1, x0]) * fx
    out = top + (bot - top) * fy + 0.5
    return np.clip(out, 0, 255).astype(np.uint8)


def align(img, left, right, width=227, height=227, eye_distance=0.36, eye_line=0.40):
    return warp(img, eye_transform(left, right, width, height, eye_distance, eye_line), width, height)
