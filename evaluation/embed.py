"""Embeds the images of a shard split with several models in one pass over the shards.

Shards are decoded once per split and every batch goes through every model, so memory holds
the embeddings, not the decoded images (100k images stay cheap). A model sees its images
resized to its own input size (``models.embedder``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from common import storage
from common.images import ImageError, open_image
from models.embedder import Embedder, model_names
from shards.manifest import ManifestError, read_content_manifest
from shards.reader import (ShardError, StyleSample, check_shard, complete_shards, iter_samples,
                           read_info, shard_stats)


class EvalError(RuntimeError):
    """An evaluation input that cannot be used; the message names the file or split."""


@dataclass
class SplitEmbeddings:
    """Ids and per-model embeddings of one split.

    ``images``: the stylizations (crops for the crops split), one row per image, with
    ``style_ids`` (the group / source image), ``content_ids`` and ``indices`` (item index in
    its group). ``references``: one style reference per group (``reference_ids``).
    ``contents``: the content source images (``content_gallery_ids``), test splits only.
    """

    split: str
    style_ids: np.ndarray
    content_ids: np.ndarray
    indices: np.ndarray
    reference_ids: np.ndarray
    images: dict[str, np.ndarray]
    references: dict[str, np.ndarray]
    content_gallery_ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    contents: dict[str, np.ndarray] = field(default_factory=dict)
    # Each image's style group, as stage 1 recorded it (a style without one: its own); empty
    # where not known (codes read back from embeddings/): then each style is its own group.
    groups: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))
    seconds: float = 0.0

    def arrays(self, model: str) -> dict[str, np.ndarray]:
        """What ``EVAL/embeddings/<model>/<split>.npz`` stores."""
        out = {"images": self.images[model], "style_ids": self.style_ids,
               "content_ids": self.content_ids, "indices": self.indices,
               "references": self.references[model], "reference_ids": self.reference_ids}
        if model in self.contents:
            out.update(contents=self.contents[model], content_gallery_ids=self.content_gallery_ids)
        return out


def _batches(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def embed_images(images: Iterable[Image.Image], models: Sequence[Embedder],
                 batch_size: int) -> dict[str, np.ndarray]:
    """Every model's embeddings of a stream of images, in stream order."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in model_names(models)}
    for batch in _batches(images, batch_size):
        for model in models:
            for name, codes in model.embed(batch).items():
                parts[name].append(codes)
    return {name: np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
            for name, chunks in parts.items()}


class _SampleCollector:
    """Streams a split's stylized images while recording their ids and keeping the (few)
    style references, which are embedded after the pass."""

    def __init__(self, groups: Iterable[StyleSample]):
        self.groups = groups
        self.style_ids: list[str] = []
        self.content_ids: list[str] = []
        self.indices: list[int] = []
        self.style_groups: list[str] = []
        self.reference_ids: list[str] = []
        self.references: list[Image.Image] = []

    def images(self) -> Iterator[Image.Image]:
        for group in self.groups:
            self.reference_ids.append(group.style_id)
            self.references.append(group.style)
            for item, image in zip(group.items, group.images):
                self.style_ids.append(group.style_id)
                self.style_groups.append(group.group or f"style:{group.style_id}")
                self.content_ids.append(item.content_id)
                self.indices.append(item.index)
                yield image


def check_split(split_dir: str | Path) -> None:
    """Refuse, before any embedding, a split that would be scored on nothing or stop halfway:
    no complete shards, no samples, or a shard whose tar is cut or corrupt. The error names
    the split."""
    name = f"split {storage.name(split_dir)} ({split_dir})"
    try:
        urls = complete_shards(split_dir)
        if not urls:
            raise EvalError(f"{name} has no complete shards (no shard-*.stats.json): stage 1 did "
                            "not finish it; rerun stage 1, or remove the split's folder")
        for url in urls:
            check_shard(url)
        samples = sum(shard_stats(url)["samples"] for url in urls)
    except ShardError as exc:
        raise EvalError(f"{name}: {exc}; delete the shard's stats file and rerun stage 1 to "
                        "rewrite it") from None
    if samples == 0:
        raise EvalError(f"{name} holds no samples: its shards are empty (every stylization "
                        "failed?); rerun stage 1, or remove the split's folder")


def content_manifest_path(split_dir: str | Path) -> str | Path:
    """The content manifest stage 1 recorded for a split (content IR-1 needs its images)."""
    path = read_info(split_dir).get("content_manifest")
    if not path:
        raise EvalError(f"{storage.join(split_dir, '_info.json')} names no content_manifest: "
                        "content IR-1 needs the content source images")
    return storage.path_or_url(path)


def load_content_images(manifest: Path, content_ids: Sequence[str]) -> list[Image.Image]:
    try:
        rows = {row.content_id: row for row in read_content_manifest(manifest)}
    except ManifestError as exc:
        raise EvalError(f"content manifest for content IR-1: {exc}") from None
    missing = sorted(set(content_ids) - set(rows))
    if missing:
        raise EvalError(f"{manifest}: content ids used in the shards are missing: {missing[:5]}")
    try:
        return [open_image(rows[content_id].path) for content_id in content_ids]
    except ImageError as exc:
        raise EvalError(f"content source image for content IR-1: {exc}") from None


def reference_key(style_id: str) -> str:
    """The key of a style reference in :class:`RecurringImages`."""
    return f"style:{style_id}"


class RecurringImages:
    """Embeddings of images that recur in every split, by key: the test splits pair the same
    styles with the same contents, so each style reference and content source is embedded once
    per evaluation, not once per split."""

    def __init__(self, models: Sequence[Embedder], batch_size: int):
        self.models, self.batch_size = models, batch_size
        self._codes: dict[str, dict[str, np.ndarray]] = {}   # key -> model name -> code

    def embed(self, keys: Sequence[str], load: Callable[[list[str]], list[Image.Image]]
              ) -> dict[str, np.ndarray]:
        """Every model's codes of ``keys`` in order; ``load`` gives the images of unseen keys."""
        unseen = [key for key in dict.fromkeys(keys) if key not in self._codes]
        if unseen:
            fresh = embed_images(load(unseen), self.models, self.batch_size)
            for row, key in enumerate(unseen):
                self._codes[key] = {name: codes[row] for name, codes in fresh.items()}
        return {name: np.stack([self._codes[key][name] for key in keys])
                for name in model_names(self.models)}


def embed_split(split_dir: str | Path, models: Sequence[Embedder], batch_size: int,
                with_contents: bool, recurring: RecurringImages | None = None) -> SplitEmbeddings:
    """Embed one split's stylizations, its style references and (for test splits) the content
    source images of the contents it uses. Pass one ``recurring`` to every split of a shards
    folder to embed shared references and contents once."""
    recurring = recurring or RecurringImages(models, batch_size)
    started = time.time()
    try:
        if not complete_shards(split_dir):
            raise EvalError(f"split {split_dir} has no complete shards")
        collector = _SampleCollector(iter_samples(split_dir))
        images = embed_images(collector.images(), models, batch_size)
    except ShardError as exc:
        raise EvalError(str(exc)) from None
    if not collector.style_ids:
        raise EvalError(f"split {split_dir} holds no images")
    reference_keys = [reference_key(i) for i in collector.reference_ids]
    by_key = dict(zip(reference_keys, collector.references))
    references = recurring.embed(reference_keys, lambda keys: [by_key[key] for key in keys])
    result = SplitEmbeddings(
        split=storage.name(split_dir), style_ids=np.array(collector.style_ids),
        content_ids=np.array(collector.content_ids), indices=np.array(collector.indices),
        reference_ids=np.array(collector.reference_ids), images=images, references=references,
        groups=np.array(collector.style_groups))
    if with_contents:
        gallery_ids = sorted(set(collector.content_ids))
        manifest = content_manifest_path(split_dir)
        result.content_gallery_ids = np.array(gallery_ids)
        ids_by_key = {f"content:{manifest}:{i}": i for i in gallery_ids}
        result.contents = recurring.embed(
            list(ids_by_key), lambda keys: load_content_images(manifest, [ids_by_key[k] for k in keys]))
    result.seconds = time.time() - started
    return result


def load_split_images(split_dir: str | Path, positions: set[int]) -> dict[int, Image.Image]:
    """The stylized images at the given positions of a split (in ``embed_split`` order)."""
    found: dict[int, Image.Image] = {}
    position = 0
    for group in iter_samples(split_dir):
        for image in group.images:
            if position in positions:
                found[position] = image
            position += 1
        if len(found) == len(positions):
            break
    return found
