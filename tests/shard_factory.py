"""Builds small real shard splits for tests: real JPEGs in real tar shards via shards.writer.

Each style is a random palette + stripe frequency; each stylization tints a random content
pattern with its style's palette, so a style is recoverable from colour/texture statistics.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from common.config import RESOLVED_NAME, load_config, save_config
from shards.codec import encode_jpeg
from shards.schema import ItemMeta
from shards.writer import ShardWriter, write_split_info


def _style_image(rng: np.random.Generator, size: int) -> np.ndarray:
    palette = rng.uniform(0, 255, size=(2, 3))
    freq = rng.uniform(2, 8)
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = (np.sin(2 * np.pi * freq * (xx + yy)) + 1) / 2
    return (palette[0] * wave[..., None] + palette[1] * (1 - wave[..., None])).astype(np.uint8)


def _stylized(style: np.ndarray, rng: np.random.Generator, content_seed: int) -> np.ndarray:
    content = np.random.default_rng(content_seed).uniform(0.5, 1.0, size=style.shape[:2])
    noise = rng.normal(0, 8, size=style.shape)
    return np.clip(style * content[..., None] + noise, 0, 255).astype(np.uint8)


def make_split(root: Path, split: str, n_styles: int, per_style: int, size: int = 32,
               styles_per_shard: int = 4, methods: tuple[str, ...] = ("m1", "m2"),
               seed: int = 0, n_contents: int = 50, styles_per_group: int = 1,
               held_out: str | None = None, tags: Sequence[object] = (["t"],)) -> Path:
    """Write ``root/split`` with ``n_styles`` styles of ``per_style`` stylizations each; its
    ``_info.json`` records ``held_out`` as the run's held-out method (which sets the role).
    Style ``i`` carries ``tags[i % len(tags)]`` (stored as given, malformed or not). Like
    stage 1, the root gets a resolved ``config.yaml`` (the embedded default's) if it has none."""
    if not (Path(root) / RESOLVED_NAME).is_file():
        save_config(load_config(), root)
    rng = np.random.default_rng(seed)
    split_dir = Path(root) / split
    stats, writer = [], None
    for number in range(n_styles):
        if number % styles_per_shard == 0:
            if writer is not None:
                stats.append(writer.close())
            writer = ShardWriter(split_dir, number // styles_per_shard, split)
        style = _style_image(rng, size)
        group = f"g{number // styles_per_group}" if styles_per_group else ""   # 0: no groups
        outputs = []
        for index in range(per_style):
            content = int(rng.integers(n_contents))
            item = ItemMeta(index=index, content_id=f"c{content}", category=f"cat{content % 3}",
                            method=methods[index % len(methods)], params={"strength": 1.0},
                            seed=int(rng.integers(1 << 31)))
            outputs.append((item, encode_jpeg(_stylized(style, rng, content)), ""))
        writer.write_sample(f"st{seed}-{number}", group, tags[number % len(tags)],
                            encode_jpeg(style), outputs)
    stats.append(writer.close())
    write_split_info(split_dir, split, stats, {"methods": list(methods), "held_out": held_out})
    return split_dir
