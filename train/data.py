"""Training batches streamed from the ``train`` split's shards.

A batch holds N styles (``styles_per_batch``: N shard samples); per style K stylizations
(``images_per_style``) plus the style image itself. Every image of a style carries the same
label, so the loss treats them as positives of each other; every image also carries its style's
manifest group, for the group term (``train.positives``: group or both), whose batches take
same-group pairs of styles from the shuffle buffer (:func:`pair_groups`).

Streaming (``nst`` mode), per rank and DataLoader worker:

* the shard list is shuffled per epoch with ``seed`` and the epoch number, identically on every
  rank, then split with ``wds.split_by_node`` / ``wds.split_by_worker``. When there are fewer
  shards than ranks x workers, an epoch's list is made of as many shuffled copies as needed for
  every slot to get a shard (resampling), so no rank or worker is left without data;
* epochs follow each other forever: the trainer draws a fixed number of steps, so every rank
  runs the same number of steps whatever the shard sizes (uneven shards cannot hang DDP);
* the shuffle buffer holds raw bytes; images are decoded after it, only those a batch uses;
* samples with fewer than K stylizations are sampled with replacement (the batch keeps its
  shape, and a repeated image is still a correct positive); larger ones without.

Every random choice is seeded by (seed, rank, worker, batch number), so the stream is a pure
function of its position: resuming at step s re-reads the raw stream and skips the samples
already used, without decoding them, and continues with exactly the batches an uninterrupted
run would have drawn (for an unchanged world size and worker count).

``no_nst`` mode (the ablation): the style images of the train split and their manifest ``group``
are read once into memory as JPEG bytes (they are few and small: one per style); a batch is N
distinct manifest groups x K style images of the group (N = ``styles_per_batch``). Groups with a
single style have no positive and are not drawn. ``nst`` mode with ``raw_groups_per_batch`` = M
adds such a draw of M groups to every NST batch, as ``raw_images`` and ``raw_groups``.
"""
from __future__ import annotations

import itertools
import math
import random
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms.v2 import functional as TF

from common import storage
from common.schema import Train
from shards.codec import decode_image, pil_to_tensor
from shards.reader import (ShardError, check_shard, complete_shards, incomplete_shards, raw_samples,
                           sample_meta)
from shards.schema import STYLE_MEMBER, TRAIN_SPLIT, SampleMeta

SHOWN_SHARDS = 5                 # shards named in a message before "and N more"
CROP_SCALE = (0.4, 1.0)      # random resized crop of the SS views: area fraction kept
CROP_RATIO = (3 / 4, 4 / 3)  # and aspect ratio range

# A style drawn for a batch: JPEG bytes of its chosen images, the style they share and its
# manifest group (the style itself when it has none).
Draw = tuple[list[bytes], str, str]


def _silent(message: str) -> None:
    """The default ``warn`` of :func:`train_shards`: ranks other than 0 repeat its check and
    must not repeat its warnings."""


def _shown(items: list[str], separator: str = ", ") -> str:
    """The first few items, then how many more (a message stays readable for any count)."""
    more = len(items) - SHOWN_SHARDS
    return separator.join(items[:SHOWN_SHARDS]) + (f"{separator}and {more} more" if more > 0 else "")


def train_shards(shards_root: str | Path, bad_shards: str = "error",
                 warn: Callable[[str], None] = _silent) -> list[str]:
    """The readable complete shard paths of the train split, with a message that says what is
    missing.

    Incomplete shards (without their stats file or index: stage 1 did not finish them) are left
    out with a warning. Every
    complete shard's tar is checked up front (headers only): a cut or corrupt one is an error,
    or with ``bad_shards="skip"`` left out with a warning naming it.
    """
    root = shards_root
    if not storage.is_dir(root):
        raise ShardError(f"shards directory not found: {root}")
    split = storage.join(root, TRAIN_SPLIT)
    if not storage.is_dir(split):
        raise ShardError(f"{root} has no '{TRAIN_SPLIT}' split: run stage 1 "
                         "(pipeline/stylize.py) first, or point --shards at its output folder")
    urls, incomplete = complete_shards(split), incomplete_shards(split)
    if not urls:
        raise ShardError(f"{split} has no complete shards (no shard-*.stats.json): "
                         "stage 1 did not finish; run it again to complete the split")
    if incomplete:
        names = _shown([storage.name(url) for url in incomplete])
        warn(f"{split}: {len(urls)} of {len(urls) + len(incomplete)} shards complete; "
             f"{len(incomplete)} incomplete (no stats file or index) skipped: {names} (stage 1 did not finish "
             "them: run it again to complete the split)")
    return _readable(urls, bad_shards, warn)


def _readable(urls: list[str], bad_shards: str, warn: Callable[[str], None]) -> list[str]:
    """``urls`` less the shards that fail :func:`check_shard`: an error unless ``bad_shards``
    is ``skip``, then a warning."""
    problems = {}
    for url in urls:
        try:
            check_shard(url)
        except ShardError as exc:
            problems[url] = str(exc)
    if not problems:
        return urls
    listed = _shown(list(problems.values()), "; ")
    kept = [url for url in urls if url not in problems]
    if bad_shards == "error" or not kept:
        hint = ", or set train.bad_shards=skip to train without them" if kept else ""
        raise ShardError(f"{len(problems)} of {len(urls)} train shards cannot be read: {listed}. "
                         f"Delete a bad shard's stats file and rerun stage 1 to rewrite it{hint}")
    warn(f"skipping {len(problems)} of {len(urls)} train shards that cannot be read: {listed}")
    return kept


def label_id(text: str) -> int:
    """A stable integer label for a style id or group name, the same on every rank."""
    return zlib.crc32(text.encode())


def epoch_shards(urls: list[str], seed: int, epoch: int, slots: int) -> list[str]:
    """The epoch's shard order (same on every rank), long enough to give each slot a shard."""
    order: list[str] = []
    for copy in range(math.ceil(slots / len(urls))):
        shuffled = list(urls)
        random.Random(f"{seed}:{epoch}:{copy}").shuffle(shuffled)
        order += shuffled
    return order


def raw_sample_stream(urls: list[str], seed: int, slots: int) -> Iterator[dict]:
    """Endless undecoded samples of this rank and worker, epoch after epoch."""
    for epoch in itertools.count():
        count = 0
        for sample in raw_samples(epoch_shards(urls, seed, epoch, slots),
                                  nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker):
            count += 1
            yield sample
        if count == 0:
            raise ShardError(f"epoch {epoch}: the shards given to this rank/worker hold no samples")


def _pick(available: int, wanted: int, rng: np.random.Generator) -> list[int]:
    return rng.choice(available, size=wanted, replace=available < wanted).tolist()


def sample_group(meta: SampleMeta) -> str:
    """A sample's manifest group; a style without one is a group of its own."""
    return meta.group or f"style:{meta.style_id}"


def draw_from_sample(sample: dict, k: int, rng: np.random.Generator) -> Draw:
    """K stylizations of a raw sample plus its style image, labelled by style id and group."""
    meta = sample_meta(sample)
    chosen = [sample[meta.items[i].member] for i in _pick(len(meta.items), k, rng)]
    return chosen + [sample[STYLE_MEMBER]], meta.style_id, sample_group(meta)


def load_image(data: bytes, size: int) -> torch.Tensor:
    image = decode_image(data)
    if image.size != (size, size):
        image = image.resize((size, size), resample=3)  # bicubic
    return pil_to_tensor(image)


def random_view(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random resized crop (back to the input size) and horizontal flip."""
    _, height, width = image.shape
    area = height * width * rng.uniform(*CROP_SCALE)
    ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
    crop_w = min(width, max(1, round(math.sqrt(area * ratio))))
    crop_h = min(height, max(1, round(math.sqrt(area / ratio))))
    top = int(rng.integers(height - crop_h + 1))
    left = int(rng.integers(width - crop_w + 1))
    view = TF.resized_crop(image, top, left, crop_h, crop_w, [height, width], antialias=True)
    return TF.horizontal_flip(view) if rng.random() < 0.5 else view


def assemble(draws: list[Draw], size: int, rng: np.random.Generator, two_views: bool,
             augment: bool = False) -> dict:
    """Decode the drawn images into a batch: ``images`` (B,3,S,S), ``labels`` (B,) by style,
    ``groups`` (B,) by manifest group, and with ``two_views`` a second augmented ``views``
    tensor. ``images`` are augmented views when ``augment`` or ``two_views`` is set."""
    images, labels, groups = [], [], []
    for members, label, group in draws:
        images += [load_image(data, size) for data in members]
        labels += [label_id(label)] * len(members)
        groups += [label_id(group)] * len(members)
    batch = {"labels": torch.tensor(labels, dtype=torch.int64),
             "groups": torch.tensor(groups, dtype=torch.int64)}
    if two_views:
        batch["views"] = torch.stack([random_view(image, rng) for image in images])
    if two_views or augment:
        images = [random_view(image, rng) for image in images]
    batch["images"] = torch.stack(images)
    return batch


def raw_group_setting(train_cfg: Train) -> tuple[str, int]:
    """The key that sets how many manifest groups of raw style images a batch draws, and its
    value: all of a no_nst batch, the ``raw_groups_per_batch`` added to an nst batch."""
    if train_cfg.mode == "no_nst":
        return "train.styles_per_batch", train_cfg.styles_per_batch
    return "train.raw_groups_per_batch", train_cfg.raw_groups_per_batch


def read_style_groups(urls: list[str], needed_by: str = "train.mode=no_nst") -> dict[str, list[bytes]]:
    """Every style image of the split (JPEG bytes), by raw style group, for ``needed_by``."""
    groups: dict[str, list[bytes]] = {}
    for sample in raw_samples(urls):
        group = sample_meta(sample).group
        if not group:
            raise ShardError(f"sample {sample['__key__']} in {sample['__url__']} has no group: "
                             f"{needed_by} needs the style manifest's group column")
        groups.setdefault(group, []).append(sample[STYLE_MEMBER])
    return groups


def batch_shortfall(train_cfg: Train, styles_per_group: dict[str, int]) -> str | None:
    """Why the train split's styles (count per group) cannot fill a batch of ``train_cfg``, or
    None. The no-NST control draws ``styles_per_batch`` distinct groups of 2+ styles, an nst
    batch ``raw_groups_per_batch`` of them; NST styles are streamed and never run short."""
    key, wanted = raw_group_setting(train_cfg)
    usable = sum(count > 1 for count in styles_per_group.values())
    if usable >= wanted:
        return None
    fix = f"set {key} to at most {usable}" if usable >= 2 else \
        "put more style images in shared group folders (an artist's works in one folder)"
    return (f"train.mode={train_cfg.mode}: only {usable} groups have 2+ style images in the train "
            f"split, fewer than {key}={wanted}: {fix}")


def pair_groups(items: list[tuple[str, str]], n: int, rng: np.random.Generator) -> list[int]:
    """Positions of ``n`` of ``items`` ((group, style id) pairs) for one batch: two distinct
    styles of one group from each of up to n // 2 groups that offer two, then random others.
    A batch of random styles rarely holds two of one group; the pairs give the group term its
    positives. (A pool spanning two epochs can hold one style twice: never a pair.)"""
    members: dict[str, dict[str, int]] = {}
    for position, (group, style) in enumerate(items):
        members.setdefault(group, {}).setdefault(style, position)
    paired = [list(styles.values()) for styles in members.values() if len(styles) > 1]
    chosen: list[int] = []
    for g in rng.permutation(len(paired))[: n // 2]:
        chosen += rng.choice(paired[g], size=2, replace=False).tolist()
    taken = set(chosen)
    rest = [position for position in range(len(items)) if position not in taken]
    return chosen + rng.choice(rest, size=n - len(chosen), replace=False).tolist()


class StyleBatches(IterableDataset):
    """Endless training batches for one rank; batch numbering starts at ``start_batch``.

    With W DataLoader workers, worker w makes the global batches w, w + W, w + 2W, ...
    (the DataLoader yields them round-robin in that order).
    """

    def __init__(self, urls: list[str], train_cfg: Train, seed: int, rank: int, world_size: int,
                 start_batch: int = 0):
        super().__init__()
        self.urls, self.cfg, self.seed = urls, train_cfg, seed
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self.mode = train_cfg.mode
        self.two_views = train_cfg.ss_weight > 0
        self.style_groups: dict[str, list[bytes]] = {}
        key, self.raw_groups = raw_group_setting(train_cfg)
        if self.raw_groups:
            groups = read_style_groups(urls, "train.mode=no_nst" if self.mode == "no_nst" else key)
            self.style_groups = {g: images for g, images in sorted(groups.items()) if len(images) > 1}
            shortfall = batch_shortfall(train_cfg, {g: len(images) for g, images in groups.items()})
            if shortfall:
                raise ShardError(shortfall)

    def _rng(self, batch: int, purpose: int) -> np.random.Generator:
        # Separate generators for drawing (0) and augmenting (1), and for an nst batch's raw
        # groups (2: drawing, 3: augmenting): one cannot shift another.
        return np.random.default_rng([self.seed, self.rank, batch, purpose])

    def _nst_draws(self, worker: int, workers: int, first: int) -> Iterator[tuple[int, list[Draw]]]:
        n, k = self.cfg.styles_per_batch, self.cfg.images_per_style
        stream = iter(raw_sample_stream(self.urls, self.seed, self.world_size * workers))
        if self.cfg.shuffle_buffer > 0:
            rng = random.Random(f"{self.seed}:{self.rank}:{worker}")
            stream = iter(wds.shuffle(self.cfg.shuffle_buffer, self.cfg.shuffle_buffer,
                                      rng=rng)(stream))
        # Resume: skip the samples of the batches already made, still undecoded.
        stream = itertools.islice(stream, first * n, None)
        for local in itertools.count(first):
            batch = worker + local * workers
            rng = self._rng(batch, 0)
            yield batch, [draw_from_sample(next(stream), k, rng) for _ in range(n)]

    def _group_draws(self, worker: int, workers: int, first: int) -> Iterator[tuple[int, list[Draw]]]:
        """``nst`` mode with group positives: each batch takes same-group pairs (see
        :func:`pair_groups`) from a pool of ``shuffle_buffer`` streamed samples, which the
        stream refills. A resumed stream replays the pool's choices without decoding."""
        n, k = self.cfg.styles_per_batch, self.cfg.images_per_style
        stream = iter(raw_sample_stream(self.urls, self.seed, self.world_size * workers))
        pool: list[tuple[tuple[str, str], dict]] = []   # ((group, style id), raw sample)
        for local in itertools.count():
            batch = worker + local * workers
            rng = self._rng(batch, 0)
            while len(pool) < max(self.cfg.shuffle_buffer, n):
                sample = next(stream)
                meta = sample_meta(sample)
                pool.append(((sample_group(meta), meta.style_id), sample))
            chosen = pair_groups([key for key, _ in pool], n, rng)
            samples = [pool[position][1] for position in chosen]
            taken = set(chosen)
            pool = [item for position, item in enumerate(pool) if position not in taken]
            if local >= first:
                yield batch, [draw_from_sample(sample, k, rng) for sample in samples]

    def _raw_group_draw(self, rng: np.random.Generator) -> list[Draw]:
        """``raw_groups`` distinct groups x K of their style images, labelled by group."""
        k, names = self.cfg.images_per_style, list(self.style_groups)
        draws = []
        for g in rng.choice(len(names), size=self.raw_groups, replace=False):
            images = self.style_groups[names[g]]
            draws.append(([images[i] for i in _pick(len(images), k, rng)], names[g], names[g]))
        return draws

    def _no_nst_draws(self, worker: int, workers: int, first: int) -> Iterator[tuple[int, list[Draw]]]:
        for local in itertools.count(first):
            batch = worker + local * workers
            yield batch, self._raw_group_draw(self._rng(batch, 0))

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        first = self.start_batch // workers
        if self.mode == "no_nst":
            draws = self._no_nst_draws
        else:
            draws = self._nst_draws if self.cfg.positives == "style" else self._group_draws
        for batch, drawn in draws(worker, workers, first):
            assembled = assemble(drawn, self.cfg.image_size, self._rng(batch, 1), self.two_views,
                                 self.cfg.augment)
            if self.mode == "nst" and self.raw_groups:
                raw = assemble(self._raw_group_draw(self._rng(batch, 2)), self.cfg.image_size,
                               self._rng(batch, 3), False, self.cfg.augment)
                assembled.update(raw_images=raw["images"], raw_groups=raw["groups"])
            yield assembled


def batch_iterator(shards_root: str | Path, train_cfg: Train, seed: int, rank: int, world_size: int,
                   start_batch: int = 0, pin_memory: bool = False) -> Iterator[dict]:
    """The endless batch stream of one rank over the train split of ``shards_root``."""
    urls = train_shards(shards_root, train_cfg.bad_shards)
    return batch_stream(urls, train_cfg, seed, rank, world_size, start_batch, pin_memory)


def batch_stream(urls: list[str], train_cfg: Train, seed: int, rank: int, world_size: int,
                 start_batch: int = 0, pin_memory: bool = False) -> Iterator[dict]:
    """The endless batch stream of one rank over shards ``urls``, positioned at global batch
    ``start_batch``."""
    dataset = StyleBatches(urls, train_cfg, seed, rank, world_size, start_batch)
    workers = train_cfg.num_workers
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=2 if workers > 0 else None)
    stream = iter(loader)
    # Workers restart at a multiple of the worker count; drop the few batches before the target.
    for _ in range(start_batch - (start_batch // max(workers, 1)) * max(workers, 1)):
        next(stream)
    return stream
