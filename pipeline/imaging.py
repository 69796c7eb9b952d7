"""Small numpy/PIL image helpers shared by the synthetic world's scenes and painting techniques.

Images are float32 arrays in [0, 1], shaped (H, W, 3) (or (H, W) for single channels). Every
helper is deterministic: randomness only ever comes from a ``numpy.random.Generator`` argument.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image


def hex_rgb(text: str) -> np.ndarray:
    text = text.lstrip("#")
    return np.array([int(text[i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0


@lru_cache(maxsize=64)
def _gauss_matrix(n: int, sigma_milli: int) -> np.ndarray:
    sigma = sigma_milli / 1000.0
    x = np.arange(n, dtype=np.float64)
    d = x[:, None] - x[None, :]
    k = np.exp(-0.5 * (d / sigma) ** 2)
    k[np.abs(d) > 4 * sigma + 1] = 0.0
    k /= k.sum(axis=1, keepdims=True)  # renormalised at the borders: no dark frame
    return k.astype(np.float32)


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W) or (H, W, C) float array."""
    if sigma <= 0.05:
        return a
    key = int(round(sigma * 1000))
    ky = _gauss_matrix(a.shape[0], key)
    kx = _gauss_matrix(a.shape[1], key)
    if a.ndim == 2:
        return ky @ a.astype(np.float32) @ kx.T
    return np.stack([ky @ a[..., c].astype(np.float32) @ kx.T for c in range(a.shape[2])], axis=-1)


def resize_f(a: np.ndarray, h: int, w: int, resample=Image.BICUBIC) -> np.ndarray:
    """Resize a float (H, W) or (H, W, C) array with PIL's float ('F') resampling."""
    if a.ndim == 2:
        return np.asarray(Image.fromarray(a.astype(np.float32)).resize((w, h), resample))
    return np.stack([resize_f(a[..., c], h, w, resample) for c in range(a.shape[2])], axis=-1)


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth noise with features about ``cell`` pixels wide; zero mean, unit-ish std."""
    gh = max(2, int(np.ceil(h / cell)) + 2)
    gw = max(2, int(np.ceil(w / cell)) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    if cell <= 1.0:
        return grid[:h, :w]
    big = resize_f(grid, int(round(gh * cell)), int(round(gw * cell)))
    return big[:h, :w] / 0.8


def fractal_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        out += amp * value_noise(rng, h, w, max(cell, 1.0))
        total += amp
        cell /= 2.0
        amp *= 0.55
    return out / total


def streak_noise(rng: np.random.Generator, h: int, w: int, length: float, width: float,
                 angle: float) -> np.ndarray:
    """Noise stretched into streaks ``length`` px long at ``angle`` radians (pencil, wood grain)."""
    side = int(np.ceil(np.hypot(h, w))) + 4
    gh = max(2, int(np.ceil(side / max(width, 1.0))) + 2)
    gw = max(2, int(np.ceil(side / max(length, 1.0))) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    big = np.asarray(Image.fromarray(grid).resize((side, side), Image.BICUBIC))
    rot = np.asarray(Image.fromarray(big).rotate(np.degrees(angle), resample=Image.BILINEAR))
    y0 = (side - h) // 2
    x0 = (side - w) // 2
    out = rot[y0:y0 + h, x0:x0 + w]
    return (out - out.mean()) / (out.std() + 1e-6)


def luminance(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def stretch(a: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> np.ndarray:
    p0, p1 = np.percentile(a, [lo, hi])
    return np.clip((a - p0) / max(p1 - p0, 1e-3), 0.0, 1.0)


def sobel(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.pad(a, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx / 8.0, gy / 8.0


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary/float dilation by a (2r+1) square (max filter)."""
    if radius <= 0:
        return mask
    out = mask.copy()
    p = np.pad(mask, radius, mode="edge")
    h, w = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx > radius * radius + radius:
                continue
            np.maximum(out, p[radius + dy:radius + dy + h, radius + dx:radius + dx + w], out=out)
    return out


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def downsample(img: np.ndarray, size: int) -> np.ndarray:
    """A float image to ``size`` x ``size`` uint8 with Lanczos antialiasing."""
    pil = Image.fromarray(to_uint8(img))
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.LANCZOS)
    return np.asarray(pil)


def jittered_cells(h: int, w: int, cell: float, rng: np.random.Generator, jitter: float = 0.85):
    """Voronoi cells of seeds on a jittered grid: per-pixel seed label, distance and seed coords.

    Only the 3 x 3 neighbouring grid cells are searched, which is exact enough for jitter <= 1.
    Returns ``(label, dist, seed_y, seed_x)``; ``seed_y/seed_x`` are per-pixel seed positions.
    """
    gh = int(np.ceil(h / cell)) + 1
    gw = int(np.ceil(w / cell)) + 1
    off = rng.uniform(-jitter / 2, jitter / 2, size=(gh, gw, 2)).astype(np.float32)
    sy = (np.arange(gh, dtype=np.float32)[:, None] + 0.5 + off[..., 0]) * cell
    sx = (np.arange(gw, dtype=np.float32)[None, :] + 0.5 + off[..., 1]) * cell
    py, px = np.indices((h, w), dtype=np.float32)
    gy = np.floor(py / cell).astype(np.int64)
    gx = np.floor(px / cell).astype(np.int64)
    best = np.full((h, w), np.inf, np.float32)
    label = np.zeros((h, w), np.int64)
    by = np.zeros((h, w), np.float32)
    bx = np.zeros((h, w), np.float32)
    for dy in (-1, 0, 1):
        ny = np.clip(gy + dy, 0, gh - 1)
        for dx in (-1, 0, 1):
            nx = np.clip(gx + dx, 0, gw - 1)
            cy = sy[ny, nx]
            cx = sx[ny, nx]
            d = (py - cy) ** 2 + (px - cx) ** 2
            better = d < best
            best = np.where(better, d, best)
            label = np.where(better, ny * gw + nx, label)
            by = np.where(better, cy, by)
            bx = np.where(better, cx, bx)
    return label, np.sqrt(best), by, bx


def cell_means(img: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-pixel mean colour of each pixel's cell."""
    flat = label.ravel()
    n = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=n).astype(np.float64)
    counts[counts == 0] = 1
    chans = [np.bincount(flat, weights=img[..., c].ravel(), minlength=n) / counts
             for c in range(img.shape[2])]
    means = np.stack(chans, axis=-1).astype(np.float32)
    return means[label]


def boundaries(label: np.ndarray) -> np.ndarray:
    b = np.zeros(label.shape, np.float32)
    b[:, 1:] = np.maximum(b[:, 1:], (label[:, 1:] != label[:, :-1]))
    b[1:, :] = np.maximum(b[1:, :], (label[1:, :] != label[:-1, :]))
    return b
