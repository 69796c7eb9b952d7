"""Small numpy/PIL image helpers shared by the synthetic world's scenes and painting techniques.

Images are float32 arrays in [0, 1], shaped (H, W, 3) (or (H, W) for single channels). Every
helper is deterministic: randomness only ever comes from a ``numpy.random.Generator`` argument.
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def hex_rgb(text: str) -> np.ndarray:
    text = text.lstrip("#")
    return np.array([int(text[i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0


def _box(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Mean over a (2r+1) window along ``axis`` with edge padding (cumulative sums: O(n))."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis)
    n = a.shape[axis]
    hi = [slice(None)] * a.ndim
    lo = [slice(None)] * a.ndim
    hi[axis] = slice(2 * r + 1, 2 * r + 1 + n)
    lo[axis] = slice(0, n)
    return (c[tuple(hi)] - c[tuple(lo)]) * np.float32(1.0 / (2 * r + 1))


def _taps(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="edge")
    n = a.shape[axis]
    out = np.zeros(a.shape, np.float32)
    for i, w in enumerate(k):
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(i, i + n)
        out += w * p[tuple(sl)]
    return out


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an (H, W) or (H, W, C) float array over its first two axes.

    Small sigmas use exact taps; larger ones two box passes per axis (cumulative sums), a
    Gaussian-like approximation at a cost independent of sigma. Pure elementwise numpy: no
    BLAS (whose threading is slow on small matrices), so results are deterministic.
    """
    a = a.astype(np.float32, copy=False)
    if sigma <= 0.05:
        return a
    if sigma < 1.6:
        return _taps(_taps(a, sigma, 0), sigma, 1)
    width = np.sqrt(6.0 * sigma * sigma + 1.0)
    r = max(1, int(round((width - 1) / 2)))
    out = a
    for axis in (0, 1):
        for _ in range(2):
            out = _box(out, r, axis)
    return out


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


def downsample(img: np.ndarray, size: int) -> np.ndarray:
    """A float image to ``size`` x ``size`` uint8 with Lanczos antialiasing."""
    pil = Image.fromarray(to_uint8(img))
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.LANCZOS)
    return np.asarray(pil)


def jittered_cells(h: int, w: int, cell: float, rng: np.random.Generator, jitter: float = 0.85):
    """Voronoi cells of seeds on a jittered grid.

    Only the 3 x 3 neighbouring grid cells are searched, which is exact enough for jitter <= 1.
    Returns ``(label, dist, seed_y, seed_x)``: per-pixel seed index and distance to it, and the
    seeds' coordinates indexed by label (``seed_y[label]`` is each pixel's seed row). Labels
    index a padded grid, so some labels are never used.
    """
    gh = int(np.ceil(h / cell)) + 1
    gw = int(np.ceil(w / cell)) + 1
    off = rng.uniform(-jitter / 2, jitter / 2, size=(gh, gw, 2)).astype(np.float32)
    far = np.float32(-1e6)
    sy = np.full((gh + 2, gw + 2), far, np.float32)
    sx = np.full((gh + 2, gw + 2), far, np.float32)
    sy[1:-1, 1:-1] = (np.arange(gh, dtype=np.float32)[:, None] + 0.5 + off[..., 0]) * cell
    sx[1:-1, 1:-1] = (np.arange(gw, dtype=np.float32)[None, :] + 0.5 + off[..., 1]) * cell
    sy, sx = sy.ravel(), sx.ravel()
    py, px = np.indices((h, w), dtype=np.float32)
    stride = gw + 2
    base = (np.floor(py / cell).astype(np.int64) + 1) * stride + np.floor(px / cell).astype(np.int64) + 1
    best = np.full((h, w), np.inf, np.float32)
    label = base
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            idx = base + (dy * stride + dx)
            d = (py - sy[idx]) ** 2 + (px - sx[idx]) ** 2
            better = d < best
            best = np.minimum(best, d)
            label = np.where(better, idx, label)
    return label, np.sqrt(best), sy, sx


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
