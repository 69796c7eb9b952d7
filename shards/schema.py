"""The shard contract between stage 1 (writes) and stage 2 / evaluation (read).

One WebDataset sample is one style group, keyed ``s<style_id>``::

    s<style_id>.style.jpg   the style reference image
    s<style_id>.x<i>.jpg    stylization i of the plan (only those that succeeded)
    s<style_id>.json        the group's metadata (SampleMeta below)

Per split directory ``<out>/<split>/``: ``shard-NNNNNN.tar`` (samples), ``shard-NNNNNN.parquet``
(one row per planned stylization, failures included), ``shard-NNNNNN.stats.json`` (written last:
a shard is complete only when it and the other two exist, see ``is_complete``) and ``_info.json``
(the split's summary, with its ``role``).

Splits and their roles, defined here and nowhere else:

    train            role "train":     stylized with the training methods
    test-<method>    role "test":      one per training method, the same style/content pairs
                     role "held_out":  the held-out method's (never seen in training)
    crops            role "crops":     test style images cut into grids of crops
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from common import storage

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
SHARD_NAME = re.compile(r"^shard-(\d{6,})\.")
STYLE_MEMBER = "style.jpg"
META_MEMBER = "json"
INFO_NAME = "_info.json"
STATUS_OK = "ok"
STATUS_FAILED = "failed"

TRAIN_SPLIT = "train"
CROPS_SPLIT = "crops"
TEST_PREFIX = "test-"
CROP_METHOD = "crop"       # the "method" of a crops item: a cell cut, no stylization
ROLE_TRAIN, ROLE_TEST, ROLE_HELD_OUT, ROLE_CROPS = "train", "test", "held_out", "crops"

# One row per planned stylization (and per failure, with its reason).
INDEX_SCHEMA = pa.schema([
    ("split", pa.string()),
    ("shard", pa.string()),
    ("sample_key", pa.string()),
    ("style_id", pa.string()),
    ("group", pa.string()),
    ("index", pa.int32()),
    ("member", pa.string()),
    ("content_id", pa.string()),
    ("category", pa.string()),
    ("method", pa.string()),
    ("params", pa.string()),     # JSON text: the method's options and strength
    ("seed", pa.int64()),
    ("status", pa.string()),
    ("reason", pa.string()),
])


def check_id(value: str, what: str = "id") -> str:
    """Ids become tar member names and WebDataset keys: no dots, no separators."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid id: use letters, digits, '_' or '-' "
                         "(no dots: WebDataset splits keys at the first dot)")
    return value


def sample_key(style_id: str) -> str:
    return "s" + check_id(style_id, "style id")


def item_member(index: int) -> str:
    return f"x{index}.jpg"


def shard_stem(number: int) -> str:
    return f"shard-{number:06d}"


def shard_paths(split_dir: Path, number: int) -> dict[str, Path]:
    stem = shard_stem(number)
    return {"tar": split_dir / f"{stem}.tar",
            "index": split_dir / f"{stem}.parquet",
            "stats": split_dir / f"{stem}.stats.json"}


def shard_locations(split_dir: str | Path, number: int) -> dict[str, str]:
    """:func:`shard_paths` for a split folder that may be a URL (``common.storage``)."""
    return {kind: storage.join(split_dir, path.name) for kind, path in shard_paths(Path(), number).items()}


def is_complete(split_dir: Path, number: int) -> bool:
    """Whether a shard is complete: all its files are there. The stats file, written last,
    marks a finished shard, but a tar or index deleted since makes it incomplete again."""
    return all(path.is_file() for path in shard_paths(Path(split_dir), number).values())


def shard_number(name: str) -> int | None:
    """The number of a shard file's name (``shard-000012.tar`` -> 12); None for another file."""
    match = SHARD_NAME.match(name)
    return int(match.group(1)) if match else None


def test_split(method: str) -> str:
    return TEST_PREFIX + method


def split_role(split: str, held_out: str | None) -> str:
    """The role of a split name, given the run's held-out method."""
    if split == TRAIN_SPLIT:
        return ROLE_TRAIN
    if split == CROPS_SPLIT:
        return ROLE_CROPS
    if not split.startswith(TEST_PREFIX):
        raise ValueError(f"'{split}' is not a split name (train, crops or {TEST_PREFIX}<method>)")
    return ROLE_HELD_OUT if held_out and split == test_split(held_out) else ROLE_TEST


class MetaError(ValueError):
    """A sample's json does not hold the metadata this module describes."""


@dataclass(frozen=True)
class ItemMeta:
    """One stylization of a sample (a crop cell in the crops split), as its json records it;
    its tar member is :func:`item_member` of its index."""

    index: int
    content_id: str
    category: str
    method: str
    params: dict[str, Any]     # the method's options and strength (a crop: its cell)
    seed: int

    @property
    def member(self) -> str:
        return item_member(self.index)

    @classmethod
    def from_record(cls, record: object, position: int) -> "ItemMeta":
        where = f"items[{position}]"
        item = cls(**_typed_fields(cls, record, where))
        if record.get("member") != item.member:   # derived from the index, stored for readers
            raise MetaError(f"{where}: member {record.get('member')!r} is not {item.member!r}")
        return item


@dataclass(frozen=True)
class SampleMeta:
    """A sample's json: its style, the split it was written for and its stylizations in plan
    order (those that succeeded). ``to_json`` writes it, ``from_json`` reads and checks it."""

    style_id: str
    group: str
    tags: list                 # stored as given: tagging checks each tag and names the sample
    split: str
    items: tuple[ItemMeta, ...]

    def to_json(self) -> bytes:
        record = asdict(self)
        record["items"] = [dict(item, member=item_member(item["index"])) for item in record["items"]]
        return json.dumps(record, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "SampleMeta":
        try:
            record = json.loads(data)
        except ValueError as exc:   # undecodable bytes included
            raise MetaError(f"its json is not valid JSON ({exc})") from None
        values = _typed_fields(cls, record, "json")
        if not isinstance(values["items"], list):
            raise MetaError(f"json: 'items' is {type(values['items']).__name__}, not a list")
        values["items"] = tuple(ItemMeta.from_record(item, i) for i, item in enumerate(values["items"]))
        return cls(**values)


# JSON types of the fields (items and params are checked apart: their contents have a shape).
_JSON_TYPES = {"str": str, "int": int, "list": list, "dict[str, Any]": dict}


def _typed_fields(cls: type, record: object, where: str) -> dict[str, Any]:
    """The values of ``cls``'s fields in a JSON object, each present and of its declared type."""
    if not isinstance(record, dict):
        raise MetaError(f"{where} is {type(record).__name__}, not an object")
    missing = [f.name for f in fields(cls) if f.name not in record]
    if missing:
        raise MetaError(f"{where} lacks field(s) {missing}")
    for f in fields(cls):
        wanted = _JSON_TYPES.get(f.type)
        if wanted is not None and not isinstance(record[f.name], wanted):
            raise MetaError(f"{where}: {f.name!r} is {type(record[f.name]).__name__}, not {wanted.__name__}")
    return {f.name: record[f.name] for f in fields(cls)}
