"""Parametric painting techniques and palettes: the synthetic world's artistic styles.

A style group is one technique + one palette + parameters (stroke scale, grain, outline
strength, ...), described by a :class:`StyleParams`. ``paint(img, params, rng)`` renders a
content image in that style. The style is deliberately carried by statistics that weight-free
NST methods can transfer: the palette (colour distribution), the stroke / cell / dot scale
(texture frequency), the grain, the outline darkness.

All techniques take and return float32 (H, W, 3) images in [0, 1]; sizes are given for a
192-pixel image and scale with the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from world.imaging import (blur, boundaries, cell_means, dilate, fractal_noise, hex_rgb, luminance,
                              smoothstep, sobel, streak_noise, stretch, value_noise, jittered_cells)

# name -> (stops from dark to light, the tags people would give the palette's colours)
PALETTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sunset": (("#2b1055", "#7a1f5c", "#d6336c", "#f5793a", "#fcd57a"), ("sunset colours", "purple and orange")),
    "ocean": (("#03045e", "#0077b6", "#00b4d8", "#90e0ef", "#e4f7fb"), ("ocean blues", "blue and cyan")),
    "forest": (("#142414", "#2d5a27", "#5b8c3a", "#a3c16b", "#eef2d0"), ("forest greens", "green")),
    "pastel": (("#6c5b7b", "#c38d9e", "#f6b5c0", "#f9d9c8", "#fdf6e3"), ("pastel colours", "soft pink")),
    "monochrome": (("#0e0e0e", "#4a4a4a", "#8a8a8a", "#c8c8c8", "#f6f6f6"), ("monochrome", "black and white")),
    "neon": (("#0d0221", "#7b00ff", "#ff00a0", "#00e5ff", "#eaff00"), ("neon", "electric colours")),
    "earth": (("#2e1f14", "#6b4226", "#a0522d", "#d2a25f", "#efe0c0"), ("warm earth tones", "brown")),
    "ice": (("#1b263b", "#415a77", "#778da9", "#b8c7db", "#f0f4f8"), ("icy blue-grey", "slate blue")),
    "autumn": (("#3d0c02", "#8b2500", "#d2691e", "#e8a317", "#f7e08a"), ("autumn colours", "red and orange")),
    "berry": (("#1a0a1f", "#4a1942", "#893168", "#c86b98", "#f2c6de"), ("berry purple", "purple and pink")),
    "mint": (("#0b3d2e", "#167a5f", "#38b28c", "#9fe2bf", "#effcf5"), ("mint green", "teal")),
    "fire": (("#050000", "#7f0000", "#e02800", "#ffaa00", "#ffff99"), ("fiery red", "red and yellow")),
    "indigo": (("#0b1026", "#1f2a5a", "#3f5fa8", "#a9b8d9", "#f7f3e8"), ("monochrome blue", "indigo")),
    "gold": (("#1c1408", "#5c4515", "#a8842c", "#e3c565", "#fbf3d0"), ("gold and ochre", "yellow")),
}
# Palette tags computed from the stops themselves, so they hold for every palette:
# warmth = mean (red - blue) of the stops; saturation = mean HSV saturation of the middle stops;
# contrast = luminance of the lightest stop minus the darkest's.
WARM_ABOVE, COOL_BELOW = 0.2, -0.1
VIVID_FROM, MUTED_UP_TO = 0.75, 0.35
HIGH_CONTRAST_FROM, LOW_CONTRAST_UP_TO = 0.88, 0.6

TECHNIQUES = ("pointillism", "hatching", "watercolour", "stained_glass", "mosaic", "woodcut",
              "impasto", "halftone", "pencil")
STROKE_WORDS = ("fine", "medium", "coarse")
STROKE_SCALE = {"fine": 0.6, "medium": 1.0, "coarse": 1.65}
GRAIN_WORDS = ("smooth", "grainy", "rough")
GRAIN_AMOUNT = {"smooth": 0.0, "grainy": 0.05, "rough": 0.11}


# How people tag each technique, and the broader family it belongs to (None: no common one).
TECHNIQUE_TAGS = {
    "pointillism": ("pointillism", "dots of colour"),
    "hatching": ("ink hatching", "cross-hatching"),
    "watercolour": ("watercolour", "soft washes"),
    "stained_glass": ("stained glass", "glowing panes"),
    "mosaic": ("mosaic", "tiles"),
    "woodcut": ("woodcut", "relief print"),
    "impasto": ("impasto", "oil paint", "thick brush strokes"),
    "halftone": ("halftone", "pop art"),
    "pencil": ("pencil sketch", "graphite"),
}
TECHNIQUE_FAMILY = {"pointillism": "painting", "watercolour": "painting", "impasto": "painting",
                    "hatching": "drawing", "pencil": "drawing", "woodcut": "printmaking",
                    "halftone": "printmaking", "stained_glass": None, "mosaic": None}
# Techniques whose printing is ink on paper or ink dots over flat colour: high contrast whatever
# the palette.
INKED = ("woodcut", "halftone")
# The marks ``stroke`` scales, per technique: (fine, coarse); medium strokes get no tag.
MARK_TAGS = {
    "pointillism": ("small dots", "large dots"),
    "hatching": ("dense fine lines", "widely spaced lines"),
    "watercolour": ("crisp detail", "loose blurry washes"),
    "stained_glass": ("small panes", "large panes"),
    "mosaic": ("small tiles", "large tiles"),
    "woodcut": ("fine gouges", "bold gouges"),
    "impasto": ("small brush strokes", "broad brush strokes"),
    "halftone": ("fine dot screen", "coarse dot screen"),
    "pencil": ("fine pencil strokes", "broad soft shading"),
}
# What ``outline`` thickens or darkens, per technique: (weak, strong) tags; pointillism draws
# no outline, so it gets none.
OUTLINE_TAGS = {
    "hatching": ("faint outlines", "bold outlines"),
    "watercolour": (None, "dark pigment edges"),
    "stained_glass": ("thin lead lines", "thick lead lines"),
    "mosaic": ("thin grout lines", "wide grout lines"),
    "woodcut": (None, "bold outlines"),
    "impasto": (None, "heavy paint relief"),
    "halftone": ("thin outlines", "bold outlines"),
    "pencil": ("light pencil lines", "dark pencil lines"),
}
WEAK_OUTLINE, STRONG_OUTLINE = 0.3, 0.65
GRAIN_TAGS = {"smooth": "smooth finish", "grainy": "fine grain", "rough": "rough texture"}
# gamma is the tone curve on luminance before the palette: > 1 darkens, < 1 lightens.
DARK_GAMMA, LIGHT_GAMMA = 1.2, 0.83


@dataclass(frozen=True)
class StyleParams:
    technique: str
    palette: str
    stroke: str                 # fine / medium / coarse
    grain: str                  # smooth / grainy / rough
    mix: float = 0.9            # how much of the colour comes from the palette (vs the photo)
    gamma: float = 1.0          # tone curve applied to luminance before the palette
    angle: float = 0.0          # main stroke / hatch / grid direction (radians)
    outline: float = 0.5        # outline strength in [0, 1]
    extra: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return STROKE_SCALE[self.stroke]

    def tags(self) -> list[str]:
        """Descriptive tags, as people tag art, each true of the image these parameters paint:
        technique, palette, mark size, outlines, tone and grain."""
        words = [*TECHNIQUE_TAGS[self.technique], TECHNIQUE_FAMILY[self.technique],
                 *self._extra_tags(), *palette_tags(self.palette)]
        if self.technique in INKED:
            words.append("high contrast")
        if self.stroke != "medium":
            words.append(MARK_TAGS[self.technique][self.stroke == "coarse"])
        if self.technique in OUTLINE_TAGS and not WEAK_OUTLINE <= self.outline <= STRONG_OUTLINE:
            words.append(OUTLINE_TAGS[self.technique][self.outline > STRONG_OUTLINE])
        if self.gamma > DARK_GAMMA:
            words.append("dark moody tones")
        elif self.gamma < LIGHT_GAMMA:
            words.append("light airy tones")
        words.append(GRAIN_TAGS[self.grain])
        return list(dict.fromkeys(w for w in words if w))

    def _extra_tags(self) -> list[str]:
        """Tags of the technique-specific options that visibly change the rendering."""
        extra = self.extra
        if self.technique == "hatching" and extra.get("wash", 0.4) > 0.3:
            return ["ink and wash"]
        if self.technique == "mosaic":
            return ["dark grout" if extra.get("dark_grout") else "light grout"]
        if self.technique == "woodcut" and extra.get("two_block"):
            return ["two-colour print"]
        if self.technique == "halftone":
            return ["black dots" if extra.get("black_dots", True) else "coloured dots"]
        if self.technique == "pencil" and extra.get("tint", 0.25) >= 0.3:
            return ["tinted sketch"]
        return []

    def as_dict(self) -> dict:
        return {"technique": self.technique, "palette": self.palette, "stroke": self.stroke,
                "grain": self.grain, "mix": round(self.mix, 4), "gamma": round(self.gamma, 4),
                "angle": round(self.angle, 4), "outline": round(self.outline, 4), **self.extra}


def palette_stops(name: str) -> np.ndarray:
    return np.stack([hex_rgb(h) for h in PALETTES[name][0]])


def palette_tags(name: str) -> list[str]:
    """The palette's own tags, then warmth, saturation and contrast measured on its stops."""
    stops = palette_stops(name)
    warmth = float(np.mean(stops[:, 0] - stops[:, 2]))
    middle = stops[1:-1]
    saturation = float(np.mean((middle.max(1) - middle.min(1)) / np.maximum(middle.max(1), 1e-6)))
    lum = luminance(stops)
    contrast = float(lum.max() - lum.min())
    tags = list(PALETTES[name][1])
    if warmth > WARM_ABOVE:
        tags.append("warm palette")
    elif warmth < COOL_BELOW:
        tags.append("cool palette")
    if saturation >= VIVID_FROM:
        tags.append("vivid colours")
    elif 0 < saturation <= MUTED_UP_TO:   # 0: greys, which "monochrome" already says
        tags.append("muted colours")
    if contrast >= HIGH_CONTRAST_FROM:
        tags.append("high contrast")
    elif contrast <= LOW_CONTRAST_UP_TO:
        tags.append("low contrast")
    return tags


def palette_map(t: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] onto a palette's stops (piecewise linear, dark to light)."""
    n = len(stops)
    x = np.clip(t, 0.0, 1.0) * (n - 1)
    i0 = np.clip(np.floor(x).astype(np.int64), 0, n - 2)
    f = (x - i0)[..., None].astype(np.float32)
    return stops[i0] * (1 - f) + stops[i0 + 1] * f


def nearest_stop(img: np.ndarray, stops: np.ndarray) -> np.ndarray:
    d = ((img[..., None, :] - stops[None, None]) ** 2).sum(-1)
    return np.argmin(d, axis=-1)


def equalise(a: np.ndarray) -> np.ndarray:
    """Rank-based histogram equalisation to [0, 1] (ties broken by position: deterministic)."""
    flat = a.ravel()
    ranks = np.empty(flat.size, np.float32)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size, dtype=np.float32)
    return (ranks / max(flat.size - 1, 1)).reshape(a.shape)


def tone(img: np.ndarray, p: StyleParams) -> np.ndarray:
    """Normalised luminance (half stretched, half equalised, so every palette stop is used)
    with the group's tone curve, kept off the extreme ends of the palette."""
    lum = luminance(img)
    t = (0.5 * stretch(lum) + 0.5 * equalise(lum)) ** p.gamma
    return 0.04 + 0.94 * t


def recolour(img: np.ndarray, p: StyleParams, lum: np.ndarray | None = None) -> np.ndarray:
    """The photo's colours pulled onto the palette: luminance -> palette, mixed with a little of
    the photo's own chroma so that contents stay readable."""
    stops = palette_stops(p.palette)
    if lum is None:
        lum = tone(img, p)
    pal = palette_map(lum, stops)
    chroma = img - luminance(img)[..., None]
    return np.clip(pal + (1 - p.mix) * chroma * 1.5, 0, 1)


def _paper(stops: np.ndarray, warmth: float = 0.55) -> np.ndarray:
    return (stops[-1] * warmth + np.array([0.97, 0.96, 0.93], np.float32) * (1 - warmth)).astype(np.float32)


def _ink(stops: np.ndarray) -> np.ndarray:
    return (stops[0] * 0.85).astype(np.float32)


def _sz(img: np.ndarray, v: float) -> float:
    """A length given for a 192 px image, scaled to this image."""
    return v * img.shape[0] / 192.0


# ---------------------------------------------------------------------------------------------
# techniques
# ---------------------------------------------------------------------------------------------
def pointillism(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    base = recolour(blur(img, _sz(img, 1.0)), p)
    out = np.broadcast_to(_paper(stops, 0.4), img.shape).copy()
    r = _sz(img, 2.3) * p.scale
    for _ in range(3):
        label, dist, sy, sx = jittered_cells(h, w, r * 1.55, rng, jitter=1.0)
        n = sy.size
        col = base[np.clip(sy.astype(np.int64), 0, h - 1), np.clip(sx.astype(np.int64), 0, w - 1)]
        # divisionism: some dots take a neighbouring palette stop instead of the mixed colour
        k = np.argmin(((col[:, None] - stops[None]) ** 2).sum(-1), axis=1)
        k = np.clip(k + rng.choice([-1, 1], size=n), 0, len(stops) - 1)
        col = np.where((rng.random(n) < 0.3)[:, None], stops[k], col)
        col = col * (1 + rng.uniform(-0.08, 0.08, size=(n, 1)))
        radius = (r * rng.uniform(0.75, 1.1, size=n)).astype(np.float32)[label]
        a = smoothstep(radius + 0.6, radius - 0.6, dist)[..., None]
        out = out * (1 - a) + col.astype(np.float32)[label] * a
    return out


def hatching(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    lum = tone(blur(img, _sz(img, 1.2)), p)
    yy, xx = np.indices((h, w), dtype=np.float32)
    spacing = _sz(img, 4.5) * p.scale
    wobble = value_noise(rng, h, w, _sz(img, 24)) * 0.25
    ink = np.zeros((h, w), np.float32)
    steps = p.extra.get("cross", 45.0)
    for k, thr in enumerate((0.78, 0.58, 0.4, 0.22)):
        th = p.angle + math.radians(steps) * k
        phase = (xx * math.cos(th) + yy * math.sin(th)) / spacing + wobble
        dist = np.abs(phase - np.round(phase))
        width = 0.16 + 0.08 * (1 - lum)
        lines = smoothstep(width + 0.08, width - 0.04, dist)
        ink = np.maximum(ink, lines * smoothstep(thr + 0.04, thr - 0.06, lum))
    gx, gy = sobel(lum)
    edges = np.clip(np.hypot(gx, gy) * 6 * p.outline, 0, 1)
    ink = np.maximum(ink, edges)
    wash = recolour(img, p, lum=np.clip(lum * 0.6 + 0.4, 0, 1))
    paper = _paper(stops)
    base = paper * (1 - p.extra.get("wash", 0.4)) + wash * p.extra.get("wash", 0.4)
    return base * (1 - ink[..., None]) + _ink(stops) * ink[..., None]


def watercolour(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    sigma = _sz(img, 1.6) * p.scale
    # wet-in-wet: coordinates warped by low-frequency noise before simplifying
    warp = _sz(img, 2.2) * p.scale
    yy, xx = np.indices((h, w), dtype=np.float32)
    wy = np.clip(yy + warp * value_noise(rng, h, w, _sz(img, 20)), 0, h - 1).astype(np.int64)
    wx = np.clip(xx + warp * value_noise(rng, h, w, _sz(img, 20)), 0, w - 1).astype(np.int64)
    src = blur(img[wy, wx], sigma)
    lum = tone(src, p)
    levels = int(p.extra.get("levels", 5))
    q = np.round(lum * (levels - 1)) / (levels - 1)
    qs = blur(q, sigma * 0.5)
    col = recolour(src, p, lum=qs * 0.75 + lum * 0.25)
    # pigment pools at region edges: darker rims
    gx, gy = sobel(qs)
    rim = np.clip(np.hypot(gx, gy) * levels * 1.2, 0, 1)
    col = col * (1 - 0.35 * (0.4 + p.outline) * rim[..., None])
    # granulation and transparency over white paper
    gran = fractal_noise(rng, h, w, _sz(img, 3.0), octaves=2)
    col = col * (1 + 0.07 * gran[..., None] * (1 - lum[..., None]))
    paper = _paper(stops, 0.2)
    wet = np.clip(0.55 + 0.5 * (1 - lum) + 0.15 * value_noise(rng, h, w, _sz(img, 30)), 0, 1)
    out = paper * (1 - wet[..., None]) + col * wet[..., None]
    out = np.where(lum[..., None] > 0.9, paper * 0.97 + out * 0.03, out)  # reserved white
    return out


def stained_glass(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    cell = _sz(img, 12.0) * p.scale
    label, dist, _, _ = jittered_cells(h, w, cell, rng, jitter=0.95)
    col = cell_means(recolour(img, p), label)
    # jewel-like glass: push each cell to its nearest palette stop, keep some of the mean
    k = nearest_stop(col, stops)
    col = col * 0.45 + stops[k] * 0.55
    glow = 1 + 0.25 * (0.5 - np.clip(dist / cell, 0, 1))
    streak = 1 + 0.06 * streak_noise(rng, h, w, _sz(img, 14), _sz(img, 2), p.angle)
    col = col * (glow * streak)[..., None]
    lead = dilate(boundaries(label), int(round(cell * (0.03 + 0.09 * p.outline))))
    dark = _ink(stops) * 0.35
    return col * (1 - lead[..., None]) + dark * lead[..., None]


def mosaic(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    tile = _sz(img, 7.0) * p.scale
    yy, xx = np.indices((h, w), dtype=np.float32)
    th = p.angle * 0.25
    u = xx * math.cos(th) + yy * math.sin(th)
    v = -xx * math.sin(th) + yy * math.cos(th)
    row = np.floor(v / tile)
    u = u + (row % 2) * tile * 0.5 + rng.uniform(-0.15, 0.15, size=1000)[(row.astype(np.int64)) % 1000] * tile
    col_i = np.floor(u / tile)
    label = ((row - row.min()) * 4096 + (col_i - col_i.min())).astype(np.int64)
    _, label = np.unique(label, return_inverse=True)
    label = label.reshape(h, w)
    lum = tone(img, p)
    mean = cell_means(recolour(img, p, lum=lum), label)
    cell_tone = cell_means(lum[..., None], label)[..., 0]
    k = np.clip(np.round(cell_tone * (len(stops) - 1)).astype(np.int64), 0, len(stops) - 1)
    n = int(label.max()) + 1
    jit = 1 + rng.uniform(-0.1, 0.1, size=n)[label]
    col = (stops[k] * 0.75 + mean * 0.25) * jit[..., None]
    fu = u / tile - col_i
    fv = v / tile - row
    bevel = 1 + 0.12 * ((0.5 - fu) + (0.5 - fv))
    col = col * bevel[..., None]
    g = float(np.clip((0.45 + 0.6 * p.outline) / tile, 0.04, 0.2))
    grout = np.maximum(smoothstep(g + 0.04, g, np.minimum(fu, 1 - fu)), smoothstep(g + 0.04, g, np.minimum(fv, 1 - fv)))
    grout_col = np.array([0.85, 0.83, 0.78], np.float32) * (0.55 if p.extra.get("dark_grout") else 1.0)
    return col * (1 - grout[..., None]) + grout_col * grout[..., None]


def woodcut(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    lum = tone(blur(img, _sz(img, 1.5)), p)
    yy, xx = np.indices((h, w), dtype=np.float32)
    spacing = _sz(img, 5.0) * p.scale
    # gouges follow a slowly curving direction field
    bend = value_noise(rng, h, w, _sz(img, 48)) * 0.45
    phase = (xx * math.cos(p.angle) + yy * math.sin(p.angle)) / spacing + bend
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * phase)
    val = lum + 0.38 * (stripes - 0.5)
    ink = smoothstep(0.52, 0.46, val)
    gx, gy = sobel(lum)
    edge = dilate(np.clip(np.hypot(gx, gy) * 5 * p.outline - 0.2, 0, 1), int(round(_sz(img, 1))))
    ink = np.maximum(ink, edge)
    grain = streak_noise(rng, h, w, _sz(img, 30), _sz(img, 1.5), p.angle + 0.2)
    ink = ink * np.clip(1 - 0.25 * np.maximum(grain, 0), 0, 1)  # wood grain lets paper through
    paper = _paper(stops, 0.35)
    second = p.extra.get("two_block", False)
    base = paper
    if second:  # a second, coloured block printed under the key block in the mid-tones
        mid = stops[len(stops) // 2 + 1]
        block = smoothstep(0.75, 0.65, lum)[..., None]
        base = paper * (1 - block) + mid * block
    return base * (1 - ink[..., None]) + _ink(stops) * ink[..., None]


def impasto(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    ss = 2
    base = recolour(blur(img, _sz(img, 1.5)), p)
    lum = luminance(blur(img, _sz(img, 3.0)))
    gx, gy = sobel(lum)
    under = (np.clip(blur(base, _sz(img, 4)), 0, 1) * 255).astype(np.uint8)
    under = np.concatenate([under, np.full((h, w, 1), 128, np.uint8)], axis=-1)
    canvas = Image.fromarray(under, "RGBA").resize((w * ss, h * ss), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)  # plain draw on RGBA: alpha carries each stroke's paint height
    stops = palette_stops(p.palette)
    width = _sz(img, 4.5) * p.scale ** 0.8
    for layer, (wf, spacing) in enumerate(((1.5, 1.4), (1.0, 1.2), (0.7, 2.2))):
        sw = width * wf
        _, _, ys, xs = jittered_cells(h, w, sw * spacing, rng, jitter=1.0)
        keep = (ys > -1) & (ys < h) & (xs > -1) & (xs < w)
        ys, xs = ys[keep], xs[keep]
        n = len(ys)
        iy = np.clip(ys.astype(np.int64), 0, h - 1)
        ix = np.clip(xs.astype(np.int64), 0, w - 1)
        # strokes run along the contours (perpendicular to the gradient), else the group's angle
        mag = np.hypot(gx[iy, ix], gy[iy, ix])
        along = np.arctan2(gy[iy, ix], gx[iy, ix]) + np.pi / 2
        ang = np.where(mag > 0.02, along, p.angle) + rng.normal(0, 0.25, n)
        length = sw * rng.uniform(2.0, 3.4, n)
        cols = base[iy, ix] * rng.uniform(0.9, 1.1, (n, 1))
        if layer == 2:  # accents straight from the palette
            k = np.argmin(((cols[:, None] - stops[None]) ** 2).sum(-1), axis=1)
            cols = cols * 0.5 + stops[np.clip(k + rng.integers(-1, 2, n), 0, len(stops) - 1)] * 0.5
        rgba = np.concatenate([(np.clip(cols, 0, 1) * 255).astype(np.int64),
                               rng.integers(40, 240, (n, 1))], axis=1)
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        ex = np.cos(t)[None] * length[:, None] / 2
        ey = np.sin(t)[None] * sw / 2
        ca, sa = np.cos(ang)[:, None], np.sin(ang)[:, None]
        px = (xs[:, None] + ex * ca - ey * sa) * ss
        py = (ys[:, None] + ex * sa + ey * ca) * ss
        polys = np.stack([px, py], axis=-1).reshape(n, -1).tolist()
        fills = [tuple(c) for c in rgba.tolist()]
        for i in rng.permutation(n).tolist():
            draw.polygon(polys[i], fill=fills[i])
    small = np.asarray(canvas.resize((w, h), Image.BILINEAR), np.float32) / 255.0
    out, hmap = small[..., :3], small[..., 3]
    bristle = streak_noise(rng, h, w, _sz(img, 8), _sz(img, 0.7), p.angle)
    hx, hy = sobel(blur(hmap, 0.7) + 0.05 * bristle)
    relief = 1 + (0.6 + p.outline) * 1.6 * (-hx - hy)
    return out * relief[..., None]


def halftone(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    lum = tone(blur(img, _sz(img, 1.2)), p)
    # posterise onto 3 bold palette colours
    bold = stops[[1, 3, 4]] if p.extra.get("bright", True) else stops[[1, 2, 4]]
    levels = np.digitize(lum, [0.33, 0.66])
    flat = bold[levels]
    spacing = _sz(img, 5.0) * p.scale
    yy, xx = np.indices((h, w), dtype=np.float32)
    th = math.radians(45) + p.angle * 0.2
    u = (xx * math.cos(th) + yy * math.sin(th)) / spacing
    v = (-xx * math.sin(th) + yy * math.cos(th)) / spacing
    cu, cv = np.round(u), np.round(v)
    d = np.hypot(u - cu, v - cv)
    # sample the tone at the dot centre so dots are round
    cx = np.clip(((cu * math.cos(th) - cv * math.sin(th)) * spacing), 0, w - 1).astype(np.int64)
    cy = np.clip(((cu * math.sin(th) + cv * math.cos(th)) * spacing), 0, h - 1).astype(np.int64)
    dark = 1 - lum[cy, cx]
    radius = 0.62 * np.sqrt(np.clip(dark, 0, 1)) + 0.06
    dots = smoothstep(radius + 0.06, radius - 0.06, d)
    dot_col = _ink(stops) * 0.6 if p.extra.get("black_dots", True) else stops[0]
    out = flat * (1 - 0.85 * dots[..., None]) + dot_col * 0.85 * dots[..., None]
    edge = np.zeros((h, w), np.float32)
    edge[:, 1:] = levels[:, 1:] != levels[:, :-1]
    edge[1:, :] = np.maximum(edge[1:, :], levels[1:, :] != levels[:-1, :])
    edge = dilate(edge, int(round(_sz(img, 0.5 + 1.5 * p.outline))))
    return out * (1 - edge[..., None]) + np.array([0.03, 0.03, 0.04], np.float32) * edge[..., None]


def pencil(img, p: StyleParams, rng):
    h, w = img.shape[:2]
    stops = palette_stops(p.palette)
    lum = tone(img, p)
    inv = blur(1 - lum, _sz(img, 3.0) * p.scale)
    dodge = np.clip(lum / np.maximum(1 - inv, 0.05), 0, 1)        # colour-dodge sketch
    sketch = dodge ** (1.5 + 2 * p.outline)
    streak = streak_noise(rng, h, w, _sz(img, 18) * p.scale, _sz(img, 0.8) * p.scale, p.angle)
    streak2 = streak_noise(rng, h, w, _sz(img, 14) * p.scale, _sz(img, 0.8) * p.scale, p.angle + 0.9)
    shading = (1 - lum) * (0.45 + 0.35 * np.clip(streak, -1, 2))
    shading = shading + (1 - lum) ** 2 * 0.4 * np.clip(streak2, 0, 2)
    tone_map = np.clip(sketch - 0.55 * np.clip(shading, 0, 1), 0, 1)
    paper = _paper(stops, 0.3)
    graphite = stops[1] * 0.7
    tint = p.extra.get("tint", 0.25)
    colour = recolour(img, p) * tint + paper * (1 - tint)
    t = tone_map[..., None]
    return colour * t + graphite * (1 - t)


RENDERERS = {
    "pointillism": pointillism,
    "hatching": hatching,
    "watercolour": watercolour,
    "stained_glass": stained_glass,
    "mosaic": mosaic,
    "woodcut": woodcut,
    "impasto": impasto,
    "halftone": halftone,
    "pencil": pencil,
}
assert tuple(RENDERERS) == TECHNIQUES


def apply_grain(img: np.ndarray, p: StyleParams, rng: np.random.Generator) -> np.ndarray:
    amount = GRAIN_AMOUNT[p.grain]
    if amount <= 0:
        return img
    h, w = img.shape[:2]
    fine = rng.standard_normal((h, w)).astype(np.float32)
    coarse = value_noise(rng, h, w, _sz(img, 2.5))
    g = 0.6 * fine + 0.6 * coarse
    return img * (1 + amount * g[..., None])


def paint(img: np.ndarray, p: StyleParams, rng: np.random.Generator) -> np.ndarray:
    """Render a float (H, W, 3) image in [0, 1] with a style; returns the same shape in [0, 1]."""
    if p.technique not in RENDERERS:
        raise ValueError(f"unknown technique '{p.technique}'; known: {list(RENDERERS)}")
    out = RENDERERS[p.technique](img.astype(np.float32), p, rng)
    out = apply_grain(out, p, rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def sample_params(technique: str, palette: str, stroke: str, rng: np.random.Generator) -> StyleParams:
    """The continuous parameters of one style group (the discrete ones are chosen by the caller)."""
    extra: dict = {}
    if technique == "hatching":
        extra = {"cross": float(rng.choice([45.0, 90.0, 30.0])), "wash": float(rng.uniform(0.0, 0.6))}
    elif technique == "watercolour":
        extra = {"levels": int(rng.integers(4, 7))}
    elif technique == "mosaic":
        extra = {"dark_grout": bool(rng.random() < 0.4)}
    elif technique == "woodcut":
        extra = {"two_block": bool(rng.random() < 0.5)}
    elif technique == "halftone":
        extra = {"bright": bool(rng.random() < 0.7), "black_dots": bool(rng.random() < 0.6)}
    elif technique == "pencil":
        extra = {"tint": float(rng.uniform(0.0, 0.6))}
    return StyleParams(
        technique=technique, palette=palette, stroke=stroke,
        grain=GRAIN_WORDS[int(rng.integers(len(GRAIN_WORDS)))],
        mix=float(rng.uniform(0.7, 1.0)),
        gamma=float(np.exp(rng.uniform(-0.3, 0.3))),
        angle=float(rng.uniform(0, np.pi)),
        outline=float(rng.uniform(0.1, 1.0)),
        extra=extra,
    )
