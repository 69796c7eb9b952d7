"""The stage-1 plan: which content goes with which style, under which method and seed.

The plan is a pure function of the manifests and the config, fixed before any work starts and
cut into shards, so a rerun of the same command re-derives the same shards and can skip the
complete ones. Train and test never share a style group or a content image.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from shards.manifest import ContentRow, StyleRow
from shards.schema import CROP_METHOD, CROPS_SPLIT, TRAIN_SPLIT, test_split
from common.schema import Config, Stylize


@dataclass(frozen=True)
class PlannedItem:
    index: int
    content_id: str
    content_path: str
    category: str
    method: str
    params: dict
    seed: int


@dataclass(frozen=True)
class PlannedSample:
    style_id: str
    style_path: str
    group: str
    tags: tuple[str, ...]
    items: tuple[PlannedItem, ...]


@dataclass(frozen=True)
class ShardPlan:
    split: str
    number: int
    groups: tuple[PlannedSample, ...]

    @property
    def num_items(self) -> int:
        return sum(len(g.items) for g in self.groups)


@dataclass
class Plan:
    shards: list[ShardPlan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # what the data could not fill

    def describe(self) -> list[str]:
        """One line per split: styles, distinct contents and images planned."""
        lines = []
        for split in self.splits():
            samples = [g for s in self.shards if s.split == split for g in s.groups]
            images = sum(len(g.items) for g in samples)
            if split == CROPS_SPLIT:   # cut from the style images: no content images
                lines.append(f"{split}: {len(samples)} styles, {images} crops")
                continue
            contents = {i.content_id for g in samples for i in g.items}
            lines.append(f"{split}: {len(samples)} styles, {len(contents)} contents, {images} images")
        return lines

    def splits(self) -> list[str]:
        return sorted({s.split for s in self.shards})

    def digest(self) -> str:
        """A fingerprint of the whole plan: reruns must not mix shards of different plans."""
        text = json.dumps([asdict(s) for s in self.shards], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _split_styles(styles: list[StyleRow], cfg: Config, rng: np.random.Generator
                  ) -> tuple[list[StyleRow], list[StyleRow]]:
    """Hold out whole style groups; test keeps a few styles of each held-out group."""
    groups = sorted({s.group for s in styles})
    order = rng.permutation(len(groups))
    n_test = max(1, round(len(groups) * cfg.test_fraction))
    test_groups = {groups[i] for i in order[:n_test]}
    train = [s for s in styles if s.group not in test_groups]
    test, taken = [], {}
    for style in styles:
        if style.group in test_groups and taken.get(style.group, 0) < cfg.test_styles_per_group:
            taken[style.group] = taken.get(style.group, 0) + 1
            test.append(style)
    if not train:
        raise ValueError(f"all {len(groups)} style groups went to test: lower stylize.test_fraction")
    return train, test


def _split_contents(contents: list[ContentRow], cfg: Config, rng: np.random.Generator
                    ) -> tuple[list[ContentRow], list[ContentRow]]:
    order = rng.permutation(len(contents))
    n_test = max(1, round(len(contents) * cfg.test_fraction))
    test = [contents[i] for i in sorted(order[:n_test])]
    train = [contents[i] for i in sorted(order[n_test:])]
    if not train:
        raise ValueError(f"only {len(contents)} contents: too few to split into train and test")
    return train, test


def _draw_items(pool: list[ContentRow], count: int, methods: list[str], strengths: list[float],
                rng: np.random.Generator) -> tuple[PlannedItem, ...]:
    picks = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    items = []
    for index, pick in enumerate(picks):
        method = methods[int(rng.integers(len(methods)))]
        # Drawn only when there is a choice, so single-strength plans stay as they were.
        strength = strengths[int(rng.integers(len(strengths)))] if len(strengths) > 1 else strengths[0]
        content = pool[int(pick)]
        items.append(PlannedItem(index, content.content_id, content.path, content.category, method,
                                 {"strength": strength}, int(rng.integers(2**31))))
    return tuple(items)


def _crop_items(style: StyleRow, grid: int) -> tuple[PlannedItem, ...]:
    cells = [(row, col) for row in range(grid) for col in range(grid)]
    return tuple(PlannedItem(i, style.style_id, style.path, "", CROP_METHOD,
                             {"row": r, "col": c, "grid": grid}, 0) for i, (r, c) in enumerate(cells))


def _group(style: StyleRow, items: tuple[PlannedItem, ...]) -> PlannedSample:
    return PlannedSample(style.style_id, style.path, style.group, style.tags, items)


def _cut(split: str, groups: list[PlannedSample], per_shard: int) -> list[ShardPlan]:
    return [ShardPlan(split, n, tuple(groups[i:i + per_shard]))
            for n, i in enumerate(range(0, len(groups), per_shard))]


def _shortfalls(scfg: Stylize, test_styles: list[StyleRow], train_contents: int,
                test_contents: int) -> list[str]:
    """Counts asked for that the data cannot fill (the plan then takes what there is)."""
    found = []
    for key, available, what in (("train_contents_per_style", train_contents, "train contents"),
                                 ("test_contents_per_style", test_contents, "test contents")):
        if getattr(scfg, key) > available:
            found.append(f"stylize.{key} is {getattr(scfg, key)} but only {available} {what} exist: "
                         f"each style gets {available}")
    per_group: dict[str, int] = {}
    for style in test_styles:
        per_group[style.group] = per_group.get(style.group, 0) + 1
    short = sum(count < scfg.test_styles_per_group for count in per_group.values())
    if short:
        found.append(f"stylize.test_styles_per_group is {scfg.test_styles_per_group} but {short} "
                     f"of {len(per_group)} test groups hold fewer styles")
    return found


def make_plan(contents: list[ContentRow], styles: list[StyleRow], cfg: Config, seed: int) -> Plan:
    """Plan every split: ``train``, ``test-<method>`` for each method, and ``crops``."""
    scfg = cfg.stylize
    methods, test_methods = list(scfg.train_methods), scfg.methods_used
    rng = np.random.default_rng(seed)
    train_styles, test_styles = _split_styles(styles, scfg, rng)
    train_contents, test_contents = _split_contents(contents, scfg, rng)
    strengths = scfg.strengths

    plan = Plan(warnings=_shortfalls(scfg, test_styles, len(train_contents), len(test_contents)))
    train_groups = [_group(s, _draw_items(train_contents, scfg.train_contents_per_style,
                                          methods, strengths, rng)) for s in train_styles]
    plan.shards += _cut(TRAIN_SPLIT, train_groups, scfg.styles_per_shard)
    # Every test split pairs the same styles with the same contents, so methods compare fairly.
    pairings = [_draw_items(test_contents, scfg.test_contents_per_style, methods, strengths, rng)
                for _ in test_styles]
    for method in test_methods:
        groups = [_group(style, tuple(PlannedItem(**{**asdict(item), "method": method})
                                      for item in items))
                  for style, items in zip(test_styles, pairings)]
        plan.shards += _cut(test_split(method), groups, scfg.styles_per_shard)
    crops = [_group(s, _crop_items(s, scfg.crops_grid)) for s in test_styles]
    plan.shards += _cut(CROPS_SPLIT, crops, scfg.styles_per_shard)
    return plan
