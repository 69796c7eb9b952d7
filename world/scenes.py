"""Procedural "photos" for the synthetic world: one drawing function per content category.

Each scene is drawn at ``SUPERSAMPLE`` times the target size into a float canvas, with shaded
shapes (a per-image light direction, radial or linear shading, a little surface texture), then
downsampled with Lanczos. Every choice comes from the ``numpy.random.Generator`` passed in, so a
scene is a pure function of (category, generator, size).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from world.imaging import downsample, fractal_noise, hex_rgb, resize_f, to_uint8

SUPERSAMPLE = 2


def _palette(*hexes: str) -> list[np.ndarray]:
    return [hex_rgb(h) for h in hexes]


SKIN = _palette("#f6dcc6", "#eec3a0", "#e0ac82", "#c98e62", "#a86f47", "#7d4e31", "#5a3823")
HAIR = _palette("#1d1612", "#3b2417", "#6a4424", "#a8773e", "#d8b46a", "#9c3d1c", "#8d8d8d",
                "#e8e2d6")
IRIS = _palette("#5b3a1e", "#3d6fa8", "#4d7a3c", "#7a6a3a", "#2b2b2b")
LIPS = _palette("#b54a4a", "#c86a6a", "#9b3c46", "#d07a70", "#8a4038")
CLOTHES = _palette("#2f4f8f", "#b03030", "#2e7d4f", "#d9a520", "#6b3fa0", "#202020", "#e8e8e8",
                   "#d2691e", "#4a8fb0", "#8b5a2b")
BACKDROPS = _palette("#8fa8c8", "#c8b89a", "#9ab89a", "#b0b0b8", "#d8c8b8", "#6a7a8a", "#c89a8a",
                     "#e0d8c0", "#7a9aa0")
WALLS = _palette("#b5533c", "#f0e6d0", "#e8d27a", "#9fc0d8", "#c8c8c0", "#a0785a", "#f4f4f0",
                 "#d89a7a", "#88a888")
ROOFS = _palette("#7a2a20", "#4a3a30", "#505860", "#2f3a4a", "#6a5a4a", "#3f5a3a", "#8a4a2a")
DOORS = _palette("#7a2020", "#2a5a3a", "#5a3a20", "#2a3a6a", "#202020", "#c8a040")
SKY_DAY = (hex_rgb("#3a78c8"), hex_rgb("#bcd8f0"))
SKIES = [SKY_DAY,
         (hex_rgb("#5a8ad0"), hex_rgb("#e0ecf4")),
         (hex_rgb("#8a9aa8"), hex_rgb("#d8dce0")),      # overcast
         (hex_rgb("#3a2a6a"), hex_rgb("#f0a060")),      # sunset
         (hex_rgb("#1a3a6a"), hex_rgb("#f4d0a0")),      # dawn
         (hex_rgb("#6aa8e8"), hex_rgb("#f0f4f8"))]
GRASS = _palette("#4a8a3a", "#6aa040", "#3a6a30", "#8aa848", "#a8a050")
FOLIAGE = _palette("#2a5a2a", "#3a7a3a", "#1e4a28", "#4a6a2a", "#2a6a4a")
PETALS = _palette("#e03040", "#f080a0", "#f0d020", "#f8f4f0", "#8a40c0", "#f08020", "#4060d0",
                  "#d02080", "#f0a0c0", "#ffb030")
CENTRES = _palette("#f0c020", "#6a4020", "#2a1a10", "#e0a020", "#f8e070")
VEHICLES = _palette("#c02020", "#2050b0", "#f0f0f0", "#202020", "#a8acb0", "#f0c020", "#2a8a3a",
                    "#e07020", "#6a2a8a", "#40a0c0")
PAPER = _palette("#f6f2e8", "#fbfbf8", "#f0e6c8", "#e8eef4", "#f4e8e0")
INK = _palette("#1a1a2a", "#202020", "#1a2a6a", "#5a1a1a", "#2a3a2a")


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((size, size), dtype=np.float32)
    return yy, xx


def _pick(rng: np.random.Generator, items: list[np.ndarray]) -> np.ndarray:
    return items[int(rng.integers(len(items)))]


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float = 0.06) -> np.ndarray:
    scale = 1.0 + rng.uniform(-amount, amount)
    tint = rng.uniform(-amount / 2, amount / 2, size=3)
    return np.clip(colour * scale + tint, 0.0, 1.0).astype(np.float32)


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return (a * (1 - t) + b * t).astype(np.float32)


def ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0,
                   n: int = 28) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = rx * np.cos(t)
    y = ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return list(zip((cx + x * ca - y * sa).tolist(), (cy + x * sa + y * ca).tolist()))


class Canvas:
    """A supersampled float canvas with shaded-shape drawing in normalised [0, 1] coordinates."""

    def __init__(self, size: int, rng: np.random.Generator, ss: int = SUPERSAMPLE):
        self.size = size
        self.S = size * ss
        self.rng = rng
        self.img = np.zeros((self.S, self.S, 3), np.float32)
        ang = rng.uniform(-2.5, -0.65)  # screen y points down: the light comes from above
        self.light = (math.cos(ang), math.sin(ang))
        self.tex = fractal_noise(rng, self.S, self.S, self.S / 24, octaves=3)

    # -- masks ---------------------------------------------------------------------------------
    def p(self, v: float) -> float:
        return v * self.S

    def pts(self, points) -> list[tuple[float, float]]:
        return [(x * self.S, y * self.S) for x, y in points]

    def new_mask(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        m = Image.new("L", (self.S, self.S), 0)
        return m, ImageDraw.Draw(m)

    def mask_ellipse(self, cx, cy, rx, ry, angle=0.0) -> Image.Image:
        m, d = self.new_mask()
        if angle:
            d.polygon(self.pts(ellipse_points(cx, cy, rx, ry, angle)), fill=255)
        else:
            d.ellipse([self.p(cx - rx), self.p(cy - ry), self.p(cx + rx), self.p(cy + ry)], fill=255)
        return m

    def mask_rect(self, x0, y0, x1, y1, radius=0.0) -> Image.Image:
        m, d = self.new_mask()
        box = [self.p(x0), self.p(y0), self.p(x1), self.p(y1)]
        if radius > 0:
            d.rounded_rectangle(box, radius=self.p(radius), fill=255)
        else:
            d.rectangle(box, fill=255)
        return m

    def mask_poly(self, points) -> Image.Image:
        m, d = self.new_mask()
        d.polygon(self.pts(points), fill=255)
        return m

    def mask_line(self, points, width) -> Image.Image:
        m, d = self.new_mask()
        d.line(self.pts(points), fill=255, width=max(1, int(round(self.p(width)))), joint="curve")
        return m

    # -- painting ------------------------------------------------------------------------------
    def paint(self, mask, colour, shade: float = 0.25, mode: str = "linear", tex: float = 0.04,
              alpha: float = 1.0, soft: float = 0.0) -> None:
        """Composite ``colour`` through ``mask`` (PIL 'L' image or float array) with shading."""
        if isinstance(mask, Image.Image):
            bbox = mask.getbbox()
            if bbox is None:
                return
            if soft > 0:  # blur only the shape's neighbourhood
                pad = int(math.ceil(self.p(soft) * 3)) + 1
                bbox = (max(bbox[0] - pad, 0), max(bbox[1] - pad, 0), min(bbox[2] + pad, self.S),
                        min(bbox[3] + pad, self.S))
                crop = mask.crop(bbox).filter(ImageFilter.GaussianBlur(self.p(soft)))
            else:
                crop = mask.crop(bbox)
            x0, y0, x1, y1 = bbox
            a = np.asarray(crop, np.float32) / 255.0
        else:
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            if rows.size == 0:
                return
            y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            a = mask[y0:y1, x0:x1].astype(np.float32)
        a = a[..., None] * alpha
        yy, xx = _grid(self.S)
        h, w = max(y1 - y0, 1), max(x1 - x0, 1)
        u = (xx[y0:y1, x0:x1] - x0) / w - 0.5
        v = (yy[y0:y1, x0:x1] - y0) / h - 0.5
        lx, ly = self.light
        if mode == "linear":
            b = 1.0 + shade * 1.6 * (u * lx + v * ly)
        elif mode == "radial":
            d = np.sqrt((u - 0.28 * lx) ** 2 + (v - 0.28 * ly) ** 2) / 0.75
            b = 1.0 + shade * (0.45 - d)
        elif mode == "vertical":
            b = 1.0 - shade * v
        else:
            b = np.ones_like(u)
        if tex:
            b = b + tex * self.tex[y0:y1, x0:x1]
        colour = np.asarray(colour, np.float32)
        col = np.clip(colour[None, None, :] * b[..., None], 0.0, 1.0)
        region = self.img[y0:y1, x0:x1]
        region *= 1.0 - a
        region += col * a

    def ellipse(self, cx, cy, rx, ry, colour, angle=0.0, **kw):
        self.paint(self.mask_ellipse(cx, cy, rx, ry, angle), colour, **kw)

    def rect(self, x0, y0, x1, y1, colour, radius=0.0, **kw):
        self.paint(self.mask_rect(x0, y0, x1, y1, radius), colour, **kw)

    def poly(self, points, colour, **kw):
        self.paint(self.mask_poly(points), colour, **kw)

    def line(self, points, width, colour, **kw):
        kw.setdefault("shade", 0.0)
        self.paint(self.mask_line(points, width), colour, **kw)

    def gradient(self, top, bottom, angle: float = 0.0, noise: float = 0.03, power: float = 1.0):
        n = 48  # smooth: computed on a small grid, then resized
        yy, xx = np.indices((n, n), dtype=np.float32) / (n - 1)
        t = ((yy - 0.5) * math.cos(angle) + (xx - 0.5) * math.sin(angle)) + 0.5
        t = np.clip(t, 0, 1) ** power
        top = np.asarray(top, np.float32)
        bottom = np.asarray(bottom, np.float32)
        g = top[None, None] * (1 - t[..., None]) + bottom[None, None] * t[..., None]
        g = resize_f(g, self.S, self.S, Image.BILINEAR)
        self.img[:] = np.clip(g * (1 + noise * self.tex[..., None]), 0, 1)

    def band(self, y0: float, y1: float, top, bottom, noise: float = 0.05):
        """A horizontal band [y0, y1) with a vertical gradient (ground, road, water)."""
        a, b = int(self.p(y0)), int(self.p(y1))
        a, b = max(a, 0), min(b, self.S)
        if b <= a:
            return
        t = np.linspace(0, 1, b - a, dtype=np.float32)[:, None, None]
        g = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
        self.img[a:b] = np.clip(g * (1 + noise * self.tex[a:b, :, None]), 0, 1)

    def finish(self, rng: np.random.Generator, flip: bool = False) -> np.ndarray:
        img = self.img[:, ::-1] if flip else self.img
        out = downsample(img, self.size).astype(np.float32) / 255.0
        yy, xx = _grid(self.size)
        r2 = ((yy / self.size - 0.5) ** 2 + (xx / self.size - 0.5) ** 2) * 2
        out = out * (1 - rng.uniform(0.05, 0.2) * r2[..., None])      # vignette
        out = out + rng.uniform(0.006, 0.018) * rng.standard_normal(out.shape).astype(np.float32)
        return to_uint8(out)


# ---------------------------------------------------------------------------------------------
# faces
# ---------------------------------------------------------------------------------------------
def draw_face(c: Canvas, rng: np.random.Generator) -> None:
    bg = _jitter(rng, _pick(rng, BACKDROPS), 0.1)
    c.gradient(_mix(bg, np.ones(3, np.float32), 0.2), bg * rng.uniform(0.55, 0.85),
               angle=rng.uniform(-0.6, 0.6))
    setting = int(rng.integers(0, 3))  # 0 studio, 1 lights behind, 2 a room (window, wall edge)
    if setting == 1:
        for _ in range(int(rng.integers(3, 8))):  # out-of-focus lights behind the sitter
            c.ellipse(rng.uniform(0, 1), rng.uniform(0, 0.7), *([rng.uniform(0.04, 0.1)] * 2),
                      _mix(bg, np.ones(3, np.float32), 0.6), alpha=0.35, soft=0.02, shade=0)
    elif setting == 2:
        wx = rng.uniform(-0.1, 0.6)
        c.rect(wx, rng.uniform(0.05, 0.2), wx + rng.uniform(0.3, 0.5), rng.uniform(0.5, 0.7),
               _mix(hex_rgb("#d8ecf8"), bg, 0.25), shade=0.4, soft=0.01)
        ex = rng.uniform(0.7, 0.95)
        c.rect(ex, 0.0, 1.0, 1.0, bg * rng.uniform(0.6, 0.8), shade=0.2)

    cx = rng.uniform(0.32, 0.68)
    cy = rng.uniform(0.38, 0.55)
    rx = rng.uniform(0.14, 0.26)
    ry = rx * rng.uniform(1.18, 1.4)
    skin = _jitter(rng, _pick(rng, SKIN), 0.05)
    hair = _jitter(rng, _pick(rng, HAIR), 0.08)
    shirt = _jitter(rng, _pick(rng, CLOTHES), 0.1)
    style = int(rng.integers(0, 4))  # 0 short, 1 long, 2 bald, 3 curly

    if style == 1:
        c.ellipse(cx, cy + ry * 0.35, rx * 1.35, ry * 1.25, hair, shade=0.3)
    c.ellipse(cx, cy + ry * 2.05, rx * rng.uniform(2.0, 2.6), ry * 0.95, shirt, shade=0.35)
    if rng.random() < 0.5:  # collar
        c.poly([(cx - rx * 0.5, cy + ry * 1.12), (cx, cy + ry * 1.5), (cx + rx * 0.5, cy + ry * 1.12)],
               _mix(shirt, np.ones(3, np.float32), 0.6), shade=0.1)
    c.rect(cx - rx * 0.42, cy + ry * 0.55, cx + rx * 0.42, cy + ry * 1.25, skin * 0.82, shade=0.3)
    for side in (-1, 1):
        c.ellipse(cx + side * rx * 0.97, cy + ry * 0.05, rx * 0.16, ry * 0.2, skin * 0.9, shade=0.2)
    c.ellipse(cx, cy, rx, ry, skin, shade=0.45, mode="radial", tex=0.02)

    yy, xx = _grid(c.S)
    if style in (0, 1):
        m = np.asarray(c.mask_ellipse(cx, cy - ry * 0.1, rx * 1.08, ry * 0.98), np.float32) / 255
        fringe = cy - ry * rng.uniform(0.3, 0.5) + 0.03 * np.sin(xx / c.S * rng.uniform(15, 30))
        part = (yy / c.S < fringe).astype(np.float32)
        if style == 1:  # long hair also frames the face down the sides
            part = np.maximum(part, ((np.abs(xx / c.S - cx) > rx * 0.86) & (yy / c.S < cy + ry * 0.7)))
        c.paint(m * part, hair, shade=0.35, mode="radial", tex=0.08)
    elif style == 3:
        r = rx * rng.uniform(0.22, 0.3)
        for t in np.linspace(math.pi * 1.05, math.pi * 1.95, int(rng.integers(6, 10))):
            c.ellipse(cx + rx * 0.95 * math.cos(t), cy + ry * 0.85 * math.sin(t), r, r, hair,
                      shade=0.4, mode="radial")
    if style != 2 and rng.random() < 0.2:  # beard
        m = np.asarray(c.mask_ellipse(cx, cy + ry * 0.25, rx * 0.98, ry * 0.78), np.float32) / 255
        mouth_gap = np.asarray(c.mask_ellipse(cx, cy + ry * 0.5, rx * 0.36, ry * 0.1), np.float32) / 255
        c.paint(m * (yy / c.S > cy + ry * 0.25) * (1 - mouth_gap), hair, shade=0.3, tex=0.1)

    if rng.random() < 0.5:  # blush
        for side in (-1, 1):
            c.ellipse(cx + side * rx * 0.55, cy + ry * 0.28, rx * 0.18, rx * 0.12,
                      np.array([0.9, 0.4, 0.4], np.float32), alpha=0.25, soft=0.02, shade=0)
    ey = cy - ry * rng.uniform(0.02, 0.14)
    ew = rx * rng.uniform(0.19, 0.25)
    eh = ew * rng.uniform(0.45, 0.62)
    sep = rx * rng.uniform(0.38, 0.46)
    iris = _jitter(rng, _pick(rng, IRIS))
    look = rng.uniform(-0.3, 0.3) * ew
    for side in (-1, 1):
        ex = cx + side * sep
        c.ellipse(ex, ey, ew, eh, np.array([0.96, 0.95, 0.93], np.float32), shade=0.15)
        c.ellipse(ex + look, ey, eh * 0.95, eh * 0.95, iris, shade=0.3, mode="radial")
        c.ellipse(ex + look, ey, eh * 0.45, eh * 0.45, np.array([0.05, 0.05, 0.05], np.float32), shade=0)
        c.ellipse(ex + look - eh * 0.3, ey - eh * 0.3, eh * 0.18, eh * 0.18, np.ones(3, np.float32),
                  shade=0)
        c.line([(ex - ew * 1.05, ey - eh * 0.2), (ex, ey - eh * 1.05), (ex + ew * 1.05, ey - eh * 0.2)],
               ew * 0.16, skin * 0.45)
        by = ey - eh * rng.uniform(1.8, 2.5)
        c.line([(ex - side * ew * 1.0, by + eh * 0.3), (ex, by - eh * 0.2), (ex + side * ew * 1.1, by)],
               ew * rng.uniform(0.22, 0.38), hair * 0.8)
    # nose
    ny = cy + ry * rng.uniform(0.25, 0.35)
    c.poly([(cx + rx * 0.02, ey + eh), (cx - rx * 0.13, ny), (cx + rx * 0.1, ny)], skin * 0.78,
           alpha=0.55, soft=0.006, shade=0)
    for side in (-1, 1):
        c.ellipse(cx + side * rx * 0.07, ny, rx * 0.04, rx * 0.025, skin * 0.4, shade=0)
    # mouth
    my = cy + ry * rng.uniform(0.52, 0.6)
    mw = rx * rng.uniform(0.3, 0.5)
    lips = _jitter(rng, _pick(rng, LIPS))
    if rng.random() < 0.55:
        m, d = c.new_mask()
        d.chord([c.p(cx - mw), c.p(my - mw * 0.5), c.p(cx + mw), c.p(my + mw * 0.5)], 0, 180, fill=255)
        c.paint(m, lips * 0.7, shade=0.2)
        if rng.random() < 0.6:
            m, d = c.new_mask()
            d.chord([c.p(cx - mw * 0.8), c.p(my - mw * 0.25), c.p(cx + mw * 0.8), c.p(my + mw * 0.2)],
                    0, 180, fill=255)
            c.paint(m, np.array([0.95, 0.94, 0.9], np.float32), shade=0.1)
    else:
        c.ellipse(cx, my, mw, mw * 0.22, lips, shade=0.3)
        c.line([(cx - mw, my), (cx + mw, my)], rx * 0.025, lips * 0.5)
    if rng.random() < 0.25:  # glasses
        frame = _pick(rng, [hex_rgb("#202020"), hex_rgb("#6a3a1a"), hex_rgb("#b0b0b8")])
        for side in (-1, 1):
            m, d = c.new_mask()
            r = ew * 1.35
            ex = cx + side * sep
            d.ellipse([c.p(ex - r), c.p(ey - r * 0.8), c.p(ex + r), c.p(ey + r * 0.8)],
                      outline=255, width=max(1, int(c.p(rx * 0.05))))
            c.paint(m, frame, shade=0)
        c.line([(cx - sep + ew * 1.35, ey), (cx + sep - ew * 1.35, ey)], rx * 0.05, frame)


# ---------------------------------------------------------------------------------------------
# houses
# ---------------------------------------------------------------------------------------------
def _tree(c: Canvas, rng, x: float, base: float, h: float, conifer: bool) -> None:
    leaf = _jitter(rng, _pick(rng, FOLIAGE), 0.12)
    trunk = np.array([0.35, 0.24, 0.15], np.float32) * rng.uniform(0.7, 1.1)
    if conifer:
        c.rect(x - h * 0.04, base - h * 0.2, x + h * 0.04, base, trunk, shade=0.3)
        for k in range(3):
            top = base - h * (1.0 - k * 0.22)
            bot = base - h * (0.45 - k * 0.15)
            w = h * (0.2 + k * 0.08)
            c.poly([(x, top), (x - w, bot), (x + w, bot)], leaf * (0.85 + 0.08 * k), shade=0.35,
                   tex=0.1)
    else:
        c.rect(x - h * 0.05, base - h * 0.55, x + h * 0.05, base, trunk, shade=0.3, tex=0.1)
        for _ in range(int(rng.integers(3, 6))):
            r = h * rng.uniform(0.18, 0.3)
            c.ellipse(x + rng.uniform(-0.2, 0.2) * h, base - h * rng.uniform(0.6, 0.85), r, r,
                      leaf * rng.uniform(0.85, 1.15), shade=0.45, mode="radial", tex=0.12)


def _sky(c: Canvas, rng, horizon: float) -> np.ndarray:
    top, bottom = SKIES[int(rng.integers(len(SKIES)))]
    top = _jitter(rng, top, 0.08)
    bottom = _jitter(rng, bottom, 0.05)
    c.gradient(top, bottom, angle=rng.uniform(-0.3, 0.3), power=rng.uniform(0.7, 1.4))
    return bottom


def _clouds(c: Canvas, rng, n: int, ymax: float, tint) -> None:
    for _ in range(n):
        x, y = rng.uniform(-0.1, 1.1), rng.uniform(0.05, ymax)
        w = rng.uniform(0.08, 0.2)
        col = _mix(np.ones(3, np.float32), np.asarray(tint, np.float32), 0.25)
        for _ in range(int(rng.integers(3, 6))):
            c.ellipse(x + rng.uniform(-w, w), y + rng.uniform(-0.02, 0.02), w * rng.uniform(0.4, 0.7),
                      w * rng.uniform(0.25, 0.4), col, alpha=0.85, shade=0.3, mode="radial", soft=0.004)


def draw_house(c: Canvas, rng: np.random.Generator) -> None:
    horizon = rng.uniform(0.66, 0.8)
    tint = _sky(c, rng, horizon)
    _clouds(c, rng, int(rng.integers(0, 4)), horizon - 0.3, tint)
    if rng.random() < 0.6:  # distant tree line
        for x in np.linspace(-0.05, 1.05, int(rng.integers(8, 16))):
            r = rng.uniform(0.04, 0.09)
            c.ellipse(x, horizon - r * 0.4, r, r, _pick(rng, FOLIAGE) * 0.8, shade=0.3, mode="radial")
    ground = _jitter(rng, _pick(rng, GRASS + [hex_rgb("#e8eef0"), hex_rgb("#b8a070")]), 0.08)
    c.band(horizon, 1.0, ground * 1.05, ground * 0.7, noise=0.15)

    w = rng.uniform(0.42, 0.68)
    x0 = rng.uniform(0.04, 0.96 - w)
    x1 = x0 + w
    storeys = int(rng.integers(1, 3))
    floor_h = rng.uniform(0.14, 0.2) if storeys == 2 else rng.uniform(0.18, 0.26)
    base = horizon + rng.uniform(0.04, 0.1)
    top = base - storeys * floor_h - 0.03
    wall = _jitter(rng, _pick(rng, WALLS), 0.07)
    roof = _jitter(rng, _pick(rng, ROOFS), 0.1)
    roof_kind = int(rng.integers(0, 3))
    roof_h = w * rng.uniform(0.25, 0.45)
    over = w * rng.uniform(0.03, 0.08)

    if rng.random() < 0.6:  # chimney
        chx = x0 + w * rng.uniform(0.15, 0.8)
        c.rect(chx, top - roof_h * 0.95, chx + w * 0.08, top, _jitter(rng, hex_rgb("#8a4a3a")),
               shade=0.3, tex=0.1)
    c.rect(x0, top, x1, base, wall, shade=0.3, tex=0.06)
    if rng.random() < 0.5:  # brick courses or siding
        lines = c.new_mask()
        for y in np.arange(top, base, rng.uniform(0.018, 0.03)):
            lines[1].line([(c.p(x0), c.p(y)), (c.p(x1), c.p(y))], fill=255, width=max(1, c.S // 200))
        c.paint(lines[0], wall * 0.7, alpha=0.5, shade=0)
    if roof_kind == 0:
        c.poly([(x0 - over, top), ((x0 + x1) / 2, top - roof_h), (x1 + over, top)], roof, shade=0.4,
               tex=0.1)
    elif roof_kind == 1:
        c.poly([(x0 - over, top), (x0 + w * 0.22, top - roof_h * 0.75), (x1 - w * 0.22, top - roof_h * 0.75),
                (x1 + over, top)], roof, shade=0.4, tex=0.1)
    else:
        c.rect(x0 - over, top - 0.035, x1 + over, top + 0.005, roof, shade=0.3)
    c.rect(x0 - over, top - 0.004, x1 + over, top + 0.012, roof * 0.6, shade=0)

    door = _jitter(rng, _pick(rng, DOORS))
    frame = _pick(rng, [np.array([0.95, 0.95, 0.93], np.float32), np.array([0.2, 0.18, 0.16], np.float32),
                        wall * 0.6])
    cols = int(rng.integers(2, 5))
    slots = np.linspace(x0 + w / (2 * cols), x1 - w / (2 * cols), cols)
    door_slot = int(rng.integers(cols))
    ww = w / cols * rng.uniform(0.35, 0.55)
    for s in range(storeys):
        fy1 = base - s * floor_h
        for k, sx in enumerate(slots):
            if s == 0 and k == door_slot:
                dw = min(ww * 1.1, w / cols * 0.6)
                dh = floor_h * 0.78
                c.rect(sx - dw / 2 - 0.01, fy1 - dh - 0.01, sx + dw / 2 + 0.01, fy1, frame, shade=0.1)
                c.rect(sx - dw / 2, fy1 - dh, sx + dw / 2, fy1, door, shade=0.3, tex=0.06)
                c.ellipse(sx + dw * 0.3, fy1 - dh * 0.45, dw * 0.07, dw * 0.07, hex_rgb("#d8b040"), shade=0)
                c.poly([(sx - dw / 2, fy1), (sx + dw / 2, fy1), (sx + dw, 1.02), (sx - dw, 1.02)],
                       _jitter(rng, hex_rgb("#a89a88")), shade=0.2, tex=0.1)
                continue
            wh = floor_h * rng.uniform(0.42, 0.55)
            wy = fy1 - floor_h * 0.55
            c.rect(sx - ww / 2 - 0.012, wy - wh / 2 - 0.012, sx + ww / 2 + 0.012, wy + wh / 2 + 0.012,
                   frame, shade=0.1)
            c.rect(sx - ww / 2, wy - wh / 2, sx + ww / 2, wy + wh / 2,
                   _jitter(rng, hex_rgb("#9cc4e0"), 0.1), shade=0.6, mode="linear", tex=0.03)
            c.line([(sx, wy - wh / 2), (sx, wy + wh / 2)], 0.01, frame)
            c.line([(sx - ww / 2, wy), (sx + ww / 2, wy)], 0.01, frame)
    for _ in range(int(rng.integers(0, 5))):  # bushes along the wall
        r = rng.uniform(0.03, 0.06)
        c.ellipse(rng.uniform(x0, x1), base - r * 0.3, r * 1.3, r, _pick(rng, FOLIAGE), shade=0.5,
                  mode="radial", tex=0.15)
    if rng.random() < 0.6:
        side_x = x0 - rng.uniform(0.04, 0.12) if x0 > 0.2 else x1 + rng.uniform(0.04, 0.12)
        _tree(c, rng, side_x, base + 0.02, rng.uniform(0.3, 0.5), conifer=rng.random() < 0.4)


# ---------------------------------------------------------------------------------------------
# landscapes
# ---------------------------------------------------------------------------------------------
def _ridge(rng, n: int, base: float, amp: float, rough: float) -> np.ndarray:
    steps = rng.standard_normal(n).cumsum()
    steps = (steps - steps.min()) / (np.ptp(steps) + 1e-6)
    jag = rng.uniform(-1, 1, n) * rough
    return base - amp * (steps + jag)


def draw_landscape(c: Canvas, rng: np.random.Generator) -> None:
    horizon = rng.uniform(0.42, 0.62)
    tint = _sky(c, rng, horizon)
    sx, sy = rng.uniform(0.1, 0.9), rng.uniform(0.1, horizon - 0.1)
    sr = rng.uniform(0.04, 0.08)
    sun = _mix(np.array([1.0, 0.95, 0.7], np.float32), tint, 0.3)
    if rng.random() < 0.8:
        c.ellipse(sx, sy, sr * 2.6, sr * 2.6, sun, alpha=0.35, soft=0.05, shade=0)
        c.ellipse(sx, sy, sr, sr, _mix(sun, np.ones(3, np.float32), 0.5), shade=0)
    _clouds(c, rng, int(rng.integers(0, 5)), horizon - 0.12, tint)

    xs = np.linspace(-0.02, 1.02, 40)
    for layer in range(int(rng.integers(1, 3))):  # mountains, far to near
        ridge = _ridge(rng, len(xs), horizon + 0.02, rng.uniform(0.12, 0.3) / (layer + 1), 0.06)
        col = _mix(hex_rgb("#5a6a90") * rng.uniform(0.7, 1.1), tint, 0.45 - 0.15 * layer)
        c.poly([(0, 1.0)] + list(zip(xs, ridge)) + [(1.0, 1.0)], col, shade=0.3, tex=0.06)
        if layer == 0 and rng.random() < 0.5:
            snow_line = ridge.min() + 0.05
            m = np.asarray(c.mask_poly([(0, 1.0)] + list(zip(xs, ridge)) + [(1.0, 1.0)]), np.float32) / 255
            yy, _ = _grid(c.S)
            c.paint(m * (yy / c.S < snow_line), np.array([0.95, 0.96, 0.98], np.float32), shade=0.3)

    hill_cols = [_jitter(rng, g, 0.12) for g in (GRASS if rng.random() < 0.7 else
                 _palette("#c8a050", "#a87a3a", "#d8b870", "#b86a30"))]
    n_hills = int(rng.integers(2, 4))
    lake = rng.random() < 0.35
    for k in range(n_hills):
        base = horizon + 0.04 + k * (1 - horizon) / (n_hills + 0.5)
        f = rng.uniform(4, 10)
        ph = rng.uniform(0, 6.3)
        a = rng.uniform(0.03, 0.08)
        ys = base - a * np.sin(f * xs + ph) - a * 0.4 * np.sin(2.3 * f * xs + ph * 1.7)
        col = hill_cols[k % len(hill_cols)] * (0.95 - 0.08 * k)
        c.poly([(0, 1.02)] + list(zip(xs, ys)) + [(1.0, 1.02)], col, shade=0.45, mode="vertical",
               tex=0.12)
        if lake and k == 0:
            ly = base + rng.uniform(0.02, 0.06)
            c.ellipse(rng.uniform(0.3, 0.7), ly, rng.uniform(0.25, 0.45), rng.uniform(0.03, 0.06),
                      _mix(tint, hex_rgb("#3a6aa0"), 0.5), shade=0.3, mode="vertical", tex=0.03)
        for _ in range(int(rng.integers(0, 4))):
            tx = rng.uniform(0.02, 0.98)
            ty = float(np.interp(tx, xs, ys)) + 0.02
            _tree(c, rng, tx, ty, (0.08 + 0.07 * k) * rng.uniform(0.8, 1.4), conifer=rng.random() < 0.5)


# ---------------------------------------------------------------------------------------------
# flowers
# ---------------------------------------------------------------------------------------------
def _flower_head(c: Canvas, rng, x: float, y: float, r: float) -> None:
    petal = _jitter(rng, _pick(rng, PETALS), 0.08)
    kind = int(rng.integers(0, 3))  # 0 daisy, 1 round petals, 2 layered (rose-like)
    rot = rng.uniform(0, 2 * np.pi)
    if kind == 2:
        for k, s in enumerate((1.0, 0.75, 0.5, 0.28)):
            n = 7 - k
            for i in range(n):
                t = rot + (i + 0.5 * k) * 2 * np.pi / n
                c.ellipse(x + r * s * 0.45 * math.cos(t), y + r * s * 0.45 * math.sin(t), r * s * 0.55,
                          r * s * 0.4, petal * (1.05 - 0.12 * k), angle=t, shade=0.5, mode="radial")
        return
    n = int(rng.integers(12, 20)) if kind == 0 else int(rng.integers(5, 8))
    width = 0.18 if kind == 0 else rng.uniform(0.32, 0.45)
    m, d = c.new_mask()
    for i in range(n):
        t = rot + i * 2 * np.pi / n
        d.polygon(c.pts(ellipse_points(x + r * 0.5 * math.cos(t), y + r * 0.5 * math.sin(t),
                                       r * 0.52, r * width, t, n=16)), fill=255)
    c.paint(m, petal, shade=0.5, mode="radial", tex=0.05)
    veins = c.new_mask()
    for i in range(n):
        t = rot + i * 2 * np.pi / n
        veins[1].line([(c.p(x), c.p(y)), (c.p(x + r * 0.85 * math.cos(t)), c.p(y + r * 0.85 * math.sin(t)))],
                      fill=255, width=max(1, c.S // 256))
    c.paint(veins[0], petal * 0.75, alpha=0.5, shade=0)
    centre = _jitter(rng, _pick(rng, CENTRES))
    cr = r * rng.uniform(0.22, 0.35)
    c.ellipse(x, y, cr, cr, centre, shade=0.6, mode="radial", tex=0.25)


def draw_flowers(c: Canvas, rng: np.random.Generator) -> None:
    vase = rng.random() < 0.35
    if vase:
        bg = _jitter(rng, _pick(rng, BACKDROPS), 0.1)
        c.gradient(bg * 1.1, bg * 0.7, angle=rng.uniform(-0.4, 0.4))
        table = rng.uniform(0.75, 0.85)
        c.band(table, 1.0, _jitter(rng, hex_rgb("#8a5a3a")), _jitter(rng, hex_rgb("#5a3a20")), noise=0.1)
    else:
        g = _jitter(rng, _pick(rng, FOLIAGE), 0.1)
        c.gradient(_mix(g, hex_rgb("#c8e0f0"), rng.uniform(0.0, 0.5)), g * 0.6, power=0.7)
        for _ in range(int(rng.integers(6, 14))):  # blurred foliage
            r = rng.uniform(0.06, 0.16)
            c.ellipse(rng.uniform(0, 1), rng.uniform(0.2, 1), r, r, _pick(rng, FOLIAGE) * rng.uniform(0.8, 1.5),
                      alpha=0.6, soft=0.03, shade=0)
        blades = c.new_mask()
        for _ in range(40):
            bx = rng.uniform(0, 1)
            blades[1].line([(c.p(bx), c.S), (c.p(bx + rng.uniform(-0.06, 0.06)), c.p(rng.uniform(0.7, 0.95)))],
                           fill=255, width=max(1, c.S // 120))
        c.paint(blades[0], _pick(rng, GRASS), shade=0, alpha=0.9)
    n = int(rng.integers(1, 6))
    heads = []
    for _ in range(n):
        r = rng.uniform(0.07, 0.18) if n > 2 else rng.uniform(0.12, 0.22)
        heads.append((rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.6 if vase else 0.7), r))
    stem = _jitter(rng, hex_rgb("#3a7a2a"), 0.1)
    vx = rng.uniform(0.4, 0.6)
    vy = rng.uniform(0.62, 0.7)
    for x, y, r in heads:
        end = (vx + rng.uniform(-0.03, 0.03), vy + 0.05) if vase else (x + rng.uniform(-0.1, 0.1), 1.02)
        mid = ((x + end[0]) / 2 + rng.uniform(-0.05, 0.05), (y + end[1]) / 2)
        c.line([(x, y), mid, end], rng.uniform(0.012, 0.02), stem, shade=0.2)
        if rng.random() < 0.8:
            lx, ly = mid
            t = rng.uniform(0.3, 1.0) * (1 if rng.random() < 0.5 else -1)
            c.ellipse(lx + 0.05 * math.cos(t), ly - 0.02, 0.06, 0.02, stem * 1.1, angle=-t, shade=0.4)
    if vase:
        vcol = _jitter(rng, _pick(rng, _palette("#3a5a9a", "#e8e0d0", "#9a3a2a", "#2a7a6a", "#d0a030")))
        vw = rng.uniform(0.09, 0.14)
        c.poly([(vx - vw * 0.6, vy), (vx + vw * 0.6, vy), (vx + vw, vy + 0.12), (vx + vw * 0.7, table + 0.06),
                (vx - vw * 0.7, table + 0.06), (vx - vw, vy + 0.12)], vcol, shade=0.6, tex=0.03)
        c.ellipse(vx, table + 0.065, vw * 1.1, 0.015, np.zeros(3, np.float32), alpha=0.3, soft=0.01, shade=0)
    for x, y, r in sorted(heads, key=lambda h: h[1]):
        _flower_head(c, rng, x, y, r)


# ---------------------------------------------------------------------------------------------
# vehicles
# ---------------------------------------------------------------------------------------------
def _wheel(c: Canvas, x: float, y: float, r: float, rim) -> None:
    c.ellipse(x, y, r, r, np.array([0.08, 0.08, 0.09], np.float32), shade=0.3, mode="radial")
    c.ellipse(x, y, r * 0.58, r * 0.58, rim, shade=0.6, mode="radial")
    c.ellipse(x, y, r * 0.18, r * 0.18, rim * 0.5, shade=0)


def draw_vehicle(c: Canvas, rng: np.random.Generator) -> None:
    horizon = rng.uniform(0.4, 0.6)
    tint = _sky(c, rng, horizon)
    _clouds(c, rng, int(rng.integers(0, 3)), horizon - 0.15, tint)
    if rng.random() < 0.5:  # city skyline
        x = -0.02
        while x < 1.0:
            bw = rng.uniform(0.06, 0.15)
            bh = rng.uniform(0.1, 0.35)
            c.rect(x, horizon - bh, x + bw, horizon + 0.01, _mix(hex_rgb("#6a7080"), tint, 0.4) * rng.uniform(0.8, 1.1),
                   shade=0.2)
            x += bw + rng.uniform(0.0, 0.03)
    else:
        for x in np.linspace(-0.05, 1.05, int(rng.integers(6, 12))):
            r = rng.uniform(0.05, 0.1)
            c.ellipse(x, horizon - r * 0.3, r, r, _pick(rng, FOLIAGE), shade=0.3, mode="radial", tex=0.1)
    road_top = rng.uniform(0.62, 0.78)
    c.band(horizon, road_top, _jitter(rng, hex_rgb("#a8a8a0")), _jitter(rng, hex_rgb("#8a8a84")), noise=0.08)
    asphalt = _jitter(rng, hex_rgb("#4a4a4e"), 0.15)
    c.band(road_top, 1.0, asphalt * 0.9, asphalt * 1.15, noise=0.12)
    lane = _pick(rng, [np.array([0.95, 0.95, 0.9], np.float32), np.array([0.95, 0.8, 0.2], np.float32)])
    ground = road_top + rng.uniform(0.1, 0.16)
    ly = min(ground + (1 - ground) * 0.5, 0.965)
    for x in np.arange(rng.uniform(-0.1, 0.1), 1.1, 0.2):
        c.rect(x, ly - 0.008, x + 0.1, ly + 0.008, lane, shade=0)

    kind = ["car", "car", "van", "bus", "truck"][int(rng.integers(5))]
    body = _jitter(rng, _pick(rng, VEHICLES), 0.06)
    glass = _jitter(rng, hex_rgb("#7890a8"), 0.1)
    rim = np.array([0.75, 0.76, 0.78], np.float32)
    L = {"car": rng.uniform(0.6, 0.8), "van": rng.uniform(0.55, 0.7), "bus": rng.uniform(0.8, 0.92),
         "truck": rng.uniform(0.75, 0.9)}[kind]
    x0 = rng.uniform(0.02, 0.98 - L)
    x1 = x0 + L
    wr = L * (0.085 if kind in ("car", "van") else 0.065)
    c.ellipse((x0 + x1) / 2, ground + wr * 0.05, L * 0.55, wr * 0.35, np.zeros(3, np.float32), alpha=0.45,
              soft=0.015, shade=0)
    wy = ground - wr
    if kind == "car":
        bh = L * rng.uniform(0.16, 0.2)
        yb, yt = ground - wr * 0.55, ground - wr * 0.55 - bh
        ch = L * rng.uniform(0.14, 0.18)
        a, b = rng.uniform(0.18, 0.26), rng.uniform(0.7, 0.8)
        cab = [(x0 + L * a, yt + 0.005), (x0 + L * (a + 0.1), yt - ch), (x0 + L * (b - 0.08), yt - ch),
               (x0 + L * b, yt + 0.005)]
        c.poly(cab, body, shade=0.35, tex=0.02)
        inset = [(x0 + L * (a + 0.03), yt), (x0 + L * (a + 0.115), yt - ch * 0.85),
                 (x0 + L * (b - 0.09), yt - ch * 0.85), (x0 + L * (b - 0.025), yt)]
        c.poly(inset, glass, shade=0.7, tex=0.02)
        pm = x0 + L * (a + b) / 2
        c.rect(pm - L * 0.015, yt - ch, pm + L * 0.015, yt, body * 0.9, shade=0)
        c.rect(x0, yt, x1, yb, body, radius=bh * 0.35, shade=0.45, tex=0.02)
        c.line([(x0 + L * 0.03, yt + bh * 0.35), (x1 - L * 0.03, yt + bh * 0.35)], 0.006, body * 1.3)
        c.line([(pm, yt + 0.01), (pm, yb - 0.01)], 0.006, body * 0.55)
        wheels = [x0 + L * 0.2, x0 + L * 0.8]
        lights_y = yt + bh * 0.3
    elif kind == "van":
        bh = L * rng.uniform(0.38, 0.45)
        yb, yt = ground - wr * 0.55, ground - wr * 0.55 - bh
        c.poly([(x0, yb), (x0, yt + bh * 0.1), (x0 + L * 0.06, yt), (x1 - L * 0.28, yt), (x1 - L * 0.05, yt + bh * 0.45),
                (x1, yt + bh * 0.5), (x1, yb)], body, shade=0.45, tex=0.02)
        c.poly([(x1 - L * 0.27, yt + bh * 0.08), (x1 - L * 0.08, yt + bh * 0.45), (x1 - L * 0.27, yt + bh * 0.45)],
               glass, shade=0.6)
        for k in range(2):
            wx = x0 + L * (0.08 + k * 0.22)
            c.rect(wx, yt + bh * 0.1, wx + L * 0.17, yt + bh * 0.42, glass, shade=0.6, radius=0.01)
        c.line([(x0 + L * 0.52, yt + bh * 0.08), (x0 + L * 0.52, yb - 0.01)], 0.006, body * 0.55)
        wheels = [x0 + L * 0.18, x0 + L * 0.8]
        lights_y = yt + bh * 0.6
    elif kind == "bus":
        bh = L * rng.uniform(0.3, 0.36)
        yb, yt = ground - wr * 0.6, ground - wr * 0.6 - bh
        c.rect(x0, yt, x1, yb, body, radius=bh * 0.12, shade=0.4, tex=0.02)
        stripe = _jitter(rng, _pick(rng, VEHICLES))
        c.rect(x0, yt + bh * 0.62, x1, yt + bh * 0.72, stripe, shade=0.2)
        n = int(rng.integers(4, 7))
        for k in range(n):
            wx0 = x0 + L * 0.04 + k * (L * 0.8) / n
            c.rect(wx0, yt + bh * 0.12, wx0 + L * 0.8 / n - 0.012, yt + bh * 0.5, glass, shade=0.6, radius=0.006)
        c.rect(x1 - L * 0.1, yt + bh * 0.12, x1 - L * 0.02, yb - 0.01, glass * 0.85, shade=0.5)
        wheels = [x0 + L * 0.16, x0 + L * 0.82]
        lights_y = yt + bh * 0.8
    else:  # truck: cargo box + cab
        bh = L * rng.uniform(0.32, 0.4)
        yb, yt = ground - wr * 0.6, ground - wr * 0.6 - bh
        cargo = _jitter(rng, _pick(rng, VEHICLES + [np.array([0.92, 0.92, 0.9], np.float32)] * 2))
        c.rect(x0, yt, x0 + L * 0.7, yb - 0.01, cargo, shade=0.35, tex=0.03)
        c.rect(x0 + L * 0.1, yt + bh * 0.3, x0 + L * 0.6, yt + bh * 0.6, body, shade=0.2)
        ct = yt + bh * 0.25
        c.poly([(x0 + L * 0.72, yb), (x0 + L * 0.72, ct), (x1 - L * 0.1, ct), (x1, ct + bh * 0.35), (x1, yb)],
               body, shade=0.45, tex=0.02)
        c.poly([(x0 + L * 0.8, ct + bh * 0.06), (x1 - L * 0.11, ct + bh * 0.06), (x1 - L * 0.03, ct + bh * 0.33),
                (x0 + L * 0.8, ct + bh * 0.33)], glass, shade=0.6)
        c.rect(x0 + L * 0.7, yb - 0.02, x1, yb, np.array([0.2, 0.2, 0.2], np.float32), shade=0)
        wheels = [x0 + L * 0.14, x0 + L * 0.32, x0 + L * 0.86]
        lights_y = yb - bh * 0.2
    for wx in wheels:
        c.ellipse(wx, wy, wr * 1.18, wr * 1.18, body * 0.25, shade=0)
        _wheel(c, wx, wy, wr, rim)
    c.ellipse(x1 - 0.012, lights_y, 0.014, 0.01, np.array([1.0, 0.95, 0.7], np.float32), shade=0)
    c.ellipse(x0 + 0.01, lights_y, 0.01, 0.012, np.array([0.85, 0.1, 0.1], np.float32), shade=0)


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------
_CONS = "bcdfghklmnprstvwz"
_VOWELS = "aeiouy"


@lru_cache(maxsize=64)
def _font(px: int):
    try:
        return ImageFont.load_default(size=max(6, px))
    except TypeError:  # very old Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _word(rng) -> str:
    n = int(rng.integers(1, 4))
    out = []
    for _ in range(n):
        out.append(_CONS[int(rng.integers(len(_CONS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))])
        if rng.random() < 0.4:
            out.append(_CONS[int(rng.integers(len(_CONS)))])
    return "".join(out)


def _sentence(rng, n_chars: int) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < n_chars:
        words.append(_word(rng))
    words[0] = words[0].capitalize()
    return " ".join(words)


def draw_text(c: Canvas, rng: np.random.Generator) -> None:
    S = c.S
    variant = int(rng.integers(0, 4))  # 0 paper on a desk, 1 notebook, 2 blackboard, 3 sign
    if variant == 2:
        board = _jitter(rng, _pick(rng, _palette("#2a4a3a", "#2a2a2e", "#1e3a4a")), 0.1)
        c.gradient(board * 1.1, board * 0.85, noise=0.2)
        ink = np.array([0.92, 0.92, 0.88], np.float32)
        sheet = None
    elif variant == 3:
        bg = _jitter(rng, _pick(rng, _palette("#1a5a9a", "#b02020", "#e8c020", "#2a7a3a", "#f0f0e8")), 0.06)
        c.gradient(bg * 1.08, bg * 0.9, noise=0.05)
        ink = np.ones(3, np.float32) if bg.mean() < 0.6 else np.array([0.1, 0.1, 0.12], np.float32)
        sheet = None
    else:
        desk = _jitter(rng, _pick(rng, _palette("#8a5a3a", "#6a4a30", "#b08a60", "#5a5a60", "#3a3040")), 0.1)
        c.gradient(desk * 1.1, desk * 0.8, angle=rng.uniform(-1, 1), noise=0.25)
        ink = _jitter(rng, _pick(rng, INK), 0.05)
        sheet = _jitter(rng, _pick(rng, PAPER), 0.03)

    pw, ph = (int(S * rng.uniform(0.7, 0.85)), int(S * rng.uniform(0.82, 0.95))) if sheet is not None else (S, S)
    page = Image.new("RGBA", (pw, ph), tuple(int(v * 255) for v in (sheet if sheet is not None else np.zeros(3))) +
                     ((255,) if sheet is not None else (0,)))
    d = ImageDraw.Draw(page)
    ink8 = tuple(int(v * 255) for v in ink) + (255,)
    margin = int(pw * rng.uniform(0.08, 0.14))
    y = int(ph * rng.uniform(0.06, 0.12))
    body_px = int(S * rng.uniform(0.045, 0.065))
    if variant == 1:  # ruled notebook lines and margin
        for ly in range(y + body_px, ph, int(body_px * 1.6)):
            d.line([(0, ly + int(body_px * 0.15)), (pw, ly + int(body_px * 0.15))], fill=(140, 170, 220, 255),
                   width=max(1, S // 256))
        d.line([(margin - 4, 0), (margin - 4, ph)], fill=(220, 90, 90, 255), width=max(1, S // 200))
    if variant == 3 or rng.random() < 0.6:  # a title line in a larger size
        title_px = int(S * (rng.uniform(0.12, 0.18) if variant == 3 else rng.uniform(0.07, 0.1)))
        title = _sentence(rng, int(rng.integers(4, 9)))
        if variant == 3:
            title = title.upper()
        accent = ink8 if rng.random() < 0.5 or variant >= 2 else \
            tuple(int(v * 255) for v in _pick(rng, _palette("#b02020", "#1a4a9a", "#2a6a2a"))) + (255,)
        d.text((margin, y), title, font=_font(title_px), fill=accent)
        y += int(title_px * 1.5)
    line_gap = int(body_px * 1.6)
    width_chars = max(6, int((pw - 2 * margin) / (body_px * 0.52)))
    while y + body_px < ph - int(ph * 0.06):
        n = int(width_chars * rng.uniform(0.55, 1.0))
        text = _sentence(rng, n)
        d.text((margin + (int(body_px * 1.2) if variant == 0 and rng.random() < 0.15 else 0), y), text,
               font=_font(body_px), fill=ink8)
        y += line_gap
        if rng.random() < 0.12:
            y += line_gap // 2
    rgba = page
    if sheet is not None:
        angle = rng.uniform(-12, 12)
        rgba = page.rotate(angle, resample=Image.BICUBIC, expand=True)
        ox = int((S - rgba.width) / 2 + rng.uniform(-0.05, 0.05) * S)
        oy = int((S - rgba.height) / 2 + rng.uniform(-0.04, 0.04) * S)
        shadow = Image.new("RGBA", (S, S), (0, 0, 0, 0))
        alpha = rgba.getchannel("A").point(lambda v: v * 0.45)
        shadow.paste((0, 0, 0, 255), (ox + S // 60, oy + S // 40), alpha)
        shadow = shadow.filter(ImageFilter.GaussianBlur(S / 80))
        layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
        layer.alpha_composite(shadow)
        layer.alpha_composite(rgba, dest=(max(ox, 0), max(oy, 0)), source=(max(-ox, 0), max(-oy, 0)))
        rgba = layer
    arr = np.asarray(rgba, np.float32) / 255.0
    a = arr[..., 3:4]
    shaded = arr[..., :3] * (1 + 0.03 * c.tex[..., None])
    c.img[:] = c.img * (1 - a) + shaded * a
    # light falloff across the page
    yy, xx = _grid(S)
    lx, ly = c.light
    c.img *= (1 + 0.12 * ((xx / S - 0.5) * lx + (yy / S - 0.5) * ly))[..., None]
    np.clip(c.img, 0, 1, out=c.img)


DRAWERS: dict[str, Callable[[Canvas, np.random.Generator], None]] = {
    "faces": draw_face,
    "houses": draw_house,
    "landscapes": draw_landscape,
    "flowers": draw_flowers,
    "vehicles": draw_vehicle,
    "text": draw_text,
}
CATEGORIES = tuple(DRAWERS)


def draw_scene(category: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One content "photo" of ``category``: a (size, size, 3) uint8 array."""
    if category not in DRAWERS:
        raise ValueError(f"unknown world category '{category}'; known: {sorted(DRAWERS)}")
    c = Canvas(size, rng, ss=2 if size <= 128 else 1)
    DRAWERS[category](c, rng)
    flip = category in ("vehicles", "faces", "houses", "landscapes", "flowers") and rng.random() < 0.5
    return c.finish(rng, flip=flip)
