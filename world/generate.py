"""The synthetic world: seeded, deterministic content "photos" and painted style groups.

Generated on demand by stage 1, or on its own by ``python pipeline/synth.py``. Writes under the
world directory (``world.dir`` by default, relative to the repository root)::

    content/<content_id>.png     content photos, world.content_size px square
    styles/<style_id>.png        style images, world.style_size px square
    content.parquet              content_id, path (relative), category
    styles.parquet               style_id, path (relative), group, category, technique, tags
    _world.json                  world config, seed and group parameters; written last, it
                                 marks the world complete
    config.yaml                  (CLI only) the resolved config

A style group is one painting technique + palette + parameters (see ``world.painting``)
applied to ``images_per_group`` photos of the group's category. Those source photos are drawn
from their own random streams and are never content images.
"""
from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from common.files import write_json
from common.images import open_image
from common.schema import Config
from shards.manifest import CONTENT_SCHEMA, STYLE_SCHEMA, write_manifest
from world.imaging import to_uint8
from world.painting import PALETTES, STROKE_WORDS, TECHNIQUES, StyleParams, paint, sample_params
from world.scenes import CATEGORIES, draw_scene

#: Bump when the drawing or painting code changes what a (config, seed) produces, images or
#: tags: ``ensure_world`` then regenerates worlds made by older code. 3: descriptive style tags.
GENERATOR_VERSION = 3
MARKER = "_world.json"
CONTENT_MANIFEST = "content.parquet"
STYLE_MANIFEST = "styles.parquet"
WORLD_KEYS = ("categories", "contents_per_category", "groups_per_category", "images_per_group",
              "content_size", "style_size")
# Optional keys and their defaults (the behaviour of worlds that predate them): every style
# image painted from its own subject, one palette per group.
OPTIONAL_WORLD_KEYS = {"subjects_per_group": None, "palettes_per_group": 1}

# Random stream identifiers: every image has its own generator seeded by
# (seed, stream, category code, index...), so items never share randomness.
_STREAM_CONTENT = 1
_STREAM_SOURCE = 2
_STREAM_GROUP = 3
_STREAM_PAINT = 4
_STREAM_PLAN = 5

# Columns the world adds to the style manifest schema (for contact sheets and analyses).
STYLE_EXTRA = pa.schema([("category", pa.string()), ("technique", pa.string())])


class WorldError(ValueError):
    """A world config that cannot be generated; the message names the key."""


@dataclass(frozen=True)
class WorldPaths:
    root: Path
    content_manifest: Path
    style_manifest: Path


@dataclass(frozen=True)
class GroupSpec:
    group_id: str
    category: str
    index: int
    params: StyleParams                     # image 0's; the group's technique and stroke
    image_params: tuple[StyleParams, ...]   # one per style image: palettes vary within a group


def _paths(root: Path) -> WorldPaths:
    return WorldPaths(root=root, content_manifest=root / CONTENT_MANIFEST, style_manifest=root / STYLE_MANIFEST)


def _code(name: str) -> int:
    """A stable integer for a name (never Python's salted hash())."""
    return zlib.crc32(name.encode("utf-8"))


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *keys])


def _plain(world_cfg) -> dict:
    """A world section as a dict: the loaded config's typed section, or a dict already."""
    return world_cfg.model_dump() if hasattr(world_cfg, "model_dump") else world_cfg


def normalise_world(world_cfg: dict) -> dict:
    """The generation-relevant part of a world config, validated (``dir`` is not part of it)."""
    world_cfg = _plain(world_cfg)
    missing = [k for k in WORLD_KEYS if k not in world_cfg]
    if missing:
        raise WorldError(f"world config is missing key(s) {missing}")
    cats = world_cfg["categories"]
    if isinstance(cats, str) or not cats:
        raise WorldError(f"world.categories must be a non-empty list, got {cats!r}")
    cats = [str(c) for c in cats]
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown:
        raise WorldError(f"world.categories: unknown {unknown}; known: {list(CATEGORIES)}")
    if len(set(cats)) != len(cats):
        raise WorldError(f"world.categories has duplicates: {cats}")
    out: dict = {"categories": cats}
    world_cfg = {**OPTIONAL_WORLD_KEYS, **world_cfg}
    if world_cfg["subjects_per_group"] is None:
        world_cfg["subjects_per_group"] = world_cfg["images_per_group"]
    for key, lo in (("contents_per_category", 1), ("groups_per_category", 1), ("images_per_group", 1),
                    ("content_size", 16), ("style_size", 16), ("subjects_per_group", 1),
                    ("palettes_per_group", 1)):
        value = world_cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise WorldError(f"world.{key} must be an integer >= {lo}, got {value!r}")
        out[key] = value
    return out


def world_dir(cfg: Config) -> Path:
    """The world directory of a loaded config (absolute: common.config resolves relative paths
    against the config file's folder)."""
    return Path(cfg.world.dir).expanduser().resolve()


# ---------------------------------------------------------------------------------------------
# the items of a world
# ---------------------------------------------------------------------------------------------
def content_id(category: str, index: int) -> str:
    return f"c-{category}-{index:04d}"


def group_id(category: str, index: int) -> str:
    return f"g-{category}-{index:02d}"


def style_id(category: str, group: int, image: int) -> str:
    return f"s-{category}-{group:02d}-{image}"


def content_image(category: str, index: int, seed: int, size: int) -> np.ndarray:
    """Content photo ``index`` of ``category``: (size, size, 3) uint8."""
    return draw_scene(category, _rng(seed, _STREAM_CONTENT, _code(category), index), size)


def style_source_image(category: str, group: int, subject: int, seed: int, size: int) -> np.ndarray:
    """Subject ``subject`` of group ``group``, painted by the group's style images: its own
    stream, never a content photo."""
    return draw_scene(category, _rng(seed, _STREAM_SOURCE, _code(category), group, subject), size)


def plan_groups(world_cfg: dict, seed: int) -> list[GroupSpec]:
    """Every style group's technique, palette and parameters.

    Techniques are dealt round-robin over all groups (so each category gets a spread of
    techniques); each technique walks through its own seeded order of palettes and stroke
    sizes, so groups of one technique differ in palette and usually in stroke size too.
    With ``palettes_per_group`` > 1 a group's images cycle through that many palettes (and
    their own tone, grain and angle), as the images of one real project vary around a manner.
    """
    w = normalise_world(world_cfg)
    plan_rng = _rng(seed, _STREAM_PLAN)
    pal_names = sorted(PALETTES)
    palette_order = {t: [pal_names[i] for i in plan_rng.permutation(len(pal_names))] for t in TECHNIQUES}
    stroke_offset = {t: int(plan_rng.integers(len(STROKE_WORDS))) for t in TECHNIQUES}
    seen: dict[str, int] = {t: 0 for t in TECHNIQUES}
    groups = []
    for ci, cat in enumerate(w["categories"]):
        for g in range(w["groups_per_category"]):
            k = ci * w["groups_per_category"] + g
            tech = TECHNIQUES[k % len(TECHNIQUES)]
            n = seen[tech]
            seen[tech] += 1
            stroke = STROKE_WORDS[(n + stroke_offset[tech]) % len(STROKE_WORDS)]
            variants = [sample_params(tech, palette_order[tech][(n * w["palettes_per_group"] + v) % len(pal_names)],
                                      stroke, _rng(seed, _STREAM_GROUP, _code(cat), g, *([v] if v else [])))
                        for v in range(w["palettes_per_group"])]
            image_params = tuple(variants[j % len(variants)] for j in range(w["images_per_group"]))
            groups.append(GroupSpec(group_id(cat, g), cat, g, image_params[0], image_params))
    return groups


def style_image(spec: GroupSpec, image: int, seed: int, size: int, subjects: int) -> np.ndarray:
    src = style_source_image(spec.category, spec.index, image % subjects, seed, size).astype(np.float32) / 255.0
    rng = _rng(seed, _STREAM_PAINT, _code(spec.category), spec.index, image)
    return to_uint8(paint(src, spec.image_params[image], rng))


# ---------------------------------------------------------------------------------------------
# writing a world
# ---------------------------------------------------------------------------------------------
def _save_png(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def _marker_payload(world_cfg: dict, seed: int, groups: list[GroupSpec]) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "world": json.loads(json.dumps(_plain(world_cfg))),
        "counts": None,
        "groups": {g.group_id: {"category": g.category,
                                "images": [{**p.as_dict(), "tags": p.tags()} for p in g.image_params]}
                   for g in groups},
    }


def generate_world(world_cfg: dict, seed: int, out_dir: Path, progress: bool = True,
                   log: Callable[[str], None] = print) -> WorldPaths:
    """Generate the world into ``out_dir`` (replacing any previous world there)."""
    w = normalise_world(world_cfg)
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if marker.exists():
        marker.unlink()  # the world is incomplete until the marker is written again
    for sub, prefix in (("content", "c-"), ("styles", "s-")):
        (root / sub).mkdir(exist_ok=True)
        for old in (root / sub).glob(f"{prefix}*.png"):  # a previous world's images, nothing else
            old.unlink()
    for name in (CONTENT_MANIFEST, STYLE_MANIFEST):
        (root / name).unlink(missing_ok=True)

    say = log if progress else (lambda _msg: None)
    start = time.perf_counter()
    cats = w["categories"]
    n_content = len(cats) * w["contents_per_category"]
    groups = plan_groups(w, seed)
    n_styles = len(groups) * w["images_per_group"]
    say(f"[synth] world -> {root}: {n_content} contents ({w['content_size']}px), "
        f"{len(groups)} style groups x {w['images_per_group']} = {n_styles} style images ({w['style_size']}px)")
    every = max(1, (n_content + n_styles) // 12)
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if done % every == 0 or done == n_content + n_styles:
            say(f"[synth] {done}/{n_content + n_styles} images ({what}), {time.perf_counter() - start:.1f}s")

    content_rows = []
    for cat in cats:
        for i in range(w["contents_per_category"]):
            cid = content_id(cat, i)
            rel = f"content/{cid}.png"
            _save_png(content_image(cat, i, seed, w["content_size"]), root / rel)
            content_rows.append({"content_id": cid, "path": rel, "category": cat})
            tick("contents")
    style_rows = []
    for spec in groups:
        for j in range(w["images_per_group"]):
            sid = style_id(spec.category, spec.index, j)
            rel = f"styles/{sid}.png"
            _save_png(style_image(spec, j, seed, w["style_size"], w["subjects_per_group"]), root / rel)
            params = spec.image_params[j]
            style_rows.append({"style_id": sid, "path": rel, "group": spec.group_id, "category": spec.category,
                               "technique": params.technique, "tags": params.tags()})
            tick("styles")
    write_manifest(content_rows, CONTENT_SCHEMA, root / CONTENT_MANIFEST)
    write_manifest(style_rows, STYLE_SCHEMA, root / STYLE_MANIFEST, extra=STYLE_EXTRA)

    payload = _marker_payload(world_cfg, seed, groups)
    payload["counts"] = {"contents": n_content, "groups": len(groups), "styles": n_styles}
    write_json(marker, payload)
    say(f"[synth] done in {time.perf_counter() - start:.1f}s")
    return _paths(root)


def world_is_current(world_cfg: dict, seed: int, out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a complete world made from this config, seed and generator."""
    root = Path(out_dir)
    marker = root / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
        stored = normalise_world(info["world"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (info.get("generator_version") == GENERATOR_VERSION and info.get("seed") == int(seed)
            and stored == normalise_world(world_cfg)
            and (root / CONTENT_MANIFEST).is_file() and (root / STYLE_MANIFEST).is_file())


def ensure_world(world_cfg: dict, seed: int, out_dir: Path, progress: bool = True,
                 log: Callable[[str], None] = print) -> WorldPaths:
    """The world in ``out_dir``: reused when complete and made from this config and seed,
    otherwise (re)generated."""
    root = Path(out_dir).resolve()
    if world_is_current(world_cfg, seed, root):
        if progress:
            log(f"[synth] reusing the complete world in {root}")
        return _paths(root)
    return generate_world(world_cfg, seed, root, progress=progress, log=log)


# ---------------------------------------------------------------------------------------------
# contact sheet
# ---------------------------------------------------------------------------------------------
def contact_sheet(paths: WorldPaths, out_png: Path, per_row: int = 8, thumb: int = 96,
                  max_colours: int | None = None) -> Path:
    """A labelled PNG grid: ``per_row`` contents per category, then per technique style images
    from distinct groups. ``max_colours`` quantises the sheet (smaller files for docs)."""
    content = pq.read_table(paths.content_manifest).to_pylist()
    styles = pq.read_table(paths.style_manifest).to_pylist()
    rows: list[tuple[str, list[Path]]] = []
    for cat in dict.fromkeys(r["category"] for r in content):
        items = [paths.root / r["path"] for r in content if r["category"] == cat][:per_row]
        rows.append((f"content: {cat}", items))
    for tech in TECHNIQUES:
        by_group: dict[str, list[dict]] = {}
        for r in styles:
            if r["technique"] == tech:
                by_group.setdefault(r["group"], []).append(r)
        if not by_group:
            continue
        picked: list[dict] = []
        depth = 0
        while len(picked) < per_row and any(len(v) > depth for v in by_group.values()):
            picked += [v[depth] for v in by_group.values() if len(v) > depth]
            depth += 1
        rows.append((f"style: {tech.replace('_', ' ')}", [paths.root / r["path"] for r in picked[:per_row]]))

    label_w, gap = int(thumb * 1.35), 3
    font = ImageFont.load_default(size=max(10, thumb // 8))
    small = ImageFont.load_default(size=max(8, thumb // 10))
    width = label_w + per_row * (thumb + gap) + gap
    height = len(rows) * (thumb + gap) + gap
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    for r, (label, items) in enumerate(rows):
        y = gap + r * (thumb + gap)
        kind, name = label.split(": ", 1)
        draw.text((6, y + thumb // 2 - thumb // 6), name, fill=(20, 20, 20), font=font)
        draw.text((6, y + thumb // 2 + 2), kind, fill=(120, 120, 120), font=small)
        for k, path in enumerate(items):
            tile = open_image(path).resize((thumb, thumb), Image.LANCZOS)
            sheet.paste(tile, (label_w + k * (thumb + gap), y))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if max_colours:
        sheet = sheet.quantize(colors=max_colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(out_png, format="PNG", optimize=True)
    return out_png
