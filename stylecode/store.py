"""Embedding files: one model's codes of a collection, as parquet ``embeddings-NNNNN.parquet``.

Columns: ``id``, ``path``, ``embedding`` (fixed-size list of float32; null where the image
failed), ``status`` (``ok`` / ``failed``) and ``reason`` (why it failed; empty when ok). The
file metadata holds the model's name, hash and code dimension. Files are written atomically:
one that exists is whole, so a file that cannot be read was damaged afterwards. A folder may be
a URL (``common.storage``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common import storage
from shards.schema import STATUS_FAILED, STATUS_OK
from stylecode.identity import StyleCodeError

FILE_GLOB = "embeddings-*.parquet"
# Written by pipeline/embed.py beside the files: the model's recipe, the collection, last run.
STATE_NAME = "_embed.json"
_META = {"name": b"stylecode.model", "hash": b"stylecode.hash", "dim": b"stylecode.dim"}


@dataclass(frozen=True)
class ModelInfo:
    """The model that made a set of codes."""

    name: str
    hash: str
    dim: int

    def same_model(self, other: ModelInfo) -> bool:
        """Whether codes of the two can be compared (the name is only a label)."""
        return other.hash == self.hash and other.dim == self.dim

    def check_same(self, other: ModelInfo, what: str) -> None:
        """Refuse codes of another model, naming both and ``what`` holds the other's."""
        if not self.same_model(other):
            raise StyleCodeError(
                f"{what} holds codes of model {other.name!r} (hash {other.hash}, {other.dim}-d), "
                f"not of {self.name!r} (hash {self.hash}, {self.dim}-d): codes of different "
                "models cannot be compared")


@dataclass
class Embeddings:
    """The usable (status ok) rows of one or more embedding files, in file order."""

    info: ModelInfo
    ids: list[str]
    paths: list[str]
    codes: np.ndarray    # (rows, dim) float32
    failed: int          # rows recorded as failed, left out


def file_path(folder: str | Path, number: int) -> str | Path:
    """A Path in a local folder, else a URL."""
    return storage.path_or_url(storage.join(folder, f"embeddings-{number:05d}.parquet"))


def list_files(folder: str | Path) -> list[str | Path]:
    return [storage.path_or_url(path) for path in storage.glob(storage.join(folder, FILE_GLOB))]


def write_file(path: str | Path, ids: Sequence[str], paths: Sequence[str], codes: np.ndarray,
               reasons: Sequence[str], info: ModelInfo) -> None:
    """Write one file atomically; rows with a reason are failures (their code is null)."""
    failed = np.array([bool(reason) for reason in reasons])
    values = pa.array(np.ascontiguousarray(codes, dtype=np.float32).reshape(-1))
    table = pa.table({
        "id": pa.array(list(ids), pa.string()), "path": pa.array(list(paths), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(values, info.dim, mask=pa.array(failed)),
        "status": pa.array([STATUS_FAILED if f else STATUS_OK for f in failed], pa.string()),
        "reason": pa.array(list(reasons), pa.string())})
    meta = {_META["name"]: info.name.encode(), _META["hash"]: info.hash.encode(),
            _META["dim"]: str(info.dim).encode()}
    with storage.open_output(path) as handle:
        pq.write_table(table.replace_schema_metadata(meta), handle)


def _unreadable(path: str | Path, exc: Exception) -> StyleCodeError:
    return StyleCodeError(f"{path}: not a readable embeddings file ({type(exc).__name__}: {exc}); "
                          "delete it and run the embed command again to redo it")


def read_info(path: str | Path) -> tuple[ModelInfo, int]:
    """The model of a file and its number of rows, from the footer alone (cheap)."""
    try:
        with storage.open_input(path) as handle:
            metadata = pq.read_metadata(handle)
        meta = metadata.metadata or {}
        info = ModelInfo(meta[_META["name"]].decode(), meta[_META["hash"]].decode(),
                         int(meta[_META["dim"]]))
    except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    return info, metadata.num_rows


def read_file(path: str | Path) -> Embeddings:
    """The usable rows of one file."""
    info, _ = read_info(path)
    try:
        with storage.open_input(path) as handle:
            table = pq.read_table(handle)
        ok = table.filter(pc.equal(table["status"], STATUS_OK))
        values = ok["embedding"].combine_chunks().flatten().to_numpy()
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise _unreadable(path, exc) from None
    return Embeddings(info, ok["id"].to_pylist(), ok["path"].to_pylist(),
                      values.reshape(-1, info.dim).astype(np.float32, copy=False),
                      table.num_rows - ok.num_rows)


def read_folder(folder: str | Path) -> Embeddings:
    """Every file of an embeddings folder, checked to hold one model's codes."""
    files = list_files(folder)
    if not files:
        raise StyleCodeError(f"no embedding files ({FILE_GLOB}) in {folder}: run "
                             "pipeline/embed.py first")
    parts = [read_file(path) for path in files]
    for path, part in zip(files, parts):
        parts[0].info.check_same(part.info, str(path))
    return Embeddings(parts[0].info, [i for p in parts for i in p.ids],
                      [x for p in parts for x in p.paths],
                      np.concatenate([p.codes for p in parts]), sum(p.failed for p in parts))


def read_state(folder: str | Path) -> dict:
    """The embed command's record of a folder (empty when it was made otherwise)."""
    path = storage.join(folder, STATE_NAME)
    return json.loads(storage.read_text(path)) if storage.is_file(path) else {}
