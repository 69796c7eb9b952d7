"""What a set of style codes was made with, and a hash that says whether two sets are comparable.

A *recipe* is one model or a fused pair: a training checkpoint (``[NAME=]PATH``, named after
its run folder like ``pipeline/eval.py`` names it) or a registered baseline (``baseline:NAME``),
each optionally fused with a second one at given weights. Its hash identifies what the codes
*mean*, not what they are called, so renaming a model keeps its indexes valid:

- a checkpoint: the sha256 of the checkpoint file (it holds the weights and the config that
  builds the encoder);
- a baseline: the sha256 of its name and of the config parts baselines read (``seed``, which
  seeds random weights; the ``eval`` keys of ``models.baselines.BASELINE_EVAL_KEYS``;
  ``train.model.vit`` / ``.vgg``; ``stylize.methods``), plus the content of every file those
  parts name, so a weights file replaced in place is another model;
- a fused pair: the sha256 of its parts' hashes and weights.

Hashes are the first 16 hex digits. Indexes and tagging heads store them; a query with a
model whose hash differs is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from common import storage
from common.schema import Config
from models.baselines import BASELINE_EVAL_KEYS, list_baselines
from models.factory import checkpoint_name

BASELINE_PREFIX = "baseline:"
HASH_CHARS = 16


class StyleCodeError(ValueError):
    """A model, input or index that cannot be used; the message names the file or model."""


@dataclass(frozen=True)
class ModelSpec:
    """One model: a training checkpoint (``path`` set) or a registered baseline."""

    name: str
    path: str | Path | None = None     # a checkpoint's local path or URL

    def __post_init__(self) -> None:
        if self.is_baseline and self.name not in list_baselines():
            raise StyleCodeError(f"unknown baseline '{self.name}'; known: {', '.join(list_baselines())}")

    @property
    def is_baseline(self) -> bool:
        return self.path is None

    @classmethod
    def parse(cls, text: str | Path) -> ModelSpec:
        """``baseline:NAME``, or a checkpoint ``[NAME=]PATH`` (``RUN/checkpoints/x.pt`` is ``RUN``)."""
        text = str(text)
        if text.startswith(BASELINE_PREFIX):
            return cls(text[len(BASELINE_PREFIX):])
        name, path = checkpoint_name(text)
        return cls(name, path if storage.is_url(path) else path.resolve())

    def __str__(self) -> str:
        return f"{BASELINE_PREFIX}{self.name}" if self.is_baseline else f"{self.name}={self.path}"

    def hash(self, cfg: Config | None) -> str:
        """The hash of the codes: a baseline's from ``cfg`` (the loaded config), a checkpoint's
        from its file (``cfg`` unused: None will do)."""
        if self.is_baseline:
            return baseline_hash(self.name, cfg)
        if not storage.is_file(self.path):
            raise StyleCodeError(f"checkpoint {self.name}: file not found: {self.path}")
        return file_sha256(self.path)[:HASH_CHARS]


@dataclass(frozen=True)
class Recipe:
    """One model, or two fused (``models.fuse``) with ``weights``."""

    specs: tuple[ModelSpec, ...]
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.specs) not in (1, 2):
            raise StyleCodeError(f"give one model, or two to fuse; got {len(self.specs)}")
        if len(self.specs) == 2 and len(self.weights) != 2:
            raise StyleCodeError(f"a fused pair needs two weights, got {list(self.weights)}")

    @classmethod
    def parse(cls, models: Sequence[str | Path | ModelSpec],
              weights: Sequence[float] | None = None) -> Recipe:
        specs = tuple(m if isinstance(m, ModelSpec) else ModelSpec.parse(m) for m in models)
        if len(specs) == 1 and weights:
            raise StyleCodeError("weights apply to a fused pair of models only")
        return cls(specs, tuple(float(w) for w in weights or (1.0, 1.0)) if len(specs) == 2 else ())

    @property
    def name(self) -> str:
        return "+".join(spec.name for spec in self.specs)

    def hash(self, cfg: Config) -> str:
        hashes = [spec.hash(cfg) for spec in self.specs]
        if len(hashes) == 1:
            return hashes[0]
        return _sha256_json({"fused": hashes, "weights": list(self.weights)})[:HASH_CHARS]

    def to_dict(self) -> dict:
        """What an embeddings folder or index records, to rebuild the model for queries."""
        return {"models": [str(spec) for spec in self.specs], "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        return cls.parse(data["models"], data["weights"] or None)


def _sha256_json(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=64)
def _cached_file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per process while its size and mtime stay the same (an
    object on storage: each time, there is no local stat to cache on)."""
    if storage.is_url(path):
        return hashlib.sha256(storage.read_bytes(path)).hexdigest()
    stat = path.stat()
    return _cached_file_sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


def _named_files(value: Any) -> Iterator[Path]:
    """Every string inside ``value`` (nested dicts and lists) that names an existing file."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _named_files(item)
    elif isinstance(value, list):
        for item in value:
            yield from _named_files(item)
    elif isinstance(value, str) and value and Path(value).is_file():
        yield Path(value)


def baseline_config(cfg: Config) -> dict:
    """The config parts a baseline's codes can depend on (see the module notes), as plain
    values: what the hash covers."""
    cfg = cfg.model_dump()
    return {"seed": cfg["seed"],
            "eval": {key: cfg["eval"][key] for key in BASELINE_EVAL_KEYS},
            "vit": cfg["train"]["model"]["vit"], "vgg": cfg["train"]["model"]["vgg"],
            "stylize_methods": cfg["stylize"]["methods"]}


def baseline_hash(name: str, cfg: Config) -> str:
    """The hash of baseline ``name`` built from ``cfg`` (see the module notes)."""
    parts = baseline_config(cfg)
    files = {str(path): file_sha256(path) for path in _named_files(parts)}
    return _sha256_json({"baseline": name, "config": parts, "files": files})[:HASH_CHARS]


def checkpoint_hash(path: str | Path) -> str:
    """The hash of a training checkpoint's encoder: of the file's content."""
    return ModelSpec.parse(path).hash(None)
