"""Reads shards with stock ``webdataset``; adds group decoding and split discovery on top.

A shards root may be a local folder or a URL (``common.storage``): splits are found by listing,
tars are streamed through fsspec.

The pieces are small generator stages so training can compose them with its own splitting,
shuffling and batching (decode *after* the shuffle buffer: decoded images multiply memory).
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

from common import storage
from shards.codec import decode_image
from shards.schema import (INFO_NAME, META_MEMBER, ROLE_CROPS, ROLE_HELD_OUT, ROLE_TEST,
                           ROLE_TRAIN, STYLE_MEMBER, ItemMeta, MetaError, SampleMeta,
                           shard_number, shard_paths)


@dataclass
class StyleSample:
    """One decoded sample: a style reference and its stylizations, in plan order."""

    key: str
    style_id: str
    group: str
    tags: list[str]
    style: Image.Image
    images: list[Image.Image]
    items: tuple[ItemMeta, ...]   # per image: what made it


class ShardError(RuntimeError):
    pass


def list_splits(root: str | Path) -> list[str]:
    """Split names under a shards root (directories holding an ``_info.json``)."""
    if not storage.is_dir(root):
        raise ShardError(f"shards directory not found: {root}")
    return sorted(storage.name(split) for split in storage.listdir(root)
                  if storage.exists(storage.join(split, INFO_NAME)))


def _shards_by_completeness(directory: str | Path) -> dict[bool, list[str]]:
    """The tar paths of a split's shards that have any file under a final name, by whether
    they are complete (:func:`shards.schema.is_complete`: tar, index and stats file all
    there), sorted. One listing of the split: on object storage each check is a request."""
    if not storage.is_dir(directory):
        raise ShardError(f"split directory not found: {directory}")
    names = {storage.name(path) for path in storage.listdir(directory)}
    numbers = sorted({n for n in map(shard_number, names) if n is not None})
    found: dict[bool, list[str]] = {True: [], False: []}
    for number in numbers:
        files = {kind: path.name for kind, path in shard_paths(Path(), number).items()}
        found[set(files.values()) <= names].append(storage.join(directory, files["tar"]))
    return found


def complete_shards(directory: str | Path) -> list[str]:
    """Tar paths of the complete shards of a split, sorted."""
    return _shards_by_completeness(directory)[True]


def incomplete_shards(directory: str | Path) -> list[str]:
    """Tar paths of a split's shards that have some of their files but not all (stage 1 did
    not finish them, or a file was deleted since): rerunning stage 1 redoes them."""
    return _shards_by_completeness(directory)[False]


def shard_stats(tar: str | Path) -> dict:
    """The stats file of a complete shard (``shard-NNNNNN.stats.json`` next to its tar)."""
    path = storage.with_suffix(tar, ".stats.json")
    try:
        stats = json.loads(storage.read_text(path))
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: cannot read the shard's stats file: {exc}") from None
    if not isinstance(stats, dict) or not all(isinstance(stats.get(key), int)
                                              for key in ("samples", "images")):
        raise ShardError(f"{path}: the shard's stats file records no sample and image counts")
    return stats


def check_shard(tar: str | Path) -> None:
    """Raise a ShardError naming ``tar`` when it is cut short or corrupt.

    Only the member headers are read (the data is seeked over), so this is cheap enough to run
    on every shard before a long job: a tar cut at a member boundary reads as a shorter valid
    archive, hence the member count is compared with the stats file's (per sample: the style
    image, its stylizations and the json).
    """
    stats = shard_stats(tar)
    expected = 2 * stats["samples"] + stats["images"]
    try:
        with storage.open_input(tar) as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
            members = len(archive.getmembers())   # stage 1 writes plain tars
    except (OSError, tarfile.TarError) as exc:
        raise ShardError(f"{tar}: cannot be read as a tar, the file is truncated or corrupt "
                         f"({exc})") from None
    if members != expected:
        raise ShardError(f"{tar}: holds {members} members where its stats file records "
                         f"{expected}: the file is truncated or corrupt")


def read_info(directory: str | Path) -> dict:
    path = storage.join(directory, INFO_NAME)
    try:
        return json.loads(storage.read_text(path))
    except FileNotFoundError:
        raise ShardError(f"{path} is missing: was stage 1 run (and finished) for this split?") from None


def read_index(directory: str | Path) -> pa.Table:
    """All rows of a split's per-shard parquet indexes (one row per planned stylization)."""
    tables = [_read_table(storage.with_suffix(tar, ".parquet")) for tar in complete_shards(directory)]
    if not tables:
        raise ShardError(f"no complete shards in {directory}")
    return pa.concat_tables(tables)


def _read_table(path: str) -> pa.Table:
    with storage.open_input(path) as handle:
        return pq.read_table(handle)


@dataclass
class SplitRoles:
    """The evaluation splits of a shards root by role, as stage 1 recorded them in _info.json."""

    tests: list[str]           # test splits of the training methods (averaged in reports)
    held_out: str | None       # the held-out method's test split
    crops: str | None
    train: str | None = None   # the training methods' split (tagging trains its heads there)

    def test_columns(self) -> list[str]:
        return self.tests + ([self.held_out] if self.held_out else [])


def split_roles(root: str | Path) -> SplitRoles:
    """Read each split's role from its ``_info.json``."""
    by_role: dict[str, list[str]] = {}
    for split in list_splits(root):
        info = read_info(storage.join(root, split))
        if "role" not in info:
            raise ShardError(f"{storage.join(root, split, INFO_NAME)} records no split role (written by an "
                             "older stage 1): rerun stage 1's command, it rewrites the summaries")
        by_role.setdefault(info["role"], []).append(split)
    held_out = by_role.get(ROLE_HELD_OUT, [])
    crops = by_role.get(ROLE_CROPS, [])
    train = by_role.get(ROLE_TRAIN, [])
    return SplitRoles(tests=by_role.get(ROLE_TEST, []), held_out=held_out[0] if held_out else None,
                      crops=crops[0] if crops else None, train=train[0] if train else None)


def sample_meta(sample: dict) -> SampleMeta:
    """The typed json of a raw WebDataset sample; a ShardError naming the shard and the sample
    when it is missing or does not hold what :class:`shards.schema.SampleMeta` describes."""
    where = f"{sample.get('__url__')}: sample {sample.get('__key__')}"
    if META_MEMBER not in sample:
        raise ShardError(f"{where} has no {META_MEMBER} member")
    try:
        return SampleMeta.from_json(sample[META_MEMBER])
    except MetaError as exc:
        raise ShardError(f"{where}: {exc}") from None


def decode_sample(sample: dict) -> StyleSample:
    """Turn a raw WebDataset sample (bytes per member) into a StyleSample."""
    meta = sample_meta(sample)
    try:
        images = [decode_image(sample[item.member]) for item in meta.items]
    except KeyError as exc:
        raise ShardError(f"sample {sample.get('__key__')} in {sample.get('__url__')} "
                         f"lacks member {exc}") from None
    return StyleSample(key=sample["__key__"], style_id=meta.style_id, group=meta.group,
                       tags=meta.tags, style=decode_image(sample[STYLE_MEMBER]), images=images,
                       items=meta.items)


def every_shard(urls: Iterable) -> Iterable:
    """Node splitter for readers that want the whole split on every rank (e.g. an index)."""
    return urls


def raw_samples(urls: Iterable[str], **kwargs) -> Iterator[dict]:
    """Stock WebDataset over the given shard paths, undecoded (bytes per member).

    Unless a ``nodesplitter`` is given, every rank reads every shard: training streams pass
    ``wds.split_by_node`` to divide the shards among ranks instead. A shard that cannot be
    opened or read to its end is a ShardError naming it (see :func:`check_shard` to find one
    up front).
    """
    kwargs.setdefault("nodesplitter", every_shard)
    urls = list(urls)
    storage.register_streams(urls)
    try:
        yield from wds.WebDataset(urls, shardshuffle=False, empty_check=False, **kwargs)
    except tarfile.TarError as exc:
        # webdataset re-raises it with " @ <stream>" added to the message and the stream and
        # the shard's url appended to the arguments.
        reason = str(exc.args[0]).split(" @ ")[0]
        raise ShardError(f"{exc.args[-1]}: cannot be read as a tar, the file is truncated or "
                         f"corrupt ({reason})") from None


@dataclass
class StyleReference:
    """A group's style reference with its metadata, the image still encoded: readers that need
    only the references (tagging) skip decoding the stylizations."""

    key: str
    style_id: str
    tags: object               # the json's ``tags`` exactly as stored, for the reader to check
    shard: str                 # the tar it came from
    encoded: bytes

    def image(self) -> Image.Image:
        return decode_image(self.encoded)


def iter_references(directory: str | Path) -> Iterator[StyleReference]:
    """Every group's style reference of a split, in shard order (as :func:`iter_samples`)."""
    for sample in raw_samples(complete_shards(directory)):
        meta = sample_meta(sample)
        yield StyleReference(key=sample["__key__"], style_id=meta.style_id, tags=meta.tags,
                             shard=storage.name(sample["__url__"]), encoded=sample[STYLE_MEMBER])


def iter_samples(directory: str | Path) -> Iterator[StyleSample]:
    """Every group of a split, decoded, in shard order (evaluation reads this way)."""
    for sample in raw_samples(complete_shards(directory)):
        yield decode_sample(sample)
